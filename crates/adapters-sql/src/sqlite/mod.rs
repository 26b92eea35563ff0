//! The SQLite backend: [`connect`] → [`migrate`] → [`stores`].
//!
//! SQLite allows one writer at a time. Concurrency must never surface as an
//! error (regstack answers 500 "database is locked" under 16 concurrent
//! sign-ins), so:
//! - the file runs in WAL mode (readers never block the writer or each
//!   other) with a `busy_timeout`, so a writer that finds the lock taken
//!   waits instead of failing;
//! - the commits that carry a security decision are durable: in WAL mode
//!   `synchronous=NORMAL` lets a power loss undo the last commits, so a
//!   revocation, a credential change, a spent or superseded link or a
//!   deletion sets `synchronous=FULL` on its connection first (a sync of
//!   the log, which also makes every earlier commit durable); a lockout
//!   count, a rotation or a new session commits with `NORMAL`
//!   (`backend::Commit`). Measured here: about 2.6 ms a
//!   durable commit against 26 µs, so making every commit durable would
//!   cap refresh rotations at a few hundred a second;
//! - every multi-statement write runs in `BEGIN IMMEDIATE`, which takes the
//!   write lock up front. A deferred transaction that reads first and
//!   writes later can fail with `SQLITE_BUSY` *without* waiting (its read
//!   snapshot went stale under another writer, and no timeout can fix
//!   that); an immediate one only ever waits at `BEGIN`;
//! - single-statement writes run in autocommit, where SQLite takes the
//!   write lock before reading, so they wait too;
//! - within one process, writers queue in arrival order on a one-permit
//!   semaphore before asking SQLite for the lock. This is for latency, not
//!   correctness (SQLite's lock is what makes writes exclusive, also
//!   against other processes): SQLite's busy handler polls with sleeps of
//!   up to 100 ms, so without the queue an unlucky writer keeps losing to
//!   newcomers. Measured here with 64 tasks × 50 admit+clear pairs: the
//!   same throughput, worst case ≈ 80 ms instead of ≈ 500 ms.
//!
//! Inside `BEGIN IMMEDIATE` this connection is the only writer, so a
//! count-then-insert there (the lockout counter) cannot interleave with
//! another; single-use tokens are still spent by `DELETE … RETURNING`,
//! whose returned row decides who won.

mod url;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use regstack_ports::{StoreError, Stores};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{impl_conn, select_user_by_id, Backend, Commit};
use crate::error::{map_migrate, map_sqlx};
use crate::store::SqlStores;

// Rows and statements are shared with the other SQL backend
// (`crate::rows`, `crate::store`); these say how this driver reads a cell
// and runs a statement.
crate::rows::impl_cells!(sqlx::sqlite::SqliteRow, crate::error::map_sqlx);
impl_conn!(SqliteConnection, Sqlite, crate::error::map_sqlx);

pub use sqlx::SqlitePool;

/// The database file a `sqlite:` / `sqlite+driver:` URL names, read exactly
/// as [`connect`] reads it: `None` for an in-memory database. Hosts and the
/// server use it to place files beside the database (the development
/// secret) without a second, drifting parser.
pub fn database_file(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    match url::parse(url).map_err(StoreError::backend)? {
        url::Target::Memory => Ok(None),
        url::Target::File(path) => Ok(Some(path)),
    }
}

