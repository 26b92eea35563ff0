//! Shared by the MongoDB test binaries: where the test server is, and a
//! fresh database per test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mongodb::bson::doc;
use regstack_adapters_mongo::{self as mongo, Database};

/// The test server's URL (`scripts/services/mongo.sh up` prints it), or
/// `None` when it is not configured.
pub fn url() -> Option<String> {
    std::env::var("TEST_MONGO_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// A database name no other test uses.
pub fn fresh_name() -> String {
    format!("regstack_test_{}", uuid::Uuid::new_v4().simple())
}

/// An empty database on the test server, not yet migrated.
pub async fn empty_db() -> Option<Database> {
    let url = url()?;
    Some(
        mongo::connect(&url, &fresh_name())
            .await
            .expect("connect to TEST_MONGO_URL"),
    )
}

/// An empty, migrated database whose TTL monitor is held off (see
/// [`pause_ttl`]).
pub async fn fresh_db() -> Option<Database> {
    let db = empty_db().await?;
    mongo::migrate(&db).await.expect("migrate");
    pause_ttl(&db).await;
    Some(db)
}

/// Seconds the TTL indexes of a test database wait before reaping: about
/// 63 years, so never within a test.
const PAUSED_TTL_SECS: i64 = 2_000_000_000;

/// Holds off the TTL monitor in a test database. The store tests use fixed
/// instants around 2026-01-01 (`regstack_testkit::fixtures::t0`), which the
/// server's wall clock may well have passed; the monitor (about once a
/// minute, on MongoDB and SecantusDB alike) would then delete rows in the
/// middle of a case. Expiry in the stores never depends on the monitor —
/// every read checks the exact `expires_at` against the caller's `now` —
/// so pausing it changes nothing the tests assert.
pub async fn pause_ttl(db: &Database) {
    for (collection, index) in mongo::index_names() {
        if index == "expire_at_ttl" {
            db.run_command(doc! {
                "collMod": collection,
                "index": { "name": index, "expireAfterSeconds": PAUSED_TTL_SECS },
            })
            .await
            .unwrap_or_else(|e| panic!("collMod {collection}.{index}: {e}"));
        }
    }
}
