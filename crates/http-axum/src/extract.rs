//! Extractors hosts use on their own routes: [`CurrentUser`] and
//! `Option<CurrentUser>`, plus the client context our handlers record.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use regstack_core::{AuthError, ClientContext, Engine, Principal};

use crate::error::ApiError;

/// The authenticated caller. Add it to a handler's arguments to require a
/// valid, live bearer token; the rejection is regstack's 401 body.
///
/// Needs the engine in the request extensions: our router has it, and a
/// host adds it to its own routes with [`crate::auth_layer`].
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Principal);

impl std::ops::Deref for CurrentUser {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// The `Authorization: Bearer …` token, if the header is present and uses
/// the Bearer scheme.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn engine(parts: &Parts) -> Result<Arc<Engine>, ApiError> {
    parts
        .extensions
        .get::<Arc<Engine>>()
        .cloned()
        .ok_or_else(|| {
            ApiError::Internal(
                "regstack engine missing: add regstack_http_axum::auth_layer()".into(),
            )
        })
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let engine = engine(parts)?;
        let principal = engine.authenticate(bearer(&parts.headers)).await?;
        Ok(CurrentUser(principal))
    }
}

/// `Option<CurrentUser>`: `None` when no bearer token is presented; a
/// token that is presented but dead is still refused with 401, so a revoked
/// session never silently becomes an anonymous visitor.
impl<S: Send + Sync> OptionalFromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if bearer(&parts.headers).is_none() {
            return Ok(None);
        }
        let engine = engine(parts)?;
        match engine.authenticate(bearer(&parts.headers)).await {
            Ok(p) => Ok(Some(CurrentUser(p))),
            Err(AuthError::Unauthenticated(regstack_core::AuthFailure::Missing)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Client IP and user agent, for sessions and events.
#[derive(Debug, Clone, Default)]
pub struct Client(pub ClientContext);

/// Whether to trust proxy headers for the client IP (`behind_proxy`).
#[derive(Debug, Clone, Copy)]
pub struct TrustProxy(pub bool);

fn forwarded_ip(headers: &HeaderMap) -> Option<String> {
    // The nearest hop is the last entry: the one our trusted proxy appended.
    if let Some(xff) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        if let Some(last) = xff.rsplit(',').map(str::trim).find(|s| !s.is_empty()) {
            return Some(last.to_owned());
        }
    }
    let fwd = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())?;
    let last = fwd.rsplit(',').next()?;
    last.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        k.eq_ignore_ascii_case("for")
            .then(|| v.trim_matches('"').to_owned())
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let trust = parts.extensions.get::<TrustProxy>().is_some_and(|t| t.0);
        let socket = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let ip = if trust {
            forwarded_ip(&parts.headers).or(socket)
        } else {
            socket
        };
        let ip = ip.filter(|s| s.len() <= 64 && !s.chars().any(char::is_control));
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Client(ClientContext {
            ip,
            user_agent,
            device_cookie: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_required() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn the_nearest_forwarded_hop_wins() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9"),
        );
        assert_eq!(forwarded_ip(&h).as_deref(), Some("203.0.113.9"));
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.1.1.1, for=\"198.51.100.7\";proto=https"),
        );
        assert_eq!(forwarded_ip(&h).as_deref(), Some("198.51.100.7"));
    }
}
