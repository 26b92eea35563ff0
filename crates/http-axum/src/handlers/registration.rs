//! Registration and verification routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use regstack_core::{Engine, Registered, Registration};
use regstack_ports::{DisplayName, Email, NewPassword};
use secrecy::SecretString;

use super::{message, ok_json, Answer, EmailBody, Engine_, TokenBody};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::error::ApiError;
use crate::extract::Client;
use crate::read_all;
use crate::wire::{iso_offset, PendingResponse, UserPublic};

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/register", post(register))
        .route("/verify", post(verify))
        .route("/resend-verification", post(resend_verification))
}

/// `UserCreate`, plus `invite_code` (optional, nullable): the invitation
/// `registration_mode = "invite"` asks for. In open mode it is accepted
/// and ignored — never looked up, never spent.
pub struct UserCreate {
    email: Email,
    password: NewPassword,
    full_name: Option<DisplayName>,
    invite_code: Option<SecretString>,
}
impl FromJsonObject for UserCreate {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            email = f.email("email");
            password = f.new_password("password");
            full_name = f.full_name("full_name");
            invite_code = f.optional_secret("invite_code", Len::TOKEN);
        }
        Some(Self {
            email,
            password,
            full_name: full_name.flatten(),
            invite_code,
        })
    }
}

/// What `/register` answers with 201.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum RegisterAnswer {
    Pending(PendingResponse),
    Active(UserPublic),
}

/// `POST /register` → 201 `PendingResponse` or `UserPublic`.
#[utoipa::path(post, path = "/register", tag = "registration", request_body = UserCreate, responses((status = 201, description = "Registered: pending verification, or active at once.", body = RegisterAnswer), (status = 403, description = "Registration closed, or an invitation is required.", body = super::doc::Detail), (status = 409, description = "The address has an account.", body = super::doc::Detail)))]
pub async fn register(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<UserCreate>,
) -> Answer {
    let reg = Registration {
        email: b.email,
        password: b.password,
        full_name: b.full_name,
        invite_code: b.invite_code,
    };
    match e
        .register(reg, &c)
        .await
        .map_err(ApiError::at_password_field("password"))?
    {
        Registered::Pending { email, expires_at } => ok_json(
            StatusCode::CREATED,
            PendingResponse {
                status: "pending_verification",
                email: email.to_string(),
                expires_at: iso_offset(&expires_at),
            },
        ),
        Registered::Active(user) => ok_json(StatusCode::CREATED, UserPublic::from(&user)),
    }
}

/// `POST /verify` → 200 `UserPublic`.
#[utoipa::path(post, path = "/verify", tag = "registration", request_body = TokenBody, responses((status = 200, description = "Verified: the new account.", body = crate::wire::UserPublic), (status = 400, description = "The link is invalid or expired.", body = super::doc::Detail)))]
pub async fn verify(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<TokenBody>,
) -> Answer {
    let user = e.verify(&b.token, &c).await?;
    ok_json(StatusCode::OK, UserPublic::from(&user))
}

/// `POST /resend-verification` → always the same 202.
#[utoipa::path(post, path = "/resend-verification", tag = "registration", request_body = EmailBody, responses((status = 202, description = "Always the same answer.", body = crate::wire::MessageResponse)))]
pub async fn resend_verification(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<EmailBody>,
) -> Answer {
    e.resend_verification(&b.email, &c).await?;
    message(
        StatusCode::ACCEPTED,
        "If a pending registration exists, a new email has been sent.",
    )
}
