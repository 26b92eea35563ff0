//! `GET /admin/audit`: the audit log, for administrators, mounted with the
//! other admin routes.

use axum::extract::Query;
use axum::http::StatusCode;
use regstack_core::events::EventKind;
use regstack_ports::{AuditCursor, AuditEntry, AuditQuery, Email, UserId};
use serde::Serialize;
use serde_json::{json, Value};

use super::admin::{query_int, AdminUser};
use super::{ok_json, Answer, Engine_};
use crate::error::{validation_entry, ApiError};
use crate::wire::AuditEntryOut;
use axum::extract::State;

/// The most entries one page may hold.
const MAX_PAGE: u64 = 500;

#[derive(Serialize, utoipa::ToSchema)]
struct AuditPage {
    entries: Vec<AuditEntryOut>,
    /// Where the next page starts; null on the last page.
    next_cursor: Option<String>,
}

/// A cursor as handed out: the last entry's time in microseconds and its
/// id. Opaque to clients.
fn cursor_of(e: &AuditEntry) -> String {
    format!("{}.{}", e.at.timestamp_micros(), e.id)
}

fn parse_cursor(raw: &str) -> Option<AuditCursor> {
    let (micros, id) = raw.split_once('.')?;
    let valid_id = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    Some(AuditCursor {
        at: chrono::DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id: valid_id.then(|| id.to_owned())?,
    })
}

/// The last value of a query parameter.
fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn invalid(name: &'static str, msg: &'static str) -> Value {
    validation_entry(
        "value_error",
        &[json!("query"), json!(name)],
        format!("Value error, {msg}"),
        None,
    )
}

fn instant(
    query: &[(String, String)],
    name: &'static str,
    errors: &mut Vec<Value>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let raw = param(query, name)?;
    match chrono::DateTime::parse_from_rfc3339(raw.trim()) {
        Ok(t) => Some(t.to_utc()),
        Err(_) => {
            errors.push(invalid(
                name,
                "expected an RFC 3339 instant such as 2026-01-31T12:00:00Z",
            ));
            None
        }
    }
}

/// `GET /admin/audit?user_id&email&kind&since&until&order&cursor&limit` →
/// 200 `{entries, next_cursor}`. Filters: an account (as the subject or the
/// acting administrator), an address, an event kind, a half-open time range
/// (`since` inclusive, `until` exclusive, RFC 3339). `order` is `newest`
/// (default) or `oldest`; `limit` 1–500 (default 50); `next_cursor`
/// continues after the page without repeating or skipping an entry while
/// new ones are written.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(("user_id" = Option<String>, Query, description = "Subject or acting administrator."), ("email" = Option<String>, Query, description = "An address."), ("kind" = Option<String>, Query, description = "An event kind."), ("since" = Option<String>, Query, description = "RFC 3339 instant, inclusive."), ("until" = Option<String>, Query, description = "RFC 3339 instant, exclusive."), ("order" = Option<String>, Query, description = "asc or desc."), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page."), ("limit" = Option<u64>, Query, description = "Page size.")), security(("bearer" = []), ("password" = [])), responses((status = 200, description = "A page of audit entries.", body = AuditPage), (status = 403, description = "Not an administrator.", body = super::doc::Detail)))]
pub async fn list(
    State(e): Engine_,
    AdminUser(admin): AdminUser,
    Query(query): Query<Vec<(String, String)>>,
) -> Answer {
    let mut errors = Vec::new();
    let limit = query_int(&query, "limit", 50, 1, Some(MAX_PAGE), &mut errors);
    let user_id = param(&query, "user_id").and_then(|raw| {
        let id = UserId::parse(raw.trim());
        if id.is_none() {
            errors.push(invalid("user_id", "not a user id"));
        }
        id
    });
    let email = param(&query, "email").and_then(|raw| {
        let email = Email::parse(raw).ok();
        if email.is_none() {
            errors.push(invalid("email", "not an email address"));
        }
        email
    });
    let kind = param(&query, "kind").and_then(|raw| {
        let kind = EventKind::from_name(raw.trim());
        if kind.is_none() {
            errors.push(invalid("kind", "not an event kind"));
        }
        kind
    });
    let since = instant(&query, "since", &mut errors);
    let until = instant(&query, "until", &mut errors);
    let newest_first = match param(&query, "order").map(str::trim) {
        None | Some("newest") => true,
        Some("oldest") => false,
        Some(_) => {
            errors.push(invalid("order", "expected `newest` or `oldest`"));
            true
        }
    };
    let after = match param(&query, "cursor") {
        None | Some("") => None,
        Some(raw) => {
            let c = parse_cursor(raw);
            if c.is_none() {
                errors.push(invalid("cursor", "invalid cursor"));
            }
            c
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let q = AuditQuery {
        user_id,
        email,
        kind: kind.map(|k| k.name().to_owned()),
        since,
        until,
        after,
        newest_first,
        limit: u32::try_from(limit).unwrap_or(u32::MAX),
    };
    let entries = e.admin_audit(&admin, &q).await?;
    let full = u64::try_from(entries.len()).unwrap_or(u64::MAX) == limit;
    ok_json(
        StatusCode::OK,
        AuditPage {
            next_cursor: entries.last().filter(|_| full).map(cursor_of),
            entries: entries.iter().map(AuditEntryOut::from).collect(),
        },
    )
}
