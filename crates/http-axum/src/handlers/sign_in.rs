//! Password sign-in.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use regstack_core::Engine;
use regstack_ports::Email;
use secrecy::SecretString;

use super::{token_answer, Answer, Engine_, Http};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::extract::Client;
use crate::read_all;

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new().route("/login", post(login))
}

/// `LoginRequest`.
pub struct LoginRequest {
    email: Email,
    password: SecretString,
}
impl FromJsonObject for LoginRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            email = f.email("email");
            password = f.secret("password", Len::PASSWORD);
        }
        Some(Self { email, password })
    }
}

/// `POST /login` → 200 `TokenResponse` (+ refresh fields).
pub async fn login(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(c): Client,
    JsonBody(b): JsonBody<LoginRequest>,
) -> Answer {
    let s = e.login(&b.email, &b.password, &c).await?;
    token_answer(
        &e,
        &http,
        s.access_token,
        s.expires_in,
        &s.refresh_token,
        s.refresh_expires_in,
    )
}
