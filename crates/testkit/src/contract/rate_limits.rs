//! Rate-limit counters.

use regstack_ports::Stores;

use crate::fixtures::{at, micro, t0};

use super::support::*;

/// 20 simultaneous hits against a limit of 5: exactly 5 recorded.
pub async fn rate_limit_hit_never_exceeds_the_limit_under_20_parallel_hits(stores: Stores) {
    let key = "mail:flooded@example.com";
    let window = hours(1);
    let now = t0();
    let store = stores.rate_limits.clone();
    let results = race(|_| {
        let store = store.clone();
        async move { store.hit(key, now, window, 5).await }
    })
    .await;
    let results = all_ok("hit", results);
    assert_eq!(
        results.iter().filter(|&&ok| ok).count(),
        5,
        "exactly the limit is recorded: {results:?}"
    );
    assert!(
        !hit(&stores, key, now, window, 5).await,
        "and no more afterwards"
    );
}

/// Hits stop counting once they are `window` old, and every key has its
/// own counter.
pub async fn rate_limit_window_slides_and_keys_are_independent(stores: Stores) {
    let key = "mail:a@example.com";
    let window = hours(1);
    assert!(hit(&stores, key, t0(), window, 2).await);
    assert!(hit(&stores, key, at(minutes(1)), window, 2).await);
    assert!(!hit(&stores, key, at(minutes(2)), window, 2).await);
    assert!(
        hit(&stores, "mail:b@example.com", at(minutes(2)), window, 2).await,
        "another key has its own counter"
    );
    assert!(
        hit(&stores, key, at(hours(1)), window, 2).await,
        "the hit at t0 left the window at t0 + window"
    );
    assert!(!hit(&stores, key, at(hours(1)) + micro(), window, 2).await);
    assert!(hit(&stores, key, at(hours(3)), window, 2).await);
}
