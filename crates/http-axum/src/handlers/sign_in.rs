//! Password sign-in, and the device cookie it reads and sets (LK-4:
//! `crate::cookie`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::routing::post;
use axum::Router;
use regstack_core::Engine;
use regstack_ports::Email;
use secrecy::{ExposeSecret, SecretString};

use super::{token_answer, Answer, Engine_, Http};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::cookie;
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

/// `POST /login` → 200 `TokenResponse` (+ refresh fields), and a new
/// device cookie. A device cookie in the request is handed to the engine,
/// which decides what it is worth.
pub async fn login(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(mut c): Client,
    headers: HeaderMap,
    JsonBody(b): JsonBody<LoginRequest>,
) -> Answer {
    c.device_cookie = cookie::read_device(&headers).map(SecretString::from);
    let s = e.login(&b.email, &b.password, &c).await?;
    let mut answer = token_answer(
        &e,
        &http,
        s.access_token,
        s.expires_in,
        &s.refresh_token,
        s.refresh_expires_in,
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
