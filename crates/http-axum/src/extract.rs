//! Extractors hosts use on their own routes: [`CurrentUser`] and
//! `Option<CurrentUser>`, plus the client context our handlers record.

use std::net::{IpAddr, SocketAddr};
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

/// How far to trust proxy headers for the client IP: the number of
/// reverse proxies in front of the service that each append the address
/// they were reached from to `X-Forwarded-For` (or `Forwarded`). `0` — the
/// default, `behind_proxy = false` — ignores those headers: the client IP
/// is the socket's peer. With `n`, the client IP is the `n`-th entry from
/// the right (`http.trusted_proxy_hops`): what the outermost of our proxies
/// saw. Entries further left were written by whoever reached that proxy —
/// possibly the client itself — so they are never read; a client that
/// sends its own `X-Forwarded-For` only adds entries nobody looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustProxy {
    /// Trusted hops; 0 = not behind a proxy.
    pub hops: usize,
}

impl TrustProxy {
    /// What `behind_proxy` and `http.trusted_proxy_hops` amount to.
    pub fn new(behind_proxy: bool, trusted_proxy_hops: usize) -> Self {
        Self {
            hops: if behind_proxy { trusted_proxy_hops } else { 0 },
        }
    }
}

/// An address as proxies write it: `203.0.113.9`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, `203.0.113.9:4711`, optionally quoted
/// (`Forwarded`). Anything else (`unknown`, an obfuscated `_node`) is no
/// address.
fn parse_ip(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = raw.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    raw.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// The entry `hops` from the right among the addresses our proxies
/// appended, or the leftmost when the chain is shorter (every entry was
/// then written by one of ours). `X-Forwarded-For` first (every header
/// line, in order), else `Forwarded`'s `for=`.
fn forwarded_ip(headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return None;
    }
    let pick = |entries: Vec<&str>| -> Option<IpAddr> {
        let i = entries.len().saturating_sub(hops);
        entries.get(i).and_then(|e| parse_ip(e))
    };
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !xff.is_empty() {
        return pick(xff);
    }
    let fwd: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|kv| {
                let (k, v) = kv.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
            })
        })
        .collect();
    if fwd.is_empty() {
        return None;
    }
    pick(fwd)
}

/// The client's address: from the proxy headers through the trusted hops
/// ([`TrustProxy`] in the request extensions), else the socket's peer
/// (axum's `ConnectInfo`; none if the host serves without it). Our handlers
/// record it on sessions and events; the route limits count by it.
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    let hops = parts.extensions.get::<TrustProxy>().map_or(0, |t| t.hops);
    forwarded_ip(&parts.headers, hops).or_else(|| {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = client_ip(parts).map(|ip| ip.to_string());
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

    fn xff(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static(value));
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_client_ip_is_counted_from_the_right_through_the_trusted_hops() {
        // A client claiming 6.6.6.6; our one proxy appended 203.0.113.9.
        let h = xff("6.6.6.6, 203.0.113.9");
        assert_eq!(forwarded_ip(&h, 1), ip("203.0.113.9"));
        // Two proxies of ours: the outer one saw 6.6.6.6.
        assert_eq!(forwarded_ip(&h, 2), ip("6.6.6.6"));
        // A chain shorter than the trusted hops: all of it is ours.
        assert_eq!(forwarded_ip(&h, 5), ip("6.6.6.6"));
        // Not behind a proxy: the header is never read.
        assert_eq!(forwarded_ip(&h, 0), None);
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("2.2.2.2, 3.3.3.3"),
        );
        assert_eq!(
            forwarded_ip(&h, 1),
            ip("3.3.3.3"),
            "every header line counts"
        );
        assert_eq!(forwarded_ip(&h, 3), ip("1.1.1.1"));
    }

    #[test]
    fn forwarded_for_entries_with_ports_brackets_and_quotes_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.1.1.1, for=\"[2001:db8::7]:4711\";proto=https"),
        );
        assert_eq!(forwarded_ip(&h, 1), ip("2001:db8::7"));
        assert_eq!(forwarded_ip(&h, 2), ip("1.1.1.1"));
        assert_eq!(
            forwarded_ip(&xff("198.51.100.7:8080"), 1),
            ip("198.51.100.7")
        );
        assert_eq!(forwarded_ip(&xff("unknown"), 1), None, "not an address");
    }
}
