//! The PostgreSQL backend: [`connect`] → [`migrate`] → [`stores`]. Same
//! behaviour as [`sqlite`](crate::sqlite), table for table and case for
//! case of the store contract suite; only the means of atomicity differ.
//!
//! PostgreSQL runs many writers at once in READ COMMITTED, where every
//! statement sees what was committed when it started. So:
//! - **single-use spends** are one conditional statement —
//!   `DELETE … RETURNING` or `UPDATE … WHERE <still unspent>`. A second
//!   writer on the same row waits for the first to commit, re-checks the
//!   condition on the new row version, and finds nothing: the returned row
//!   (or the affected-row count) decides who won;
//! - **count-then-insert** operations (`LoginAttemptStore::admit`,
//!   `RateLimitStore::hit`) first take a transaction-scoped advisory lock on
//!   a hash of their key (`pg_advisory_xact_lock(hashtextextended(…))`), as
//!   a statement of its own: the count that follows takes its snapshot
//!   after the lock is granted, so it sees every attempt committed by the
//!   previous holder, and two counts for one key can never interleave;
//! - **refresh-token families** live on their session row: a rotation is
//!   one conditional `UPDATE` of it (`… AND refresh_hash = <presented>`),
//!   which decides like any single-use spend;
//! - **uniqueness** is the database's: a unique index refuses the second
//!   writer (→ [`StoreError::Conflict`]), and `confirm_email_change`
//!   catches that refusal inside a savepoint to answer `EmailTaken` with the
//!   token still spent.
//!
//! Transactions that touch a user take row locks in one order — the user
//! row first (`FOR UPDATE` straight away when they will change its
//! address), then its tokens and sessions; a pending registration, which has no user yet, before
//! the user row — so two of them can wait for each other but not
//! deadlock. A deadlock PostgreSQL breaks anyway (SQLSTATE `40P01`) is
//! reported as [`StoreError::Unavailable`]: the request may be retried.
//!
//! Errors: `error::map_pg` is the one place a driver error becomes a
//! [`StoreError`]; a stopped or unreachable server is
//! [`StoreError::Unavailable`] (HTTP 503) within [`ACQUIRE_TIMEOUT`], and
//! the same pool recovers by itself once the server is back.

mod attempts;
mod error;
mod pending;
mod rate_limits;
mod sessions;
mod tokens;
mod url;
mod users;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use regstack_ports::{StoreError, StoreHealth, Stores};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Postgres, Row, Transaction};

use self::error::{map_migrate, map_pg};

// Row decoding is shared with the other SQL backend (`crate::rows`).
crate::rows::impl_cells!(sqlx::postgres::PgRow, error::map_pg);

pub use sqlx::PgPool;

/// Connections per pool by default. PostgreSQL's own default limit is 100
/// for the whole server; ten per instance leaves room for several
/// instances, migrations and an operator's `psql`.
pub const MAX_CONNECTIONS: u32 = 10;
/// How long a request waits for a pooled connection (which includes
/// opening one) before the store reports [`StoreError::Unavailable`]
/// (HTTP 503). A stopped server is retried with back-off for this long.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The embedded schema migrations (`migrations/postgres/`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How a pool is sized and how long a request waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// See [`ACQUIRE_TIMEOUT`].
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            acquire_timeout: ACQUIRE_TIMEOUT,
        }
    }
}

impl PoolSettings {
    fn pool_options(self) -> PgPoolOptions {
        // `test_before_acquire` (sqlx's default, kept) pings an idle
        // connection before handing it out, so a connection the server
        // dropped while it was down is replaced instead of failing a request.
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(self.acquire_timeout)
    }
}

/// Opens a pool with [`PoolSettings::default`] and one connection to prove
/// the server answers.
///
/// Accepts `postgres://` and `postgresql://` URLs (libpq's query
/// parameters as sqlx understands them: `sslmode`, `options`, …) and
/// regstack's SQLAlchemy spelling `postgresql+asyncpg://…`, where asyncpg's
/// `ssl=<mode>` parameter is read as `sslmode`. The `PG*` environment
/// variables fill in what the URL leaves out, as with libpq.
pub async fn connect(url: &str) -> Result<PgPool, StoreError> {
    connect_with(url, PoolSettings::default()).await
}

