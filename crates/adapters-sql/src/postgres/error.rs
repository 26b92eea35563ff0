//! PostgreSQL driver errors → [`StoreError`], in one function.
//!
//! What PostgreSQL reports as a `DatabaseError` is classified here by
//! SQLSTATE and constraint name; everything that never reached the server
//! (I/O, TLS, pool timeouts) goes through the crate-wide
//! [`crate::error::map_sqlx`], so both backends agree on those.

use regstack_ports::StoreError;

/// SQLSTATE classes and codes that mean "cannot serve right now" rather
/// than "this request is wrong" (PostgreSQL manual, appendix A):
/// - class `08`: connection exceptions;
/// - class `53`: insufficient resources (disk full, out of memory, too many
///   connections);
/// - `57P01`…`57P05`: the server is shutting down, crashed, is starting,
///   the database was dropped, or an idle session timed out;
/// - `57014`: the statement was cancelled (for instance by
///   `statement_timeout`);
/// - `40001`, `40P01`: serialization failure and deadlock — the
///   transaction was rolled back and may simply be retried;
/// - `55P03`: a lock could not be taken (`lock_timeout`);
/// - `25006`: a read-only transaction, i.e. a standby answered after a
///   fail-over.
fn is_transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57P")
        || matches!(code, "57014" | "40001" | "40P01" | "55P03" | "25006")
}

/// Names the uniqueness rule a write broke, from the constraint names the
/// migrations give (`migrations/postgres/`). The names are what the flows
/// and the in-memory fakes use.
fn conflict_rule(constraint: Option<&str>) -> &'static str {
    match constraint {
        Some("users_email_key" | "pending_registrations_email_key") => "email",
        Some("users_pkey") => "user id",
        Some("sessions_pkey") => "session id",
        Some("mfa_codes_pkey") => "challenge id",
        Some("one_time_tokens_pkey" | "pending_registrations_token_hash_key") => "token",
        Some("oauth_states_pkey") => "flow id",
        Some("oauth_identities_pkey") => "identity",
        Some("oauth_identities_user_id_provider_key") => "identity provider",
        _ => "unique",
    }
}

/// Maps a sqlx error onto the port's error:
/// - a uniqueness violation → [`StoreError::Conflict`] naming the rule;
/// - connection, pool-timeout and I/O failures, and the transient
///   SQLSTATEs above → [`StoreError::Unavailable`] (HTTP 503);
/// - anything else → [`StoreError::Backend`].
pub(crate) fn map_pg(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(conflict_rule(db.constraint()));
            }
            if db.code().is_some_and(|c| is_transient(&c)) {
                StoreError::Unavailable(db.into_error())
            } else {
                StoreError::Backend(db.into_error())
            }
        }
        e => crate::error::map_sqlx(e),
    }
}

/// Maps a migration failure.
pub(crate) fn map_migrate(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => map_pg(e),
        e => StoreError::backend(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_rule_by_constraint() {
        assert_eq!(conflict_rule(Some("users_email_key")), "email");
        assert_eq!(conflict_rule(Some("users_pkey")), "user id");
        assert_eq!(conflict_rule(Some("sessions_pkey")), "session id");
        assert_eq!(conflict_rule(Some("one_time_tokens_pkey")), "token");
        assert_eq!(conflict_rule(Some("oauth_states_pkey")), "flow id");
        assert_eq!(conflict_rule(Some("oauth_identities_pkey")), "identity");
        assert_eq!(conflict_rule(None), "unique");
    }

    #[test]
    fn shutdown_and_connection_states_are_transient() {
        for code in [
            "08006", "08001", "53300", "57P01", "57P03", "40P01", "40001",
        ] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "23503", "42601", "22001", "42P01"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn pool_timeouts_are_unavailable_not_backend_failures() {
        assert!(matches!(
            map_pg(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            map_pg(sqlx::Error::RowNotFound),
            StoreError::Backend(_)
        ));
    }
}
