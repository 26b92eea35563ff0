//! One handler per route: read the body, call the engine, shape the answer.
//! No rule lives here; the engine decides, `error.rs` words the refusals.
//!
//! One module per capability, each with its models, handlers and its own
//! `router()`; [`routes`] merges them. A new capability adds a module here
//! and one line in [`routes`].

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use regstack_core::Engine;
use regstack_ports::Email;
use secrecy::SecretString;

use crate::body::{Fields, FromJsonObject, Len};
use crate::cookie;
use crate::error::ApiError;
use crate::wire::{MessageResponse, TokenResponse};
use secrecy::ExposeSecret;

pub(crate) type Engine_ = State<Arc<Engine>>;
/// The router's [`HttpSettings`](crate::HttpSettings) (the API's mount
/// point names the refresh cookie's path).
pub(crate) type Http = axum::Extension<Arc<crate::HttpSettings>>;
pub(crate) type Answer = Result<axum::response::Response, ApiError>;

pub(crate) fn ok_json<T: serde::Serialize>(status: StatusCode, body: T) -> Answer {
    Ok((status, Json(body)).into_response())
}

pub(crate) fn message(status: StatusCode, message: &'static str) -> Answer {
    ok_json(status, MessageResponse { message })
}

mod account;
mod admin;
mod audit;
mod deletion;
pub mod doc;
mod mfa;
mod oauth;
mod phone;
mod recovery;
mod registration;
mod sessions;
mod sign_in;

/// Every route of the JSON API, relative to the prefix.
pub fn routes() -> axum::Router<Arc<Engine>> {
    axum::Router::new()
        .merge(registration::router())
        .merge(sign_in::router())
        .merge(sessions::router())
        .merge(account::router())
        .merge(deletion::router())
        .merge(mfa::router())
        .merge(phone::router())
        .merge(recovery::router())
}

/// The OAuth routes, merged by [`crate::router`] when the engine has
/// providers (regstack mounts them only then).
pub fn oauth_routes() -> axum::Router<Arc<Engine>> {
    oauth::router()
}

/// The admin routes, merged by [`crate::router`] when `enable_admin_router`
/// is on (regstack mounts them only then).
pub fn admin_routes() -> axum::Router<Arc<Engine>> {
    admin::router().route("/admin/audit", axum::routing::get(audit::list))
}

/// The documentation routes (`/openapi.json`, `/docs`), merged by
/// [`crate::router`]; `prefix` is where the API is mounted.
pub fn doc_routes(prefix: &str) -> axum::Router<Arc<Engine>> {
    doc::router(prefix)
}

/// `{token}` bodies: `VerifyRequest`, `ConfirmEmailChangeRequest`.
pub struct TokenBody {
    pub(crate) token: SecretString,
}
impl FromJsonObject for TokenBody {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            token: f.secret("token", Len::TOKEN)?,
        })
    }
}

/// `{email}` bodies: `ResendRequest`, `ForgotPasswordRequest`.
pub struct EmailBody {
    pub(crate) email: Email,
}
impl FromJsonObject for EmailBody {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            email: f.email("email")?,
        })
    }
}

/// Nothing beside the token fields.
#[derive(serde::Serialize)]
pub(crate) struct NoExtra {}

/// A token answer's body: the token fields and a route's own (the OAuth
/// exchange adds `redirect_to` and `was_new_account`).
#[derive(serde::Serialize)]
struct TokenBody_<T: serde::Serialize> {
    #[serde(flatten)]
    token: TokenResponse,
    #[serde(flatten)]
    extra: T,
}

/// A token answer: the refresh token goes into the JSON, or (cookie mode)
/// into the `HttpOnly` cookie and not into the JSON.
pub(crate) fn token_answer(
    e: &Engine,
    http: &crate::HttpSettings,
    access_token: String,
    expires_in: u64,
    refresh: &SecretString,
    refresh_expires_in: u64,
) -> Answer {
    token_answer_with(
        e,
        http,
        access_token,
        expires_in,
        refresh,
        refresh_expires_in,
        NoExtra {},
    )
}

/// [`token_answer`] with a route's own fields beside the token's.
pub(crate) fn token_answer_with<T: serde::Serialize>(
    e: &Engine,
    http: &crate::HttpSettings,
    access_token: String,
    expires_in: u64,
    refresh: &SecretString,
    refresh_expires_in: u64,
    extra: T,
) -> Answer {
    let cfg = e.config();
    let in_cookie = cfg.sessions.refresh_cookie;
    let body = TokenBody_ {
        token: TokenResponse {
            access_token,
            token_type: "bearer",
            expires_in,
            refresh_token: (!in_cookie).then(|| refresh.expose_secret().to_owned()),
            refresh_expires_in,
        },
        extra,
    };
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if in_cookie {
        if let Some(c) = cookie::set(
            &http.api_prefix,
            refresh.expose_secret(),
            refresh_expires_in,
        ) {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(response)
}