/// [`connect`] with explicit pool settings.
pub async fn connect_with(url: &str, settings: PoolSettings) -> Result<PgPool, StoreError> {
    let options = url::parse(url)?;
    settings
        .pool_options()
        .connect_with(options)
        .await
        .map_err(map_pg)
}

/// A pool that opens its first connection on first use: a host can start
/// while the database is down and answer 503 until it is back. Fails only
/// for a URL it cannot read, or when called outside a Tokio runtime (the
/// pool's housekeeping task needs one).
pub fn connect_lazy(url: &str) -> Result<PgPool, StoreError> {
    connect_lazy_with(url, PoolSettings::default())
}

/// [`connect_lazy`] with explicit pool settings.
pub fn connect_lazy_with(url: &str, settings: PoolSettings) -> Result<PgPool, StoreError> {
    let options = url::parse(url)?;
    // sqlx would panic spawning its maintenance task without a runtime.
    tokio::runtime::Handle::try_current().map_err(StoreError::backend)?;
    Ok(settings.pool_options().connect_lazy_with(options))
}

/// Applies every migration in [`MIGRATOR`] that the database lacks, each in
/// its own transaction, under sqlx's advisory lock (so two instances
/// starting together do not both migrate). Idempotent; safe to run at
/// every start.
pub async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    MIGRATOR.run(pool).await.map_err(map_migrate)
}

/// Every store over one pool, ready for the facade.
pub fn stores(pool: PgPool) -> Stores {
    let s = Arc::new(PostgresStores::new(pool));
    Stores {
        users: s.clone(),
        pending: s.clone(),
        tokens: s.clone(),
        login_attempts: s.clone(),
        sessions: s.clone(),
        rate_limits: s.clone(),
        health: s,
    }
}

/// One type implementing every store trait over a PostgreSQL pool. Cheap
/// to clone (the pool is reference-counted).
#[derive(Clone, Debug)]
pub struct PostgresStores {
    pool: PgPool,
}

impl PostgresStores {
    /// Wraps a pool opened by [`connect`] (or configured as the caller
    /// likes; nothing here depends on connection settings).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Starts a READ COMMITTED transaction (the server's default).
    /// Dropping it without [`commit`] rolls back.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(map_pg)
    }
}

/// Ends a transaction that changed nothing (or must change nothing).
async fn rollback(tx: Transaction<'static, Postgres>) -> Result<(), StoreError> {
    tx.rollback().await.map_err(map_pg)
}

/// Makes a transaction's changes durable.
async fn commit(tx: Transaction<'static, Postgres>) -> Result<(), StoreError> {
    tx.commit().await.map_err(map_pg)
}

#[async_trait]
impl StoreHealth for PostgresStores {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map_pg)
    }

    async fn schema_is_current(&self) -> Result<bool, StoreError> {
        // Resolved through `search_path`, as the migrator resolves it.
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(map_pg)?;
        if !has_table {
            return Ok(false);
        }
        let applied: HashMap<i64, Vec<u8>> =
            sqlx::query("SELECT version, checksum FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(map_pg)?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(map_pg)?;
        Ok(crate::migrations::all_applied(&MIGRATOR, &applied))
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_url_for_another_backend_is_refused() {
        assert!(super::connect("sqlite:data.db").await.is_err());
        assert!(super::connect_lazy("mysql://localhost/x").is_err());
    }

    #[tokio::test]
    async fn a_lazy_pool_opens_nothing_until_used() {
        // Port 1 on loopback: nothing listens there; a lazy pool must not
        // notice until a store uses it.
        assert!(super::connect_lazy("postgres://u@127.0.0.1:1/db").is_ok());
    }

    #[test]
    fn both_migrations_are_embedded_in_order() {
        let versions: Vec<i64> = super::MIGRATOR.iter().map(|m| m.version).collect();
        assert_eq!(versions, vec![1, 2, 3]);
    }
}
