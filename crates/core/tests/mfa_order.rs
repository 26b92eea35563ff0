//! The order of the second-factor runners' store calls, over mockall mocks
//! of the ports — what a fake would hide, since a fake answers whatever
//! order it is called in.
//!
//! `confirm_sign_in`: the attempt is counted first (`attempt_challenge`),
//! then the code is checked (`factors` and `accept_totp_step`, or
//! `spend_backup_code`), then the challenge is spent (`finish_challenge`),
//! then the account is read (`users.get`), and only then does the session
//! start (`sessions.start`) and the address's lockout clear. A wrong or
//! replayed code never spends the challenge nor reaches the session store;
//! an exhausted, unknown or lost challenge checks no code at all.
//!
//! `login` of an account with a second factor: a challenge is opened, no
//! session starts, and the lockout is *not* cleared — the attempt stays
//! counted until the factor passes.
//!
//! Every mock refuses calls it was not told to expect, so an extra store
//! call fails a test as surely as a missing or misordered one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use mockall::Sequence;
use regstack_core::engine::{LoginOutcome, PresentedCode};
use regstack_core::factors::{SecretSealer, TotpSecret};
use regstack_core::tokens::hash_presented;
use regstack_core::{AuthError, ClientContext, Config, Deps, Engine, EventBus};
use regstack_ports::{
    Admission, ChallengeAttempt, ChallengeKind, Factors, LockoutKey, MfaChallenge,
    MockLoginAttemptStore, MockMfaStore, MockSessionStore, MockUserStore, SessionStart, Stores,
    Timestamp, TokenHash, TotpFactor, User, UserId,
};
use regstack_testkit::fixtures::{email, password_hash, t0, PASSWORD};
use regstack_testkit::totp::{code_for_step, step_of};
use regstack_testkit::{memory_stores, FakeHasher, FixedClock, RecordingMailer};
use secrecy::{ExposeSecret, SecretString};

const SECRET: &str = "mfa-order-test-secret-mfa-order-test-0001";
const ADDRESS: &str = "order@example.com";
const PENDING: &str = "the-pending-token-of-the-challenge";
const TOTP_KEY: [u8; 20] = *b"order-test-totp-key!";
/// A well-formed backup code.
const BACKUP: &str = "abcde-fghjk";

/// The step the engine's clock (fixed at `t0`) is in.
fn now_step() -> u64 {
    step_of(t0())
}

/// Six digits that are none of the codes of the steps around now.
fn wrong_code() -> String {
    let near: Vec<String> = (now_step() - 1..=now_step() + 1)
        .map(|s| code_for_step(&TOTP_KEY, s))
        .collect();
    (0..)
        .map(|n| format!("{:06}", 100_000 + n))
        .find(|c| !near.contains(c))
        .unwrap()
}

fn epoch() -> Option<Timestamp> {
    Some(t0() - TimeDelta::hours(1))
}

fn user_id() -> UserId {
    static ID: std::sync::OnceLock<UserId> = std::sync::OnceLock::new();
    ID.get_or_init(UserId::generate).clone()
}

fn user() -> User {
    User {
        id: user_id(),
        email: email(ADDRESS),
        password_hash: Some(password_hash()),
        is_active: true,
        is_verified: true,
        is_superuser: false,
        full_name: None,
        phone_number: None,
        is_mfa_enabled: true,
        must_change_password: false,
        created_at: t0() - TimeDelta::days(3),
        updated_at: t0() - TimeDelta::days(3),
        last_login: None,
        tokens_invalidated_after: epoch(),
        disabled_reason: None,
        disabled_until: None,
    }
}

fn pending_id() -> TokenHash {
    hash_presented(&SecretString::from(PENDING))
}

fn challenge(attempts_left: u32) -> MfaChallenge {
    MfaChallenge {
        id: pending_id(),
        user_id: user_id(),
        kind: ChallengeKind::SignIn,
        code_hash: None,
        payload: None,
        attempts_left,
        credential_epoch: epoch(),
        created_at: t0(),
        expires_at: t0() + TimeDelta::minutes(10),
    }
}

fn factors() -> Factors {
    let sealed = SecretSealer::new(&SecretString::from(SECRET))
        .seal(&TotpSecret::from_bytes(&TOTP_KEY).unwrap(), &user_id())
        .unwrap();
    Factors {
        totp: Some(TotpFactor {
            sealed_secret: sealed,
            last_step: None,
            created_at: t0() - TimeDelta::days(1),
        }),
        phone_number: None,
        backup_codes_left: 10,
    }
}

