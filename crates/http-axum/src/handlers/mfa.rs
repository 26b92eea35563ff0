//! Second factors: the sign-in challenge (`/login/mfa-confirm`), TOTP
//! enrolment and removal, backup codes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::{delete, post};
use axum::Router;
use regstack_core::engine::{Method, PresentedCode, SignedIn};
use regstack_core::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::{message, ok_json, Answer, Engine_, Http};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::cookie;
use crate::extract::{Client, CurrentUser};
use crate::read_all;

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/login/mfa-confirm", post(mfa_confirm))
        .route("/totp/setup", post(totp_setup))
        .route("/totp/confirm", post(totp_confirm))
        .route("/totp", delete(totp_disable))
        .route("/mfa/backup-codes", post(regenerate_backup_codes))
}

/// A second-factor code: regstack's 4–10 characters, widened to fit a
/// backup code written with its dash and spaces.
pub(crate) const CODE: Len = Len {
    min: Some(4),
    max: Some(32),
};

/// `MfaConfirmRequest` (+ our optional `method`).
pub struct MfaConfirmRequest {
    mfa_pending_token: SecretString,
    code: SecretString,
    method: Option<Method>,
}
impl FromJsonObject for MfaConfirmRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            mfa_pending_token = f.secret("mfa_pending_token", Len::TOKEN);
            code = f.secret("code", CODE);
            method = f.optional_choice("method", &["totp", "sms", "backup_code"]);
        }
        Some(Self {
            mfa_pending_token,
            code,
            method: method.and_then(Method::parse),
        })
    }
}

/// Starts a session's answer: the tokens, and a device cookie for the
/// address (the password was right from this client).
pub(crate) fn signed_in_answer(e: &Engine, http: &crate::HttpSettings, s: SignedIn) -> Answer {
    signed_in_answer_with(e, http, s, super::NoExtra {})
}

/// [`signed_in_answer`] with a route's own fields beside the token's.
pub(crate) fn signed_in_answer_with<T: serde::Serialize>(
    e: &Engine,
    http: &crate::HttpSettings,
    s: SignedIn,
    extra: T,
) -> Answer {
    let mut answer = super::token_answer_with(
        e,
        http,
        s.access_token,
        s.expires_in,
        &s.refresh_token,
        s.refresh_expires_in,
        extra,
    )?;
    if let Some(set) = s
        .device_cookie
        .as_ref()
        .and_then(|d| cookie::set_device(d.expose_secret()))
    {
        answer.headers_mut().append(header::SET_COOKIE, set);
    }
    Ok(answer)
}

/// `POST /login/mfa-confirm` → 200 `TokenResponse` (+ refresh fields).
#[utoipa::path(post, path = "/login/mfa-confirm", tag = "sign-in", request_body = MfaConfirmRequest, responses((status = 200, description = "Signed in.", body = crate::wire::TokenResponse), (status = 400, description = "Wrong code or expired challenge.", body = super::doc::Detail)))]
pub async fn mfa_confirm(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(c): Client,
    JsonBody(b): JsonBody<MfaConfirmRequest>,
) -> Answer {
    let code = PresentedCode {
        code: b.code,
        method: b.method,
    };
    let s = e.confirm_sign_in(&b.mfa_pending_token, &code, &c).await?;
    signed_in_answer(&e, &http, s)
}

/// `{current_password}` bodies.
pub struct CurrentPasswordBody {
    current_password: SecretString,
}
impl CurrentPasswordBody {
    /// The password presented.
    pub(crate) fn current_password(&self) -> &SecretString {
        &self.current_password
    }
}
impl FromJsonObject for CurrentPasswordBody {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            current_password: f.secret("current_password", Len::CURRENT_PASSWORD)?,
        })
    }
}

/// `TotpSetupResponse`.
#[derive(Serialize, utoipa::ToSchema)]
struct TotpSetupResponse {
    secret: String,
    otpauth_uri: String,
    qr_svg: String,
    pending_token: String,
    expires_in: u64,
}

