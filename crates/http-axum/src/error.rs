//! The one place where an error becomes a status and a regstack wire body.
//!
//! Every variant's status and `detail` are pinned by the table test below;
//! flows are matched by variant, never by message text. `into_response`
//! does not log: server-side failures attach their source chain as a
//! response extension, and the `log_failures` middleware logs it once.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use regstack_core::{AuthError, AuthFailure, Field};
use regstack_ports::StoreError;
use serde_json::{json, Value};

/// Everything a handler can answer with instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A flow refused (status per variant, see the table test).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 422 with regstack's `{"detail": [{type, loc, msg, ctx?}]}` list.
    #[error("request validation failed")]
    Validation(Vec<Value>),
    /// 415: a body that is not JSON (DECISIONS.md §3).
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 413: body over `http.body_limit_bytes`.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 404 for unknown routes.
    #[error("not found")]
    NotFound,
    /// 405 for a known path with another method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 500 for a failure with no better class (e.g. a body read error).
    #[error("internal error: {0}")]
    Internal(String),
    /// 503: no answer within `http.request_timeout_seconds`.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
}

/// The source chain of a server-side failure, carried from `into_response`
/// to the logging middleware.
#[derive(Debug, Clone)]
pub struct FailureReport(pub String);

fn detail(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({ "detail": msg.into() }))).into_response()
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// One pydantic-style validation entry (no `input`: DECISIONS.md §2).
pub fn validation_entry(
    kind: &str,
    loc: &[Value],
    msg: impl Into<String>,
    ctx: Option<Value>,
) -> Value {
    let mut v = json!({ "type": kind, "loc": loc, "msg": msg.into() });
    if let (Some(ctx), Some(obj)) = (ctx, v.as_object_mut()) {
        obj.insert("ctx".into(), ctx);
    }
    v
}

