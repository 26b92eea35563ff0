//! One handler per route: read the body, call the engine, shape the answer.
//! No rule lives here; the engine decides, `error.rs` words the refusals.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use regstack_core::{Engine, Registered, Registration};
use regstack_ports::Email;
use secrecy::SecretString;

use crate::body::{Fields, FromJsonObject, JsonBody, Len, OptionalJsonBody};
use crate::cookie;
use crate::error::ApiError;
use crate::extract::{Client, CurrentUser};
use crate::read_all;
use crate::wire::{
    iso_offset, user_time, LogoutAllResponse, MessageResponse, PendingResponse, SessionInfo,
    SessionList, TokenResponse, UserPublic,
};
use regstack_ports::SessionId;
use secrecy::ExposeSecret;

type Engine_ = State<Arc<Engine>>;
type Answer = Result<axum::response::Response, ApiError>;

fn ok_json<T: serde::Serialize>(status: StatusCode, body: T) -> Answer {
    Ok((status, Json(body)).into_response())
}

fn message(status: StatusCode, message: &'static str) -> Answer {
    ok_json(status, MessageResponse { message })
}

// ------------------------------------------------------------------- models

/// `UserCreate`.
pub struct UserCreate {
    email: Email,
    password: SecretString,
    full_name: Option<String>,
}
impl FromJsonObject for UserCreate {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            email = f.email("email");
            password = f.secret("password", Len::PASSWORD);
            full_name = f.full_name("full_name");
        }
        Some(Self {
            email,
            password,
            full_name: full_name.flatten(),
        })
    }
}

/// `{token}` bodies: `VerifyRequest`, `ConfirmEmailChangeRequest`.
pub struct TokenBody {
    token: SecretString,
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
    email: Email,
}
impl FromJsonObject for EmailBody {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            email: f.email("email")?,
        })
    }
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

/// `UpdateProfileRequest`: an absent `full_name` changes nothing; `null`
/// clears it.
pub struct UpdateProfileRequest {
    full_name: Option<Option<String>>,
}
impl FromJsonObject for UpdateProfileRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            full_name: f.full_name("full_name")?,
        })
    }
}

/// `ChangePasswordRequest`.
pub struct ChangePasswordRequest {
    current_password: SecretString,
    new_password: SecretString,
}
impl FromJsonObject for ChangePasswordRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            current_password = f.secret("current_password", Len::CURRENT_PASSWORD);
            new_password = f.secret("new_password", Len::PASSWORD);
        }
        Some(Self {
            current_password,
            new_password,
        })
    }
}

/// `ChangeEmailRequest`.
pub struct ChangeEmailRequest {
    new_email: Email,
    current_password: SecretString,
}
impl FromJsonObject for ChangeEmailRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            new_email = f.email("new_email");
            current_password = f.secret("current_password", Len::CURRENT_PASSWORD);
        }
        Some(Self {
            new_email,
            current_password,
        })
    }
}

/// `DeleteAccountRequest`.
pub struct DeleteAccountRequest {
    current_password: SecretString,
}
impl FromJsonObject for DeleteAccountRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        Some(Self {
            current_password: f.secret("current_password", Len::CURRENT_PASSWORD)?,
        })
    }
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

/// `ResetPasswordRequest`.
pub struct ResetPasswordRequest {
    token: SecretString,
    new_password: SecretString,
}
impl FromJsonObject for ResetPasswordRequest {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            token = f.secret("token", Len::TOKEN);
            new_password = f.secret("new_password", Len::PASSWORD);
        }
        Some(Self {
            token,
            new_password,
        })
    }
}

// ----------------------------------------------------------------- handlers

/// `POST /register` → 201 `PendingResponse` or `UserPublic`.
pub async fn register(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<UserCreate>,
) -> Answer {
    let reg = Registration {
        email: b.email,
        password: b.password,
        full_name: b.full_name,
    };
    match e.register(reg, &c).await? {
        Registered::Pending { email, expires_at } => ok_json(
            StatusCode::CREATED,
            PendingResponse {
                status: "pending_verification",
                email: email.to_string(),
                expires_at: iso_offset(&expires_at),
            },
        ),
        Registered::Active(user) => ok_json(StatusCode::CREATED, UserPublic::from(&user)),
    }
}

/// `POST /verify` → 200 `UserPublic`.
pub async fn verify(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<TokenBody>,
) -> Answer {
    let user = e.verify(&b.token, &c).await?;
    ok_json(StatusCode::OK, UserPublic::from(&user))
}

/// `POST /resend-verification` → always the same 202.
pub async fn resend_verification(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<EmailBody>,
) -> Answer {
    e.resend_verification(&b.email, &c).await?;
    message(
        StatusCode::ACCEPTED,
        "If a pending registration exists, a new email has been sent.",
    )
}