/// `POST /totp/setup` → 200 with the secret, its URI and QR code, and the
/// pending token `/totp/confirm` takes.
#[utoipa::path(post, path = "/totp/setup", tag = "second factors", request_body = CurrentPasswordBody, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "A new secret to confirm.", body = TotpSetupResponse), (status = 400, description = "Wrong current password.", body = super::doc::Detail)))]
pub async fn totp_setup(
    State(e): Engine_,
    user: CurrentUser,
    JsonBody(b): JsonBody<CurrentPasswordBody>,
) -> Answer {
    let s = e.totp_setup(&user.user, &b.current_password).await?;
    ok_json(
        StatusCode::OK,
        TotpSetupResponse {
            secret: s.secret.expose_secret().to_owned(),
            otpauth_uri: s.otpauth_uri.expose_secret().to_owned(),
            qr_svg: s.qr_svg.expose_secret().to_owned(),
            pending_token: s.pending_token.expose_secret().to_owned(),
            expires_in: s.expires_in,
        },
    )
}

/// `TotpConfirmRequest`.
pub struct TotpConfirmRequest {
    pending_token: SecretString,
    code: SecretString,
}
impl FromJsonObject for TotpConfirmRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            pending_token = f.secret("pending_token", Len::TOKEN);
            code = f.secret("code", CODE);
        }
        Some(Self {
            pending_token,
            code,
        })
    }
}

/// `BackupCodesResponse`: shown once.
#[derive(Serialize, utoipa::ToSchema)]
struct BackupCodesResponse {
    backup_codes: Vec<String>,
}

impl BackupCodesResponse {
    fn from(codes: regstack_core::engine::BackupCodes) -> Self {
        Self {
            backup_codes: codes
                .0
                .iter()
                .map(|c| c.expose_secret().to_owned())
                .collect(),
        }
    }
}

/// `POST /totp/confirm` → 200 `{backup_codes}`.
#[utoipa::path(post, path = "/totp/confirm", tag = "second factors", request_body = TotpConfirmRequest, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "TOTP on; the backup codes, shown once.", body = BackupCodesResponse), (status = 400, description = "Wrong code or expired setup.", body = super::doc::Detail)))]
pub async fn totp_confirm(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<TotpConfirmRequest>,
) -> Answer {
    let codes = e
        .totp_confirm(&user.user, &user.session.id, &b.pending_token, &b.code, &c)
        .await?;
    ok_json(StatusCode::OK, BackupCodesResponse::from(codes))
}

/// `DELETE /totp` → 200.
#[utoipa::path(delete, path = "/totp", tag = "second factors", request_body = CurrentPasswordBody, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "TOTP off.", body = crate::wire::MessageResponse), (status = 400, description = "Wrong password, or TOTP is not enabled.", body = super::doc::Detail)))]
pub async fn totp_disable(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<CurrentPasswordBody>,
) -> Answer {
    e.totp_disable(&user.user, &user.session.id, &b.current_password, &c)
        .await?;
    message(StatusCode::OK, "TOTP disabled.")
}

/// `POST /mfa/backup-codes` → 200 `{backup_codes}`; the old ones are dead.
#[utoipa::path(post, path = "/mfa/backup-codes", tag = "second factors", request_body = CurrentPasswordBody, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "New backup codes; the old ones are dead.", body = BackupCodesResponse), (status = 400, description = "Wrong password, or no second factor.", body = super::doc::Detail)))]
pub async fn regenerate_backup_codes(
    State(e): Engine_,
    user: CurrentUser,
    JsonBody(b): JsonBody<CurrentPasswordBody>,
) -> Answer {
    let codes = e
        .regenerate_backup_codes(&user.user, &b.current_password)
        .await?;
    ok_json(StatusCode::OK, BackupCodesResponse::from(codes))
}
