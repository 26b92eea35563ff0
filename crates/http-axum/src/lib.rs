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
//! The account pages (`pages/`, HTML forms at `ui_prefix`) are mounted
//! beside the API when `enable_ui_router` is on.
//!
//! Invariants:
//! - every API response is JSON, including 404, 405, 413, 415, 422 and
//!   panics (the pages answer HTML);
//! - a rejected request writes nothing (validation happens before the
//!   engine is called);
//! - logs carry method and path, never the query string or a body;
//! - every response carries the request's `X-Request-Id` (the client's,
//!   when it is sane, else a fresh one), and so does every log line the
//!   request causes (its span's `request_id`).

pub mod body;
pub mod cookie;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod pages;
pub mod ratelimit;
pub mod settings;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use regstack_core::Engine;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use extract::{CurrentUser, TrustProxy};
pub use pages::PageSettings;
pub use ratelimit::RouteLimits;
pub use settings::HttpSettings;

/// The header a request id travels in, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, in the request's extensions: the client's
/// `X-Request-Id` when it is sane (1–128 visible ASCII characters, so it
/// can neither break a log line nor bloat one), else 32 random hex digits.
/// Correlates a client's report, a proxy's log and ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

fn sane_request_id(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

fn fresh_request_id() -> String {
    use std::fmt::Write;
    regstack_core::tokens::random_bytes::<16>().iter().fold(
        String::with_capacity(32),
        |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        },
    )
}

/// Takes or makes the request id, puts it where the span and handlers see
/// it (the request's header, replaced when it was not sane, and
/// [`RequestId`]), and echoes it on the response.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(sane_request_id)
        .map_or_else(fresh_request_id, str::to_owned);
    // Visible ASCII or hex: always a header value.
    let value = HeaderValue::from_str(&id).ok();
    if let Some(v) = &value {
        request.headers_mut().insert(REQUEST_ID_HEADER, v.clone());
    }
    request.extensions_mut().insert(RequestId(id));
    let mut response = next.run(request).await;
    if let Some(v) = value {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

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
    let mut routes = handlers::routes().merge(handlers::doc_routes(&http.api_prefix));
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
    let jwks = jwks_router(&engine);
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
        .with_state(engine.clone());
    let mut app = Router::new().nest(&http.api_prefix, api).merge(jwks);
    if engine.config().enable_ui_router {
        app = with_pages(app, &engine, http, limit);
    }
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

/// Where the access-token keys are published: at the host's root, not
/// under `api_prefix` (RFC 8615's well-known location, where JWT libraries
/// and gateways look for it).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// `GET /.well-known/jwks.json`: the public keys that verify access tokens,
/// when `jwt_algorithm` is EdDSA or RS256 (the signing key first, then the
/// rotated-out ones whose tokens may still be alive). With an HMAC
/// algorithm it has no route at all (404): the key is a secret. [`router`]
/// includes it at the root; a host that nests that router under a path of
/// its own mounts this one at its root instead (without the layers of
/// [`with_common_layers`]; add them if you want them). Cacheable for five
/// minutes: a verifier that meets an unknown `kid` should refetch.
pub fn jwks_router(engine: &Engine) -> Router {
    let Some(jwks) = engine.jwks() else {
        return Router::new();
    };
    let jwks = Arc::new(jwks);
    Router::new().route(
        JWKS_PATH,
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move {
                (
                    [(header::CACHE_CONTROL, "public, max-age=300")],
                    axum::Json((*jwks).clone()),
                )
            }
        }),
    )
}

/// Mounts the account pages at `ui_prefix` and their stylesheet at
/// `static_prefix`, with the API's request deadline and client-IP rule. A
/// template that does not build is logged and the pages are left out (the
/// server checks them at start-up with [`pages::check_templates`]).
fn with_pages(app: Router, engine: &Arc<Engine>, http: &HttpSettings, limit: Duration) -> Router {
    let (page_routes, static_routes, looks) = match pages::routes(engine, &http.pages) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "account pages not mounted: a template does not build");
            return app;
        }
    };
    let mut page_routes = page_routes;
    if !engine.config().rate_limit_disabled {
        if let Some(limiter) =
            ratelimit::Limiter::new(&http.route_limits, &http.api_prefix, http.body_limit_bytes)
        {
            let engine = engine.clone();
            page_routes =
                page_routes.layer(middleware::from_fn(move |request: Request, next: Next| {
                    ratelimit::limit_pages(limiter.clone(), engine.clone(), request, next)
                }));
        }
    }
    let page_routes = page_routes
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            pages::html_refusal(looks.clone(), request, next)
        }))
        .layer(Extension(TrustProxy::new(
            http.behind_proxy,
            http.trusted_proxy_hops,
        )))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            deadline(limit, request, next)
        }))
        .with_state(engine.clone());
    let ui = engine.config().ui_prefix.trim_end_matches('/');
    let app = if ui.is_empty() {
        app.merge(page_routes)
    } else {
        app.nest(ui, page_routes)
    };
    app.merge(static_routes)
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

/// Response headers, panic guard, failure logging, request ids and request
/// spans shared by every regstack route (the server adds them to its health
/// routes too).
pub fn with_common_layers(router: Router) -> Router {
    router
        .layer(middleware::from_fn(finish_response))
        .layer(CatchPanicLayer::custom(panic_response))
        // One span per request at INFO, so every line a request causes
        // (account events, warnings, failures) carries its request id, and
        // its user and session once known (recorded by the engine; never
        // an address or a secret). The access-log lines stay at DEBUG: an
        // access log is the reverse proxy's job, and formatting and writing
        // a line per request costs this server a sixth of its `/me`
        // throughput. `RUST_LOG=info,tower_http=debug` turns it on.
        .layer(
            TraceLayer::new_for_http()
                // Path only: query strings can carry tokens (OT-8).
                .make_span_with(|req: &Request| {
                    let id = req.extensions().get::<RequestId>().map(|r| r.0.as_str());
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        path = %req.uri().path(),
                        request_id = id,
                        user_id = tracing::field::Empty,
                        session_id = tracing::field::Empty,
                    )
                })
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        )
        .layer(middleware::from_fn(request_id))
}
