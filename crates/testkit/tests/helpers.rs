//! The test helpers themselves: a wrong clock or a mailer that loses mail
//! would make every test built on them lie.

use std::sync::Arc;
use std::time::Duration;

use chrono::{SubsecRound, TimeDelta};
use regstack_ports::{Clock, Mailer, OutgoingMail, PasswordHasher, StoreError};
use regstack_testkit::fixtures::{self, email, t0};
use regstack_testkit::{
    memory_stores_with_faults, CountingHasher, FakeHasher, FixedClock, RecordingMailer,
};
use secrecy::SecretString;

#[test]
fn fixed_clock_moves_only_when_told_and_clones_share_it() {
    let clock = FixedClock::new(t0());
    let handle = clock.clone();
    assert_eq!(clock.now(), t0());
    handle.advance(TimeDelta::minutes(5));
    assert_eq!(clock.now(), t0() + TimeDelta::minutes(5));
    handle.advance(TimeDelta::microseconds(-1));
    assert_eq!(
        clock.now(),
        t0() + TimeDelta::minutes(5) - TimeDelta::microseconds(1)
    );
    handle.set(t0());
    assert_eq!(clock.now(), t0());
    assert_eq!(FixedClock::default().now(), t0());
}

#[test]
fn fixed_clock_keeps_microsecond_precision() {
    let with_nanos = t0() + TimeDelta::nanoseconds(789);
    let clock = FixedClock::new(with_nanos);
    assert_eq!(clock.now(), with_nanos.trunc_subsecs(6));
    clock.advance(TimeDelta::nanoseconds(999));
    assert_eq!(clock.now(), t0(), "sub-microsecond steps are dropped");
}

