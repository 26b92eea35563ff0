//! The lockout counter: admit, the sliding window, clear.

use regstack_ports::{Admission, Stores, Timestamp};

use crate::fixtures::{at, email, micro, t0};

use super::support::*;
use super::RACERS;

/// 20 simultaneous sign-ins against a threshold of 5: exactly 5 admitted
/// (counting 1 to 5), 15 locked until the window has passed, no error.
pub async fn admit_never_admits_more_than_the_threshold_under_20_parallel_attempts(stores: Stores) {
    let who = email("brute@example.com");
    let window = minutes(15);
    let now = t0();
    let store = stores.login_attempts.clone();
    let results = race(|_| {
        let store = store.clone();
        let who = who.clone();
        async move { store.admit(&who, now, window, 5).await }
    })
    .await;
    let results = all_ok("admit", results);

    let mut failures: Vec<u32> = results
        .iter()
        .filter_map(|a| match a {
            Admission::Admitted { failures } => Some(*failures),
            Admission::Locked { .. } => None,
        })
        .collect();
    failures.sort_unstable();
    assert_eq!(
        failures,
        vec![1, 2, 3, 4, 5],
        "exactly the threshold is admitted, each counting itself: {results:?}"
    );
    let locked_at: Vec<Timestamp> = results
        .iter()
        .filter_map(|a| match a {
            Admission::Locked { retry_at } => Some(*retry_at),
            Admission::Admitted { .. } => None,
        })
        .collect();
    assert_eq!(
        locked_at,
        vec![now + window; RACERS - 5],
        "the rest are locked"
    );

    assert_eq!(
        admit(&stores, &email("innocent@example.com"), now, window, 5).await,
        admitted(1),
        "other addresses are not affected"
    );
}

/// The window slides: attempts stop counting once they are `window` old,
/// and a lock lifts by itself.
pub async fn admit_window_slides(stores: Stores) {
    let who = email("slider@example.com");
    let window = minutes(10);
    assert_eq!(admit(&stores, &who, t0(), window, 3).await, admitted(1));
    assert_eq!(
        admit(&stores, &who, at(minutes(1)), window, 3).await,
        admitted(2)
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(2)), window, 3).await,
        admitted(3)
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(3)), window, 3).await,
        locked(at(minutes(10)))
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(10)), window, 3).await,
        admitted(3),
        "the attempt at t0 left the window at t0 + window; the other two still count"
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(10)) + micro(), window, 3).await,
        locked(at(minutes(11))),
        "locked again until the attempt at t0 + 1 min leaves"
    );
    assert_eq!(
        admit(&stores, &who, at(hours(1)), window, 3).await,
        admitted(1),
        "long after, the slate is clean"
    );
}

/// `retry_at` is the instant the count would drop below the threshold:
/// still locked a microsecond before it, admitted at it. If the threshold
/// was lowered, more than one attempt has to leave first.
pub async fn locked_retry_at_is_when_the_oldest_attempt_leaves_the_window(stores: Stores) {
    let who = email("waiter@example.com");
    let window = minutes(10);
    for (i, minute) in [0, 1, 2].into_iter().enumerate() {
        assert_eq!(
            admit(&stores, &who, at(minutes(minute)), window, 3).await,
            admitted(i as u32 + 1)
        );
    }
    assert_eq!(
        admit(&stores, &who, at(minutes(5)), window, 3).await,
        locked(at(minutes(10)))
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(10)) - micro(), window, 3).await,
        locked(at(minutes(10))),
        "still locked a microsecond before retry_at"
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(5)), window, 2).await,
        locked(at(minutes(11))),
        "with 3 attempts against a threshold of 2, two must leave: the second-oldest decides"
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(10)), window, 3).await,
        admitted(3),
        "admitted exactly at retry_at"
    );
}

/// `clear` forgets every attempt for the address (and only for it).
pub async fn clear_forgets_attempts(stores: Stores) {
    let who = email("forgiven@example.com");
    let bystander = email("bystander@example.com");
    let window = minutes(15);
    for n in 1..=3 {
        assert_eq!(admit(&stores, &who, t0(), window, 3).await, admitted(n));
    }
    assert_eq!(
        admit(&stores, &bystander, t0(), window, 3).await,
        admitted(1)
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(1)), window, 3).await,
        locked(t0() + window)
    );

    stores.login_attempts.clear(&who).await.expect("clear");
    assert_eq!(
        admit(&stores, &who, at(minutes(1)), window, 3).await,
        admitted(1),
        "a cleared address starts over"
    );
    assert_eq!(
        admit(&stores, &bystander, at(minutes(1)), window, 3).await,
        admitted(2),
        "another address keeps its attempts"
    );
    stores
        .login_attempts
        .clear(&email("never-tried@example.com"))
        .await
        .expect("clearing an unknown address is fine");
}
