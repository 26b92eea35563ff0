//! The rate-limit cases of the store contract suite (`regstack-testkit`)
//! against Redis at `TEST_REDIS_URL` (`scripts/services/redis.sh up`):
//! Redis holds only rate-limit counters, so these are the cases it must
//! pass — the same functions SQLite, PostgreSQL and MongoDB run, the other
//! stores being in-memory fakes. Each case gets its own key prefix. Without
//! the variable every case says SKIPPED — and fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::TimeDelta;
use regstack_adapters_redis::RedisRateLimits;
use regstack_ports::{RateLimitStore, Stores};
use regstack_testkit::fixtures::t0;

async fn fresh_redis_limits() -> Option<RedisRateLimits> {
    let url = std::env::var("TEST_REDIS_URL").ok()?;
    let prefix = format!("contract-{}", uuid::Uuid::new_v4().simple());
    Some(RedisRateLimits::connect(&url, &prefix).await.unwrap())
}

/// In-memory stores with the rate-limit counters in Redis.
async fn fresh_redis_stores() -> Option<Stores> {
    let mut stores = regstack_testkit::memory_stores();
    stores.rate_limits = Arc::new(fresh_redis_limits().await?);
    Some(stores)
}

regstack_testkit::__store_contract_tests!(optional fresh_redis_stores;
    rate_limit_hit_never_exceeds_the_limit_under_20_parallel_hits,
    rate_limit_window_slides_and_keys_are_independent,
);

/// Purging removes exactly the hits older than the cut, from every key
/// under the prefix and no other, and what is left still counts.
#[test]
fn purge_expired_removes_only_hits_older_than_the_cut() {
    regstack_testkit::contract::run_case(async {
        let (Some(store), Some(other)) = (fresh_redis_limits().await, fresh_redis_limits().await)
        else {
            return regstack_testkit::contract::skipped(
                "purge_expired_removes_only_hits_older_than_the_cut",
                "fresh_redis_limits",
            );
        };
        let day = TimeDelta::days(1);
        let m = |n: i64| t0() + TimeDelta::minutes(n);
        for (key, at) in [("a", m(0)), ("a", m(1)), ("b", m(0)), ("b", m(5))] {
            assert!(store.hit(key, at, day, 10).await.unwrap());
        }
        assert!(other.hit("a", m(0), day, 10).await.unwrap());
        assert_eq!(store.purge_expired(m(1)).await.unwrap(), 2);
        assert_eq!(store.purge_expired(m(1)).await.unwrap(), 0);
        assert_eq!(
            other.purge_expired(m(10)).await.unwrap(),
            1,
            "its own prefix"
        );
        // Key `a` keeps one hit: a limit of 2 admits one more, then no more.
        assert!(store.hit("a", m(2), day, 2).await.unwrap());
        assert!(!store.hit("a", m(2), day, 2).await.unwrap());
    });
}
