//! `login` and the current-password check run through `drive`, over mocks
//! whose answers proptest picks at random: whatever the lockout store, the
//! account and the hasher say, a session starts only after an admission
//! and a right password on an account that may sign in — for exactly that
//! account and the credential epoch read with its password — and every
//! answer is the one the sign-in rules give. The client may present a
//! device cookie (its own for the address, another address's, a forged
//! one): only its own moves the attempt into that device's lockout bucket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use chrono::TimeDelta;
use proptest::prelude::*;
use regstack_core::device_cookie::DeviceCookies;
use regstack_core::engine::LoginOutcome;
use regstack_core::{AuthError, ClientContext, Config, Deps, Engine, EventBus, Principal};
use regstack_ports::hashing::MockPasswordHasher;
use regstack_ports::{
    Admission, DeviceId, Email, HashError, LockoutKey, MockLoginAttemptStore, MockSessionStore,
    MockUserStore, NewSession, PasswordHash, Session, SessionId, SessionStart, Stores, User,
    UserId, Verification,
};
use regstack_testkit::{fixtures::t0, memory_stores, FixedClock, RecordingMailer};
use secrecy::{ExposeSecret, SecretString};

const THRESHOLD: u32 = 5;
const SECRET: &str = "drive-test-secret-drive-test-secret-0001";

/// The device cookie the client presents.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cookie {
    /// None at all.
    Absent,
    /// One this server minted for the address signing in.
    Own,
    /// One this server minted for another address.
    OtherAddress,
    /// One this server never minted.
    Forged,
}

fn device_cookies() -> DeviceCookies {
    DeviceCookies::new(&SecretString::from(SECRET))
}

/// The raw cookie for `c`, and the device it names when it is the
/// address's own.
fn present(c: Cookie) -> (Option<SecretString>, Option<DeviceId>) {
    let keys = device_cookies();
    let raw = match c {
        Cookie::Absent => return (None, None),
        Cookie::Own => keys.mint(&email()),
        Cookie::OtherAddress => keys.mint(&Email::parse("other@example.com").unwrap()),
        Cookie::Forged => {
            let own = keys.mint(&email()).expose_secret().to_owned();
            let flipped = if own.ends_with('A') { 'B' } else { 'A' };
            SecretString::from(format!("{}{flipped}", &own[..own.len() - 1]))
        }
    };
    let device = keys.recognize(raw.expose_secret(), &email());
    assert_eq!(device.is_some(), c == Cookie::Own, "{c:?}");
    (Some(raw), device)
}

/// What the lockout store answers.
#[derive(Debug, Clone, Copy)]
enum Admit {
    Admitted(u32),
    Locked(i64),
}

/// What the hasher answers for the account's stored hash.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verify {
    Right,
    Wrong,
    Malformed,
}

/// One random world.
#[derive(Debug, Clone)]
struct World {
    rate_limit_disabled: bool,
    require_verification: bool,
    admit: Admit,
    /// `None`: no account for the address.
    account: Option<Account>,
    verify: Verify,
    /// What `SessionStore::start` answers.
    stale: bool,
    /// The device cookie presented.
    cookie: Cookie,
}

#[derive(Debug, Clone)]
struct Account {
    has_password: bool,
    active: bool,
    verified: bool,
    epoch: Option<i64>,
}

fn world() -> impl Strategy<Value = World> {
    let admit = prop_oneof![
        3 => (1..=THRESHOLD).prop_map(Admit::Admitted),
        1 => (0i64..2000).prop_map(Admit::Locked),
    ];
    let account = prop::option::weighted(
        0.8,
        (
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.7),
            prop::option::of(0i64..1_000_000),
        )
            .prop_map(|(has_password, active, verified, epoch)| Account {
                has_password,
                active,
                verified,
                epoch,
            }),
    );
    let verify = prop_oneof![
        3 => Just(Verify::Right),
        2 => Just(Verify::Wrong),
        1 => Just(Verify::Malformed),
    ];
    let cookie = prop_oneof![
        Just(Cookie::Absent),
        Just(Cookie::Own),
        Just(Cookie::OtherAddress),
        Just(Cookie::Forged),
    ];
    (
        (any::<bool>(), any::<bool>()),
        admit,
        account,
        verify,
        prop::bool::weighted(0.2),
        cookie,
    )
        .prop_map(
            |(
                (rate_limit_disabled, require_verification),
                admit,
                account,
                verify,
                stale,
                cookie,
            )| {
                World {
                    rate_limit_disabled,
                    require_verification,
                    admit,
                    account,
                    verify,
                    stale,
                    cookie,
                }
            },
        )
}

