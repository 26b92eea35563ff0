//! Rows → domain records. Column lists are macros expanding to string
//! literals so queries are assembled with `concat!` at compile time (static
//! SQL, no `format!`), and decoders read by position in that order.
//!
//! Every value read back is re-validated ([`Email::from_stored`],
//! [`UserId::parse`], …): a corrupt row is reported as
//! [`StoreError::Backend`], never trusted.

use regstack_ports::{
    Email, OneTimeToken, PasswordHash, PendingRegistration, RevokeReason, Session, SessionId,
    StoreError, TokenHash, TokenKind, User, UserId,
};
use sqlx::postgres::PgRow;
use sqlx::Row;

use super::error::map_pg;
use crate::error::CorruptRow;
use crate::time::{from_db, from_db_opt};

/// The `users` columns in decoding order; `user_cols!(u)` prefixes them for
/// a join.
macro_rules! user_cols {
    () => {
        "id, email, hashed_password, is_active, is_verified, is_superuser, full_name, \
         phone_number, is_mfa_enabled, created_at, updated_at, last_login, \
         tokens_invalidated_after"
    };
    (u) => {
        "u.id, u.email, u.hashed_password, u.is_active, u.is_verified, u.is_superuser, \
         u.full_name, u.phone_number, u.is_mfa_enabled, u.created_at, u.updated_at, \
         u.last_login, u.tokens_invalidated_after"
    };
}
pub(crate) use user_cols;

/// How many columns [`user_cols!`] lists.
pub(crate) const USER_COLS: usize = 13;

/// The `sessions` columns in decoding order; `session_cols!(s)` prefixes
/// them for a join.
macro_rules! session_cols {
    () => {
        "id, user_id, created_at, last_used_at, expires_at, idle_expires_at, user_agent, ip, \
         revoked_at, revoked_reason"
    };
    (s) => {
        "s.id, s.user_id, s.created_at, s.last_used_at, s.expires_at, s.idle_expires_at, \
         s.user_agent, s.ip, s.revoked_at, s.revoked_reason"
    };
}
pub(crate) use session_cols;

/// The `pending_registrations` columns in decoding order.
macro_rules! pending_cols {
    () => {
        "email, hashed_password, full_name, token_hash, created_at, expires_at"
    };
}
pub(crate) use pending_cols;

/// The `one_time_tokens` columns in decoding order.
macro_rules! token_cols {
    () => {
        "token_hash, kind, user_id, new_email, created_at, expires_at"
    };
}
pub(crate) use token_cols;

fn get<'r, T>(row: &'r PgRow, i: usize) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(i).map_err(map_pg)
}

fn email(s: &str) -> Result<Email, CorruptRow> {
    Email::from_stored(s).map_err(|_| CorruptRow("email"))
}

fn user_id(s: &str) -> Result<UserId, CorruptRow> {
    UserId::parse(s).ok_or(CorruptRow("user id"))
}

pub(crate) fn session_id(s: &str) -> Result<SessionId, CorruptRow> {
    SessionId::parse(s).ok_or(CorruptRow("session id"))
}

fn token_hash(s: String) -> Result<TokenHash, CorruptRow> {
    TokenHash::from_hex(s).ok_or(CorruptRow("token hash"))
}

/// Decodes the [`user_cols!`] starting at column `at`.
pub(crate) fn user(row: &PgRow, at: usize) -> Result<User, StoreError> {
    Ok(User {
        id: user_id(&get::<String>(row, at)?)?,
        email: email(&get::<String>(row, at + 1)?)?,
        password_hash: get::<Option<String>>(row, at + 2)?.map(PasswordHash::new),
        is_active: get(row, at + 3)?,
        is_verified: get(row, at + 4)?,
        is_superuser: get(row, at + 5)?,
        full_name: get(row, at + 6)?,
        phone_number: get(row, at + 7)?,
        is_mfa_enabled: get(row, at + 8)?,
        created_at: from_db(get(row, at + 9)?)?,
        updated_at: from_db(get(row, at + 10)?)?,
        last_login: from_db_opt(get(row, at + 11)?)?,
        tokens_invalidated_after: from_db_opt(get(row, at + 12)?)?,
    })
}

/// Decodes the [`session_cols!`] starting at column `at`.
pub(crate) fn session(row: &PgRow, at: usize) -> Result<Session, StoreError> {
    Ok(Session {
        id: session_id(&get::<String>(row, at)?)?,
        user_id: user_id(&get::<String>(row, at + 1)?)?,
        created_at: from_db(get(row, at + 2)?)?,
        last_used_at: from_db(get(row, at + 3)?)?,
        expires_at: from_db(get(row, at + 4)?)?,
        idle_expires_at: from_db(get(row, at + 5)?)?,
        user_agent: get(row, at + 6)?,
        ip: get(row, at + 7)?,
        revoked_at: from_db_opt(get(row, at + 8)?)?,
        revoked_reason: get::<Option<String>>(row, at + 9)?.map(|r| RevokeReason::parse(&r)),
    })
}

/// Decodes the [`pending_cols!`].
pub(crate) fn pending(row: &PgRow) -> Result<PendingRegistration, StoreError> {
    Ok(PendingRegistration {
        email: email(&get::<String>(row, 0)?)?,
        password_hash: PasswordHash::new(get(row, 1)?),
        full_name: get(row, 2)?,
        token_hash: token_hash(get(row, 3)?)?,
        created_at: from_db(get(row, 4)?)?,
        expires_at: from_db(get(row, 5)?)?,
    })
}

/// Decodes the [`token_cols!`].
pub(crate) fn token(row: &PgRow) -> Result<OneTimeToken, StoreError> {
    Ok(OneTimeToken {
        hash: token_hash(get(row, 0)?)?,
        kind: TokenKind::parse(&get::<String>(row, 1)?).ok_or(CorruptRow("token kind"))?,
        user_id: user_id(&get::<String>(row, 2)?)?,
        new_email: get::<Option<String>>(row, 3)?
            .map(|e| email(&e))
            .transpose()?,
        created_at: from_db(get(row, 4)?)?,
        expires_at: from_db(get(row, 5)?)?,
    })
}
