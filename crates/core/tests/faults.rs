//! Faults: a store that fails at a chosen step. Every flow either completes
//! or leaves nothing behind, a retry succeeds once the store heals, and a
//! failing check never lets a request through (fail closed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use regstack_core::{AuthError, ClientContext, Config, Deps, Engine, EventBus, Registration};
use regstack_ports::{Email, StoreError, Stores, TokenKind};
use regstack_testkit::{
    memory_stores_with_faults, FakeHasher, FaultInjector, FixedClock, RecordingMailer,
};
use secrecy::{ExposeSecret, SecretString};

const PW: &str = "correct-horse-battery";

struct Rig {
    engine: Engine,
    stores: Stores,
    faults: FaultInjector,
    mailer: RecordingMailer,
}

fn rig() -> Rig {
    rig_with(Config::default())
}

fn rig_with(base: Config) -> Rig {
    let (stores, faults) = memory_stores_with_faults();
    let mailer = RecordingMailer::new();
    let cfg = Config {
        jwt_secret: "fault-test-secret-fault-test-secret-0001".into(),
        ..base
    };
    let engine = Engine::new(
        cfg,
        Deps {
            stores: stores.clone(),
            hasher: Arc::new(FakeHasher::new()),
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
        stores,
        faults,
        mailer,
    }
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn unavailable<T: std::fmt::Debug>(r: Result<T, AuthError>) {
    assert!(
        matches!(r, Err(AuthError::Store(StoreError::Unavailable(_)))),
        "{r:?}"
    );
}

fn new_pw(s: &str) -> regstack_ports::NewPassword {
    regstack_ports::NewPassword::parse(SecretString::from(s)).unwrap()
}

fn link_token(mail: &regstack_ports::OutgoingMail) -> SecretString {
    let start = mail.text.find("token=").unwrap() + 6;
    SecretString::from(
        mail.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect::<String>(),
    )
}

async fn registered_and_verified(r: &Rig, addr: &str) {
    let c = ClientContext::default();
    r.engine
        .register(
            Registration {
                email: email(addr),
                password: new_pw(PW),
                full_name: None,
                invite_code: None,
            },
            &c,
        )
        .await
        .unwrap();
    let mail = r.mailer.wait_for(addr, 1, Duration::from_secs(5)).await;
    r.engine.verify(&link_token(&mail[0]), &c).await.unwrap();
}

#[tokio::test]
async fn a_failed_registration_writes_nothing_and_a_retry_works() {
    let r = rig();
    let c = ClientContext::default();
    let reg = || Registration {
        email: email("a@example.com"),
        password: new_pw(PW),
        full_name: None,
        invite_code: None,
    };
    r.faults.fail_next("pending.put");
    unavailable(r.engine.register(reg(), &c).await);
    let now = r.engine.now();
    assert!(r
        .stores
        .pending
        .find_by_email(&email("a@example.com"), now)
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        r.mailer.sent().is_empty(),
        "no mail for a registration that was not stored"
    );
    r.engine.register(reg(), &c).await.unwrap();
    assert_eq!(
        r.mailer
            .wait_for("a@example.com", 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
}

/// Invite-only registration: a registration that fails after its code was
/// redeemed (the pending row cannot be stored, the hash fails… here the
/// store) gives the code back, so the invitee's retry works and nothing
/// is half-written; a failing redemption admits nobody (fail closed).
#[tokio::test]
async fn a_failed_invited_registration_gives_its_code_back() {
    let r = rig_with(Config {
        registration_mode: regstack_core::RegistrationMode::Invite,
        ..Config::default()
    });
    let c = ClientContext::default();
    let made = r
        .engine
        .create_invite(regstack_core::engine::InviteSpec::default(), None)
        .await
        .unwrap();
    let reg = || Registration {
        email: email("invited@example.com"),
        password: new_pw(PW),
        full_name: None,
        invite_code: Some(SecretString::from(made.code.expose_secret().to_owned())),
    };
    r.faults.fail_next("invites.redeem");
    unavailable(r.engine.register(reg(), &c).await);
    r.faults.fail_next("pending.put");
    unavailable(r.engine.register(reg(), &c).await);
    let now = r.engine.now();
    assert!(r
        .stores
        .pending
        .find_by_email(&email("invited@example.com"), now)
        .await
        .unwrap()
        .is_none());
    let open = r.stores.invites.list(false, 10, now).await.unwrap();
    assert_eq!(open.len(), 1, "the code was given back");
    r.engine.register(reg(), &c).await.unwrap();
    assert!(r
        .stores
        .invites
        .list(false, 10, now)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        r.engine.register(reg(), &c).await,
        Err(AuthError::InviteRequired)
    ));
}

#[tokio::test]
async fn a_failed_verification_keeps_the_pending_row_and_creates_no_user() {
    let r = rig();
    let c = ClientContext::default();
    r.engine
        .register(
            Registration {
                email: email("b@example.com"),
                password: new_pw(PW),
                full_name: None,
                invite_code: None,
            },
            &c,
        )
        .await
        .unwrap();
    let token = link_token(
        &r.mailer
            .wait_for("b@example.com", 1, Duration::from_secs(5))
            .await[0],
    );
    r.faults.fail_next("pending.promote");
    unavailable(r.engine.verify(&token, &c).await);
    assert!(r
        .stores
        .users
        .find_by_email(&email("b@example.com"))
        .await
        .unwrap()
        .is_none());
    assert!(r
        .stores
        .pending
        .find_by_email(&email("b@example.com"), r.engine.now())
        .await
        .unwrap()
        .is_some());
    assert!(r.engine.verify(&token, &c).await.unwrap().is_verified);
}

#[tokio::test]
async fn a_failed_reset_keeps_the_old_password_and_the_link() {
    let r = rig();
    let c = ClientContext::default();
    registered_and_verified(&r, "c@example.com").await;
    r.engine
        .forgot_password(&email("c@example.com"), &c)
        .await
        .unwrap();
    let token = link_token(
        &r.mailer
            .wait_for("c@example.com", 2, Duration::from_secs(5))
            .await[1],
    );
    r.faults.fail_next("users.complete_password_reset");
    unavailable(
        r.engine
            .reset_password(&token, &new_pw("new-password-1"), &c)
            .await,
    );
    let hash = regstack_core::tokens::hash_raw(token.expose_secret());
    assert!(r
        .stores
        .tokens
        .peek(TokenKind::PasswordReset, &hash, r.engine.now())
        .await
        .unwrap()
        .is_some());
    r.engine
        .login(&email("c@example.com"), &SecretString::from(PW), None, &c)
        .await
        .unwrap()
        .into_session()
        .unwrap();
    r.engine
        .reset_password(&token, &new_pw("new-password-1"), &c)
        .await
        .unwrap();
    r.engine
        .login(
            &email("c@example.com"),
            &SecretString::from("new-password-1"),
            None,
            &c,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_email_change_keeps_the_address_and_the_link() {
    let r = rig();
    let c = ClientContext::default();
    registered_and_verified(&r, "d@example.com").await;
    let s = r
        .engine
        .login(&email("d@example.com"), &SecretString::from(PW), None, &c)
        .await
        .unwrap()
        .into_session()
        .unwrap();
    let p = r.engine.authenticate(Some(&s.access_token)).await.unwrap();
    r.engine
        .request_email_change(&p, &email("d2@example.com"), &SecretString::from(PW), &c)
        .await
        .unwrap();
    let token = link_token(
        &r.mailer
            .wait_for("d2@example.com", 1, Duration::from_secs(5))
            .await[0],
    );
    r.faults.fail_next("users.confirm_email_change");
    unavailable(r.engine.confirm_email_change(&token, &c).await);
    assert!(r
        .stores
        .users
        .find_by_email(&email("d@example.com"))
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        r.engine
            .confirm_email_change(&token, &c)
            .await
            .unwrap()
            .email,
        email("d2@example.com")
    );
}

#[tokio::test]
async fn a_failed_deletion_keeps_the_account_whole() {
    let r = rig();
    let c = ClientContext::default();
    registered_and_verified(&r, "e@example.com").await;
    let s = r
        .engine
        .login(&email("e@example.com"), &SecretString::from(PW), None, &c)
        .await
        .unwrap()
        .into_session()
        .unwrap();
    let p = r.engine.authenticate(Some(&s.access_token)).await.unwrap();
    r.faults.fail_next("users.delete_account");
    unavailable(
        r.engine
            .delete_account(&p, &SecretString::from(PW), &c)
            .await,
    );
    assert!(r.engine.authenticate(Some(&s.access_token)).await.is_ok());
    r.engine
        .delete_account(&p, &SecretString::from(PW), &c)
        .await
        .unwrap();
    assert!(r.engine.authenticate(Some(&s.access_token)).await.is_err());
}

#[tokio::test]
async fn a_failed_rotation_leaves_the_refresh_token_usable() {
    let r = rig();
    let c = ClientContext::default();
    registered_and_verified(&r, "f@example.com").await;
    let s = r
        .engine
        .login(&email("f@example.com"), &SecretString::from(PW), None, &c)
        .await
        .unwrap()
        .into_session()
        .unwrap();
    r.faults.fail_next("sessions.rotate");
    unavailable(r.engine.refresh(&s.refresh_token, &c).await);
    r.engine.refresh(&s.refresh_token, &c).await.unwrap();
}

#[tokio::test]
async fn a_failing_session_check_refuses_instead_of_letting_through() {
    let r = rig();
    let c = ClientContext::default();
    registered_and_verified(&r, "g@example.com").await;
    let s = r
        .engine
        .login(&email("g@example.com"), &SecretString::from(PW), None, &c)
        .await
        .unwrap()
        .into_session()
        .unwrap();
    r.faults.fail_always("sessions.authenticate");
    unavailable(r.engine.authenticate(Some(&s.access_token)).await);
    r.faults.fail_always("login_attempts.admit");
    unavailable(
        r.engine
            .login(&email("g@example.com"), &SecretString::from(PW), None, &c)
            .await,
    );
    r.faults.heal();
    assert!(r.engine.authenticate(Some(&s.access_token)).await.is_ok());
}

/// `forgot_password` touches no store before it answers (issue 19: the
/// answer must not depend on the address, not even in time): with every
/// store failing it still answers, for an account and for an unknown
/// address alike; the failures are the background job's, logged. Once the
/// store heals a new request mails a link.
#[tokio::test]
async fn forgot_password_answers_without_touching_a_store_and_a_retry_mails() {
    let r = rig();
    let c = ClientContext::default();
    registered_and_verified(&r, "h@example.com").await;
    r.faults.fail_always("*");
    for addr in ["h@example.com", "nobody@example.com"] {
        r.engine.forgot_password(&email(addr), &c).await.unwrap();
    }
    r.faults.heal();
    r.engine
        .forgot_password(&email("h@example.com"), &c)
        .await
        .unwrap();
    let mails = r
        .mailer
        .wait_for("h@example.com", 2, Duration::from_secs(5))
        .await;
    assert!(mails[1].text.contains("/reset-password?token="));
    assert!(r.mailer.sent_to("nobody@example.com").is_empty());
}