/// The port mocks one test sets expectations on, and the sequence they
/// share.
#[derive(Default)]
struct Mocks {
    mfa: MockMfaStore,
    users: MockUserStore,
    sessions: MockSessionStore,
    attempts: MockLoginAttemptStore,
    seq: Sequence,
}

impl Mocks {
    fn new() -> Self {
        Self::default()
    }

    fn engine(self) -> Engine {
        let stores = Stores {
            mfa: Arc::new(self.mfa),
            users: Arc::new(self.users),
            sessions: Arc::new(self.sessions),
            login_attempts: Arc::new(self.attempts),
            ..memory_stores()
        };
        let cfg = Config {
            jwt_secret: SECRET.into(),
            rate_limit_disabled: false,
            ..Config::default()
        };
        Engine::new(
            cfg,
            Deps {
                stores,
                hasher: Arc::new(FakeHasher::new()),
                clock: Arc::new(FixedClock::default()),
                mailer: Arc::new(RecordingMailer::new()),
                sms: Arc::new(regstack_testkit::RecordingSms::new()),
                events: EventBus::default(),
                template_overrides: Default::default(),
            },
        )
        .unwrap()
    }

    /// `attempt_challenge` on the presented token, answering `attempt`.
    fn attempt(&mut self, attempt: ChallengeAttempt) {
        self.mfa
            .expect_attempt_challenge()
            .withf(|id, now| *id == pending_id() && *now == t0())
            .times(1)
            .in_sequence(&mut self.seq)
            .return_once(move |_, _| Ok(attempt));
    }

    /// `factors` of the account: a TOTP factor under [`TOTP_KEY`].
    fn factors(&mut self) {
        self.mfa
            .expect_factors()
            .withf(|u| *u == user_id())
            .times(1)
            .in_sequence(&mut self.seq)
            .returning(|_| Ok(factors()));
    }

    /// `accept_totp_step` of the current step, answering `accepted`.
    fn accept(&mut self, accepted: bool) {
        self.mfa
            .expect_accept_totp_step()
            .withf(|u, step| *u == user_id() && *step == now_step())
            .times(1)
            .in_sequence(&mut self.seq)
            .returning(move |_, _| Ok(accepted));
    }

    fn spend(&mut self, spent: bool) {
        self.mfa
            .expect_spend_backup_code()
            .withf(|u, _| *u == user_id())
            .times(1)
            .in_sequence(&mut self.seq)
            .returning(move |_, _| Ok(spent));
    }

    /// `finish_challenge`: `won` for the request that spends it.
    fn finish(&mut self, won: bool) {
        self.mfa
            .expect_finish_challenge()
            .withf(|id, now| *id == pending_id() && *now == t0())
            .times(1)
            .in_sequence(&mut self.seq)
            .returning(move |_, _| Ok(won.then(|| challenge(4))));
    }

    fn load(&mut self, user: User) {
        self.users
            .expect_get()
            .withf(|id| *id == user_id())
            .times(1)
            .in_sequence(&mut self.seq)
            .return_once(move |_| Ok(Some(user)));
    }

    fn start(&mut self) {
        self.sessions
            .expect_start()
            .withf(|n| n.user_id == user_id() && n.credential_epoch == epoch())
            .times(1)
            .in_sequence(&mut self.seq)
            .returning(|_| Ok(SessionStart::Started));
    }

    fn clear(&mut self) {
        self.attempts
            .expect_clear()
            .withf(|k| *k == LockoutKey::address(email(ADDRESS)))
            .times(1)
            .in_sequence(&mut self.seq)
            .returning(|_| Ok(()));
    }

    /// No session, no spending, no lockout clearing.
    fn no_session(&mut self) {
        self.mfa.expect_finish_challenge().times(0);
        self.users.expect_get().times(0);
        self.sessions.expect_start().times(0);
        self.attempts.expect_clear().times(0);
    }

    /// No code is checked at all.
    fn no_code_check(&mut self) {
        self.mfa.expect_factors().times(0);
        self.mfa.expect_accept_totp_step().times(0);
        self.mfa.expect_spend_backup_code().times(0);
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn confirm(engine: &Engine, code: &str) -> Result<regstack_core::engine::SignedIn, AuthError> {
    block_on(engine.confirm_sign_in(
        &SecretString::from(PENDING),
        &PresentedCode {
            code: SecretString::from(code.to_owned()),
            method: None,
        },
        &ClientContext::default(),
    ))
}

#[test]
fn a_right_totp_code_counts_checks_spends_loads_then_starts_the_session() {
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(challenge(4)));
    m.factors();
    m.accept(true);
    m.finish(true);
    m.load(user());
    m.start();
    m.clear();
    m.mfa.expect_spend_backup_code().times(0);
    let signed_in = confirm(&m.engine(), &code_for_step(&TOTP_KEY, now_step())).unwrap();
    assert_eq!(signed_in.user.id, user_id());
}

#[test]
fn a_right_backup_code_is_spent_before_the_challenge_and_the_session() {
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(challenge(4)));
    m.spend(true);
    m.finish(true);
    m.load(user());
    m.start();
    m.clear();
    m.mfa.expect_factors().times(0);
    m.mfa.expect_accept_totp_step().times(0);
    let signed_in = confirm(&m.engine(), BACKUP).unwrap();
    assert_eq!(signed_in.user.id, user_id());
}