fn bearer_challenge(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn server_failure(status: StatusCode, body: &str, report: String) -> Response {
    let mut r = detail(status, body);
    r.extensions_mut().insert(FailureReport(report));
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        use AuthError as A;
        match self {
            ApiError::Validation(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "detail": errors })),
            )
                .into_response(),
            ApiError::Timeout(limit) => {
                let mut r = server_failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service temporarily unavailable. Try again shortly.",
                    format!(
                        "no answer within http.request_timeout_seconds ({} s)",
                        limit.as_secs()
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
            ApiError::UnsupportedMediaType => detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json.",
            ),
            ApiError::PayloadTooLarge => {
                detail(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large.")
            }
            ApiError::NotFound => detail(StatusCode::NOT_FOUND, "Not Found"),
            ApiError::MethodNotAllowed => {
                detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
            }
            ApiError::Internal(msg) => server_failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                msg,
            ),
            ApiError::Auth(e) => match e {
                A::PasswordLength { field, too_short } => {
                    let name = match field {
                        Field::Password => "password",
                        Field::NewPassword => "new_password",
                    };
                    let loc = [json!("body"), json!(name)];
                    let entry = if too_short {
                        validation_entry(
                            "string_too_short",
                            &loc,
                            "String should have at least 8 characters",
                            Some(json!({ "min_length": 8 })),
                        )
                    } else {
                        validation_entry(
                            "string_too_long",
                            &loc,
                            "String should have at most 128 characters",
                            Some(json!({ "max_length": 128 })),
                        )
                    };
                    ApiError::Validation(vec![entry]).into_response()
                }
                A::RegistrationClosed => detail(StatusCode::FORBIDDEN, "Registration is disabled."),
                A::PasswordResetDisabled => detail(
                    StatusCode::NOT_FOUND,
                    "Password reset is disabled for this application.",
                ),
                A::AccountDeletionDisabled => detail(
                    StatusCode::NOT_FOUND,
                    "Account deletion is disabled for this application.",
                ),
                A::EmailTaken => detail(
                    StatusCode::CONFLICT,
                    "An account with that email already exists.",
                ),
                A::InvalidCredentials { remaining: Some(n) } => detail(
                    StatusCode::UNAUTHORIZED,
                    format!("Invalid email or password. {n} attempt(s) remaining."),
                ),
                A::InvalidCredentials { remaining: None } => {
                    detail(StatusCode::UNAUTHORIZED, "Invalid email or password.")
                }
                A::Locked { retry_after_secs } => {
                    let mut r = detail(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "Too many failed attempts. Try again in {retry_after_secs} seconds."
                        ),
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                    r
                }
                A::AccountDisabled => detail(StatusCode::FORBIDDEN, "Account is disabled."),
                A::EmailNotVerified => detail(
                    StatusCode::FORBIDDEN,
                    "Email address has not been verified.",
                ),
                A::InvalidVerificationToken => detail(
                    StatusCode::BAD_REQUEST,
                    "Verification link is invalid or has expired. Request a new one.",
                ),
                A::InvalidResetToken => detail(
                    StatusCode::BAD_REQUEST,
                    "Reset link is invalid or has expired. Request a new one.",
                ),
                A::InvalidEmailChangeToken => detail(
                    StatusCode::BAD_REQUEST,
                    "Email-change link is invalid or has expired. Request a new one.",
                ),
                A::WrongCurrentPassword => {
                    detail(StatusCode::BAD_REQUEST, "Current password is incorrect.")
                }
                A::SamePassword => detail(
                    StatusCode::BAD_REQUEST,
                    "New password must differ from the current password.",
                ),
                A::SameEmail => detail(
                    StatusCode::BAD_REQUEST,
                    "New email is the same as the current email.",
                ),
                A::InvalidRefreshToken => detail(
                    StatusCode::UNAUTHORIZED,
                    "Invalid or expired refresh token.",
                ),
                A::SessionNotFound => detail(StatusCode::NOT_FOUND, "Session not found."),
                A::CrossSiteRefused => detail(StatusCode::FORBIDDEN, "Cross-site request refused."),
                A::Unauthenticated(f) => match f {
                    AuthFailure::Missing => bearer_challenge(detail(
                        StatusCode::UNAUTHORIZED,
                        "Authentication required.",
                    )),
                    AuthFailure::Invalid => bearer_challenge(detail(
                        StatusCode::UNAUTHORIZED,
                        "Invalid or expired token.",
                    )),
                    AuthFailure::Revoked => {
                        detail(StatusCode::UNAUTHORIZED, "Token has been revoked.")
                    }
                    AuthFailure::Invalidated => detail(
                        StatusCode::UNAUTHORIZED,
                        "Session was invalidated; please sign in again.",
                    ),
                    AuthFailure::Inactive => {
                        detail(StatusCode::UNAUTHORIZED, "User no longer active.")
                    }
                },
                A::Store(StoreError::Unavailable(ref src)) => {
                    let mut r = server_failure(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Service temporarily unavailable. Try again shortly.",
                        format!("storage unavailable: {}", chain(src.as_ref())),
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    r
                }
                A::Store(StoreError::Conflict(what)) => detail(
                    StatusCode::CONFLICT,
                    format!("Conflicting request ({what}); try again."),
                ),
                e @ (A::Store(_) | A::Hash(_) | A::Internal(_)) => server_failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    chain(&e),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use regstack_ports::HashError;

    async fn render(e: ApiError) -> (StatusCode, Option<String>, Option<String>, Value) {
        let r = e.into_response();
        let status = r.status();
        let h = |n| {
            r.headers()
                .get(n)
                .map(|v: &HeaderValue| v.to_str().unwrap_or("").to_owned())
        };
        let (www, retry) = (h(header::WWW_AUTHENTICATE), h(header::RETRY_AFTER));
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, www, retry, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_variant_maps_to_regstacks_status_and_detail() {
        let io = || std::io::Error::other("socket closed 10.0.0.1 SELECT * FROM users");
        let table: Vec<(ApiError, u16, &str)> = vec![
            (
                AuthError::RegistrationClosed.into(),
                403,
                "Registration is disabled.",
            ),
            (
                AuthError::PasswordResetDisabled.into(),
                404,
                "Password reset is disabled for this application.",
            ),
            (
                AuthError::AccountDeletionDisabled.into(),
                404,
                "Account deletion is disabled for this application.",
            ),
            (
                AuthError::EmailTaken.into(),
                409,
                "An account with that email already exists.",
            ),
            (
                AuthError::InvalidCredentials { remaining: Some(4) }.into(),
                401,
                "Invalid email or password. 4 attempt(s) remaining.",
            ),
            (
                AuthError::InvalidCredentials { remaining: None }.into(),
                401,
                "Invalid email or password.",
            ),
            (
                AuthError::Locked {
                    retry_after_secs: 900,
                }
                .into(),
                429,
                "Too many failed attempts. Try again in 900 seconds.",
            ),
            (
                AuthError::AccountDisabled.into(),
                403,
                "Account is disabled.",
            ),
            (
                AuthError::EmailNotVerified.into(),
                403,
                "Email address has not been verified.",
            ),
            (
                AuthError::InvalidVerificationToken.into(),
                400,
                "Verification link is invalid or has expired. Request a new one.",
            ),
            (
                AuthError::InvalidResetToken.into(),
                400,
                "Reset link is invalid or has expired. Request a new one.",
            ),
            (
                AuthError::InvalidEmailChangeToken.into(),
                400,
                "Email-change link is invalid or has expired. Request a new one.",
            ),
            (
                AuthError::WrongCurrentPassword.into(),
                400,
                "Current password is incorrect.",
            ),
            (
                AuthError::SamePassword.into(),
                400,
                "New password must differ from the current password.",
            ),
            (
                AuthError::SameEmail.into(),
                400,
                "New email is the same as the current email.",
            ),
            (
                AuthError::Unauthenticated(AuthFailure::Missing).into(),
                401,
                "Authentication required.",
            ),
            (
                AuthError::Unauthenticated(AuthFailure::Invalid).into(),
                401,
                "Invalid or expired token.",
            ),
            (
                AuthError::Unauthenticated(AuthFailure::Revoked).into(),
                401,
                "Token has been revoked.",
            ),
            (
                AuthError::Unauthenticated(AuthFailure::Invalidated).into(),
                401,
                "Session was invalidated; please sign in again.",
            ),
            (
                AuthError::Unauthenticated(AuthFailure::Inactive).into(),
                401,
                "User no longer active.",
            ),
            (
                AuthError::Store(StoreError::unavailable(io())).into(),
                503,
                "Service temporarily unavailable. Try again shortly.",
            ),
            (
                AuthError::Store(StoreError::backend(io())).into(),
                500,
                "Internal Server Error",
            ),
            (
                AuthError::Hash(HashError::Failed("x".into())).into(),
                500,
                "Internal Server Error",
            ),
            (
                ApiError::UnsupportedMediaType,
                415,
                "Content-Type must be application/json.",
            ),
            (ApiError::PayloadTooLarge, 413, "Request body too large."),
            (ApiError::NotFound, 404, "Not Found"),
            (ApiError::MethodNotAllowed, 405, "Method Not Allowed"),
            (
                ApiError::Timeout(std::time::Duration::from_secs(30)),
                503,
                "Service temporarily unavailable. Try again shortly.",
            ),
        ];
        for (err, status, text) in table {
            let (s, _, _, body) = render(err).await;
            assert_eq!(s.as_u16(), status, "{text}");
            assert_eq!(body, json!({ "detail": text }));
        }
    }

    #[tokio::test]
    async fn challenges_and_retry_after_follow_regstack() {
        let (_, www, _, _) = render(AuthError::Unauthenticated(AuthFailure::Missing).into()).await;
        assert_eq!(www.as_deref(), Some("Bearer"));
        let (_, www, _, _) = render(AuthError::Unauthenticated(AuthFailure::Revoked).into()).await;
        assert_eq!(www, None);
        let (_, _, retry, _) = render(
            AuthError::Locked {
                retry_after_secs: 42,
            }
            .into(),
        )
        .await;
        assert_eq!(retry.as_deref(), Some("42"));
        let (_, _, retry, _) =
            render(AuthError::Store(StoreError::unavailable(std::io::Error::other("x"))).into())
                .await;
        assert_eq!(retry.as_deref(), Some("5"));
        let (_, _, retry, _) = render(ApiError::Timeout(std::time::Duration::from_secs(1))).await;
        assert_eq!(retry.as_deref(), Some("5"));
    }

    #[tokio::test]
    async fn password_length_is_a_422_on_the_right_field() {
        let (s, _, _, body) = render(
            AuthError::PasswordLength {
                field: Field::NewPassword,
                too_short: true,
            }
            .into(),
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["detail"][0]["loc"], json!(["body", "new_password"]));
        assert_eq!(body["detail"][0]["type"], "string_too_short");
    }
}
