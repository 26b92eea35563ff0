//! The lockout counter: admit, the sliding window, clear — per bucket
//! (an address's own, and each trusted device's: `LockoutKey`).

use regstack_ports::{Admission, DeviceId, LockoutKey, Stores, Timestamp};

use crate::fixtures::{self, at, email, hash_of, micro, t0};

use super::support::*;
use super::RACERS;

/// 20 simultaneous admits into `key`'s bucket against a threshold of 5:
/// exactly 5 admitted (counting 1 to 5), 15 locked until the window has
/// passed, no error.
async fn race_one_bucket(stores: &Stores, key: &LockoutKey, now: Timestamp) {
    let window = minutes(15);
    let store = stores.login_attempts.clone();
    let results = race(|_| {
        let store = store.clone();
        let key = key.clone();
        async move { store.admit(&key, now, window, 5).await }
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
}

/// 20 simultaneous sign-ins against a threshold of 5: exactly 5 admitted
/// (counting 1 to 5), 15 locked until the window has passed, no error.
pub async fn admit_never_admits_more_than_the_threshold_under_20_parallel_attempts(stores: Stores) {
    let who = email("brute@example.com");
    race_one_bucket(&stores, &LockoutKey::address(who), t0()).await;
    assert_eq!(
        admit(
            &stores,
            &email("innocent@example.com"),
            t0(),
            minutes(15),
            5
        )
        .await,
        admitted(1),
        "other addresses are not affected"
    );
}

/// The same race in one trusted device's bucket: a stolen device cookie
/// cannot outrun the threshold either. The address's own bucket and the
/// address's other devices are not touched by it.
pub async fn admit_on_a_device_bucket_never_admits_more_than_the_threshold_under_20_parallel_attempts(
    stores: Stores,
) {
    let who = email("device-brute@example.com");
    let device = DeviceId::generate();
    race_one_bucket(&stores, &device_key(&who, &device), t0()).await;
    let window = minutes(15);
    assert_eq!(
        admit(&stores, &who, t0(), window, 5).await,
        admitted(1),
        "the address's own bucket is untouched"
    );
    assert_eq!(
        admit_in(
            &stores,
            &device_key(&who, &DeviceId::generate()),
            t0(),
            window,
            5
        )
        .await,
        admitted(1),
        "another device of the address is untouched"
    );
}

/// Buckets count apart: a full address bucket does not refuse a device of
/// the address, a full device bucket refuses neither the address's bucket
/// nor its other devices, and a device id is a bucket per address (the
/// same id under another address counts elsewhere). `clear` forgets
/// exactly the bucket named.
pub async fn device_buckets_count_apart_from_the_address_bucket(stores: Stores) {
    let who = email("owner@example.com");
    let neighbour = email("owner@example.co");
    let (mine, theirs) = (DeviceId::generate(), DeviceId::generate());
    let (my_device, their_device) = (device_key(&who, &mine), device_key(&who, &theirs));
    let window = minutes(15);

    // A stranger fills the address's bucket.
    for n in 1..=3 {
        assert_eq!(admit(&stores, &who, t0(), window, 3).await, admitted(n));
    }
    assert_eq!(
        admit(&stores, &who, at(minutes(1)), window, 3).await,
        locked(t0() + window)
    );
    // The owner's device is admitted all the same, counting from 1.
    assert_eq!(
        admit_in(&stores, &my_device, at(minutes(1)), window, 3).await,
        admitted(1),
        "the address's lock does not reach the device"
    );
    // The device fills its own bucket.
    for n in 2..=3 {
        assert_eq!(
            admit_in(&stores, &my_device, at(minutes(2)), window, 3).await,
            admitted(n)
        );
    }
    assert_eq!(
        admit_in(&stores, &my_device, at(minutes(3)), window, 3).await,
        locked(at(minutes(1)) + window),
        "the device is locked by its own failures"
    );
    assert_eq!(
        admit_in(&stores, &their_device, at(minutes(3)), window, 3).await,
        admitted(1),
        "another device of the address has a bucket of its own"
    );
    assert_eq!(
        admit_in(
            &stores,
            &device_key(&neighbour, &mine),
            at(minutes(3)),
            window,
            3
        )
        .await,
        admitted(1),
        "the same device id under another address is another bucket"
    );
    assert_eq!(
        admit(&stores, &neighbour, at(minutes(3)), window, 3).await,
        admitted(1),
        "an address that is a prefix of another is another address"
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(3)), window, 3).await,
        locked(t0() + window),
        "the device's attempts did not reach the address's bucket"
    );

    // Clearing the device's bucket leaves the address's locked.
    clear(&stores, &my_device).await;
    assert_eq!(
        admit_in(&stores, &my_device, at(minutes(4)), window, 3).await,
        admitted(1),
        "a cleared device starts over"
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(4)), window, 3).await,
        locked(t0() + window),
        "clearing a device leaves the address's bucket"
    );
    // Clearing the address's bucket leaves its devices'.
    clear(&stores, &LockoutKey::address(who.clone())).await;
    assert_eq!(
        admit(&stores, &who, at(minutes(5)), window, 3).await,
        admitted(1),
        "a cleared address starts over"
    );
    assert_eq!(
        admit_in(&stores, &my_device, at(minutes(5)), window, 3).await,
        admitted(2),
        "clearing the address leaves its devices' buckets"
    );
    assert_eq!(
        admit_in(&stores, &their_device, at(minutes(5)), window, 3).await,
        admitted(2)
    );
    clear(&stores, &device_key(&who, &DeviceId::generate())).await;
}

