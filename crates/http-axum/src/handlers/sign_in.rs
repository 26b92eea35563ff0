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
use crate::body::{Fields, FormBody, FromJsonObject, JsonBody, Len};
use crate::cookie;
use crate::error::ApiError;
use crate::extract::Client;
use crate::read_all;
use crate::wire::TokenResponse;

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/login", post(login))
        .route("/login/change-password", post(change_password_to_sign_in))
        .route("/token", post(token))
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
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct MfaPendingResponse {
    /// Always `mfa_required`.
    #[schema(value_type = String)]
    status: &'static str,
    mfa_pending_token: String,
    expires_in: u64,
    /// Where the code goes: `sms`, `totp`.
    #[schema(value_type = String)]
    delivery: &'static str,
    /// Every second factor the account can answer with.
    #[schema(value_type = Option<Vec<String>>)]
    methods: Vec<&'static str>,
}

/// What `/login` answers with 200.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum LoginAnswer {
    Tokens(TokenResponse),
    SecondFactorDue(MfaPendingResponse),
    PasswordChangeDue(PasswordChangeRequiredResponse),
}

/// `POST /login` → 200 `TokenResponse` (+ refresh fields) and a new device
/// cookie, or 200 `MfaPendingResponse` when a second factor is due. A
/// device cookie in the request is handed to the engine, which decides
/// what it is worth.
#[utoipa::path(post, path = "/login", tag = "sign-in", request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in (tokens), or a second factor or a password change is due.", body = LoginAnswer),
        (status = 401, description = "Wrong address or password (with the attempts left).", body = super::doc::Detail),
        (status = 403, description = "Account disabled or not verified.", body = super::doc::Detail),
    ))]
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
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PasswordChangeRequiredResponse {
    /// Always `password_change_required`.
    #[schema(value_type = String)]
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
#[utoipa::path(post, path = "/login/change-password", tag = "sign-in", request_body = ForcedPasswordChangeRequest,
    responses(
        (status = 200, description = "Password changed: signed in, or a second factor is due.", body = LoginAnswer),
        (status = 400, description = "The password-change session is invalid or has expired.", body = super::doc::Detail),
    ))]
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

/// FastAPI's `OAuth2PasswordRequestForm`: `username` (the address) and
/// `password`, with the optional `grant_type` (only `password`), `scope`,
/// `client_id` and `client_secret` an OAuth2 client may add (read and
/// ignored).
pub struct TokenForm {
    email: Email,
    password: SecretString,
}
impl FromJsonObject for TokenForm {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            grant_type = f.optional_choice("grant_type", &["password"]);
            email = f.email("username");
            password = f.secret("password", Len::PASSWORD);
            scope = f.optional_nullable("scope", Len::TOKEN);
            client_id = f.optional_nullable("client_id", Len::TOKEN);
            client_secret = f.optional_secret("client_secret", Len::TOKEN);
        }
        let _ = (grant_type, scope, client_id, client_secret);
        Some(Self { email, password })
    }
}

/// `/token`'s refusal when the password was right but the sign-in is not
/// finished: the challenge `/login` would answer, and why no token came.
#[derive(Serialize)]
struct TokenWithheld<T: Serialize> {
    /// Why there is no token, for an OAuth2 client that shows `detail`.
    detail: &'static str,
    #[serde(flatten)]
    challenge: T,
}

/// What `/token` answers with 403.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum TokenRefusal {
    SecondFactorDue(MfaPendingResponse),
    PasswordChangeDue(PasswordChangeRequiredResponse),
}

/// `POST /token` (OAuth2 password grant, form-encoded): the sign-in of
/// `/login` for OAuth2 clients such as `/docs`' Authorize button. Same
/// engine step, so the same lockout, route limit (shared with `/login`)
/// and second-factor gate: an account with a second factor (or a forced
/// password change) gets 403 with `/login`'s challenge body and never a
/// token; it finishes at `/login/mfa-confirm`. No cookie is set: the
/// refresh token is in the body unless refresh tokens travel in cookies.
#[utoipa::path(post, path = "/token", tag = "sign-in",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Signed in.", body = TokenResponse),
        (status = 401, description = "Wrong address or password (counts toward the lockout like /login).", body = super::doc::Detail),
        (status = 403, description = "A second factor or a password change is due (the challenge, no token); or the account is disabled or not verified, or the form came from another site.", body = TokenRefusal),
    ))]
pub async fn token(
    State(e): Engine_,
    Client(mut c): Client,
    headers: HeaderMap,
    FormBody(b): FormBody<TokenForm>,
) -> Answer {
    c.device_cookie = cookie::read_device(&headers).map(SecretString::from);
    match e.login(&b.email, &b.password, None, &c).await? {
        LoginOutcome::SignedIn(s) => ok_json(
            StatusCode::OK,
            TokenResponse {
                access_token: s.access_token,
                token_type: "bearer",
                expires_in: s.expires_in,
                refresh_token: (!e.config().sessions.refresh_cookie)
                    .then(|| s.refresh_token.expose_secret().to_owned()),
                refresh_expires_in: s.refresh_expires_in,
            },
        ),
        LoginOutcome::MfaRequired(p) => ok_json(
            StatusCode::FORBIDDEN,
            TokenWithheld {
                detail: "A second factor is required: finish at /login/mfa-confirm.",
                challenge: MfaPendingResponse {
                    status: "mfa_required",
                    mfa_pending_token: p.mfa_pending_token.expose_secret().to_owned(),
                    expires_in: p.expires_in,
                    delivery: p.delivery.name(),
                    methods: p.methods.iter().map(|m| m.name()).collect(),
                },
            },
        ),
        LoginOutcome::PasswordChangeRequired(p) => ok_json(
            StatusCode::FORBIDDEN,
            TokenWithheld {
                detail: "A password change is required: finish at /login/change-password.",
                challenge: PasswordChangeRequiredResponse {
                    status: "password_change_required",
                    password_change_token: p.password_change_token.expose_secret().to_owned(),
                    expires_in: p.expires_in,
                },
            },
        ),
    }
}
