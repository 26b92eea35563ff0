//! Password recovery: forgot and reset.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use regstack_core::Engine;
use regstack_ports::NewPassword;
use secrecy::SecretString;

use super::{message, Answer, EmailBody, Engine_};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::error::ApiError;
use crate::extract::Client;
use crate::read_all;

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/forgot-password", post(forgot_password))
        .route("/reset-password", post(reset_password))
}

/// `ResetPasswordRequest`.
pub struct ResetPasswordRequest {
    token: SecretString,
    new_password: NewPassword,
}
impl FromJsonObject for ResetPasswordRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            token = f.secret("token", Len::TOKEN);
            new_password = f.new_password("new_password");
        }
        Some(Self {
            token,
            new_password,
        })
    }
}

/// `POST /forgot-password` → always the same 202.
#[utoipa::path(post, path = "/forgot-password", tag = "recovery", request_body = super::EmailBody, responses((status = 202, description = "Always the same answer.", body = crate::wire::MessageResponse), (status = 404, description = "Password reset is disabled.", body = super::doc::Detail)))]
pub async fn forgot_password(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<EmailBody>,
) -> Answer {
    e.forgot_password(&b.email, &c).await?;
    message(
        StatusCode::ACCEPTED,
        "If the address matches an active account, a reset link has been sent. Check your email.",
    )
}

/// `POST /reset-password` → 200.
#[utoipa::path(post, path = "/reset-password", tag = "recovery", request_body = ResetPasswordRequest, responses((status = 200, description = "Reset; sign in again.", body = crate::wire::MessageResponse), (status = 400, description = "The link is invalid or expired.", body = super::doc::Detail)))]
pub async fn reset_password(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<ResetPasswordRequest>,
) -> Answer {
    e.reset_password(&b.token, &b.new_password, &c)
        .await
        .map_err(ApiError::at_password_field("new_password"))?;
    message(StatusCode::OK, "Password has been reset. Please sign in.")
}