/// Connections in the pool of a file database. SQLite serialises writers
/// anyway; a few connections let readers run beside the writer in WAL mode
/// and keep the queue for the write lock short.
pub const MAX_CONNECTIONS: u32 = 8;
/// How long a request waits for a pooled connection before the store
/// reports [`StoreError::Unavailable`] (HTTP 503).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a statement waits for another connection's write lock before
/// giving up. Write transactions here last milliseconds; this only bounds
/// a pathological stall.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The embedded schema migrations (`migrations/sqlite/`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Opens a pool on a SQLite database.
///
/// Accepts `sqlite:path`, `sqlite://path`, `sqlite:///abs/path` (sqlx's
/// spellings; `sqlite:///./rel` and `sqlite:///../rel` stay relative),
/// regstack's SQLAlchemy spelling `sqlite+aiosqlite:///./regstack.db`
/// (`////` for an absolute path) and `sqlite::memory:`. Creates the file if
/// it is missing (not its directory). Every connection runs with WAL,
/// durable commits for the writes that carry a security decision (see the
/// module doc), `busy_timeout` = [`BUSY_TIMEOUT`] and foreign keys on. An in-memory database lives in a single connection that the pool
/// never closes, so it is not lost between requests.
pub async fn connect(url: &str) -> Result<SqlitePool, StoreError> {
    let target = url::parse(url).map_err(StoreError::backend)?;
    let (options, pool) = match target {
        url::Target::Memory => {
            let options = "sqlite::memory:"
                .parse::<SqliteConnectOptions>()
                .map_err(map_sqlx)?;
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            (options, pool)
        }
        url::Target::File(path) => {
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            // No ping before handing out a connection (sqlx's default
            // for network databases): a SQLite connection is a file handle
            // in this process and cannot go stale, and the ping is a round
            // trip to the connection's worker thread on every request.
            (
                options,
                SqlitePoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .test_before_acquire(false),
            )
        }
    };
    let options = options
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    pool.acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(map_sqlx)
}

/// The migrations in [`MIGRATOR`] that the database lacks, without
/// applying them (`regstack migrate --dry-run`).
pub async fn pending_migrations(
    pool: &SqlitePool,
) -> Result<Vec<crate::PendingMigration>, StoreError> {
    let (has_table,): (bool,) = sqlx::query_as(<SqliteBackend as Backend>::MIGRATIONS_TABLE_EXISTS)
        .fetch_one(pool)
        .await
        .map_err(map_sqlx)?;
    let applied: std::collections::HashMap<i64, Vec<u8>> = if has_table {
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .map_err(map_sqlx)?
            .into_iter()
            .collect()
    } else {
        Default::default()
    };
    Ok(crate::migrations::pending(&MIGRATOR, &applied))
}

/// Applies every migration in [`MIGRATOR`] that the database lacks.
/// Idempotent; safe to run at every start.
pub async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await.map_err(map_migrate)
}

/// How long [`close`] waits for connections still in use to come back.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes a pool opened by [`connect`] so that the database is one file
/// again: no `…-wal` or `…-shm` beside it. Without this a stopped server
/// leaves the write-ahead log behind (harmless to SQLite, which replays it,
/// but a copy of the `.db` file alone would lack the last writes).
///
/// SQLite copies the log into the database and deletes it when the *last*
/// connection to the file closes — and only then: a connection that closes
/// while another is open leaves the log. sqlx's `close` can return while a
/// connection on its way back to the pool (the last request's) is still
/// closing, so a process exiting right then kept its log now and then.
/// Hence: close the pool, wait (up to
/// [`CLOSE_TIMEOUT`]) until it holds no connection at all, then open one
/// connection of our own — now the only one — checkpoint with
/// `wal_checkpoint(TRUNCATE)` and close it. If another process has the file
/// open the log stays (truncated when possible), which is SQLite's normal,
/// safe state; this is logged, never an error.
pub async fn close(pool: &SqlitePool) {
    pool.close().await;
    let deadline = tokio::time::Instant::now() + CLOSE_TIMEOUT;
    while pool.size() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut conn = match sqlx::ConnectOptions::connect(&*pool.connect_options()).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "SQLite: cannot reopen the database to checkpoint it");
            return;
        }
    };
    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_optional(&mut conn)
        .await
    {
        tracing::warn!(error = %e, "SQLite: checkpoint at shutdown failed");
    }
    if let Err(e) = sqlx::Connection::close(conn).await {
        tracing::warn!(error = %e, "SQLite: closing the database at shutdown failed");
    }
}

/// Every store over one pool, ready for the facade.
pub fn stores(pool: SqlitePool) -> Stores {
    SqliteStores::new(pool).into_stores()
}

/// Every store trait over a SQLite pool: the shared SQL stores
/// ([`SqlStores`]) on this engine. Cheap to clone (the pool and the write
/// queue are reference-counted).
pub type SqliteStores = SqlStores<SqliteBackend>;

impl SqliteStores {
    /// Wraps a pool opened by [`connect`] (or configured the same way:
    /// foreign keys on, a busy timeout). Give every store of one database
    /// the same `SqliteStores` (as [`stores`] does) so they share its
    /// write queue.
    pub fn new(pool: SqlitePool) -> Self {
        SqlStores {
            backend: SqliteBackend {
                pool,
                gate: Arc::new(Semaphore::new(1)),
            },
        }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.backend.pool
    }
}