/// A token answer: the refresh token goes into the JSON, or (cookie mode)
/// into the `HttpOnly` cookie and not into the JSON.
fn token_answer(
    e: &Engine,
    access_token: String,
    expires_in: u64,
    refresh: &SecretString,
    refresh_expires_in: u64,
) -> Answer {
    let cfg = e.config();
    let in_cookie = cfg.sessions.refresh_cookie;
    let body = TokenResponse {
        access_token,
        token_type: "bearer",
        expires_in,
        refresh_token: (!in_cookie).then(|| refresh.expose_secret().to_owned()),
        refresh_expires_in,
    };
    let mut response = (StatusCode::OK, Json(body)).into_response();
    if in_cookie {
        if let Some(c) = cookie::set(&cfg.api_prefix, refresh.expose_secret(), refresh_expires_in) {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(response)
}

fn clearing_cookie(e: &Engine, mut response: axum::response::Response) -> Answer {
    let cfg = e.config();
    if cfg.sessions.refresh_cookie {
        if let Some(c) = cookie::clear(&cfg.api_prefix) {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
    }
    Ok(response)
}

/// `POST /login` → 200 `TokenResponse` (+ refresh fields).
pub async fn login(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<LoginRequest>,
) -> Answer {
    let s = e.login(&b.email, &b.password, &c).await?;
    token_answer(
        &e,
        s.access_token,
        s.expires_in,
        &s.refresh_token,
        s.refresh_expires_in,
    )
}

/// `POST /refresh` → 200 with a new access token and the successor
/// refresh token; every failure is one 401.
pub async fn refresh(
    State(e): Engine_,
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
        r.access_token,
        r.expires_in,
        &r.refresh_token,
        r.refresh_expires_in,
    )
}

/// `POST /logout` → 200; the session (and its refresh tokens) ends.
pub async fn logout(State(e): Engine_, Client(c): Client, user: CurrentUser) -> Answer {
    e.logout(&user, &c).await?;
    clearing_cookie(&e, message(StatusCode::OK, "Logged out.")?)
}

/// `POST /logout-all` → 200 with the number of sessions ended.
pub async fn logout_all(State(e): Engine_, Client(c): Client, user: CurrentUser) -> Answer {
    let n = e.logout_all(&user, &c).await?;
    let body = LogoutAllResponse {
        message: format!("Signed out of {n} session(s)."),
        revoked: n,
    };
    clearing_cookie(&e, (StatusCode::OK, Json(body)).into_response())
}

/// `GET /sessions` → the caller's live sessions.
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

/// `GET /me` → 200 `UserPublic`.
pub async fn me(user: CurrentUser) -> Answer {
    ok_json(StatusCode::OK, UserPublic::from(&user.user))
}

/// `PATCH /me` → 200 `UserPublic`.
pub async fn update_me(
    State(e): Engine_,
    user: CurrentUser,
    JsonBody(b): JsonBody<UpdateProfileRequest>,
) -> Answer {
    let updated = match b.full_name {
        None => user.user.clone(),
        Some(name) => e.update_profile(&user, name).await?,
    };
    ok_json(StatusCode::OK, UserPublic::from(&updated))
}

/// `POST /change-password` → 200.
pub async fn change_password(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<ChangePasswordRequest>,
) -> Answer {
    e.change_password(&user, &b.current_password, &b.new_password, &c)
        .await?;
    message(
        StatusCode::OK,
        "Password changed. Existing sessions have been signed out.",
    )
}

/// `POST /change-email` → 202 whether or not the address is free.
pub async fn change_email(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<ChangeEmailRequest>,
) -> Answer {
    e.request_email_change(&user, &b.new_email, &b.current_password, &c)
        .await?;
    message(
        StatusCode::ACCEPTED,
        "If the address is available, a confirmation link has been sent. Check your email.",
    )
}

/// `POST /confirm-email-change` → 200 `UserPublic`.
pub async fn confirm_email_change(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<TokenBody>,
) -> Answer {
    let user = e.confirm_email_change(&b.token, &c).await?;
    ok_json(StatusCode::OK, UserPublic::from(&user))
}

/// `DELETE /account` → 200.
pub async fn delete_account(
    State(e): Engine_,
    Client(c): Client,
    user: CurrentUser,
    JsonBody(b): JsonBody<DeleteAccountRequest>,
) -> Answer {
    e.delete_account(&user, &b.current_password, &c).await?;
    message(StatusCode::OK, "Account deleted.")
}

/// `POST /forgot-password` → always the same 202.
pub async fn forgot_password(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<EmailBody>,
) -> Answer {
    e.forgot_password(&b.email, &c).await?;
    message(
        StatusCode::ACCEPTED,
        "If the address matches an active account, a reset link has been sent. Check your email.",
    )
}

/// `POST /reset-password` → 200.
pub async fn reset_password(
    State(e): Engine_,
    Client(c): Client,
    JsonBody(b): JsonBody<ResetPasswordRequest>,
) -> Answer {
    e.reset_password(&b.token, &b.new_password, &c).await?;
    message(StatusCode::OK, "Password has been reset. Please sign in.")
}
