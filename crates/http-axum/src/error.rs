//! The one place where an error becomes a status and a regstack wire body.
//!
//! Every variant's status and `detail` are pinned by the table test below;
//! flows are matched by variant, never by message text. `into_response`
//! does not log: server-side failures attach their source chain as a
//! response extension, and the `log_failures` middleware logs it once.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use regstack_core::password_policy::PasswordRefusal;
use regstack_core::{AuthError, AuthFailure, DisableRefusal, SelfChange};
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
    /// 415: a body that is not JSON (which also stops cross-site form
    /// posts).
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
    /// 429 with `Retry-After`: a route limit (`rate_limits.*`) is spent for
    /// this client or address. Worded like regstack's lockout answer.
    #[error("route limit reached")]
    RateLimited {
        /// Whole seconds until the window that refused has slid past.
        retry_after_secs: u64,
    },
    /// 415 from `POST /token`, which reads the OAuth2 password form
    /// (`application/x-www-form-urlencoded`), not JSON.
    #[error("form body expected")]
    FormExpected,
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

/// One pydantic-style validation entry, without pydantic's `input`: the
/// refused value may be a password or a token, and an error body must
/// never echo a secret.
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

/// What the user is told about a refused new password: which rule, never
/// the password.
pub fn refusal_message(refusal: PasswordRefusal) -> &'static str {
    match refusal {
        PasswordRefusal::Common => "This password is too common. Choose a different one.",
        PasswordRefusal::ContextWord => {
            "The password must not contain your email address or the site name."
        }
        PasswordRefusal::Breached => {
            "This password has appeared in a data breach. Choose a different one."
        }
    }
}

/// A refused new password as regstack's 422 list: one pydantic
/// `value_error` at the password field (`loc` `["body"]` alone when the
/// field is not known), like the length rule's answer.
fn refusal_entry(field: Option<&str>, refusal: PasswordRefusal) -> Value {
    let loc: Vec<Value> = std::iter::once(json!("body"))
        .chain(field.map(|f| json!(f)))
        .collect();
    validation_entry(
        "value_error",
        &loc,
        format!("Value error, {}", refusal_message(refusal)),
        Some(json!({ "error": {} })),
    )
}

