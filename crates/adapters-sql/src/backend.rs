//! What the two SQL engines do differently, and nothing else.
//!
//! Every store in [`crate::store`] is written once, over a [`Backend`]: the
//! statement texts are shared (numbered `$N` parameters, which sqlx binds by
//! number on SQLite as on PostgreSQL, and SQL both engines accept), and the
//! code that runs them is generic. A backend supplies only what really
//! differs between the engines:
//! - **transaction mechanics** — SQLite takes its single write lock up front
//!   (`BEGIN IMMEDIATE`, behind this process's write queue), PostgreSQL
//!   starts a READ COMMITTED transaction ([`Backend::begin`]), and SQLite
//!   queues even autocommit writes ([`Backend::write_conn`]);
//! - **locking** — PostgreSQL locks the user row in one order and takes
//!   advisory locks before a count-then-insert; under SQLite's write lock the
//!   same statements need no lock clause ([`Backend::USER_FOR_WRITE`],
//!   [`Backend::LOCK_KEY`]);
//! - the few statements whose dialect truly differs (a data-modifying `WITH`
//!   in [`Backend::rotate_live`], the migration table's catalogue);
//! - error mapping, through the [`impl_conn!`] that binds a [`Conn`].
//!
//! Why not sqlx's generic `Database` bounds or `sqlx::Any`: the bounds
//! (`for<'c> &'c mut DB::Connection: Executor<'c>`, an `Encode + Type` bound
//! per bound type) would repeat on every function, and `Any` converts every
//! row at run time on the per-request path. [`Conn`] is a handful of methods
//! over a small [`Arg`] enum instead: the shared code reads like plain sqlx,
//! and each engine keeps its native driver.

use std::future::Future;
use std::ops::DerefMut;

use regstack_ports::{Session, StoreError, User};
use sqlx::migrate::Migrator;

use crate::rows::{self, session_cols, Cells};

/// A bind parameter. The stores only ever bind these types.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    /// A `TEXT` value.
    Text(&'a str),
    /// A nullable `TEXT` value.
    OptText(Option<&'a str>),
    /// An integer: timestamps (microseconds), counts, limits.
    Int(i64),
    /// A nullable integer.
    OptInt(Option<i64>),
    /// A boolean (an INTEGER 0/1 in SQLite).
    Bool(bool),
    /// A nullable boolean (an optional filter).
    OptBool(Option<bool>),
}

/// One connection's way of running a static statement with its arguments.
/// Implemented for `SqliteConnection` and `PgConnection` by [`impl_conn!`],
/// each mapping driver errors its own way.
pub trait Conn: Send {
    /// The engine's row type, decoded through [`Cells`].
    type Row: Cells + Send;

    /// At most one row.
    fn fetch_optional<'a>(
        &'a mut self,
        sql: &'static str,
        args: &'a [Arg<'a>],
    ) -> impl Future<Output = Result<Option<Self::Row>, StoreError>> + Send + 'a;

    /// Every row.
    fn fetch_all<'a>(
        &'a mut self,
        sql: &'static str,
        args: &'a [Arg<'a>],
    ) -> impl Future<Output = Result<Vec<Self::Row>, StoreError>> + Send + 'a;

    /// Runs a statement; the number of rows it changed.
    fn execute<'a>(
        &'a mut self,
        sql: &'static str,
        args: &'a [Arg<'a>],
    ) -> impl Future<Output = Result<u64, StoreError>> + Send + 'a;

    /// [`fetch_optional`](Conn::fetch_optional) inside a savepoint, so a
    /// refusal (a unique violation) undoes only this statement and the
    /// enclosing transaction goes on. PostgreSQL aborts the whole transaction
    /// on any error otherwise.
    fn fetch_optional_in_savepoint<'a>(
        &'a mut self,
        sql: &'static str,
        args: &'a [Arg<'a>],
    ) -> impl Future<Output = Result<Option<Self::Row>, StoreError>> + Send + 'a;
}