#[test]
fn a_wrong_totp_code_neither_spends_the_challenge_nor_reaches_the_session_store() {
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(challenge(4)));
    m.factors();
    m.mfa.expect_accept_totp_step().times(0);
    m.mfa.expect_spend_backup_code().times(0);
    m.no_session();
    let err = confirm(&m.engine(), &wrong_code()).unwrap_err();
    assert!(
        matches!(err, AuthError::WrongMfaCode { remaining: 4 }),
        "{err:?}"
    );
}

#[test]
fn a_replayed_totp_step_neither_spends_the_challenge_nor_reaches_the_session_store() {
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(challenge(2)));
    m.factors();
    m.accept(false);
    m.mfa.expect_spend_backup_code().times(0);
    m.no_session();
    let err = confirm(&m.engine(), &code_for_step(&TOTP_KEY, now_step())).unwrap_err();
    assert!(
        matches!(err, AuthError::WrongMfaCode { remaining: 2 }),
        "{err:?}"
    );
}

#[test]
fn a_used_backup_code_neither_spends_the_challenge_nor_reaches_the_session_store() {
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(challenge(1)));
    m.spend(false);
    m.mfa.expect_factors().times(0);
    m.mfa.expect_accept_totp_step().times(0);
    m.no_session();
    let err = confirm(&m.engine(), BACKUP).unwrap_err();
    assert!(
        matches!(err, AuthError::WrongMfaCode { remaining: 1 }),
        "{err:?}"
    );
}

#[test]
fn a_wrong_code_on_the_last_attempt_ends_the_challenge_without_a_session() {
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(challenge(0)));
    m.factors();
    m.mfa.expect_accept_totp_step().times(0);
    m.mfa.expect_spend_backup_code().times(0);
    m.no_session();
    let err = confirm(&m.engine(), &wrong_code()).unwrap_err();
    assert!(matches!(err, AuthError::MfaChallengeInvalid), "{err:?}");
}

#[test]
fn an_exhausted_or_unknown_challenge_checks_no_code() {
    let right = code_for_step(&TOTP_KEY, now_step());
    for attempt in [ChallengeAttempt::Exhausted, ChallengeAttempt::Unknown] {
        for code in [right.as_str(), BACKUP] {
            let mut m = Mocks::new();
            m.attempt(attempt.clone());
            m.no_code_check();
            m.no_session();
            let err = confirm(&m.engine(), code).unwrap_err();
            assert!(
                matches!(err, AuthError::MfaChallengeInvalid),
                "{attempt:?}: {err:?}"
            );
        }
    }
}

#[test]
fn a_challenge_of_another_kind_checks_no_code() {
    let enrolment = MfaChallenge {
        kind: ChallengeKind::TotpEnrolment,
        ..challenge(4)
    };
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(enrolment));
    m.no_code_check();
    m.no_session();
    let err = confirm(&m.engine(), &code_for_step(&TOTP_KEY, now_step())).unwrap_err();
    assert!(matches!(err, AuthError::MfaChallengeInvalid), "{err:?}");
}

#[test]
fn a_right_code_that_loses_the_spend_reaches_no_session() {
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(challenge(4)));
    m.factors();
    m.accept(true);
    m.finish(false);
    m.users.expect_get().times(0);
    m.sessions.expect_start().times(0);
    m.attempts.expect_clear().times(0);
    let err = confirm(&m.engine(), &code_for_step(&TOTP_KEY, now_step())).unwrap_err();
    assert!(matches!(err, AuthError::MfaChallengeInvalid), "{err:?}");
}

#[test]
fn a_right_code_after_a_credential_change_reaches_no_session() {
    let mut m = Mocks::new();
    m.attempt(ChallengeAttempt::Counted(challenge(4)));
    m.factors();
    m.accept(true);
    m.finish(true);
    m.load(User {
        tokens_invalidated_after: Some(t0()),
        ..user()
    });
    m.sessions.expect_start().times(0);
    m.attempts.expect_clear().times(0);
    let err = confirm(&m.engine(), &code_for_step(&TOTP_KEY, now_step())).unwrap_err();
    assert!(matches!(err, AuthError::MfaChallengeInvalid), "{err:?}");
}

