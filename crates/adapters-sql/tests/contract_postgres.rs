//! The store contract suite (`regstack-testkit`) against PostgreSQL: one
//! named test per case, each in a fresh, migrated schema of the database
//! `TEST_PG_URL` names (`scripts/services/postgres.sh up` starts one and
//! prints the variable). Without `TEST_PG_URL` every case prints SKIPPED,
//! and under `CI=true` fails.
//!
//! A schema per case (reached through `search_path`) isolates the cases as
//! well as a database per case would, so they run in parallel, for a
//! fraction of the cost: a new database copies `template1` (≈ 7 MB), a
//! schema is a catalog row. Schemas older than an hour are dropped by the
//! next run, so repeated local runs do not pile up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use regstack_adapters_sql::postgres;
use sqlx::{Connection, Executor, PgConnection};

/// How old a test schema must be before a later run drops it.
const STALE_AFTER_SECS: u64 = 3600;

/// A new, empty schema in the database at `url`, and `url` pointed at it.
async fn fresh_schema(url: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let name = format!(
        "t_{now}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to TEST_PG_URL: {e}"));
    let stale: Vec<String> =
        sqlx::query_scalar("SELECT nspname FROM pg_namespace WHERE nspname ~ '^t_[0-9]+_'")
            .fetch_all(&mut admin)
            .await
            .unwrap();
    for old in stale {
        let born: u64 = old
            .split('_')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::MAX);
        if now.saturating_sub(born) > STALE_AFTER_SECS {
            // Another run may be dropping it too; either way it goes.
            let _ = admin
                .execute(format!("DROP SCHEMA IF EXISTS \"{old}\" CASCADE").as_str())
                .await;
        }
    }
    admin
        .execute(format!("CREATE SCHEMA \"{name}\"").as_str())
        .await
        .unwrap();
    admin.close().await.unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options[search_path]={name}")
}

/// Empty, migrated stores in a schema of their own; `None` without
/// `TEST_PG_URL`.
async fn fresh_pg_stores() -> Option<regstack_ports::Stores> {
    let url = std::env::var("TEST_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let url = fresh_schema(&url).await;
    let pool = postgres::connect(&url).await.expect("connect");
    postgres::migrate(&pool).await.expect("migrate");
    Some(postgres::stores(pool))
}

regstack_testkit::store_contract!(optional: fresh_pg_stores);
