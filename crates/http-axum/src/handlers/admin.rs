//! The admin routes (`/admin/*`), mounted only with `enable_admin_router`:
//! regstack's seven, plus the operator's levers beyond them (a forced
//! password change, an account's sessions, its second factors, an
//! address's lockout).
//!
//! [`AdminUser`] answers a caller who is no administrator before anything
//! else is read — a plain user's malformed body or query gets the 403, as
//! in regstack, never a 422 that would describe the admin API to them.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use regstack_core::engine::{
    InviteSpec, MAX_INVITE_NOTE_CHARS, MAX_INVITE_PAGE, MAX_INVITE_TTL_SECONDS,
};
use regstack_core::{AuthError, Engine, Principal};
use regstack_ports::{AdminChange, Invite, UserCursor, UserFilter, UserId};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{json, Value};

use super::{ok_json, Answer, EmailBody, Engine_};
use crate::body::{Fields, FromJsonObject, JsonBody, Len};
use crate::error::{validation_entry, ApiError};
use crate::extract::{Client, CurrentUser};
use crate::read_all;
use crate::wire::{
    user_time, LogoutAllResponse, OwnedMessage, SessionInfo, SessionList, UserPublic,
};

/// This capability's routes, relative to the API prefix.
pub fn router() -> Router<Arc<Engine>> {
    Router::new()
        .route("/admin/stats", get(stats))
        .route("/admin/users", get(list_users))
        .route(
            "/admin/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route(
            "/admin/users/{id}/resend-verification",
            post(resend_verification),
        )
        .route("/admin/pending/{email}/promote", post(promote_pending))
        .route(
            "/admin/users/{id}/require-password-change",
            post(require_password_change),
        )
        .route(
            "/admin/users/{id}/sessions",
            get(list_sessions).delete(revoke_sessions),
        )
        .route("/admin/users/{id}/mfa", axum::routing::delete(reset_mfa))
        .route("/admin/unlock", post(unlock))
        .route("/admin/invites", get(list_invites).post(create_invite))
        .route("/admin/invites/{id}", axum::routing::delete(revoke_invite))
}

/// A signed-in administrator: 401 without a valid token, 403 for anyone
/// else (regstack's `current_admin`). The engine checks again; this one
/// runs before the body and the query are read.
pub struct AdminUser(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let CurrentUser(principal) = CurrentUser::from_request_parts(parts, state).await?;
        if !principal.user.is_superuser {
            return Err(AuthError::NotAdmin.into());
        }
        Ok(AdminUser(principal))
    }
}

/// `AdminUserUpdate`: each field optional; `null` changes nothing
/// (regstack's reading); unknown fields refused. Beyond regstack, a
/// disabling (`is_active: false`) may carry `disabled_reason` (≤ 500
/// characters, shown to administrators only) and `disabled_until` (an
/// instant in the future; absent or null: until enabled by hand); the
/// engine refuses either without the disabling.
pub struct AdminUserUpdate {
    change: AdminChange,
}
impl FromJsonObject for AdminUserUpdate {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            is_active = f.optional_bool("is_active");
            is_superuser = f.optional_bool("is_superuser");
            full_name = f.full_name("full_name");
            disabled_reason = f.disable_reason("disabled_reason");
            disabled_until = f.optional_instant("disabled_until");
        }
        Some(Self {
            change: AdminChange {
                is_active,
                is_superuser,
                full_name: full_name.flatten().map(|n| n.into_string()),
                disabled_reason,
                disabled_until,
            },
        })
    }
}

/// An account as the admin routes show it: regstack's `UserPublic`, plus
/// the disabling's reason and end (null when not disabled, or without
/// them). Only here — the owner's own `/me` never carries the reason.
#[derive(Serialize, utoipa::ToSchema)]
struct AdminUserView {
    #[serde(flatten)]
    public: UserPublic,
    disabled_reason: Option<String>,
    disabled_until: Option<String>,
}

impl From<&regstack_ports::User> for AdminUserView {
    fn from(u: &regstack_ports::User) -> Self {
        Self {
            public: UserPublic::from(u),
            disabled_reason: u.disabled_reason.clone(),
            disabled_until: u.disabled_until.as_ref().map(user_time),
        }
    }
}

/// `AdminStats`.
#[derive(Serialize, utoipa::ToSchema)]
struct AdminStats {
    total_users: u64,
    active_users: u64,
    verified_users: u64,
    superusers: u64,
    pending_registrations: u64,
}

