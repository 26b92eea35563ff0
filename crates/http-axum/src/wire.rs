//! Response bodies, field for field as regstack 0.9.3 sends them.

use chrono::SecondsFormat;
use regstack_ports::{AuditEntry, Timestamp, User};
use serde::Serialize;
use serde_json::Value;

/// regstack's user timestamps: `2026-11-22T23:38:06.801196Z`. (RFC 3339
/// with microseconds; chrono's fixed formatter, not a format string
/// parsed on every response.)
pub fn user_time(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// regstack's `PendingResponse.expires_at` (Python `isoformat()`):
/// `2026-11-23T23:38:06.602572+00:00`.
pub fn iso_offset(t: &Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// `UserPublic`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserPublic {
    id: String,
    #[schema(format = Email)]
    email: String,
    is_active: bool,
    is_verified: bool,
    is_superuser: bool,
    full_name: Option<String>,
    phone_number: Option<String>,
    is_mfa_enabled: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[schema(format = DateTime)]
    last_login: Option<String>,
    #[schema(format = DateTime)]
    tokens_invalidated_after: Option<String>,
}

impl From<&User> for UserPublic {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.to_string(),
            is_active: u.is_active,
            is_verified: u.is_verified,
            is_superuser: u.is_superuser,
            full_name: u.full_name.clone(),
            phone_number: u.phone_number.clone(),
            is_mfa_enabled: u.is_mfa_enabled,
            created_at: user_time(&u.created_at),
            updated_at: user_time(&u.updated_at),
            last_login: u.last_login.as_ref().map(user_time),
            tokens_invalidated_after: u.tokens_invalidated_after.as_ref().map(user_time),
        }
    }
}

/// `PendingResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PendingResponse {
    /// Always `pending_verification`.
    #[schema(value_type = String)]
    pub status: &'static str,
    /// Canonical address.
    pub email: String,
    /// When the link dies.
    pub expires_at: String,
}

/// `TokenResponse`, plus the refresh fields regstack clients ignore
/// (`refresh_token`, `refresh_expires_in`). In cookie mode `refresh_token`
/// is left out.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// Bearer token.
    pub access_token: String,
    /// Always `bearer`.
    #[schema(value_type = String)]
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    /// The refresh token, unless it travels in the cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Seconds until the refresh token dies if unused.
    #[schema(value_type = Option<u64>)]
    pub refresh_expires_in: u64,
}

/// One entry of `GET /sessions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// Session id (what `DELETE /sessions/{id}` takes).
    pub id: String,
    /// Sign-in time.
    pub created_at: String,
    /// Last refresh.
    pub last_used_at: String,
    /// Client's user agent at sign-in.
    pub user_agent: Option<String>,
    /// Client IP at sign-in.
    pub ip: Option<String>,
    /// Whether this is the session of the calling token.
    pub current: bool,
}

/// `GET /sessions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionInfo>,
}

/// `POST /logout-all`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogoutAllResponse {
    /// `Signed out of N session(s).`
    pub message: String,
    /// N.
    pub revoked: u64,
}

/// `MessageResponse` with a message that names something (an address).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OwnedMessage {
    /// Human-readable outcome.
    pub message: String,
}

/// `MessageResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageResponse {
    /// Human-readable outcome.
    #[schema(value_type = String)]
    pub message: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn timestamps_match_regstack() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 23, 38, 6).unwrap()
            + chrono::TimeDelta::microseconds(801_196);
        assert_eq!(user_time(&t), "2026-11-22T23:38:06.801196Z");
        assert_eq!(iso_offset(&t), "2026-11-22T23:38:06.801196+00:00");
    }
}

/// An audit entry as `GET /admin/audit` and `regstack audit export` show
/// it: times in RFC 3339 UTC, `detail` as the JSON object it holds.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditEntryOut {
    id: String,
    at: String,
    kind: String,
    user_id: Option<String>,
    actor_id: Option<String>,
    email: Option<String>,
    ip: Option<String>,
    #[schema(value_type = Object)]
    detail: Value,
}

impl From<&AuditEntry> for AuditEntryOut {
    fn from(e: &AuditEntry) -> Self {
        Self {
            id: e.id.clone(),
            at: user_time(&e.at),
            kind: e.kind.clone(),
            user_id: e.user_id.as_ref().map(ToString::to_string),
            actor_id: e.actor_id.as_ref().map(ToString::to_string),
            email: e.email.as_ref().map(|m| m.as_str().to_owned()),
            ip: e.ip.clone(),
            detail: serde_json::from_str(&e.detail).unwrap_or(Value::Null),
        }
    }
}
