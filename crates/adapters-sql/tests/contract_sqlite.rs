//! The store contract suite (`regstack-testkit`) against SQLite: one named
//! test per case, each on a fresh, migrated file database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use regstack_adapters_sql::sqlite;

/// An empty, migrated database in a file (not `:memory:`), so the
/// concurrency cases exercise the real locking: WAL, `busy_timeout` and
/// `BEGIN IMMEDIATE` across pooled connections. The directory is leaked so
/// it outlives the pool; the OS cleans up after the test process.
async fn fresh_sqlite_stores() -> regstack_ports::Stores {
    let dir: &'static tempfile::TempDir =
        Box::leak(Box::new(tempfile::tempdir().expect("temporary directory")));
    let url = format!("sqlite://{}", dir.path().join("contract.db").display());
    let pool = sqlite::connect(&url).await.expect("connect");
    sqlite::migrate(&pool).await.expect("migrate");
    sqlite::stores(pool)
}

regstack_testkit::store_contract!(fresh_sqlite_stores);
