//! The engine's use of the `BreachedPasswords` port, with fake screens: it
//! hands over only the SHA-1 of the NFKC form, asks nothing for a password
//! the pure checks refused, cuts a screen off at `breach_timeout_ms`
//! whatever the screen does, and fails open or closed as configured —
//! writing nothing on a refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use regstack_core::password_policy::{sha1_of, PasswordRefusal};
use regstack_core::{AuthError, ClientContext, Config, Deps, Engine, EventBus, Registration};
use regstack_ports::{BreachVerdict, BreachedPasswords, Email, NewPassword, PasswordSha1, Stores};
use regstack_testkit::{memory_stores, FakeHasher, FixedClock, RecordingMailer};
use secrecy::SecretString;

/// Answers `verdict` (or never, when `None`) and records what it was asked.
struct FakeScreen {
    verdict: Option<BreachVerdict>,
    asked: Mutex<Vec<PasswordSha1>>,
}

#[async_trait]
impl BreachedPasswords for FakeScreen {
    async fn check(&self, password: &PasswordSha1) -> BreachVerdict {
        self.asked.lock().unwrap().push(password.clone());
        match &self.verdict {
            Some(v) => v.clone(),
            None => std::future::pending().await,
        }
    }
}

fn rig(verdict: Option<BreachVerdict>, fail_closed: bool) -> (Engine, Stores, Arc<FakeScreen>) {
    let stores = memory_stores();
    let mut cfg = Config {
        jwt_secret: "breach-test-secret-breach-test-secret-01".into(),
        ..Config::default()
    };
    cfg.password.breach_timeout_ms = 100;
    cfg.password.breach_fail_closed = fail_closed;
    let screen = Arc::new(FakeScreen {
        verdict,
        asked: Mutex::default(),
    });
    let engine = Engine::new(
        cfg,
        Deps {
            stores: stores.clone(),
            hasher: Arc::new(FakeHasher::new()),
            clock: Arc::new(FixedClock::default()),
            mailer: Arc::new(RecordingMailer::new()),
            sms: Arc::new(regstack_testkit::RecordingSms::new()),
            events: EventBus::default(),
            template_overrides: Default::default(),
        },
    )
    .unwrap()
    .with_breach_screen(screen.clone());
    (engine, stores, screen)
}

fn registration(addr: &str, pw: &str) -> Registration {
    Registration {
        email: Email::parse(addr).unwrap(),
        password: NewPassword::parse(SecretString::from(pw)).unwrap(),
        full_name: None,
        invite_code: None,
    }
}

async fn nothing_pending(engine: &Engine, stores: &Stores, addr: &str) -> bool {
    stores
        .pending
        .find_by_email(&Email::parse(addr).unwrap(), engine.now())
        .await
        .unwrap()
        .is_none()
}

#[tokio::test]
async fn a_breached_password_is_refused_and_nothing_is_written() {
    let (engine, stores, screen) = rig(Some(BreachVerdict::Breached), false);
    // Fullwidth letters: the screen gets the digest of the NFKC form.
    let r = engine
        .register(
            registration("ann@example.com", "ｈｕｎｔｅｒ２-leaked"),
            &ClientContext::default(),
        )
        .await;
    assert!(
        matches!(
            r,
            Err(AuthError::PasswordRefused(PasswordRefusal::Breached))
        ),
        "{r:?}"
    );
    assert!(nothing_pending(&engine, &stores, "ann@example.com").await);
    let asked = screen.asked.lock().unwrap().clone();
    assert_eq!(asked, vec![sha1_of(&SecretString::from("hunter2-leaked"))]);
}

#[tokio::test]
async fn a_password_the_list_refuses_is_never_sent_to_the_screen() {
    let (engine, _, screen) = rig(Some(BreachVerdict::NotBreached), false);
    for pw in ["password123", "bertrand.x99"] {
        let r = engine
            .register(
                registration("bertrand.x@example.com", pw),
                &ClientContext::default(),
            )
            .await;
        assert!(matches!(r, Err(AuthError::PasswordRefused(_))), "{r:?}");
    }
    assert!(screen.asked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_screen_that_never_answers_is_cut_off_at_the_timeout() {
    for fail_closed in [false, true] {
        let (engine, stores, _) = rig(None, fail_closed);
        let start = Instant::now();
        let r = engine
            .register(
                registration("cleo@example.com", "correct-horse-battery"),
                &ClientContext::default(),
            )
            .await;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        if fail_closed {
            assert!(
                matches!(r, Err(AuthError::PasswordScreenUnavailable)),
                "{r:?}"
            );
            assert!(nothing_pending(&engine, &stores, "cleo@example.com").await);
        } else {
            assert!(r.is_ok(), "fail open: {r:?}");
            assert!(!nothing_pending(&engine, &stores, "cleo@example.com").await);
        }
    }
}

#[tokio::test]
async fn an_unavailable_answer_fails_open_or_closed_as_configured() {
    let down = || Some(BreachVerdict::Unavailable("could not connect".into()));
    let (engine, _, _) = rig(down(), false);
    let c = ClientContext::default();
    assert!(engine
        .register(
            registration("dora@example.com", "correct-horse-battery"),
            &c
        )
        .await
        .is_ok());
    let (engine, _, _) = rig(down(), true);
    let r = engine
        .register(
            registration("dora@example.com", "correct-horse-battery"),
            &c,
        )
        .await;
    assert!(
        matches!(r, Err(AuthError::PasswordScreenUnavailable)),
        "{r:?}"
    );
}
