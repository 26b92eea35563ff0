//! Session routes: refresh, logout, logout-all, the session list and revoking one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use regstack_core::Engine;
use regstack_ports::SessionId;
use secrecy::SecretString;

use super::{message, ok_json, token_answer, Answer, Engine_, Http};
use crate::body::{Fields, FromJsonObject, Len, OptionalJsonBody};
use crate::cookie;
use crate::extract::{Client, CurrentUser};
use crate::wire::{user_time, LogoutAllResponse, SessionInfo, SessionList};

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/logout", post(logout))
        .route("/logout-all", post(logout_all))
        .route("/refresh", post(refresh))
        .route("/sessions", get(sessions))
        .route("/sessions/{id}", delete(revoke_session))
}

/// `{"refresh_token"}`; optional in cookie mode, where the cookie carries it.
pub struct RefreshRequest {
    refresh_token: Option<SecretString>,
}
impl FromJsonObject for RefreshRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            refresh_token: f.optional_secret("refresh_token", Len::TOKEN)?,
        })
    }
}

/// `POST /refresh` → 200 with a new access token and the successor
/// refresh token; every failure is one 401.
#[utoipa::path(post, path = "/refresh", tag = "sessions", request_body = RefreshRequest, responses((status = 200, description = "A new access token and the successor refresh token.", body = crate::wire::TokenResponse), (status = 401, description = "The refresh token is invalid, expired or reused.", body = super::doc::Detail)))]
pub async fn refresh(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(c): Client,
    headers: HeaderMap,
    OptionalJsonBody(b): OptionalJsonBody<RefreshRequest>,
) -> Answer {
    let cfg = e.config();
    let from_body = b.and_then(|b| b.refresh_token);
    let presented = if cfg.sessions.refresh_cookie {
        if cookie::is_cross_site(&headers, cookie::origin_of(cfg.base())) {
            return Err(regstack_core::AuthError::CrossSiteRefused.into());
        }
        from_body.or_else(|| cookie::read(&headers).map(SecretString::from))
    } else {
        from_body
    };
    let presented = presented.ok_or(regstack_core::AuthError::InvalidRefreshToken)?;
    let r = e.refresh(&presented, &c).await?;
    token_answer(
        &e,
        &http,
        r.access_token,
        r.expires_in,
        &r.refresh_token,
        r.refresh_expires_in,
    )
}

fn clearing_cookie(
    e: &Engine,
    http: &crate::HttpSettings,
    mut response: axum::response::Response,
) -> Answer {
    if e.config().sessions.refresh_cookie {
        if let Some(c) = cookie::clear(&http.api_prefix) {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(response)
}

/// `POST /logout` → 200; the session (and its refresh tokens) ends.
#[utoipa::path(post, path = "/logout", tag = "sessions", security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Signed out.", body = crate::wire::MessageResponse)))]
pub async fn logout(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(c): Client,
    user: CurrentUser,
) -> Answer {
    e.logout(&user, &c).await?;
    clearing_cookie(&e, &http, message(StatusCode::OK, "Logged out.")?)
}

/// `POST /logout-all` → 200 with the number of sessions ended.
#[utoipa::path(post, path = "/logout-all", tag = "sessions", security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Every session ended.", body = crate::wire::LogoutAllResponse)))]
pub async fn logout_all(
    State(e): Engine_,
    axum::Extension(http): Http,
    Client(c): Client,
    user: CurrentUser,
) -> Answer {
    let n = e.logout_all(&user, &c).await?;
    let body = LogoutAllResponse {
        message: format!("Signed out of {n} session(s)."),
        revoked: n,
    };
    clearing_cookie(&e, &http, (StatusCode::OK, Json(body)).into_response())
}

/// `GET /sessions` → the caller's live sessions.
#[utoipa::path(get, path = "/sessions", tag = "sessions", security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The caller's live sessions.", body = crate::wire::SessionList)))]
pub async fn sessions(State(e): Engine_, user: CurrentUser) -> Answer {
    let list = e.list_sessions(&user).await?;
    let sessions = list
        .iter()
        .map(|s| SessionInfo {
            id: s.id.to_string(),
            created_at: user_time(&s.created_at),
            last_used_at: user_time(&s.last_used_at),
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
            current: s.id == user.session.id,
        })
        .collect();
    ok_json(StatusCode::OK, SessionList { sessions })
}

/// `DELETE /sessions/{id}` → 200, or 404 for an unknown id or another
/// user's session (the two are indistinguishable).
#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions", params(("id" = String, Path, description = "A session id from GET /sessions.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Ended.", body = crate::wire::MessageResponse), (status = 404, description = "No such session of the caller.", body = super::doc::Detail)))]
pub async fn revoke_session(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Answer {
    let id = SessionId::parse(&id).ok_or(regstack_core::AuthError::SessionNotFound)?;
    e.revoke_session(&user, &id, &c).await?;
    message(StatusCode::OK, "Session revoked.")
}
