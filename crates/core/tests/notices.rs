//! The engine's security notices over the memory stores: what counts as a
//! new device (`crate::notices`), the notices' quota of their own, and the
//! revert runner paying for a password hash only for a live link.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use regstack_core::{AuthError, ClientContext, Config, Deps, Engine, EventBus};
use regstack_ports::{Email, Stores};
use regstack_testkit::fixtures::{new_user, PASSWORD};
use regstack_testkit::{memory_stores, CountingHasher, FakeHasher, FixedClock, RecordingMailer};
use secrecy::{ExposeSecret, SecretString};

const ADDR: &str = "owner@example.com";
const NEW_DEVICE: &str = "New sign-in to your RegStack account";

struct Rig {
    engine: Engine,
    mailer: RecordingMailer,
    hasher: Arc<CountingHasher>,
}

async fn rig(tweak: impl FnOnce(&mut Config)) -> Rig {
    let stores: Stores = memory_stores();
    stores.users.insert(new_user(ADDR)).await.unwrap();
    let mut cfg = Config {
        jwt_secret: "notices-test-secret-notices-test-secret-1".into(),
        ..Config::default()
    };
    tweak(&mut cfg);
    let mailer = RecordingMailer::new();
    let hasher = Arc::new(CountingHasher::new(Arc::new(FakeHasher::new())));
    let engine = Engine::new(
        cfg,
        Deps {
            stores,
            hasher: hasher.clone(),
            clock: Arc::new(FixedClock::default()),
            mailer: Arc::new(mailer.clone()),
            sms: Arc::new(regstack_testkit::RecordingSms::new()),
            events: EventBus::default(),
            template_overrides: Default::default(),
        },
    )
    .unwrap();
    Rig {
        engine,
        mailer,
        hasher,
    }
}

fn client(ip: &str, user_agent: &str, cookie: Option<&SecretString>) -> ClientContext {
    ClientContext {
        ip: Some(ip.into()),
        user_agent: Some(user_agent.into()),
        device_cookie: cookie.cloned(),
    }
}

/// Signs in; returns the device cookie handed out.
async fn login(r: &Rig, c: &ClientContext) -> SecretString {
    let out = r
        .engine
        .login(
            &Email::parse(ADDR).unwrap(),
            &SecretString::from(PASSWORD),
            None,
            c,
        )
        .await
        .unwrap();
    let signed_in = out.into_session().map_err(|_| "no session").unwrap();
    signed_in.device_cookie.unwrap()
}

/// The subjects mailed to the owner once background deliveries settle.
async fn subjects(r: &Rig) -> Vec<String> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.mailer
        .sent_to(ADDR)
        .into_iter()
        .map(|m| m.subject)
        .collect()
}

#[tokio::test]
async fn a_new_device_is_an_unknown_client_on_an_unseen_network_after_a_first_sign_in() {
    let r = rig(|_| {}).await;
    // The first sign-in ever: never a notice.
    let cookie = login(&r, &client("198.51.100.7", "Firefox/130", None)).await;
    // Same browser, same /24, no cookie: seen.
    login(&r, &client("198.51.100.99", "Firefox/130", None)).await;
    assert!(subjects(&r).await.is_empty());
    // Another network: new.
    login(&r, &client("203.0.113.5", "Firefox/130", None)).await;
    assert_eq!(subjects(&r).await, [NEW_DEVICE]);
    let mail = &r.mailer.sent_to(ADDR)[0];
    assert!(mail.text.contains("203.0.113.5") && mail.text.contains("Firefox/130"));
    // That network is now seen; another browser on it is not.
    login(&r, &client("203.0.113.6", "Firefox/130", None)).await;
    assert_eq!(subjects(&r).await.len(), 1);
    login(&r, &client("203.0.113.6", "curl/8", None)).await;
    assert_eq!(subjects(&r).await.len(), 2);
    // Anywhere, as anything, with the address's device cookie: known.
    login(&r, &client("192.0.2.1", "Other/1", Some(&cookie))).await;
    assert_eq!(subjects(&r).await.len(), 2);
}

#[tokio::test]
async fn the_new_device_switch_turns_it_off() {
    let r = rig(|c| c.notices.new_device = false).await;
    login(&r, &client("198.51.100.7", "Firefox/130", None)).await;
    login(&r, &client("203.0.113.5", "Curl/8", None)).await;
    assert!(subjects(&r).await.is_empty());
}

#[tokio::test]
async fn notices_have_a_quota_of_their_own_and_never_starve_a_reset_link() {
    let r = rig(|c| c.email.max_per_address_per_hour = 2).await;
    login(&r, &client("198.51.100.7", "A", None)).await;
    for i in 0..4 {
        login(&r, &client(&format!("203.0.{i}.1"), "A", None)).await;
    }
    assert_eq!(
        subjects(&r).await,
        [NEW_DEVICE, NEW_DEVICE],
        "two an hour, then none"
    );
    r.engine
        .forgot_password(&Email::parse(ADDR).unwrap(), &ClientContext::default())
        .await
        .unwrap();
    let mails = r.mailer.wait_for(ADDR, 3, Duration::from_secs(5)).await;
    assert!(
        mails[2].text.contains("/reset-password?token="),
        "the link quota is untouched: {:?}",
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_dead_or_oversized_revert_link_costs_no_hash() {
    let r = rig(|_| {}).await;
    for token in ["no-such-token".to_owned(), "x".repeat(10_000)] {
        let err = r
            .engine
            .revert_email_change(&SecretString::from(token), &ClientContext::default())
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::InvalidEmailRevertToken), "{err:?}");
    }
    assert_eq!(r.hasher.hashes(), 0);
    // The secret never shows in the error's text either.
    let secret = SecretString::from("s3cret-token-value");
    let err = r
        .engine
        .revert_email_change(&secret, &ClientContext::default())
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(secret.expose_secret()));
}