/// `login`'s first part for an account with a second factor: admitted,
/// the account read, its factors read, a challenge opened (recorded in
/// `opened`).
fn password_then_challenge(m: &mut Mocks, opened: &Arc<Mutex<Option<MfaChallenge>>>) {
    m.attempts
        .expect_admit()
        .withf(|k, now, _, _| *k == LockoutKey::address(email(ADDRESS)) && *now == t0())
        .times(1)
        .in_sequence(&mut m.seq)
        .returning(|_, _, _, _| Ok(Admission::Admitted { failures: 1 }));
    m.users
        .expect_find_by_email()
        .times(1)
        .in_sequence(&mut m.seq)
        .returning(|_| Ok(Some(user())));
    m.factors();
    let slot = opened.clone();
    m.mfa
        .expect_open_challenge()
        .times(1)
        .in_sequence(&mut m.seq)
        .returning(move |c| {
            *slot.lock().unwrap() = Some(c);
            Ok(())
        });
}

fn login(engine: &Engine, one_step: Option<&str>) -> Result<LoginOutcome, AuthError> {
    block_on(engine.login(
        &email(ADDRESS),
        &SecretString::from(PASSWORD),
        one_step.map(|c| PresentedCode {
            code: SecretString::from(c.to_owned()),
            method: None,
        }),
        &ClientContext::default(),
    ))
}

#[test]
fn login_of_an_account_with_a_second_factor_opens_a_challenge_and_keeps_the_attempt_counted() {
    let opened = Arc::new(Mutex::new(None));
    let mut m = Mocks::new();
    password_then_challenge(&mut m, &opened);
    m.mfa.expect_attempt_challenge().times(0);
    m.no_code_check();
    m.no_session();
    let outcome = login(&m.engine(), None).unwrap();
    let LoginOutcome::MfaRequired(pending) = outcome else {
        panic!("a session from the password alone: {outcome:?}");
    };
    let c = opened.lock().unwrap().clone().expect("a challenge opened");
    assert_eq!(c.id, hash_presented(&pending.mfa_pending_token));
    assert_eq!(c.user_id, user_id());
    assert_eq!(c.kind, ChallengeKind::SignIn);
    assert_eq!(c.attempts_left, 5);
    assert_eq!(c.credential_epoch, epoch());
    assert!(!pending.mfa_pending_token.expose_secret().is_empty());
}

/// The one-step login's code goes to the challenge just opened.
fn attempt_opened(m: &mut Mocks, opened: &Arc<Mutex<Option<MfaChallenge>>>) {
    let (a, b) = (opened.clone(), opened.clone());
    m.mfa
        .expect_attempt_challenge()
        .withf(move |id, _| a.lock().unwrap().as_ref().is_some_and(|c| c.id == *id))
        .times(1)
        .in_sequence(&mut m.seq)
        .returning(move |_, _| {
            let c = b.lock().unwrap().clone().unwrap();
            Ok(ChallengeAttempt::Counted(MfaChallenge {
                attempts_left: c.attempts_left - 1,
                ..c
            }))
        });
}

#[test]
fn a_one_step_login_with_a_wrong_code_starts_no_session_and_keeps_the_attempt_counted() {
    let opened = Arc::new(Mutex::new(None));
    let mut m = Mocks::new();
    password_then_challenge(&mut m, &opened);
    attempt_opened(&mut m, &opened);
    m.factors();
    m.mfa.expect_accept_totp_step().times(0);
    m.mfa.expect_spend_backup_code().times(0);
    m.no_session();
    let err = login(&m.engine(), Some(&wrong_code())).unwrap_err();
    assert!(
        matches!(err, AuthError::WrongMfaCode { remaining: 4 }),
        "{err:?}"
    );
}

#[test]
fn a_one_step_login_with_the_right_code_checks_it_before_the_session_and_then_clears() {
    let opened = Arc::new(Mutex::new(None));
    let mut m = Mocks::new();
    password_then_challenge(&mut m, &opened);
    attempt_opened(&mut m, &opened);
    m.factors();
    m.accept(true);
    let slot = opened.clone();
    m.mfa
        .expect_finish_challenge()
        .withf(move |id, _| slot.lock().unwrap().as_ref().is_some_and(|c| c.id == *id))
        .times(1)
        .in_sequence(&mut m.seq)
        .returning(|_, _| Ok(Some(challenge(4))));
    m.load(user());
    m.start();
    m.clear();
    let outcome = login(&m.engine(), Some(&code_for_step(&TOTP_KEY, now_step()))).unwrap();
    assert!(matches!(outcome, LoginOutcome::SignedIn(_)), "{outcome:?}");
}