/// `impl Conn for $conn`, over the engine `$db`, every driver error through
/// `$map_err`.
macro_rules! impl_conn {
    ($conn:ty, $db:ty, $map_err:path) => {
        /// Binds [`Arg`]s in order (`$1`, `$2`, …).
        fn bind<'q>(
            mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>,
            args: &[$crate::backend::Arg<'q>],
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>> {
            use $crate::backend::Arg;
            for arg in args {
                q = match *arg {
                    Arg::Text(v) => q.bind(v),
                    Arg::OptText(v) => q.bind(v),
                    Arg::Int(v) => q.bind(v),
                    Arg::OptInt(v) => q.bind(v),
                    Arg::Bool(v) => q.bind(v),
                    Arg::OptBool(v) => q.bind(v),
                };
            }
            q
        }

        impl $crate::backend::Conn for $conn {
            type Row = <$db as sqlx::Database>::Row;

            async fn fetch_optional<'a>(
                &'a mut self,
                sql: &'static str,
                args: &'a [$crate::backend::Arg<'a>],
            ) -> Result<Option<Self::Row>, regstack_ports::StoreError> {
                bind(sqlx::query(sql), args)
                    .fetch_optional(self)
                    .await
                    .map_err($map_err)
            }

            async fn fetch_all<'a>(
                &'a mut self,
                sql: &'static str,
                args: &'a [$crate::backend::Arg<'a>],
            ) -> Result<Vec<Self::Row>, regstack_ports::StoreError> {
                bind(sqlx::query(sql), args)
                    .fetch_all(self)
                    .await
                    .map_err($map_err)
            }

            async fn execute<'a>(
                &'a mut self,
                sql: &'static str,
                args: &'a [$crate::backend::Arg<'a>],
            ) -> Result<u64, regstack_ports::StoreError> {
                bind(sqlx::query(sql), args)
                    .execute(self)
                    .await
                    .map(|done| done.rows_affected())
                    .map_err($map_err)
            }

            async fn fetch_optional_in_savepoint<'a>(
                &'a mut self,
                sql: &'static str,
                args: &'a [$crate::backend::Arg<'a>],
            ) -> Result<Option<Self::Row>, regstack_ports::StoreError> {
                let mut savepoint = sqlx::Connection::begin(&mut *self)
                    .await
                    .map_err($map_err)?;
                match bind(sqlx::query(sql), args)
                    .fetch_optional(&mut *savepoint)
                    .await
                {
                    Ok(row) => {
                        savepoint.commit().await.map_err($map_err)?;
                        Ok(row)
                    }
                    Err(e) => {
                        savepoint.rollback().await.map_err($map_err)?;
                        Err($map_err(e))
                    }
                }
            }
        }
    };
}
pub(crate) use impl_conn;

/// The user row as [`Backend::USER_FOR_WRITE`] and
/// [`Backend::USER_FOR_KEY_CHANGE`] read it (SQLite appends nothing: its
/// write lock is already held).
macro_rules! select_user_by_id {
    () => {
        concat!(
            "SELECT ",
            $crate::rows::user_cols!(),
            " FROM users WHERE id = $1"
        )
    };
}
pub(crate) use select_user_by_id;

/// The stored step of a rotation, without its `RETURNING`: spends the live
/// refresh token. `$1` successor, `$2` now, `$3` new idle end, `$4` session
/// id, `$5` presented hash. The idle end moves forward, never past the
/// absolute end. Written once for [`ROTATE_SESSION`] and PostgreSQL's
/// one-statement form.
macro_rules! rotate_update {
    () => {
        "UPDATE sessions SET prev_refresh_hash = refresh_hash, refresh_hash = $1, \
         rotated_at = $2, last_used_at = $2, \
         idle_expires_at = CASE WHEN $3 < expires_at THEN $3 ELSE expires_at END \
         WHERE id = $4 AND refresh_hash = $5 AND revoked_at IS NULL \
         AND expires_at > $2 AND idle_expires_at > $2"
    };
}
pub(crate) use rotate_update;

/// [`rotate_update!`] returning the session, for engines without
/// data-modifying `WITH` (the default of [`Backend::rotate_live`]).
pub(crate) const ROTATE_SESSION: &str = concat!(rotate_update!(), " RETURNING ", session_cols!());

