//! The store contract suite (`regstack-testkit`) against MongoDB: one named
//! test per case, each on a fresh, migrated database of the server at
//! `TEST_MONGO_URL` (`scripts/services/mongo.sh up`). Without the variable
//! every case says SKIPPED — and fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

/// A fresh database (random name), migrated, TTL monitor held off.
async fn fresh_mongo_stores() -> Option<regstack_ports::Stores> {
    common::fresh_db()
        .await
        .map(regstack_adapters_mongo::stores)
}

regstack_testkit::store_contract!(optional: fresh_mongo_stores);
