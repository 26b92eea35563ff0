//! Every store trait of `regstack_ports`, written once for both SQL engines
//! over a [`Backend`] (see [`crate::backend`] for what an engine supplies).
//!
//! One file per aggregate, each holding its statement texts next to the code
//! that runs them. Statements use numbered `$N` parameters and SQL that
//! SQLite (3.46, bundled) and PostgreSQL both accept; where the engines'
//! atomicity differs, the code takes PostgreSQL's stricter path (lock the user
//! row first, then spend), which under SQLite's single write lock is the same
//! steps with no lock clause.
//!
//! Lock order, for every transaction that touches a user: a pending
//! registration (which has no user yet) first, then the user row, then its
//! tokens and sessions — so two transactions can wait for each other but
//! not deadlock on PostgreSQL.

mod attempts;
mod audit;
mod invites;
mod mfa;
mod oauth;
mod pending;
mod rate_limits;
pub(crate) mod sessions;
mod tokens;
mod users;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use regstack_ports::{StoreError, StoreHealth, Stores};

use crate::backend::{Backend, Commit, Conn};
use crate::rows::Cells;

/// One type implementing every store trait over one engine's pool. Cheap to
/// clone (what it holds is reference-counted). Hosts name it through
/// [`SqliteStores`](crate::SqliteStores) and
/// [`PostgresStores`](crate::postgres::PostgresStores).
#[derive(Clone, Debug)]
pub struct SqlStores<B> {
    pub(crate) backend: B,
}

impl<B: Backend + Clone> SqlStores<B> {
    /// Every store, sharing this one value (and so its pool and, on SQLite,
    /// its write queue), ready for the facade.
    pub(crate) fn into_stores(self) -> Stores {
        let s = Arc::new(self);
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
}

/// Transaction helpers, so the stores read `self.begin(Commit::…)` /
/// `commit(tx)`. Every write names how durable its commit must be
/// ([`Commit`]): a revocation, a credential change or a single-use spend
/// must survive a power loss; a lockout count, a rotation or a new session
/// may be lost with it.
impl<B: Backend> SqlStores<B> {
    async fn begin(&self, commit: Commit) -> Result<B::Tx, StoreError> {
        self.backend.begin(commit).await
    }

    async fn write_conn(&self, commit: Commit) -> Result<B::Pooled, StoreError> {
        self.backend.write_conn(commit).await
    }

    async fn read_conn(&self) -> Result<B::Pooled, StoreError> {
        self.backend.read_conn().await
    }
}

/// Ends a transaction that changed nothing (or must change nothing).
async fn rollback<B: Backend>(tx: B::Tx) -> Result<(), StoreError> {
    B::rollback(tx).await
}

/// Makes a transaction's changes durable.
async fn commit<B: Backend>(tx: B::Tx) -> Result<(), StoreError> {
    B::commit(tx).await
}

#[async_trait]
impl<B: Backend> StoreHealth for SqlStores<B> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read_conn()
            .await?
            .execute("SELECT 1", &[])
            .await
            .map(drop)
    }

    async fn schema_is_current(&self) -> Result<bool, StoreError> {
        let mut conn = self.read_conn().await?;
        let has_table = match conn.fetch_optional(B::MIGRATIONS_TABLE_EXISTS, &[]).await? {
            Some(row) => row.flag(0)?,
            None => false,
        };
        if !has_table {
            return Ok(false);
        }
        let applied: HashMap<i64, Vec<u8>> = conn
            .fetch_all(
                "SELECT version, checksum FROM _sqlx_migrations WHERE success",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.int(0)?, r.bytes(1)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(crate::migrations::all_applied(B::migrator(), &applied))
    }
}