impl ApiError {
    /// For the routes that set a password: a refusal of the new password
    /// becomes a 422 at `field` (`password`, `new_password`).
    pub fn at_password_field(field: &'static str) -> impl Fn(AuthError) -> ApiError {
        move |e| match e {
            AuthError::PasswordRefused(r) => {
                ApiError::Validation(vec![refusal_entry(Some(field), r)])
            }
            e => ApiError::Auth(e),
        }
    }
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
            ApiError::RateLimited { retry_after_secs } => {
                let mut r = detail(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many requests. Try again in {retry_after_secs} seconds."),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                r
            }
            ApiError::FormExpected => detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/x-www-form-urlencoded.",
            ),
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
                A::MfaChallengeInvalid => detail(
                    StatusCode::BAD_REQUEST,
                    "Sign-in session is invalid or has expired. Start over from sign-in.",
                ),
                A::WrongMfaCode { remaining } => detail(
                    StatusCode::BAD_REQUEST,
                    format!("Wrong code; {remaining} attempts remaining."),
                ),
                A::MfaSetupInvalid => detail(
                    StatusCode::BAD_REQUEST,
                    "Setup session is invalid or has expired. Start again.",
                ),
                A::TotpNotEnabled => detail(StatusCode::BAD_REQUEST, "TOTP is not enabled."),
                A::SmsDisabled => detail(StatusCode::NOT_FOUND, "Not Found"),
                A::SmsCapReached => detail(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many text messages today. Try again tomorrow.",
                ),
                A::PhoneNumberInvalid => detail(
                    StatusCode::BAD_REQUEST,
                    "Phone number must be in E.164 format (e.g. +14155552671).",
                ),
                A::SmsNotEnabled => detail(StatusCode::BAD_REQUEST, "SMS 2FA is not enabled."),
                A::PasswordChangeTokenInvalid => detail(
                    StatusCode::BAD_REQUEST,
                    "Password-change session is invalid or has expired. Sign in again.",
                ),
                A::NoSecondFactor => {
                    detail(StatusCode::BAD_REQUEST, "Enable a second factor first.")
                }
                A::UnknownOAuthProvider(ref name) => detail(
                    StatusCode::NOT_FOUND,
                    format!("OAuth provider {} is not configured.", python_repr(name)),
                ),
                A::RedirectNotSameOrigin => {
                    detail(StatusCode::BAD_REQUEST, "redirect_to must be same-origin.")
                }
                A::OAuthStateNotFound => detail(
                    StatusCode::NOT_FOUND,
                    "OAuth state not found or already consumed.",
                ),
                A::OAuthStateExpired => detail(StatusCode::BAD_REQUEST, "OAuth state has expired."),
                A::OAuthNotLinked => detail(
                    StatusCode::NOT_FOUND,
                    "That provider is not linked to your account.",
                ),
                A::OAuthLastSignInMethod => detail(
                    StatusCode::BAD_REQUEST,
                    "Cannot unlink your only sign-in method. Set a password (use forgot-password) or link another provider first.",
                ),
                A::OAuthProviderUnavailable => {
                    let mut r = detail(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The sign-in provider is unavailable. Try again shortly.",
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
                    r
                }
                A::PasswordRefused(r) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Json(json!({ "detail": [refusal_entry(None, r)] })),
                )
                    .into_response(),
                A::PasswordScreenUnavailable => {
                    let mut r = detail(
                        StatusCode::SERVICE_UNAVAILABLE,
                        PASSWORD_SCREEN_UNAVAILABLE,
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    r
                }
                A::NotAdmin => detail(StatusCode::FORBIDDEN, "Administrator privileges required."),
                A::UserNotFound => detail(StatusCode::NOT_FOUND, "User not found."),
                A::AlreadyVerified => detail(StatusCode::BAD_REQUEST, "User is already verified."),
                A::NoPasswordToVerify => detail(StatusCode::BAD_REQUEST, NO_PASSWORD_TO_VERIFY),
                A::NoPendingRegistration(ref email) => detail(
                    StatusCode::NOT_FOUND,
                    format!("No pending registration for {email}."),
                ),
                A::PendingAddressTaken(ref email) => detail(
                    StatusCode::CONFLICT,
                    format!("A user with email {email} already exists."),
                ),
                A::InviteRequired => detail(
                    StatusCode::FORBIDDEN,
                    "Registration requires a valid invitation code.",
                ),
                A::InviteNotFound => detail(StatusCode::NOT_FOUND, "Invite not found."),
                A::InvalidEmailRevertToken => detail(
                    StatusCode::BAD_REQUEST,
                    "This link is invalid, was already used, or has expired.",
                ),
                A::AdminSelfChange(what) => detail(StatusCode::BAD_REQUEST, self_change(what)),
                A::DisableRefused(why) => ApiError::Validation(vec![disable_refusal(why)]).into_response(),
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

/// The 503 of a fail-closed breach screen without an answer.
const PASSWORD_SCREEN_UNAVAILABLE: &str =
    "The password could not be checked right now. Try again shortly.";

/// regstack's answer to resending verification to an OAuth-only account.
const NO_PASSWORD_TO_VERIFY: &str = "User has no password (OAuth-only). Verify them directly \
     via the user record instead of resending verification email.";

/// What an administrator is told when they try to lock themselves out.
fn self_change(what: SelfChange) -> &'static str {
    match what {
        SelfChange::Demote => "You cannot remove your own administrator privileges.",
        SelfChange::Disable => "You cannot disable your own account.",
        SelfChange::Delete => {
            "You cannot delete your own account here; use DELETE /account instead."
        }
    }
}

/// The 422 entry of a refused disabling, naming the field at fault in
/// pydantic's shape (a model validator's `value_error`).
fn disable_refusal(why: DisableRefusal) -> Value {
    let (field, msg) = match why {
        DisableRefusal::ReasonWithoutDisabling => (
            "disabled_reason",
            "Value error, disabled_reason is only accepted together with is_active: false",
        ),
        DisableRefusal::UntilWithoutDisabling => (
            "disabled_until",
            "Value error, disabled_until is only accepted together with is_active: false",
        ),
        DisableRefusal::UntilNotInFuture => (
            "disabled_until",
            "Value error, disabled_until must be in the future",
        ),
        DisableRefusal::ReasonInvalid => (
            "disabled_reason",
            "Value error, disabled_reason must be at most 500 characters without control characters",
        ),
    };
    validation_entry(
        "value_error",
        &[json!("body"), json!(field)],
        msg,
        Some(json!({ "error": {} })),
    )
}

/// A name as Python's `repr` quotes it in regstack's messages
/// (`'github'`; double quotes when the name holds a single quote).
fn python_repr(name: &str) -> String {
    if name.contains('\'') && !name.contains('"') {
        format!("\"{name}\"")
    } else {
        format!("'{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
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

    /// How many rows [`row`] has.
    const ROWS: usize = 73;

    /// The wire answer every error must get: its row number, status and
    /// body. Exhaustive on purpose — no `_` arm — so a new variant of
    /// `ApiError`, `AuthError`, `AuthFailure` or `StoreError` does not
    /// compile until it has a row here, and a new row fails
    /// [`every_variant_maps_to_regstacks_status_and_detail`] until
    /// [`samples`] holds an example of it.
    fn row(e: &ApiError) -> (usize, u16, Value) {
        use AuthError as A;
        let d = |s: &str| json!({ "detail": s });
        let unavailable = "Service temporarily unavailable. Try again shortly.";
        match e {
            ApiError::Validation(list) => (0, 422, json!({ "detail": list })),
            ApiError::UnsupportedMediaType => (1, 415, d("Content-Type must be application/json.")),
            ApiError::PayloadTooLarge => (2, 413, d("Request body too large.")),
            ApiError::NotFound => (3, 404, d("Not Found")),
            ApiError::MethodNotAllowed => (4, 405, d("Method Not Allowed")),
            ApiError::Internal(_) => (5, 500, d("Internal Server Error")),
            ApiError::Timeout(_) => (6, 503, d(unavailable)),
            ApiError::RateLimited { retry_after_secs } => (
                70,
                429,
                d(&format!(
                    "Too many requests. Try again in {retry_after_secs} seconds."
                )),
            ),
            ApiError::FormExpected => (
                71,
                415,
                d("Content-Type must be application/x-www-form-urlencoded."),
            ),
            ApiError::Auth(a) => match a {
                A::RegistrationClosed => (7, 403, d("Registration is disabled.")),
                A::PasswordResetDisabled => (
                    8,
                    404,
                    d("Password reset is disabled for this application."),
                ),
                A::AccountDeletionDisabled => (
                    9,
                    404,
                    d("Account deletion is disabled for this application."),
                ),
                A::EmailTaken => (10, 409, d("An account with that email already exists.")),
                A::InvalidCredentials { remaining: Some(n) } => (
                    11,
                    401,
                    d(&format!(
                        "Invalid email or password. {n} attempt(s) remaining."
                    )),
                ),
                A::InvalidCredentials { remaining: None } => {
                    (12, 401, d("Invalid email or password."))
                }
                A::Locked { retry_after_secs } => (
                    13,
                    429,
                    d(&format!(
                        "Too many failed attempts. Try again in {retry_after_secs} seconds."
                    )),
                ),
                A::AccountDisabled => (14, 403, d("Account is disabled.")),
                A::EmailNotVerified => (15, 403, d("Email address has not been verified.")),
                A::InvalidVerificationToken => (
                    16,
                    400,
                    d("Verification link is invalid or has expired. Request a new one."),
                ),
                A::InvalidResetToken => (
                    17,
                    400,
                    d("Reset link is invalid or has expired. Request a new one."),
                ),
                A::InvalidEmailChangeToken => (
                    18,
                    400,
                    d("Email-change link is invalid or has expired. Request a new one."),
                ),
                A::WrongCurrentPassword => (19, 400, d("Current password is incorrect.")),
                A::SamePassword => (
                    20,
                    400,
                    d("New password must differ from the current password."),
                ),
                A::SameEmail => (21, 400, d("New email is the same as the current email.")),
                A::InvalidRefreshToken => (22, 401, d("Invalid or expired refresh token.")),
                A::SessionNotFound => (23, 404, d("Session not found.")),
                A::CrossSiteRefused => (24, 403, d("Cross-site request refused.")),
                A::MfaChallengeInvalid => (
                    34,
                    400,
                    d("Sign-in session is invalid or has expired. Start over from sign-in."),
                ),
                A::WrongMfaCode { remaining } => (
                    35,
                    400,
                    d(&format!("Wrong code; {remaining} attempts remaining.")),
                ),
                A::MfaSetupInvalid => (
                    36,
                    400,
                    d("Setup session is invalid or has expired. Start again."),
                ),
                A::TotpNotEnabled => (37, 400, d("TOTP is not enabled.")),
                A::SmsDisabled => (40, 404, d("Not Found")),
                A::SmsCapReached => (
                    41,
                    429,
                    d("Too many text messages today. Try again tomorrow."),
                ),
                A::PhoneNumberInvalid => (
                    42,
                    400,
                    d("Phone number must be in E.164 format (e.g. +14155552671)."),
                ),
                A::SmsNotEnabled => (43, 400, d("SMS 2FA is not enabled.")),
                A::PasswordChangeTokenInvalid => (
                    39,
                    400,
                    d("Password-change session is invalid or has expired. Sign in again."),
                ),
                A::NoSecondFactor => (38, 400, d("Enable a second factor first.")),
                A::UnknownOAuthProvider(name) => (
                    44,
                    404,
                    d(&format!("OAuth provider {} is not configured.", python_repr(name))),
                ),
                A::RedirectNotSameOrigin => (45, 400, d("redirect_to must be same-origin.")),
                A::OAuthStateNotFound => (46, 404, d("OAuth state not found or already consumed.")),
                A::OAuthStateExpired => (47, 400, d("OAuth state has expired.")),
                A::OAuthNotLinked => (48, 404, d("That provider is not linked to your account.")),
                A::OAuthLastSignInMethod => (
                    49,
                    400,
                    d("Cannot unlink your only sign-in method. Set a password (use forgot-password) or link another provider first."),
                ),
                A::OAuthProviderUnavailable => (
                    50,
                    503,
                    d("The sign-in provider is unavailable. Try again shortly."),
                ),
                A::PasswordRefused(r) => {
                    let (n, msg) = match r {
                        PasswordRefusal::Common => {
                            (60, "This password is too common. Choose a different one.")
                        }
                        PasswordRefusal::ContextWord => (
                            61,
                            "The password must not contain your email address or the site name.",
                        ),
                        PasswordRefusal::Breached => (
                            62,
                            "This password has appeared in a data breach. Choose a different one.",
                        ),
                    };
                    (
                        n,
                        422,
                        json!({ "detail": [{
                            "type": "value_error",
                            "loc": ["body"],
                            "msg": format!("Value error, {msg}"),
                            "ctx": { "error": {} },
                        }] }),
                    )
                }
                A::PasswordScreenUnavailable => (
                    63,
                    503,
                    d("The password could not be checked right now. Try again shortly."),
                ),
                A::NotAdmin => (51, 403, d("Administrator privileges required.")),
                A::UserNotFound => (52, 404, d("User not found.")),
                A::AlreadyVerified => (53, 400, d("User is already verified.")),
                A::NoPasswordToVerify => (
                    54,
                    400,
                    d("User has no password (OAuth-only). Verify them directly via the user record instead of resending verification email."),
                ),
                A::NoPendingRegistration(email) => (
                    55,
                    404,
                    d(&format!("No pending registration for {email}.")),
                ),
                A::PendingAddressTaken(email) => (
                    56,
                    409,
                    d(&format!("A user with email {email} already exists.")),
                ),
                A::AdminSelfChange(SelfChange::Demote) => (
                    57,
                    400,
                    d("You cannot remove your own administrator privileges."),
                ),
                A::AdminSelfChange(SelfChange::Disable) => {
                    (58, 400, d("You cannot disable your own account."))
                }
                A::AdminSelfChange(SelfChange::Delete) => (
                    59,
                    400,
                    d("You cannot delete your own account here; use DELETE /account instead."),
                ),
                A::InviteRequired => (
                    64,
                    403,
                    d("Registration requires a valid invitation code."),
                ),
                A::InviteNotFound => (65, 404, d("Invite not found.")),
                A::InvalidEmailRevertToken => (
                    72,
                    400,
                    d("This link is invalid, was already used, or has expired."),
                ),
                A::DisableRefused(why) => {
                    let (n, field, msg) = match why {
                        DisableRefusal::ReasonWithoutDisabling => (66, "disabled_reason", "Value error, disabled_reason is only accepted together with is_active: false"),
                        DisableRefusal::UntilWithoutDisabling => (67, "disabled_until", "Value error, disabled_until is only accepted together with is_active: false"),
                        DisableRefusal::UntilNotInFuture => (68, "disabled_until", "Value error, disabled_until must be in the future"),
                        DisableRefusal::ReasonInvalid => (69, "disabled_reason", "Value error, disabled_reason must be at most 500 characters without control characters"),
                    };
                    let entry = json!({
                        "type": "value_error",
                        "loc": ["body", field],
                        "msg": msg,
                        "ctx": { "error": {} },
                    });
                    (n, 422, json!({ "detail": [entry] }))
                }
                A::Unauthenticated(f) => match f {
                    AuthFailure::Missing => (25, 401, d("Authentication required.")),
                    AuthFailure::Invalid => (26, 401, d("Invalid or expired token.")),
                    AuthFailure::Revoked => (27, 401, d("Token has been revoked.")),
                    AuthFailure::Invalidated => {
                        (28, 401, d("Session was invalidated; please sign in again."))
                    }
                    AuthFailure::Inactive => (29, 401, d("User no longer active.")),
                },
                A::Store(se) => match se {
                    StoreError::Unavailable(_) => (30, 503, d(unavailable)),
                    StoreError::Conflict(what) => (
                        31,
                        409,
                        d(&format!("Conflicting request ({what}); try again.")),
                    ),
                    StoreError::Backend(_) => (32, 500, d("Internal Server Error")),
                },
                A::Hash(_) => (33, 500, d("Internal Server Error")),
                A::Internal(_) => (5, 500, d("Internal Server Error")),
            },
        }
    }

    /// One example of every row.
    fn samples() -> Vec<ApiError> {
        let io = || std::io::Error::other("socket closed 10.0.0.1 SELECT * FROM users");
        let auth: Vec<AuthError> = vec![
            AuthError::RegistrationClosed,
            AuthError::PasswordResetDisabled,
            AuthError::AccountDeletionDisabled,
            AuthError::EmailTaken,
            AuthError::InvalidCredentials { remaining: Some(4) },
            AuthError::InvalidCredentials { remaining: None },
            AuthError::Locked {
                retry_after_secs: 900,
            },
            AuthError::AccountDisabled,
            AuthError::EmailNotVerified,
            AuthError::InvalidVerificationToken,
            AuthError::InvalidResetToken,
            AuthError::InvalidEmailChangeToken,
            AuthError::WrongCurrentPassword,
            AuthError::SamePassword,
            AuthError::SameEmail,
            AuthError::InvalidRefreshToken,
            AuthError::SessionNotFound,
            AuthError::CrossSiteRefused,
            AuthError::MfaChallengeInvalid,
            AuthError::WrongMfaCode { remaining: 4 },
            AuthError::MfaSetupInvalid,
            AuthError::TotpNotEnabled,
            AuthError::SmsDisabled,
            AuthError::SmsCapReached,
            AuthError::PhoneNumberInvalid,
            AuthError::SmsNotEnabled,
            AuthError::PasswordChangeTokenInvalid,
            AuthError::NoSecondFactor,
            AuthError::UnknownOAuthProvider("github".into()),
            AuthError::RedirectNotSameOrigin,
            AuthError::OAuthStateNotFound,
            AuthError::OAuthStateExpired,
            AuthError::OAuthNotLinked,
            AuthError::OAuthLastSignInMethod,
            AuthError::OAuthProviderUnavailable,
            AuthError::PasswordRefused(PasswordRefusal::Common),
            AuthError::PasswordRefused(PasswordRefusal::ContextWord),
            AuthError::PasswordRefused(PasswordRefusal::Breached),
            AuthError::PasswordScreenUnavailable,
            AuthError::NotAdmin,
            AuthError::UserNotFound,
            AuthError::AlreadyVerified,
            AuthError::NoPasswordToVerify,
            AuthError::NoPendingRegistration("bob@example.com".into()),
            AuthError::PendingAddressTaken("bob@example.com".into()),
            AuthError::InviteRequired,
            AuthError::InviteNotFound,
            AuthError::InvalidEmailRevertToken,
            AuthError::AdminSelfChange(SelfChange::Demote),
            AuthError::AdminSelfChange(SelfChange::Disable),
            AuthError::AdminSelfChange(SelfChange::Delete),
            AuthError::DisableRefused(DisableRefusal::ReasonWithoutDisabling),
            AuthError::DisableRefused(DisableRefusal::UntilWithoutDisabling),
            AuthError::DisableRefused(DisableRefusal::UntilNotInFuture),
            AuthError::DisableRefused(DisableRefusal::ReasonInvalid),
            AuthError::Unauthenticated(AuthFailure::Missing),
            AuthError::Unauthenticated(AuthFailure::Invalid),
            AuthError::Unauthenticated(AuthFailure::Revoked),
            AuthError::Unauthenticated(AuthFailure::Invalidated),
            AuthError::Unauthenticated(AuthFailure::Inactive),
            AuthError::Store(StoreError::unavailable(io())),
            AuthError::Store(StoreError::Conflict("session id")),
            AuthError::Store(StoreError::backend(io())),
            AuthError::Hash(HashError::Failed("x".into())),
            AuthError::internal(io()),
        ];
        let mut all: Vec<ApiError> = auth.into_iter().map(ApiError::from).collect();
        all.extend([
            ApiError::Validation(vec![validation_entry(
                "missing",
                &[json!("body"), json!("email")],
                "Field required",
                None,
            )]),
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::Internal("body read failed".into()),
            ApiError::Timeout(std::time::Duration::from_secs(30)),
            ApiError::RateLimited {
                retry_after_secs: 60,
            },
            ApiError::FormExpected,
        ]);
        all
    }

    #[tokio::test]
    async fn every_variant_maps_to_regstacks_status_and_detail() {
        let mut covered = std::collections::BTreeSet::new();
        for err in samples() {
            let (n, status, body) = row(&err);
            covered.insert(n);
            let shown = format!("{err:?}");
            let (s, _, _, got) = render(err).await;
            assert_eq!(s.as_u16(), status, "{shown}");
            assert_eq!(got, body, "{shown}");
        }
        let missing: Vec<usize> = (0..ROWS).filter(|n| !covered.contains(n)).collect();
        assert!(missing.is_empty(), "rows without a sample: {missing:?}");
        assert!(covered.iter().all(|n| *n < ROWS), "ROWS is out of date");
    }

    #[tokio::test]
    async fn a_server_failure_keeps_its_whole_source_chain_for_the_log() {
        let cause = std::io::Error::other("jwt key rejected");
        let r = ApiError::from(AuthError::internal(cause)).into_response();
        let report = r.extensions().get::<FailureReport>().map(|f| f.0.clone());
        assert_eq!(report.as_deref(), Some("internal error: jwt key rejected"));
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
        let (_, _, retry, _) = render(AuthError::PasswordScreenUnavailable.into()).await;
        assert_eq!(retry.as_deref(), Some("5"));
    }

    #[tokio::test]
    async fn a_refused_password_is_reported_at_its_field() {
        let e = ApiError::at_password_field("new_password")(AuthError::PasswordRefused(
            PasswordRefusal::Breached,
        ));
        let (status, _, _, body) = render(e).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["detail"][0]["loc"], json!(["body", "new_password"]));
        assert_eq!(body["detail"][0]["type"], "value_error");
        let other = ApiError::at_password_field("password")(AuthError::SamePassword);
        assert!(matches!(other, ApiError::Auth(AuthError::SamePassword)));
    }
}