/// Fills the address's bucket and two device buckets of `who` (2 attempts
/// each, threshold 5), and one device bucket of `other`.
async fn fill_buckets(
    stores: &Stores,
    who: &regstack_ports::Email,
    devices: &[DeviceId; 2],
    other: &LockoutKey,
) {
    let window = hours(1);
    for n in 1..=2 {
        assert_eq!(admit(stores, who, t0(), window, 5).await, admitted(n));
        for d in devices {
            assert_eq!(
                admit_in(stores, &device_key(who, d), t0(), window, 5).await,
                admitted(n)
            );
        }
        assert_eq!(admit_in(stores, other, t0(), window, 5).await, admitted(n));
    }
}

/// The steps that forget an address's attempts — a completed password
/// reset, account deletion, an administrator's unlock — forget every
/// bucket of it: its own
/// and each of its devices'. Another address's device buckets stay, even
/// when that address starts like this one and the device id is the same.
pub async fn forgetting_an_address_forgets_its_device_buckets(stores: Stores) {
    let window = hours(1);
    let now = at(minutes(10));
    for (case, raw) in [
        ("reset", "forget-me@example.com"),
        ("delete", "forget-me-too@example.com"),
        ("unlock", "unlock-me@example.com"),
    ] {
        let user = add_user(&stores, raw).await;
        let devices = [DeviceId::generate(), DeviceId::generate()];
        let neighbour = email(&format!("{raw}.au"));
        let other = device_key(&neighbour, &devices[0]);
        fill_buckets(&stores, &user.email, &devices, &other).await;

        match case {
            "reset" => {
                let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
                let done = stores
                    .users
                    .complete_password_reset(&reset.hash, &hash_of("a new password"), now)
                    .await
                    .expect("complete_password_reset");
                assert!(done.is_some(), "the reset applies");
            }
            "unlock" => stores
                .login_attempts
                .forget_address(&user.email)
                .await
                .expect("forget_address"),
            _ => {
                let gone = stores
                    .users
                    .delete_account(&user.id)
                    .await
                    .expect("delete_account");
                assert!(gone.is_some(), "the account is deleted");
            }
        }

        assert_eq!(
            admit(&stores, &user.email, now, window, 5).await,
            admitted(1),
            "{case}: the address's own bucket starts over"
        );
        for d in &devices {
            assert_eq!(
                admit_in(&stores, &device_key(&user.email, d), now, window, 5).await,
                admitted(1),
                "{case}: each device bucket of the address starts over"
            );
        }
        assert_eq!(
            admit_in(&stores, &other, now, window, 5).await,
            admitted(3),
            "{case}: another address's device bucket keeps its attempts"
        );
    }
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

/// `clear` of an address's bucket forgets every attempt in it (and only
/// there).
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

    clear(&stores, &LockoutKey::address(who.clone())).await;
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
    clear(
        &stores,
        &LockoutKey::address(email("never-tried@example.com")),
    )
    .await;
}
