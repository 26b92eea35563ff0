//! MongoDB stores for regstack-rs: every `regstack_ports` store trait
//! ([`UserStore`](regstack_ports::UserStore),
//! [`PendingStore`](regstack_ports::PendingStore), …) implemented over the
//! official `mongodb` driver.
//!
//! This is an outer ring of the hexagon. It depends on `regstack-ports`
//! only — never on `regstack-core` or the HTTP crate — and no driver type
//! crosses its public boundary except the [`Database`] a host opens with
//! [`connect`] and hands to [`migrate`] and [`stores`]. Driver errors become
//! [`StoreError`] in one function (`error::map_mongo`).
//!
//! Start reading here: [`connect`] → [`migrate`] → [`stores`]. The index
//! list is `schema.rs`; each aggregate has its own file (`users.rs`,
//! `pending.rs`, `tokens.rs`, `sessions.rs`, `mfa.rs`, `oauth.rs`,
//! `counters.rs` for the lockout and rate-limit windows); `docs.rs` turns
//! documents into domain records.
//!
//! Invariants:
//! - **no multi-document transactions** (a standalone mongod refuses
//!   them, so a transactional path could not be relied on everywhere).
//!   Every decision — who spends a token, who
//!   rotates a refresh token, whether an attempt is admitted — is **one
//!   document operation**: a conditional `findAndModify`, a conditional
//!   update, or an insert against a unique index. Steps of a flow that
//!   touch other documents run after the deciding one, ordered so that a
//!   crash between two of them leaves nothing a user could exploit, and an
//!   error between them is compensated where it can be (each file says
//!   how). A started sequence always runs to its end, even when its caller
//!   stops waiting (`detached.rs`);
//! - never read-then-write in Rust unless the write is itself conditional
//!   on what was read;
//! - timestamps are stored exactly: `Int64` microseconds since the Unix
//!   epoch, UTC (BSON dates keep only milliseconds). A BSON date copy
//!   (`expire_at`) sits beside them only for the TTL indexes;
//! - no read returns a document past its expiry: TTL indexes reap dead
//!   documents eventually (the server's clock, about once a minute), but
//!   every read filters on the exact `expires_at` against the caller's
//!   `now`. `now` always comes from the caller, never from a clock here;
//! - emails are stored canonical (lower-case, from `Email::parse`), so a
//!   plain equality match and the unique index give exactly the SQL case
//!   rules.

mod audit;
mod counters;
mod detached;
mod docs;
mod error;
mod invites;
mod mfa;
mod oauth;
mod pending;
mod schema;
mod sessions;
mod time;
mod tokens;
mod users;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use regstack_ports::{StoreError, StoreHealth, Stores};

use crate::error::{map_mongo, run};

pub use mongodb::Database;
pub use oauth::UNCONFIRMED_IDENTITY_GRACE;
pub use schema::{index_names, migrate, recorded_version, SCHEMA_VERSION, TTL_GRACE};

/// How long an operation waits for a reachable server before the store
/// reports [`StoreError::Unavailable`] (HTTP 503). Short on purpose: a
/// request against a stopped database should fail fast, not hang for the
/// driver's default 30 s.
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening one TCP connection (and its handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound on one store operation, including a server that accepted
/// the connection but stopped answering. Past it the store reports
/// [`StoreError::Unavailable`].
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a client on a MongoDB URL (`mongodb://…` or `mongodb+srv://…`) and
/// returns the database the URL names, or `default_db` if it names none.
///
/// Nothing is sent yet: the driver connects on first use and reconnects by
/// itself after an outage, so a host can start while the database is down
/// and recover without a restart. Server selection and connection
/// timeouts default to [`SERVER_SELECTION_TIMEOUT`] and
/// [`CONNECT_TIMEOUT`] unless the URL sets its own
/// (`serverSelectionTimeoutMS`, `connectTimeoutMS`).
pub async fn connect(url: &str, default_db: &str) -> Result<Database, StoreError> {
    let mut options = ClientOptions::parse(url).await.map_err(map_mongo)?;
    options
        .server_selection_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    options
        .app_name
        .get_or_insert_with(|| "regstack".to_owned());
    let client = Client::with_options(options).map_err(map_mongo)?;
    Ok(client
        .default_database()
        .unwrap_or_else(|| client.database(default_db)))
}

/// Closes the client behind `db` at shutdown: its monitoring tasks stop
/// and its connections close now rather than whenever the process ends.
/// Does not wait for cursors still open elsewhere (the stores keep none
/// across calls), so it cannot hang a stopping server; the client cannot be
/// used afterwards.
pub async fn close(db: &Database) {
    db.client().clone().shutdown().immediate(true).await;
}

/// Every store over one database, ready for the facade.
pub fn stores(db: Database) -> Stores {
    let s = Arc::new(MongoStores::new(db));
    Stores {
        users: s.clone(),
        pending: s.clone(),
        tokens: s.clone(),
        login_attempts: s.clone(),
        sessions: s.clone(),
        rate_limits: s.clone(),
        mfa: s.clone(),
        oauth: s.clone(),
        audit: s.clone(),
        invites: s.clone(),
        health: s,
    }
}

/// One type implementing every store trait over a MongoDB database. Cheap
/// to clone (the driver's client is reference-counted).
#[derive(Clone, Debug)]
pub struct MongoStores {
    db: Database,
    users: Collection<Document>,
    pending: Collection<Document>,
    tokens: Collection<Document>,
    sessions: Collection<Document>,
    login_attempts: Collection<Document>,
    rate_limits: Collection<Document>,
    mfa_codes: Collection<Document>,
    mfa_totp: Collection<Document>,
    mfa_backup_codes: Collection<Document>,
    oauth_states: Collection<Document>,
    oauth_identities: Collection<Document>,
    audit_log: Collection<Document>,
    invites: Collection<Document>,
    meta: Collection<Document>,
}

impl MongoStores {
    /// Wraps a database opened by [`connect`] and prepared by [`migrate`].
    pub fn new(db: Database) -> Self {
        Self {
            users: db.collection(schema::USERS),
            pending: db.collection(schema::PENDING),
            tokens: db.collection(schema::TOKENS),
            sessions: db.collection(schema::SESSIONS),
            login_attempts: db.collection(schema::LOGIN_ATTEMPTS),
            rate_limits: db.collection(schema::RATE_LIMITS),
            mfa_codes: db.collection(schema::MFA_CODES),
            mfa_totp: db.collection(schema::MFA_TOTP),
            mfa_backup_codes: db.collection(schema::MFA_BACKUP_CODES),
            oauth_states: db.collection(schema::OAUTH_STATES),
            oauth_identities: db.collection(schema::OAUTH_IDENTITIES),
            audit_log: db.collection(schema::AUDIT_LOG),
            invites: db.collection(schema::INVITES),
            meta: db.collection(schema::META),
            db,
        }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

#[async_trait]
impl StoreHealth for MongoStores {
    async fn ping(&self) -> Result<(), StoreError> {
        run(self.db.run_command(doc! { "ping": 1 })).await.map(drop)
    }

    async fn schema_is_current(&self) -> Result<bool, StoreError> {
        schema::is_current(&self.meta).await
    }
}