/// `UserListResponse`.
#[derive(Serialize, utoipa::ToSchema)]
struct UserListResponse {
    items: Vec<AdminUserView>,
    total: u64,
    skip: u64,
    limit: u64,
    /// Only when searching: where the next page starts (null at the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    next_cursor: Option<Option<String>>,
}

/// `GET /admin/stats` → 200 `AdminStats`.
#[utoipa::path(get, path = "/admin/stats", tag = "admin", security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Counts.", body = AdminStats), (status = 403, description = "Not an administrator.", body = super::doc::Detail)))]
pub async fn stats(State(e): Engine_, AdminUser(admin): AdminUser) -> Answer {
    let s = e.admin_stats(&admin).await?;
    ok_json(
        StatusCode::OK,
        AdminStats {
            total_users: s.users.total,
            active_users: s.users.active,
            verified_users: s.users.verified,
            superusers: s.users.superusers,
            pending_registrations: s.pending_registrations,
        },
    )
}

/// One integer query parameter with regstack's bounds and default, or
/// FastAPI's 422 entry for it. The last of repeated values counts.
pub(super) fn query_int(
    query: &[(String, String)],
    name: &'static str,
    default: u64,
    min: u64,
    max: Option<u64>,
    errors: &mut Vec<Value>,
) -> u64 {
    let Some((_, raw)) = query.iter().rev().find(|(k, _)| k == name) else {
        return default;
    };
    let loc = [json!("query"), json!(name)];
    let Ok(n) = raw.trim().parse::<i128>() else {
        errors.push(validation_entry(
            "int_parsing",
            &loc,
            "Input should be a valid integer, unable to parse string as an integer",
            None,
        ));
        return default;
    };
    if n < i128::from(min) {
        errors.push(validation_entry(
            "greater_than_equal",
            &loc,
            format!("Input should be greater than or equal to {min}"),
            Some(json!({ "ge": min })),
        ));
        return default;
    }
    if let Some(max) = max.filter(|m| n > i128::from(*m)) {
        errors.push(validation_entry(
            "less_than_equal",
            &loc,
            format!("Input should be less than or equal to {max}"),
            Some(json!({ "le": max })),
        ));
        return default;
    }
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The most accounts one page may hold (regstack's bound).
const MAX_PAGE: u64 = 200;

/// One boolean query parameter, read as FastAPI reads one (`true`/`false`,
/// `1`/`0`, `yes`/`no`, `on`/`off`, any case); absent is `None`.
pub(super) fn query_bool(
    query: &[(String, String)],
    name: &'static str,
    errors: &mut Vec<Value>,
) -> Option<bool> {
    let (_, raw) = query.iter().rev().find(|(k, _)| k == name)?;
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => {
            errors.push(validation_entry(
                "bool_parsing",
                &[json!("query"), json!(name)],
                "Input should be a valid boolean, unable to interpret input",
                None,
            ));
            None
        }
    }
}

/// The longest address part `q` may be (an address is at most 320).
const MAX_Q: usize = 320;

/// A cursor as the answer hands it out: the last listed account's
/// creation time in microseconds and its id. Opaque to clients.
fn cursor_of(u: &regstack_ports::User) -> String {
    format!("{}.{}", u.created_at.timestamp_micros(), u.id)
}

/// Reads a cursor back; `None` for one this server did not hand out.
fn parse_cursor(raw: &str) -> Option<UserCursor> {
    let (micros, id) = raw.split_once('.')?;
    Some(UserCursor {
        created_at: chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id: UserId::parse(id)?,
    })
}

/// `GET /admin/users?skip&limit` → 200 `UserListResponse`, newest first;
/// `skip ≥ 0` (default 0), `1 ≤ limit ≤ 200` (default 50) — regstack's
/// list. With any of the filters (`q`: a part of the address; `is_active`,
/// `is_verified`, `is_superuser`, `has_mfa`) or a `cursor` (empty for the
/// first page) it searches: `total` counts the matches, and `next_cursor`
/// (null on the last page) continues after the page without repeating or
/// skipping anyone while accounts are added.
#[utoipa::path(get, path = "/admin/users", tag = "admin", params(("skip" = Option<u64>, Query, description = "Accounts to skip."), ("limit" = Option<u64>, Query, description = "Page size.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "A page of accounts, newest first.", body = UserListResponse), (status = 403, description = "Not an administrator.", body = super::doc::Detail)))]
pub async fn list_users(
    State(e): Engine_,
    AdminUser(admin): AdminUser,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer {
    let mut errors = Vec::new();
    let skip = query_int(&query, "skip", 0, 0, None, &mut errors);
    let limit = query_int(&query, "limit", 50, 1, Some(MAX_PAGE), &mut errors);
    let q = query
        .iter()
        .rev()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.clone());
    if q.as_ref().is_some_and(|q| q.chars().count() > MAX_Q) {
        errors.push(validation_entry(
            "string_too_long",
            &[json!("query"), json!("q")],
            format!("String should have at most {MAX_Q} characters"),
            Some(json!({ "max_length": MAX_Q })),
        ));
    }
    let filter = UserFilter {
        email_contains: q,
        is_active: query_bool(&query, "is_active", &mut errors),
        is_verified: query_bool(&query, "is_verified", &mut errors),
        is_superuser: query_bool(&query, "is_superuser", &mut errors),
        has_mfa: query_bool(&query, "has_mfa", &mut errors),
    };
    let cursor_raw = query
        .iter()
        .rev()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.as_str());
    let cursor = match cursor_raw {
        None | Some("") => None,
        Some(raw) => {
            let parsed = parse_cursor(raw);
            if parsed.is_none() {
                errors.push(validation_entry(
                    "value_error",
                    &[json!("query"), json!("cursor")],
                    "Value error, invalid cursor",
                    None,
                ));
            }
            parsed
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let searching = cursor_raw.is_some() || filter != UserFilter::default();
    let (page, next_cursor) = if searching {
        let page = e
            .admin_search_users(&admin, filter, cursor.as_ref(), skip, limit)
            .await?;
        let full = u64::try_from(page.items.len()).unwrap_or(u64::MAX) == limit;
        let next = page.items.last().filter(|_| full).map(cursor_of);
        (page, Some(next))
    } else {
        (e.admin_list_users(&admin, skip, limit).await?, None)
    };
    ok_json(
        StatusCode::OK,
        UserListResponse {
            items: page.items.iter().map(AdminUserView::from).collect(),
            total: page.total,
            skip,
            limit,
            next_cursor,
        },
    )
}

/// `GET /admin/users/{id}` → 200 `UserPublic` with the disabling's
/// reason and end, or 404.
#[utoipa::path(get, path = "/admin/users/{id}", tag = "admin", params(("id" = String, Path, description = "The user's id.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The account.", body = AdminUserView), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No such user.", body = super::doc::Detail)))]
pub async fn get_user(
    State(e): Engine_,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Answer {
    let user = e.admin_get_user(&admin, &id).await?;
    ok_json(StatusCode::OK, AdminUserView::from(&user))
}

/// `PATCH /admin/users/{id}` → 200 `UserPublic` as stored now, with the
/// disabling's reason and end.
#[utoipa::path(patch, path = "/admin/users/{id}", tag = "admin", request_body = AdminUserUpdate, params(("id" = String, Path, description = "The user's id.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The account as stored now.", body = AdminUserView), (status = 400, description = "An administrator cannot demote or disable themself.", body = super::doc::Detail), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No such user.", body = super::doc::Detail)))]
pub async fn update_user(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<AdminUserUpdate>,
) -> Answer {
    let user = e.admin_update_user(&admin, &id, b.change, &c).await?;
    ok_json(StatusCode::OK, AdminUserView::from(&user))
}

fn owned_message(status: StatusCode, message: String) -> Answer {
    ok_json(status, OwnedMessage { message })
}

/// `DELETE /admin/users/{id}` → 200 `User {email} deleted.`
#[utoipa::path(delete, path = "/admin/users/{id}", tag = "admin", params(("id" = String, Path, description = "The user's id.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Deleted.", body = crate::wire::MessageResponse), (status = 400, description = "Not yourself.", body = super::doc::Detail), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No such user.", body = super::doc::Detail)))]
pub async fn delete_user(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Answer {
    let user = e.admin_delete_user(&admin, &id, &c).await?;
    owned_message(StatusCode::OK, format!("User {} deleted.", user.email))
}

/// `POST /admin/users/{id}/resend-verification` → 202.
#[utoipa::path(post, path = "/admin/users/{id}/resend-verification", tag = "admin", params(("id" = String, Path, description = "The user's id.")), security(("bearer" = []), ("password" = [])), responses((status = 202, description = "Sent.", body = crate::wire::MessageResponse), (status = 400, description = "Already verified, or no password.", body = super::doc::Detail), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No such user.", body = super::doc::Detail)))]
pub async fn resend_verification(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Answer {
    let email = e.admin_resend_verification(&admin, &id, &c).await?;
    owned_message(
        StatusCode::ACCEPTED,
        format!("Verification email sent to {email}."),
    )
}

/// `POST /admin/pending/{email}/promote` → 201 `UserPublic`.
#[utoipa::path(post, path = "/admin/pending/{email}/promote", tag = "admin", params(("email" = String, Path, description = "The pending address.")), security(("bearer" = []), ("password" = [])), responses((status = 201, description = "The new account.", body = crate::wire::UserPublic), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No pending registration.", body = super::doc::Detail), (status = 409, description = "The address has an account.", body = super::doc::Detail)))]
pub async fn promote_pending(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    Path(email): Path<String>,
) -> Answer {
    let user = e.admin_promote_pending(&admin, &email, &c).await?;
    ok_json(StatusCode::CREATED, UserPublic::from(&user))
}

/// `POST /admin/users/{id}/require-password-change` → 200; the account's
/// sessions end and its next sign-in must set a new password.
#[utoipa::path(post, path = "/admin/users/{id}/require-password-change", tag = "admin", params(("id" = String, Path, description = "The user's id.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The next sign-in must change the password.", body = crate::wire::MessageResponse), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No such user.", body = super::doc::Detail)))]
pub async fn require_password_change(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Answer {
    let user = e.admin_require_password_change(&admin, &id, &c).await?;
    owned_message(
        StatusCode::OK,
        format!(
            "User {} must set a new password at the next sign-in.",
            user.email
        ),
    )
}

/// `GET /admin/users/{id}/sessions` → 200 the account's live sessions, in
/// `GET /sessions`'s shape (`current` is always false: none is the
/// administrator's).
#[utoipa::path(get, path = "/admin/users/{id}/sessions", tag = "admin", params(("id" = String, Path, description = "The user's id.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The account's live sessions.", body = crate::wire::SessionList), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No such user.", body = super::doc::Detail)))]
pub async fn list_sessions(
    State(e): Engine_,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Answer {
    let list = e.admin_list_sessions(&admin, &id).await?;
    let sessions = list
        .iter()
        .map(|s| SessionInfo {
            id: s.id.to_string(),
            created_at: user_time(&s.created_at),
            last_used_at: user_time(&s.last_used_at),
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
            current: s.id == admin.session.id,
        })
        .collect();
    ok_json(StatusCode::OK, SessionList { sessions })
}

/// `DELETE /admin/users/{id}/sessions` → 200 with how many ended.
#[utoipa::path(delete, path = "/admin/users/{id}/sessions", tag = "admin", params(("id" = String, Path, description = "The user's id.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "How many ended.", body = crate::wire::LogoutAllResponse), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No such user.", body = super::doc::Detail)))]
pub async fn revoke_sessions(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Answer {
    let (_, n) = e.admin_revoke_sessions(&admin, &id, &c).await?;
    ok_json(
        StatusCode::OK,
        LogoutAllResponse {
            message: format!("Signed out of {n} session(s)."),
            revoked: n,
        },
    )
}

/// `DELETE /admin/users/{id}/mfa` → 200 `UserPublic` without second
/// factors.
#[utoipa::path(delete, path = "/admin/users/{id}/mfa", tag = "admin", params(("id" = String, Path, description = "The user's id.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The account without second factors.", body = crate::wire::UserPublic), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No such user.", body = super::doc::Detail)))]
pub async fn reset_mfa(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Answer {
    let user = e.admin_reset_mfa(&admin, &id, &c).await?;
    ok_json(StatusCode::OK, AdminUserView::from(&user))
}

/// `POST /admin/unlock` `{email}` → 200: the address's sign-in failures
/// are forgotten, in every bucket.
#[utoipa::path(post, path = "/admin/unlock", tag = "admin", request_body = super::EmailBody, security(("bearer" = []), ("password" = [])), responses((status = 200, description = "The address's sign-in failures are forgotten.", body = crate::wire::MessageResponse), (status = 403, description = "Not an administrator.", body = super::doc::Detail)))]
pub async fn unlock(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    JsonBody(b): JsonBody<EmailBody>,
) -> Answer {
    e.admin_unlock(&admin, &b.email, &c).await?;
    owned_message(
        StatusCode::OK,
        format!("Sign-in lockout cleared for {}.", b.email),
    )
}

/// `InviteCreate`: every field optional, unknown fields refused.
pub struct InviteCreate {
    spec: InviteSpec,
}
impl FromJsonObject for InviteCreate {
    fn read(f: &mut Fields<'_>) -> Option<Self> {
        read_all! {
            email = f.optional_email("email");
            expires_in_seconds = f.optional_int("expires_in_seconds", 60, MAX_INVITE_TTL_SECONDS);
            note = f.optional_nullable("note", Len { min: None, max: Some(MAX_INVITE_NOTE_CHARS) });
        }
        Some(Self {
            spec: InviteSpec {
                email,
                expires_in_seconds,
                note: note.flatten(),
            },
        })
    }
}

/// An invitation as the admin routes show it: never its code.
#[derive(Serialize, utoipa::ToSchema)]
struct InvitePublic {
    id: String,
    email: Option<String>,
    note: Option<String>,
    created_by: Option<String>,
    created_at: String,
    expires_at: String,
    used_at: Option<String>,
    used_by: Option<String>,
    revoked_at: Option<String>,
    /// `open`, `used`, `revoked` or `expired`, as of the answer.
    #[schema(value_type = String)]
    status: &'static str,
}

impl InvitePublic {
    fn new(i: &Invite, now: regstack_ports::Timestamp) -> Self {
        let status = if i.revoked_at.is_some() {
            "revoked"
        } else if i.used_at.is_some() {
            "used"
        } else if i.expires_at <= now {
            "expired"
        } else {
            "open"
        };
        Self {
            id: i.id.to_string(),
            email: i.email.as_ref().map(ToString::to_string),
            note: i.note.clone(),
            created_by: i.created_by.as_ref().map(ToString::to_string),
            created_at: user_time(&i.created_at),
            expires_at: user_time(&i.expires_at),
            used_at: i.used_at.as_ref().map(user_time),
            used_by: i.used_by.as_ref().map(ToString::to_string),
            revoked_at: i.revoked_at.as_ref().map(user_time),
            status,
        }
    }
}

/// `POST /admin/invites` answer: the invitation and, this once, its code.
#[derive(Serialize, utoipa::ToSchema)]
struct InviteCreated {
    code: String,
    #[serde(flatten)]
    invite: InvitePublic,
}

/// `GET /admin/invites` answer.
#[derive(Serialize, utoipa::ToSchema)]
struct InviteList {
    items: Vec<InvitePublic>,
    limit: u64,
}

/// `POST /admin/invites` → 201 with the code, shown only here.
#[utoipa::path(post, path = "/admin/invites", tag = "admin", request_body = InviteCreate, security(("bearer" = []), ("password" = [])), responses((status = 201, description = "The invitation and, this once, its code.", body = InviteCreated), (status = 403, description = "Not an administrator.", body = super::doc::Detail)))]
pub async fn create_invite(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    JsonBody(b): JsonBody<InviteCreate>,
) -> Answer {
    if let Err(bad) = b.spec.check() {
        return Err(ApiError::Validation(vec![validation_entry(
            "value_error",
            &[json!("body"), json!(bad.field)],
            format!("Value error, {}", bad.reason),
            None,
        )]));
    }
    let made = e.admin_create_invite(&admin, b.spec, &c).await?;
    ok_json(
        StatusCode::CREATED,
        InviteCreated {
            code: made.code.expose_secret().to_owned(),
            invite: InvitePublic::new(&made.invite, e.now()),
        },
    )
}

/// `GET /admin/invites?all=true&limit=N` → 200: newest first, the open
/// ones (all of them with `all`), at most `limit` (1–200, default 50).
#[utoipa::path(get, path = "/admin/invites", tag = "admin", params(("all" = Option<bool>, Query, description = "Include used, revoked and expired ones."), ("limit" = Option<u64>, Query, description = "Page size.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "Invitations, newest first.", body = InviteList), (status = 403, description = "Not an administrator.", body = super::doc::Detail)))]
pub async fn list_invites(
    State(e): Engine_,
    AdminUser(admin): AdminUser,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer {
    let mut errors = Vec::new();
    let limit = query_int(&query, "limit", 50, 1, Some(MAX_INVITE_PAGE), &mut errors);
    let all = query_bool(&query, "all", &mut errors).unwrap_or(false);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let items = e.admin_list_invites(&admin, all, limit).await?;
    let now = e.now();
    ok_json(
        StatusCode::OK,
        InviteList {
            items: items.iter().map(|i| InvitePublic::new(i, now)).collect(),
            limit,
        },
    )
}

/// `DELETE /admin/invites/{id}` → 204; 404 unless the invitation is
/// neither spent nor revoked.
#[utoipa::path(delete, path = "/admin/invites/{id}", tag = "admin", params(("id" = String, Path, description = "The invitation's id.")), security(("bearer" = []), ("password" = [])), responses((status = 204, description = "Revoked."), (status = 403, description = "Not an administrator.", body = super::doc::Detail), (status = 404, description = "No open invitation with that id.", body = super::doc::Detail)))]
pub async fn revoke_invite(
    State(e): Engine_,
    Client(c): Client,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Answer {
    e.admin_revoke_invite(&admin, &id, &c).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
