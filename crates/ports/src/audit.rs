//! The audit log: an append-only record of what happened to accounts, for
//! the operator who must later answer "who did what, when, from where".
//!
//! Rows are written off the request path (core queues them), so the store
//! sees batches. A row is never updated; rows leave only by
//! [`AuditStore::purge_before`] once older than the retention. An entry
//! holds no secret, token or code — the kinds, reason classes and field
//! names are all it says about what changed — but it does hold the address
//! concerned, so the log outlives account deletion only until retention
//! removes it.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::types::{Email, UserId};

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unique, random (32 hex digits): the tie-break of the order, so two
    /// entries of one instant still page in a fixed order, and the key
    /// that makes a retried batch idempotent.
    pub id: String,
    /// When it happened (from the Clock of the instance that saw it).
    pub at: Timestamp,
    /// What happened: an event name (`login_failed`, `admin_user_updated`,
    /// …).
    pub kind: String,
    /// The account concerned, when one exists.
    pub user_id: Option<UserId>,
    /// The administrator who acted, for administrators' actions.
    pub actor_id: Option<UserId>,
    /// The address concerned (also for sign-ins to addresses with no
    /// account).
    pub email: Option<Email>,
    /// Client IP, when known.
    pub ip: Option<String>,
    /// A small JSON object of details that are not secrets: a failure's
    /// reason class, an OAuth provider, the names and new values of the
    /// flags an administrator changed. `{}` when there are none.
    pub detail: String,
}

/// A place in the audit order (`at`, then `id`): the last entry of the page
/// before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    /// The last listed entry's time.
    pub at: Timestamp,
    /// And its id.
    pub id: String,
}

/// Which entries [`AuditStore::query`] returns: each `Some` must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Entries about this account, or done by it as administrator.
    pub user_id: Option<UserId>,
    /// Entries naming this address (a failed sign-in names the address it
    /// tried, with or without an account behind it).
    pub email: Option<Email>,
    /// Entries of this kind.
    pub kind: Option<String>,
    /// At or after this instant.
    pub since: Option<Timestamp>,
    /// Strictly before this instant.
    pub until: Option<Timestamp>,
    /// Start just past this entry (keyset paging).
    pub after: Option<AuditCursor>,
    /// Newest first (the admin list) or oldest first (tail and export).
    pub newest_first: bool,
    /// At most this many.
    pub limit: u32,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            user_id: None,
            email: None,
            kind: None,
            since: None,
            until: None,
            after: None,
            newest_first: true,
            limit: 50,
        }
    }
}

/// Where audit entries are kept.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends entries. Idempotent by id: an entry whose id is already
    /// stored is skipped, so a batch retried after a lost answer is not
    /// written twice.
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// The entries matching `q`, in its order (`at`, then `id`, descending
    /// when `newest_first`), strictly past `q.after`: the pages that follow
    /// a cursor neither repeat nor skip an entry while newer ones are
    /// appended.
    async fn query(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Deletes entries older than `before`. Returns how many.
    async fn purge_before(&self, before: Timestamp) -> Result<u64, StoreError>;
}