#[tokio::test]
async fn fault_injector_fails_the_named_operation_and_nothing_else() {
    let (stores, faults) = memory_stores_with_faults();
    faults.fail_next("users.insert");
    match stores
        .users
        .insert(fixtures::new_user("a@example.com"))
        .await
    {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(
        stores
            .users
            .find_by_email(&email("a@example.com"))
            .await
            .unwrap(),
        None,
        "a failed call changes nothing"
    );
    stores
        .users
        .insert(fixtures::new_user("a@example.com"))
        .await
        .expect("fail_next fails once");

    faults.fail_always("health.ping");
    for _ in 0..3 {
        assert!(stores.health.ping().await.is_err());
    }
    assert!(stores.health.schema_is_current().await.unwrap());
    faults.heal();
    stores.health.ping().await.expect("healed");

    faults.fail_always("*");
    assert!(stores.sessions.purge_expired(t0()).await.is_err());
    faults.heal();
    assert_eq!(stores.sessions.purge_expired(t0()).await.unwrap(), 0);
}

#[test]
#[should_panic(expected = "unknown store operation")]
fn fault_injector_refuses_a_misspelt_operation() {
    let (_, faults) = memory_stores_with_faults();
    faults.fail_next("user.insert");
}

fn mail(to: &str, subject: &str) -> OutgoingMail {
    OutgoingMail {
        to: email(to),
        subject: subject.to_owned(),
        text: "text".to_owned(),
        html: "<p>html</p>".to_owned(),
    }
}

#[tokio::test]
async fn recording_mailer_records_filters_and_fails_on_demand() {
    let mailer = RecordingMailer::new();
    mailer.send(&mail("a@example.com", "one")).await.unwrap();
    mailer.send(&mail("b@example.com", "two")).await.unwrap();
    assert_eq!(mailer.sent().len(), 2);
    let to_a = mailer.sent_to(" A@Example.com ");
    assert_eq!(to_a.len(), 1);
    assert_eq!(to_a[0].subject, "one");

    mailer.fail_next(2);
    assert!(mailer.send(&mail("a@example.com", "lost")).await.is_err());
    assert!(mailer.send(&mail("a@example.com", "lost")).await.is_err());
    mailer.send(&mail("a@example.com", "three")).await.unwrap();
    mailer.fail_always();
    assert!(mailer.send(&mail("a@example.com", "lost")).await.is_err());
    mailer.heal();
    mailer.send(&mail("a@example.com", "four")).await.unwrap();
    assert_eq!(mailer.failed(), 3);
    let subjects: Vec<String> = mailer
        .sent_to("a@example.com")
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(
        subjects,
        ["one", "three", "four"],
        "refused mail is not recorded"
    );

    mailer.clear();
    assert!(mailer.sent().is_empty());
}

#[tokio::test]
async fn recording_mailer_wait_for_sees_mail_sent_in_the_background() {
    let mailer = RecordingMailer::new().with_delay(Duration::from_millis(30));
    let background = mailer.clone();
    tokio::spawn(async move {
        background
            .send(&mail("late@example.com", "hi"))
            .await
            .unwrap();
    });
    assert!(mailer.sent().is_empty(), "the delay holds the mail back");
    let got = mailer
        .wait_for("late@example.com", 1, Duration::from_secs(5))
        .await;
    assert_eq!(got[0].subject, "hi");
}

#[tokio::test]
#[should_panic(expected = "waited")]
async fn recording_mailer_wait_for_panics_when_mail_never_comes() {
    RecordingMailer::new()
        .wait_for("nobody@example.com", 1, Duration::from_millis(20))
        .await;
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[tokio::test]
async fn fake_hasher_verifies_and_flags_weaker_hashes() {
    let hasher = FakeHasher::new();
    let hash = hasher.hash(&secret(fixtures::PASSWORD)).await.unwrap();
    assert_eq!(hash, fixtures::password_hash());
    assert!(
        !hash.as_str().contains(fixtures::PASSWORD),
        "never the password itself"
    );
    let ok = hasher
        .verify(&secret(fixtures::PASSWORD), &hash)
        .await
        .unwrap();
    assert!(ok.matches && !ok.needs_rehash);
    assert!(
        !hasher
            .verify(&secret("wrong"), &hash)
            .await
            .unwrap()
            .matches
    );

    let stronger = FakeHasher::new().with_cost(2);
    assert!(
        stronger
            .verify(&secret(fixtures::PASSWORD), &hash)
            .await
            .unwrap()
            .needs_rehash
    );
    assert!(hasher
        .verify(
            &secret("x"),
            &regstack_ports::PasswordHash::new("$argon2id$v=19$nope".into())
        )
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counting_hasher_counts_calls_and_the_high_water_mark() {
    let inner = Arc::new(FakeHasher::new().with_delay(Duration::from_millis(50)));
    let hasher = CountingHasher::new(inner);
    let hash = hasher.hash(&secret("pw")).await.unwrap();
    assert_eq!(hasher.max_in_flight(), 1);

    let mut tasks = Vec::new();
    for i in 0..6 {
        let hasher = hasher.clone();
        let hash = hash.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                hasher.verify(&secret("pw"), &hash).await.map(drop)
            } else {
                hasher.verify_dummy(&secret("pw")).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(hasher.hashes(), 1);
    assert_eq!(hasher.verifies(), 3);
    assert_eq!(hasher.dummy_verifies(), 3);
    assert_eq!(hasher.total_verifications(), 6);
    assert_eq!(
        hasher.max_in_flight(),
        6,
        "nothing bounds the fake, so all overlap"
    );
    assert_eq!(hasher.in_flight(), 0);

    hasher.reset();
    assert_eq!(
        (
            hasher.hashes(),
            hasher.total_verifications(),
            hasher.max_in_flight()
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn counting_hasher_forgets_a_cancelled_call() {
    let hasher = CountingHasher::new(Arc::new(
        FakeHasher::new().with_delay(Duration::from_secs(60)),
    ));
    let pw = secret("pw");
    let call = tokio::time::timeout(Duration::from_millis(10), hasher.verify_dummy(&pw));
    assert!(call.await.is_err(), "timed out");
    assert_eq!(
        hasher.in_flight(),
        0,
        "the dropped call left the in-flight count"
    );
    assert_eq!(hasher.dummy_verifies(), 1);
}