fn email() -> Email {
    Email::parse("someone@example.com").unwrap()
}

fn stored_hash() -> PasswordHash {
    PasswordHash::new("$mock$stored".to_owned())
}

fn user_of(a: &Account) -> User {
    User {
        id: UserId::generate(),
        email: email(),
        password_hash: a.has_password.then(stored_hash),
        is_active: a.active,
        is_verified: a.verified,
        is_superuser: false,
        full_name: None,
        phone_number: None,
        is_mfa_enabled: false,
        must_change_password: false,
        created_at: t0() - TimeDelta::days(30),
        updated_at: t0() - TimeDelta::days(30),
        last_login: None,
        tokens_invalidated_after: a.epoch.map(|s| t0() - TimeDelta::seconds(s)),
        disabled_reason: None,
        disabled_until: None,
    }
}

/// What the mocks saw.
#[derive(Default)]
struct Seen {
    /// The buckets admitted into, and cleared, in order.
    admits: Vec<LockoutKey>,
    clears: Vec<LockoutKey>,
    lookups: usize,
    verifies: usize,
    dummy_verifies: usize,
    starts: Vec<NewSession>,
    deletions: usize,
}

/// An engine whose lockout, user, session stores and hasher answer as
/// `w` says (the user store answers with `user`), recording into `seen`.
fn engine(w: &World, user: Option<User>, seen: &Arc<Mutex<Seen>>) -> Engine {
    let mut attempts = MockLoginAttemptStore::new();
    let admission = match w.admit {
        Admit::Admitted(failures) => Admission::Admitted { failures },
        Admit::Locked(s) => Admission::Locked {
            retry_at: t0() + TimeDelta::seconds(s),
        },
    };
    let s = seen.clone();
    attempts
        .expect_admit()
        .returning(move |key, now, window, threshold| {
            assert_eq!(*key.email(), email());
            assert_eq!(now, t0());
            assert_eq!(window, TimeDelta::seconds(900));
            assert_eq!(threshold, THRESHOLD);
            s.lock().unwrap().admits.push(key.clone());
            Ok(admission)
        });
    let s = seen.clone();
    attempts.expect_clear().returning(move |key| {
        assert_eq!(*key.email(), email());
        s.lock().unwrap().clears.push(key.clone());
        Ok(())
    });

    let mut users = MockUserStore::new();
    let s = seen.clone();
    users.expect_find_by_email().returning(move |_| {
        s.lock().unwrap().lookups += 1;
        Ok(user.clone())
    });
    let s = seen.clone();
    users.expect_delete_account().returning(move |_| {
        s.lock().unwrap().deletions += 1;
        Ok(None)
    });

    let mut hasher = MockPasswordHasher::new();
    let verify = w.verify;
    let s = seen.clone();
    hasher.expect_verify().returning(move |_, h| {
        assert_eq!(*h, stored_hash());
        s.lock().unwrap().verifies += 1;
        match verify {
            Verify::Right => Ok(Verification {
                matches: true,
                needs_rehash: false,
            }),
            Verify::Wrong => Ok(Verification {
                matches: false,
                needs_rehash: false,
            }),
            Verify::Malformed => Err(HashError::Malformed),
        }
    });
    let s = seen.clone();
    hasher.expect_verify_dummy().returning(move |_| {
        s.lock().unwrap().dummy_verifies += 1;
        Ok(())
    });

    let mut sessions = MockSessionStore::new();
    let stale = w.stale;
    let s = seen.clone();
    sessions.expect_start().returning(move |n| {
        s.lock().unwrap().starts.push(n);
        Ok(if stale {
            SessionStart::Stale
        } else {
            SessionStart::Started
        })
    });

    let fakes = memory_stores();
    let stores = Stores {
        users: Arc::new(users),
        login_attempts: Arc::new(attempts),
        sessions: Arc::new(sessions),
        ..fakes
    };
    let cfg = Config {
        jwt_secret: SECRET.into(),
        rate_limit_disabled: w.rate_limit_disabled,
        require_verification: w.require_verification,
        login_lockout_threshold: THRESHOLD,
        login_lockout_window_seconds: 900,
        ..Config::default()
    };
    Engine::new(
        cfg,
        Deps {
            stores,
            hasher: Arc::new(hasher),
            clock: Arc::new(FixedClock::default()),
            mailer: Arc::new(RecordingMailer::new()),
            sms: Arc::new(regstack_testkit::RecordingSms::new()),
            events: EventBus::default(),
            template_overrides: Default::default(),
        },
    )
    .unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The sign-in rules, written out plainly: the answer `login` must give.
#[derive(Debug, PartialEq)]
enum Expected {
    SignedIn,
    Locked(u64),
    Invalid(Option<u32>),
    Disabled,
    Unverified,
}

fn expected(w: &World) -> Expected {
    let counted = !w.rate_limit_disabled;
    let failures = match (counted, w.admit) {
        (true, Admit::Locked(s)) => return Expected::Locked(s.max(1) as u64),
        (true, Admit::Admitted(f)) => Some(f),
        (false, _) => None,
    };
    let remaining = failures
        .map(|f| THRESHOLD.saturating_sub(f))
        .filter(|r| *r > 0);
    let Some(a) = &w.account else {
        return Expected::Invalid(remaining);
    };
    if !a.has_password || w.verify != Verify::Right {
        return Expected::Invalid(remaining);
    }
    if !a.active {
        return Expected::Disabled;
    }
    if w.require_verification && !a.verified {
        return Expected::Unverified;
    }
    if w.stale {
        return Expected::Invalid(None);
    }
    Expected::SignedIn
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn login_never_starts_a_session_without_authenticated(w in world()) {
        let user = w.account.as_ref().map(user_of);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let engine = engine(&w, user.clone(), &seen);
        let (device_cookie, device) = present(w.cookie);
        let client = ClientContext { device_cookie, ..ClientContext::default() };
        let result = block_on(engine.login(&email(), &SecretString::from("pw"), None, &client));
        let seen = seen.lock().unwrap();
        let counted = !w.rate_limit_disabled;

        // The lockout is asked once, before anything else, when it is on:
        // in the presented device's bucket if the cookie is the address's
        // own, in the address's bucket for anything else.
        let address = LockoutKey::address(email());
        let bucket = match &device {
            Some(d) => LockoutKey::device(email(), d.clone()),
            None => address.clone(),
        };
        let expected_admits = if counted { vec![bucket.clone()] } else { vec![] };
        prop_assert_eq!(&seen.admits, &expected_admits);
        let locked = counted && matches!(w.admit, Admit::Locked(_));
        // A locked attempt never looks the account up nor hashes.
        if locked {
            prop_assert_eq!(seen.lookups + seen.verifies + seen.dummy_verifies, 0);
        } else {
            prop_assert_eq!(seen.lookups, 1);
            prop_assert_eq!(seen.verifies + seen.dummy_verifies, 1);
        }

        // A session start means: admitted, a right password, an account
        // that may sign in — and it starts for exactly that account, bound
        // to the epoch read with its password.
        prop_assert!(seen.starts.len() <= 1);
        if let Some(start) = seen.starts.first() {
            prop_assert!(!locked);
            let a = w.account.as_ref().expect("a session for no account");
            prop_assert!(a.has_password);
            prop_assert_eq!(w.verify, Verify::Right);
            prop_assert!(a.active);
            prop_assert!(a.verified || !w.require_verification);
            let u = user.as_ref().unwrap();
            prop_assert_eq!(&start.user_id, &u.id);
            prop_assert_eq!(start.credential_epoch, u.tokens_invalidated_after);
        }
        // Failures are cleared only for a sign-in that reached the session:
        // in the bucket admitted and the address's.
        let expected_clears = match (counted && !seen.starts.is_empty(), &device) {
            (false, _) => vec![],
            (true, Some(_)) => vec![bucket.clone(), address.clone()],
            (true, None) => vec![address.clone()],
        };
        prop_assert_eq!(&seen.clears, &expected_clears);

        let got = match &result {
            Ok(LoginOutcome::MfaRequired(_) | LoginOutcome::PasswordChangeRequired(_)) => {
                return Err(TestCaseError::fail("these accounts have no second factor and no forced change"))
            }
            Ok(LoginOutcome::SignedIn(s)) => {
                prop_assert_eq!(&s.user.id, &user.as_ref().unwrap().id);
                prop_assert_eq!(Some(&s.session_id), seen.starts.first().map(|n| &n.id));
                // A success trusts the device with a new cookie for the
                // address, naming a new device.
                let cookie = s.device_cookie.as_ref().expect("a device cookie");
                let named = device_cookies().recognize(cookie.expose_secret(), &email());
                prop_assert!(named.is_some());
                prop_assert_ne!(named, device);
                Expected::SignedIn
            }
            Err(AuthError::Locked { retry_after_secs }) => Expected::Locked(*retry_after_secs),
            Err(AuthError::InvalidCredentials { remaining }) => Expected::Invalid(*remaining),
            Err(AuthError::AccountDisabled) => Expected::Disabled,
            Err(AuthError::EmailNotVerified) => Expected::Unverified,
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
        };
        prop_assert_eq!(got, expected(&w));
    }

    #[test]
    fn the_current_password_check_counts_like_a_sign_in_and_never_starts_a_session(w in world()) {
        // The signed-in account: it exists, is active (authenticate saw to
        // that); verification does not matter to a caller already in.
        let account = Account { active: true, ..w.account.clone().unwrap_or(Account {
            has_password: true, active: true, verified: false, epoch: None,
        }) };
        let user = user_of(&account);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let engine = engine(&w, None, &seen);
        let principal = Principal {
            user: user.clone(),
            session: Session {
                id: SessionId::generate(),
                user_id: user.id.clone(),
                created_at: t0(),
                last_used_at: t0(),
                expires_at: t0() + TimeDelta::days(1),
                idle_expires_at: t0() + TimeDelta::days(1),
                user_agent: None,
                ip: None,
                revoked_at: None,
                revoked_reason: None,
            },
        };
        // Deletion is the caller whose next step is one store call: it
        // happens exactly when the check passes. A device cookie, even the
        // address's own, does not move the check out of the address's
        // bucket.
        let client = ClientContext { device_cookie: present(w.cookie).0, ..ClientContext::default() };
        let result = block_on(engine.delete_account(&principal, &SecretString::from("pw"), &client));
        let seen = seen.lock().unwrap();
        let counted = !w.rate_limit_disabled;
        let locked = counted && matches!(w.admit, Admit::Locked(_));
        let address = LockoutKey::address(email());

        let expected_admits = if counted { vec![address.clone()] } else { vec![] };
        prop_assert_eq!(&seen.admits, &expected_admits);
        prop_assert!(seen.starts.is_empty());
        prop_assert_eq!(seen.lookups, 0);
        if locked {
            prop_assert_eq!(seen.verifies + seen.dummy_verifies, 0);
        } else {
            prop_assert_eq!(seen.verifies + seen.dummy_verifies, 1);
        }
        let right = !locked && account.has_password && w.verify == Verify::Right;
        let expected_clears = if counted && right { vec![address] } else { vec![] };
        prop_assert_eq!(&seen.clears, &expected_clears);
        prop_assert_eq!(seen.deletions, usize::from(right));
        match result {
            Ok(()) => prop_assert!(right),
            Err(AuthError::Locked { retry_after_secs }) => {
                prop_assert!(locked);
                let Admit::Locked(s) = w.admit else { unreachable!() };
                prop_assert_eq!(retry_after_secs, s.max(1) as u64);
            }
            Err(AuthError::WrongCurrentPassword) => prop_assert!(!locked && !right),
            Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
        }
    }
}
