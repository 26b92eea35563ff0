//! Password sign-in, and the device cookie it reads and sets (LK-4:
//! `crate::cookie`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use regstack_core::engine::{LoginOutcome, Method, PresentedCode};
use regstack_core::Engine;
use regstack_ports::{Email, NewPassword};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::mfa::{signed_in_answer, CODE};
use super::{ok_json, Answer, Engine_, Http};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::cookie;
use crate::error::ApiError;
use crate::extract::Client;
use crate::read_all;

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/login", post(login))
        .route("/login/change-password", post(change_password_to_sign_in))
}

/// `LoginRequest`, plus the one-step second factor: `totp_code` or
/// `backup_code` (TOTP wins when both are present).
pub struct LoginRequest {
    email: Email,
    password: SecretString,
    one_step: Option<PresentedCode>,
}
impl FromJsonObject for LoginRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            email = f.email("email");
            password = f.secret("password", Len::PASSWORD);
            totp_code = f.optional_secret("totp_code", CODE);
            backup_code = f.optional_secret("backup_code", CODE);
        }
        let one_step = match (totp_code, backup_code) {
            (Some(code), _) => Some(PresentedCode {
                code,
                method: Some(Method::Totp),
            }),
            (None, Some(code)) => Some(PresentedCode {
                code,
                method: Some(Method::BackupCode),
            }),
            (None, None) => None,
        };
        Some(Self {
            email,
            password,
            one_step,
        })
    }
}

/// `MfaPendingResponse` (+ our `methods`).
#[derive(Serialize)]
struct MfaPendingResponse {
    status: &'static str,
    mfa_pending_token: String,
    expires_in: u64,
    delivery: &'static str,
    methods: Vec<&'static str>,
}

/// `POST /login` → 200 `TokenResponse` (+ refresh fields) and a new device
/// cookie, or 200 `MfaPendingResponse` when a second factor is due. A
/// device cookie in the request is handed to the engine, which decides
/// what it is worth.
pub async fn login(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(mut c): Client,
    headers: HeaderMap,
    JsonBody(b): JsonBody<LoginRequest>,
) -> Answer {
    c.device_cookie = cookie::read_device(&headers).map(SecretString::from);
    let outcome = e.login(&b.email, &b.password, b.one_step, &c).await?;
    login_answer(&e, &http, outcome)
}

/// `PasswordChangeRequiredResponse`.
#[derive(Serialize)]
struct PasswordChangeRequiredResponse {
    status: &'static str,
    password_change_token: String,
    expires_in: u64,
}

/// What a sign-in step answers: the tokens, the second-factor challenge,
/// or the forced password change.
fn login_answer(e: &Engine, http: &crate::HttpSettings, outcome: LoginOutcome) -> Answer {
    match outcome {
        LoginOutcome::SignedIn(s) => signed_in_answer(e, http, *s),
        LoginOutcome::MfaRequired(p) => ok_json(
            StatusCode::OK,
            MfaPendingResponse {
                status: "mfa_required",
                mfa_pending_token: p.mfa_pending_token.expose_secret().to_owned(),
                expires_in: p.expires_in,
                delivery: p.delivery.name(),
                methods: p.methods.iter().map(|m| m.name()).collect(),
            },
        ),
        LoginOutcome::PasswordChangeRequired(p) => ok_json(
            StatusCode::OK,
            PasswordChangeRequiredResponse {
                status: "password_change_required",
                password_change_token: p.password_change_token.expose_secret().to_owned(),
                expires_in: p.expires_in,
            },
        ),
    }
}

/// `ForcedPasswordChangeRequest`.
pub struct ForcedPasswordChangeRequest {
    password_change_token: SecretString,
    new_password: NewPassword,
}
impl FromJsonObject for ForcedPasswordChangeRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            password_change_token = f.secret("password_change_token", Len::TOKEN);
            new_password = f.new_password("new_password");
        }
        Some(Self {
            password_change_token,
            new_password,
        })
    }
}

/// `POST /login/change-password` → what `/login` would answer after the
/// change: the tokens, or the second-factor challenge.
pub async fn change_password_to_sign_in(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(c): Client,
    JsonBody(b): JsonBody<ForcedPasswordChangeRequest>,
) -> Answer {
    let outcome = e
        .complete_password_change(&b.password_change_token, &b.new_password, &c)
        .await
        .map_err(ApiError::at_password_field("new_password"))?;
    login_answer(&e, &http, outcome)
}