/// How durable a write's commit must be. PostgreSQL makes every commit
/// durable (`synchronous_commit = on`, its default); SQLite in WAL mode
/// syncs the log on a commit only when asked (`synchronous = FULL`, about
/// 2.6 ms on the machine this was measured on, against 26 µs), so it asks
/// for the writes that carry a security decision and leaves the rest to the
/// next sync. A durable commit also makes every earlier commit durable (the
/// log is synced up to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Must survive a power loss: a revocation, a credential change, a
    /// spent or superseded link, an account deletion.
    Durable,
    /// May be lost with a power loss without weakening a decision: a
    /// lockout count, a rotation (the client signs in again), a new session,
    /// a pending registration, housekeeping.
    Relaxed,
}

/// One SQL engine: how it opens transactions and connections, and the
/// statements whose dialect differs. See the module doc.
///
/// Public only so that [`SqlStores`](crate::SqlStores) can be named; it
/// lives in a private module, so nothing outside this crate implements it.
pub trait Backend: Send + Sync + 'static {
    /// The engine's connection.
    type Conn: Conn;
    /// A write transaction; dropping it without [`Backend::commit`] rolls
    /// back.
    type Tx: DerefMut<Target = Self::Conn> + Send;
    /// A pooled connection (for an autocommit write: taken in the write
    /// queue where the engine has one).
    type Pooled: DerefMut<Target = Self::Conn> + Send;

    /// The user row by id (`$1`), locked against other writers until the
    /// transaction ends: enough to change columns no unique index refers to.
    const USER_FOR_WRITE: &'static str;
    /// The user row by id (`$1`), also locked against foreign-key checks:
    /// needed before changing `email`, a key column (PostgreSQL `FOR
    /// UPDATE`; see `store/users.rs` for the deadlock it avoids).
    const USER_FOR_KEY_CHANGE: &'static str;
    /// A statement taking a transaction-scoped lock on `$1 || ':' || $2`
    /// (namespace, key) before a count-then-insert; `None` where the write
    /// transaction already excludes every other writer.
    const LOCK_KEY: Option<&'static str>;
    /// One row, one boolean: does the migration record table exist?
    const MIGRATIONS_TABLE_EXISTS: &'static str;

    /// This engine's embedded migrations.
    fn migrator() -> &'static Migrator;

    /// Starts a write transaction whose commit is as durable as `commit`.
    fn begin(&self, commit: Commit) -> impl Future<Output = Result<Self::Tx, StoreError>> + Send;
    /// Makes a transaction's changes durable.
    fn commit(tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Ends a transaction that changed nothing (or must change nothing).
    fn rollback(tx: Self::Tx) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A connection for one autocommit write statement, committed as
    /// durably as `commit`.
    fn write_conn(
        &self,
        commit: Commit,
    ) -> impl Future<Output = Result<Self::Pooled, StoreError>> + Send;
    /// A connection for reads.
    fn read_conn(&self) -> impl Future<Output = Result<Self::Pooled, StoreError>> + Send;

    /// The write step of a refresh rotation ([`ROTATE_SESSION`]'s
    /// arguments): the rotated session and its user, or `None` when the
    /// presented token is not the live one of a live session. The default
    /// runs two statements, the update then the user by primary key, on a
    /// write connection; an engine that can update and join in one
    /// statement overrides it.
    fn rotate_live<'a>(
        &'a self,
        args: &'a [Arg<'a>],
    ) -> impl Future<Output = Result<Option<(Session, User)>, StoreError>> + Send + 'a {
        async move {
            let mut conn = self.write_conn(Commit::Relaxed).await?;
            let Some(row) = conn.fetch_optional(ROTATE_SESSION, args).await? else {
                return Ok(None);
            };
            let session = rows::session(&row, 0)?;
            // The user outlives its sessions (deleting it deletes them), so
            // it is there unless the account was deleted a moment ago.
            let user = conn
                .fetch_optional(select_user_by_id!(), &[Arg::Text(session.user_id.as_str())])
                .await?;
            user.map(|row| Ok((session, rows::user(&row, 0)?)))
                .transpose()
        }
    }
}
