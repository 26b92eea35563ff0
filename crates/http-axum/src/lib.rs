//! The HTTP face of regstack-rs: an axum router speaking regstack 0.9.3's
//! JSON API, the extractors hosts use on their own routes, and the single
//! mapping from errors to wire status and body.
//!
//! This ring depends on `core` (which decides) and `ports` (types); it
//! never touches a store or a mailer directly. Start at [`router`], then
//! `handlers/` (one module per capability, one short function per route), `body.rs` (how a request
//! body becomes a validated model, with regstack's 422 shapes) and
//! `error.rs` (the status table). The router's own settings (body limit,
//! CORS, request deadline, HSTS) are [`HttpSettings`], in `settings.rs`.
//!
//! Invariants:
//! - every response is JSON, including 404, 405, 413, 415, 422 and panics;
//! - a rejected request writes nothing (validation happens before the
//!   engine is called);
//! - logs carry method and path, never the query string or a body.

pub mod body;
pub mod cookie;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod ratelimit;
pub mod settings;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use regstack_core::Engine;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use extract::{CurrentUser, TrustProxy};
pub use ratelimit::RouteLimits;
pub use settings::HttpSettings;

/// Answers unknown routes with regstack's JSON 404.
pub async fn not_found() -> Response {
    ApiError::NotFound.into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

/// The last step of every response, in one layer rather than four (each
/// layer is a future wrapped around every request): logs a failed
/// response's source chain (see `error.rs`) with the request it answered,
/// and adds the security headers a handler did not set itself.
async fn finish_response(request: Request, next: Next) -> Response {
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let mut response = next.run(request).await;
    if let Some(report) = response.extensions().get::<error::FailureReport>() {
        // Path only: query strings can carry tokens (OT-8).
        tracing::error!(
            method = %method,
            path = uri.path(),
            status = response.status().as_u16(),
            error = %report.0,
            "request failed"
        );
    }
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}

/// Answers 503 (with `Retry-After`) when a request has no answer within
/// `limit`. The handler's future is dropped, which every flow tolerates:
/// store steps are atomic, an open transaction rolls back with its
/// connection, and a password hash already running keeps its permit until
/// it ends.
async fn deadline(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(limit).into_response(),
    }
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::Internal("panic".into()).into_response()
}

/// The layer that makes [`CurrentUser`] work on a host's own routes:
/// `Router::new().route("/private", get(h)).layer(auth_layer(engine))`.
pub fn auth_layer(engine: Arc<Engine>) -> Extension<Arc<Engine>> {
    Extension(engine)
}

/// The regstack API mounted at `api_prefix`, with its own 404/405 answers,
/// `http`'s body limit, route limits (unless `rate_limit_disabled`) and
/// request deadline, security headers (HSTS when
/// `http.hsts`), panic guard, request tracing and (when `http` names
/// origins) CORS. Merge it into a
/// host's router as is. `http` should have passed
/// [`HttpSettings::validate`]; a CORS entry that is not a header value is
/// skipped.
pub fn router(engine: Arc<Engine>, http: &HttpSettings) -> Router {
    let limit = Duration::from_secs(http.request_timeout_seconds);
    let mut routes = handlers::routes();
    if !engine.oauth_providers().is_empty() {
        routes = routes.merge(handlers::oauth_routes());
    }
    if engine.config().enable_admin_router {
        routes = routes.merge(handlers::admin_routes());
    }
    let mut routes = routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if !engine.config().rate_limit_disabled {
        if let Some(limiter) =
            ratelimit::Limiter::new(&http.route_limits, &http.api_prefix, http.body_limit_bytes)
        {
            let engine = engine.clone();
            routes = routes.layer(middleware::from_fn(move |request: Request, next: Next| {
                ratelimit::limit(limiter.clone(), engine.clone(), request, next)
            }));
        }
    }
    let api = routes
        .layer(DefaultBodyLimit::max(http.body_limit_bytes))
        .layer(Extension(engine.clone()))
        .layer(Extension(Arc::new(http.clone())))
        .layer(Extension(TrustProxy::new(
            http.behind_proxy,
            http.trusted_proxy_hops,
        )))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            deadline(limit, request, next)
        }))
        .with_state(engine);
    let mut app = Router::new().nest(&http.api_prefix, api);
    app = with_hsts(with_common_layers(app), http);
    if !http.cors_allowed_origins.is_empty() {
        let origins: Vec<HeaderValue> = http
            .cors_allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(Duration::from_secs(600)),
        );
    }
    app
}

/// Adds `Strict-Transport-Security` to every response of `router` when
/// `http.hsts` is on (a header a handler set itself is kept); otherwise
/// returns `router` as it is. [`router`] applies it; the server adds it to
/// its health routes too.
pub fn with_hsts(router: Router, http: &HttpSettings) -> Router {
    let Some(value) = http
        .hsts_header()
        .and_then(|v| HeaderValue::from_str(&v).ok())
    else {
        return router;
    };
    router.layer(middleware::from_fn(move |request: Request, next: Next| {
        let value = value.clone();
        async move {
            let mut response = next.run(request).await;
            response
                .headers_mut()
                .entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert(value);
            response
        }
    }))
}

/// Response headers, panic guard, failure logging and request spans shared
/// by every regstack route (the server adds them to its health routes too).
pub fn with_common_layers(router: Router) -> Router {
    router
        .layer(middleware::from_fn(finish_response))
        .layer(CatchPanicLayer::custom(panic_response))
        // One span and one line per request at DEBUG: an access log is
        // the reverse proxy's job, and formatting and writing a line per
        // request costs this server a sixth of its `/me` throughput.
        // Account events (`regstack::events`), warnings and failures log at
        // INFO and above regardless. `RUST_LOG=info,regstack_http_axum=debug,
        // tower_http=debug` turns the access log on.
        .layer(
            TraceLayer::new_for_http()
                // Path only: query strings can carry tokens (OT-8).
                .make_span_with(|req: &Request| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        )
}
