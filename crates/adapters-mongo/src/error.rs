//! Driver errors → [`StoreError`], in one function, so that `core` and the
//! HTTP layer never see driver types and every store maps errors the same
//! way; plus [`run`], the one way an operation is awaited here, and
//! [`insert_once`], an insert that a driver retry cannot turn into a
//! conflict with itself.

use std::future::IntoFuture;

use mongodb::bson::Document;
use mongodb::error::{Error, ErrorKind, WriteFailure};
use mongodb::Collection;
use regstack_ports::StoreError;

use crate::OPERATION_TIMEOUT;

/// A document read back from the database does not hold a valid domain
/// value (a missing field, an email that no longer parses, an id of the
/// wrong shape, an out-of-range timestamp). Reported as
/// [`StoreError::Backend`]: a corrupt document is reported, never trusted.
#[derive(Debug, thiserror::Error)]
#[error("stored document is corrupt: {0}")]
pub(crate) struct CorruptRow(pub(crate) &'static str);

impl From<CorruptRow> for StoreError {
    fn from(e: CorruptRow) -> Self {
        StoreError::backend(e)
    }
}

/// The database answered in a way a correct server cannot (a document
/// that keeps vanishing between two steps that need it).
#[derive(Debug, thiserror::Error)]
#[error("the database answered inconsistently: {0}")]
pub(crate) struct Inconsistent(pub(crate) &'static str);

/// An operation outlived [`OPERATION_TIMEOUT`] (a server that accepted the
/// connection but stopped answering).
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer within {0:?}")]
pub(crate) struct TimedOut(std::time::Duration);

/// The server's code for a unique-index violation.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// Server error codes that mean "cannot serve right now" rather than "this
/// request is wrong": the node is shutting down, stepping down or not
/// primary, the network failed between nodes, or a time limit ran out.
const TRANSIENT_CODES: [i32; 17] = [
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    133,   // FailedToSatisfyReadPreference
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
    10058, // LegacyNotPrimary
];

/// Maps a driver error onto the port's error.
///
/// - a unique-index violation (code 11000) → [`StoreError::Conflict`]
///   naming the rule (see [`conflict_rule`]);
/// - no reachable server (server selection timed out), I/O and connection
///   failures, a cleared pool, a failed DNS look-up, and the server codes
///   in [`TRANSIENT_CODES`] → [`StoreError::Unavailable`] (HTTP 503: the
///   request may succeed later, and the driver reconnects by itself);
/// - anything else → [`StoreError::Backend`].
pub(crate) fn map_mongo(e: Error) -> StoreError {
    if let Some(message) = duplicate_key_message(&e) {
        return StoreError::Conflict(conflict_rule(message));
    }
    if is_transient(&e) {
        StoreError::unavailable(e)
    } else {
        StoreError::backend(e)
    }
}

/// The server's message if `e` is a unique-index violation. An insert or
/// update reports it as a write error, `findAndModify` as a command error.
fn duplicate_key_message(e: &Error) -> Option<&str> {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY => {
            Some(w.message.as_str())
        }
        ErrorKind::Command(c) if c.code == DUPLICATE_KEY => Some(c.message.as_str()),
        _ => None,
    }
}

fn is_transient(e: &Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => true,
        ErrorKind::Command(c) => TRANSIENT_CODES.contains(&c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => TRANSIENT_CODES.contains(&w.code),
        _ => e.contains_label("RetryableWriteError"),
    }
}

/// Names the uniqueness rule a write broke, from the server's message
/// (`E11000 duplicate key error collection: db.users index: email_unique
/// dup key: { … }` — the same wording on MongoDB and SecantusDB). Index
/// names are ours (`schema.rs`) and say which field they guard; the
/// primary key `_id_` means the id of whatever the collection holds.
/// Database names cannot contain spaces, so the words parse unambiguously.
fn conflict_rule(message: &str) -> &'static str {
    let word_after = |label: &str| {
        message
            .split_once(label)
            .and_then(|(_, rest)| rest.split_whitespace().next())
    };
    let index = word_after(" index: ");
    let collection = word_after("collection: ").and_then(|ns| ns.split_once('.').map(|(_, c)| c));
    match index {
        Some(i) if i.contains("email") => "email",
        Some(i) if i.contains("token_hash") => "token",
        Some("code_hash_unique") => "invite",
        Some("issuer_subject_unique") => "identity",
        Some("user_id_provider_unique") => "provider",
        Some("_id_") => match collection {
            Some(crate::schema::USERS) => "user id",
            Some(crate::schema::SESSIONS) => "session id",
            Some(crate::schema::MFA_CODES) => "challenge id",
            Some(crate::schema::OAUTH_STATES) => "flow id",
            _ => "unique",
        },
        _ => "unique",
    }
}

/// Inserts a document whose `_id` the caller made (fresh, so no one else
/// has it), treating a retried insert whose first attempt landed as done.
///
/// The driver retries a write whose answer was lost (a connection cut, a
/// pool cleared after a timeout); when the first attempt had been applied,
/// the retry can come back as a duplicate-key refusal of the very document
/// it wrote (seen on SecantusDB under load). So a [`StoreError::Conflict`]
/// is checked against `mine` — a filter naming the `_id` and what only this
/// insert wrote — and counts as success if that document is there. A real
/// conflict (another document holds the key) stays a conflict.
pub(crate) async fn insert_once(
    coll: &Collection<Document>,
    document: Document,
    mine: Document,
) -> Result<(), StoreError> {
    match run(coll.insert_one(document)).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict(rule)) => match run(coll.find_one(mine)).await? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict(rule)),
        },
        Err(e) => Err(e),
    }
}

/// Awaits one driver operation under [`OPERATION_TIMEOUT`] and maps its
/// error. Every call to the database in this crate goes through here.
pub(crate) async fn run<T>(
    op: impl IntoFuture<Output = Result<T, Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, op.into_future()).await {
        Ok(result) => result.map_err(map_mongo),
        Err(_) => Err(StoreError::unavailable(TimedOut(OPERATION_TIMEOUT))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_index_that_refused_the_write() {
        let msg = |coll: &str, index: &str| {
            format!(
                "E11000 duplicate key error collection: regstack_email_test.{coll} \
                 index: {index} dup key: {{ x: \"index: _id_\" }}"
            )
        };
        assert_eq!(conflict_rule(&msg("users", "email_unique")), "email");
        assert_eq!(
            conflict_rule(&msg("pending_registrations", "token_hash_unique")),
            "token"
        );
        assert_eq!(conflict_rule(&msg("users", "_id_")), "user id");
        assert_eq!(conflict_rule(&msg("sessions", "_id_")), "session id");
        assert_eq!(conflict_rule(&msg("oauth_states", "_id_")), "flow id");
        assert_eq!(
            conflict_rule(&msg("oauth_identities", "issuer_subject_unique")),
            "identity"
        );
        assert_eq!(
            conflict_rule(&msg("oauth_identities", "user_id_provider_unique")),
            "provider"
        );
        assert_eq!(conflict_rule(&msg("login_attempts", "_id_")), "unique");
        assert_eq!(conflict_rule("something else entirely"), "unique");
    }
}
