//! The signed-in user's own account: profile, password change, email change.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use regstack_core::Engine;
use regstack_ports::{DisplayName, Email, NewPassword};
use secrecy::SecretString;

use super::{message, ok_json, Answer, Engine_, TokenBody};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::error::ApiError;
use crate::extract::{Client, CurrentUser};
use crate::read_all;
use crate::wire::UserPublic;

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/me", get(me).patch(update_me))
        .route("/change-password", post(change_password))
        .route("/change-email", post(change_email))
        .route("/confirm-email-change", post(confirm_email_change))
        .route("/revert-email-change", post(revert_email_change))
}

/// `UpdateProfileRequest`: an absent `full_name` changes nothing; `null`
/// clears it.
pub struct UpdateProfileRequest {
    full_name: Option<Option<DisplayName>>,
}
impl FromJsonObject for UpdateProfileRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            full_name: f.full_name("full_name")?,
        })
    }
}

/// `ChangePasswordRequest`.
pub struct ChangePasswordRequest {
    current_password: SecretString,
    new_password: NewPassword,
}
impl FromJsonObject for ChangePasswordRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            current_password = f.secret("current_password", Len::CURRENT_PASSWORD);
            new_password = f.new_password("new_password");
        }
        Some(Self {
            current_password,
            new_password,
        })
    }
}

/// `ChangeEmailRequest`.
pub struct ChangeEmailRequest {
    new_email: Email,
    current_password: SecretString,
}
impl FromJsonObject for ChangeEmailRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            new_email = f.email("new_email");
            current_password = f.secret("current_password", Len::CURRENT_PASSWORD);
        }
        Some(Self {
            new_email,
            current_password,
        })
    }
}

/// `GET /me` → 200 `UserPublic`.
#[utoipa::path(get, path = "/me", tag = "account", security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The caller.", body = crate::wire::UserPublic)))]
pub async fn me(user: CurrentUser) -> Answer {
    ok_json(StatusCode::OK, UserPublic::from(&user.user))
}

/// `PATCH /me` → 200 `UserPublic`.
#[utoipa::path(patch, path = "/me", tag = "account", request_body = UpdateProfileRequest, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The caller, updated.", body = crate::wire::UserPublic)))]
pub async fn update_me(
    State(e): Engine_,
    user: CurrentUser,
    JsonBody(b): JsonBody<UpdateProfileRequest>,
) -> Answer {
    let updated = match b.full_name {
        None => user.user.clone(),
        Some(name) => e.update_profile(&user, name).await?,
    };
    ok_json(StatusCode::OK, UserPublic::from(&updated))
}

/// `POST /change-password` → 200.
#[utoipa::path(post, path = "/change-password", tag = "account", request_body = ChangePasswordRequest, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Changed; other sessions are signed out.", body = crate::wire::MessageResponse), (status = 400, description = "Wrong current password, or the same password.", body = super::doc::Detail)))]
pub async fn change_password(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<ChangePasswordRequest>,
) -> Answer {
    e.change_password(&user, &b.current_password, &b.new_password, &c)
        .await
        .map_err(ApiError::at_password_field("new_password"))?;
    message(
        StatusCode::OK,
        "Password changed. Existing sessions have been signed out.",
    )
}

/// `POST /change-email` → 202 whether or not the address is free.
#[utoipa::path(post, path = "/change-email", tag = "account", request_body = ChangeEmailRequest, security(("bearer" = []), ("password" = [])), responses((status = 202, description = "A confirmation link went out if the address is free.", body = crate::wire::MessageResponse), (status = 400, description = "Wrong current password, or the same address.", body = super::doc::Detail)))]
pub async fn change_email(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<ChangeEmailRequest>,
) -> Answer {
    e.request_email_change(&user, &b.new_email, &b.current_password, &c)
        .await?;
    message(
        StatusCode::ACCEPTED,
        "If the address is available, a confirmation link has been sent. Check your email.",
    )
}

/// `POST /confirm-email-change` → 200 `UserPublic`.
#[utoipa::path(post, path = "/confirm-email-change", tag = "account", request_body = super::TokenBody, responses((status = 200, description = "The account with its new address.", body = crate::wire::UserPublic), (status = 400, description = "The link is invalid or expired.", body = super::doc::Detail)))]
pub async fn confirm_email_change(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<TokenBody>,
) -> Answer {
    let user = e.confirm_email_change(&b.token, &c).await?;
    ok_json(StatusCode::OK, UserPublic::from(&user))
}

/// `POST /revert-email-change` → 200: the "this wasn't me" link mailed to
/// the old address of an email change. Every session ends, the change is
/// cancelled (or undone) and the password must be reset.
#[utoipa::path(post, path = "/revert-email-change", tag = "account", request_body = super::TokenBody, responses((status = 200, description = "The change is stopped or undone, every session signed out; the password must be reset.", body = crate::wire::MessageResponse), (status = 400, description = "The link is invalid, was already used, or has expired.", body = super::doc::Detail)))]
pub async fn revert_email_change(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<TokenBody>,
) -> Answer {
    e.revert_email_change(&b.token, &c).await?;
    message(
        StatusCode::OK,
        "The email change was stopped and every session signed out. Set a new password through \"forgot password\" to sign in again.",
    )
}