/// The SQLite engine: its pool and this process's write queue.
#[derive(Clone, Debug)]
pub struct SqliteBackend {
    pool: SqlitePool,
    /// Queues this process's writers in arrival order before they ask
    /// SQLite for the write lock. SQLite would serialise them anyway, but
    /// by polling: a waiter sleeps up to 100 ms between tries and can lose
    /// to newcomers again and again, which shows as a long latency tail.
    /// Other processes on the same file still wait through `busy_timeout`.
    gate: Arc<Semaphore>,
}

impl SqliteBackend {
    /// A pooled connection whose next commit is as durable as `commit`
    /// (`synchronous` is per connection and cannot change inside a
    /// transaction, so it is set on every write, before it starts).
    async fn durable_as(&self, commit: Commit) -> Result<PoolConnection<Sqlite>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_sqlx)?;
        let pragma = match commit {
            Commit::Durable => "PRAGMA synchronous = FULL",
            Commit::Relaxed => "PRAGMA synchronous = NORMAL",
        };
        sqlx::query(pragma)
            .execute(&mut *conn)
            .await
            .map_err(map_sqlx)?;
        Ok(conn)
    }

    /// Waits for this process's turn to write. Taken before a pooled
    /// connection, so queued writers hold no connection readers need.
    async fn turn(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        self.gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::unavailable(sqlx::Error::PoolClosed))
    }
}

impl Backend for SqliteBackend {
    type Conn = SqliteConnection;
    type Tx = WriteTx;
    type Pooled = Pooled;

    // Inside `BEGIN IMMEDIATE` this connection is the only writer: reading
    // the row is all the locking there is to do.
    const USER_FOR_WRITE: &'static str = select_user_by_id!();
    const USER_FOR_KEY_CHANGE: &'static str = select_user_by_id!();
    // The same: a count-then-insert cannot interleave with another writer.
    const LOCK_KEY: Option<&'static str> = None;
    const MIGRATIONS_TABLE_EXISTS: &'static str = "SELECT EXISTS (SELECT 1 FROM sqlite_master \
         WHERE type = 'table' AND name = '_sqlx_migrations')";

    fn migrator() -> &'static Migrator {
        &MIGRATOR
    }

    /// A transaction holding SQLite's write lock from the first statement
    /// (see the module doc), taken in this process's write queue.
    async fn begin(&self, commit: Commit) -> Result<WriteTx, StoreError> {
        let turn = self.turn().await?;
        let conn = self.durable_as(commit).await?;
        let tx = Transaction::begin(conn, Some("BEGIN IMMEDIATE".into()))
            .await
            .map_err(map_sqlx)?;
        Ok(WriteTx { tx, _turn: turn })
    }

    async fn commit(tx: WriteTx) -> Result<(), StoreError> {
        tx.tx.commit().await.map_err(map_sqlx)
    }

    async fn rollback(tx: WriteTx) -> Result<(), StoreError> {
        tx.tx.rollback().await.map_err(map_sqlx)
    }

    /// Taken in turn with the write transactions.
    async fn write_conn(&self, commit: Commit) -> Result<Pooled, StoreError> {
        let turn = self.turn().await?;
        let conn = self.durable_as(commit).await?;
        Ok(Pooled {
            conn,
            _turn: Some(turn),
        })
    }

    /// Readers never wait for the write queue (WAL mode).
    async fn read_conn(&self) -> Result<Pooled, StoreError> {
        let conn = self.pool.acquire().await.map_err(map_sqlx)?;
        Ok(Pooled { conn, _turn: None })
    }
}

/// A `BEGIN IMMEDIATE` transaction plus this process's write turn; both
/// end together. Derefs to the connection.
pub struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _turn: OwnedSemaphorePermit,
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

/// A pooled connection, plus this process's write turn when it is for a
/// write.
pub struct Pooled {
    conn: PoolConnection<Sqlite>,
    _turn: Option<OwnedSemaphorePermit>,
}

impl Deref for Pooled {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_url_for_another_backend_is_refused() {
        assert!(super::connect("postgres://localhost/x").await.is_err());
    }
}
