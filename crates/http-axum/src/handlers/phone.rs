//! SMS second factor: regstack's `/phone` routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::Router;
use regstack_core::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::mfa::{CurrentPasswordBody, CODE};
use super::{message, ok_json, Answer, Engine_};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::extract::{Client, CurrentUser};
use crate::read_all;
use crate::wire::UserPublic;

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/phone/start", post(phone_start))
        .route("/phone/confirm", post(phone_confirm))
        .route("/phone", delete(phone_disable))
}

/// `PhoneStartRequest`.
pub struct PhoneStartRequest {
    phone_number: String,
    current_password: SecretString,
}
impl FromJsonObject for PhoneStartRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            phone_number = f.string("phone_number", Len { min: Some(4), max: Some(20) });
            current_password = f.secret("current_password", Len::CURRENT_PASSWORD);
        }
        Some(Self {
            phone_number,
            current_password,
        })
    }
}

/// `PhoneStartResponse`.
#[derive(Serialize, utoipa::ToSchema)]
struct PhoneStartResponse {
    #[schema(value_type = String)]
    status: &'static str,
    pending_token: String,
    expires_in: u64,
}

/// `POST /phone/start` → 202 `{status: "code_sent", pending_token, expires_in}`.
#[utoipa::path(post, path = "/phone/start", tag = "second factors", request_body = PhoneStartRequest, security(("bearer" = []), ("password" = [])), responses((status = 202, description = "A code was sent.", body = PhoneStartResponse), (status = 400, description = "Not an E.164 number, or a wrong password.", body = super::doc::Detail), (status = 404, description = "SMS second factors are disabled.", body = super::doc::Detail)))]
pub async fn phone_start(
    State(e): Engine_,
    user: CurrentUser,
    JsonBody(b): JsonBody<PhoneStartRequest>,
) -> Answer {
    let s = e
        .phone_start(&user.user, &b.phone_number, &b.current_password)
        .await?;
    ok_json(
        StatusCode::ACCEPTED,
        PhoneStartResponse {
            status: "code_sent",
            pending_token: s.pending_token.expose_secret().to_owned(),
            expires_in: s.expires_in,
        },
    )
}

/// `PhoneConfirmRequest`.
pub struct PhoneConfirmRequest {
    pending_token: SecretString,
    code: SecretString,
}
impl FromJsonObject for PhoneConfirmRequest {
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

/// `POST /phone/confirm` → 200 `UserPublic` with `is_mfa_enabled`. No
/// bearer token is needed (regstack's route); one that is presented keeps
/// its session when the others end.
#[utoipa::path(post, path = "/phone/confirm", tag = "second factors", request_body = PhoneConfirmRequest, responses((status = 200, description = "SMS second factor on.", body = crate::wire::UserPublic), (status = 400, description = "Wrong code or expired session.", body = super::doc::Detail)))]
pub async fn phone_confirm(
    State(e): Engine_,
    Client(c): Client,
    user: Option<CurrentUser>,
    JsonBody(b): JsonBody<PhoneConfirmRequest>,
) -> Answer {
    let caller = user.as_ref().map(|u| (&u.user.id, &u.session.id));
    let account = e
        .phone_confirm(&b.pending_token, &b.code, caller, &c)
        .await?;
    ok_json(StatusCode::OK, UserPublic::from(&account))
}

/// `DELETE /phone` → 200 `{message: "SMS 2FA disabled."}`.
#[utoipa::path(delete, path = "/phone", tag = "second factors", request_body = super::mfa::CurrentPasswordBody, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "SMS second factor off.", body = crate::wire::MessageResponse), (status = 400, description = "Wrong password, or SMS is not enabled.", body = super::doc::Detail)))]
pub async fn phone_disable(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<CurrentPasswordBody>,
) -> Answer {
    e.phone_disable(&user.user, &user.session.id, b.current_password(), &c)
        .await?;
    message(StatusCode::OK, "SMS 2FA disabled.")
}
