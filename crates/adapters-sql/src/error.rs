//! Driver errors → [`StoreError`], in one function, so that `core` and the
//! HTTP layer never see sqlx types and every store maps errors the same way.

use regstack_ports::StoreError;

/// A row read back from the database does not hold a valid domain value
/// (an email that no longer parses, an id of the wrong shape, an
/// out-of-range timestamp). Reported as [`StoreError::Backend`]: a corrupt
/// row is reported, never trusted.
#[derive(Debug, thiserror::Error)]
#[error("stored row is corrupt: {0}")]
pub(crate) struct CorruptRow(pub(crate) &'static str);

impl From<CorruptRow> for StoreError {
    fn from(e: CorruptRow) -> Self {
        StoreError::backend(e)
    }
}

/// A database URL this crate cannot open.
#[derive(Debug, thiserror::Error)]
#[error("unsupported database URL: {0}")]
pub(crate) struct BadUrl(pub(crate) &'static str);

/// SQLite primary result codes that mean "cannot serve right now" rather
/// than "this request is wrong": BUSY (5), LOCKED (6), NOMEM (7),
/// IOERR (10), FULL (13), CANTOPEN (14). Extended codes carry the primary
/// code in their low byte.
const SQLITE_TRANSIENT: [i64; 6] = [5, 6, 7, 10, 13, 14];

/// Maps a sqlx error onto the port's error.
///
/// - a uniqueness violation → [`StoreError::Conflict`] naming the rule (the
///   column that refused the write);
/// - connection, pool-timeout and I/O failures, and SQLite's
///   busy/locked/I/O result codes → [`StoreError::Unavailable`] (HTTP 503:
///   the request may succeed later);
/// - anything else → [`StoreError::Backend`].
pub(crate) fn map_sqlx(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(conflict_rule(db.constraint(), db.message()));
            }
            let transient = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .is_some_and(|c| SQLITE_TRANSIENT.contains(&(c & 0xff)));
            if transient {
                StoreError::Unavailable(db.into_error())
            } else {
                StoreError::Backend(db.into_error())
            }
        }
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed) => StoreError::unavailable(e),
        e => StoreError::backend(e),
    }
}

/// Names the uniqueness rule a write broke. PostgreSQL reports the
/// constraint name; SQLite only a message such as
/// `UNIQUE constraint failed: users.email`. Both name the column, which is
/// what the flows act on.
fn conflict_rule(constraint: Option<&str>, message: &str) -> &'static str {
    let text = constraint.unwrap_or(message);
    if text.contains("oauth_states") {
        "flow id"
    } else if text.contains("oauth_identities.user_id") {
        "identity provider"
    } else if text.contains("oauth_identities") {
        "identity"
    } else if text.contains("email") {
        "email"
    } else if text.contains("token_hash") {
        "token"
    } else if text.contains("mfa_codes") {
        "challenge id"
    } else if text.contains("sessions") {
        "session id"
    } else if text.contains("users") {
        "user id"
    } else {
        "unique"
    }
}

/// Maps a migration failure.
pub(crate) fn map_migrate(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => map_sqlx(e),
        e => StoreError::backend(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_column_that_refused_the_write() {
        assert_eq!(
            conflict_rule(None, "UNIQUE constraint failed: users.email"),
            "email"
        );
        assert_eq!(
            conflict_rule(
                None,
                "UNIQUE constraint failed: pending_registrations.token_hash"
            ),
            "token"
        );
        assert_eq!(
            conflict_rule(None, "UNIQUE constraint failed: sessions.id"),
            "session id"
        );
        assert_eq!(
            conflict_rule(None, "UNIQUE constraint failed: users.id"),
            "user id"
        );
        assert_eq!(
            conflict_rule(None, "UNIQUE constraint failed: oauth_states.id"),
            "flow id"
        );
        assert_eq!(
            conflict_rule(
                None,
                "UNIQUE constraint failed: oauth_identities.issuer, oauth_identities.subject"
            ),
            "identity"
        );
        assert_eq!(
            conflict_rule(
                None,
                "UNIQUE constraint failed: oauth_identities.user_id, oauth_identities.provider"
            ),
            "identity provider"
        );
    }

    #[test]
    fn pool_timeouts_are_unavailable_not_backend_failures() {
        assert!(matches!(
            map_sqlx(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_sqlx(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
    }
}
