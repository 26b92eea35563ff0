//! SMS codes as a state machine over time: proptest drives random
//! sequences of sign-ins (each texts a new code and supersedes the last
//! challenge), confirmations with the right code, a wrong one, another
//! challenge's code or one already used, and clock moves, against one
//! [`Engine`] (memory stores, a [`FixedClock`], the [`FakeHasher`], a
//! [`RecordingSms`] that holds the texted codes) for an account whose
//! second factor is its phone — next to a plain model of the challenges.
//!
//! After every step the engine's answer must be the model's, which gives a
//! session only for the right code of the newest challenge, before it
//! expires, within its attempts and never twice; the run also checks
//! directly that no code ever starts two sessions and that sessions are
//! exactly the model's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use proptest::prelude::*;
use regstack_core::engine::{LoginOutcome, Method, PresentedCode};
use regstack_core::{AuthError, ClientContext, Config, Deps, Engine, EventBus};
use regstack_ports::{Clock, Timestamp};
use regstack_testkit::fixtures::{email, new_user, PASSWORD};
use regstack_testkit::{memory_stores, FakeHasher, FixedClock, RecordingMailer, RecordingSms};
use secrecy::{ExposeSecret, SecretString};

const PHONE: &str = "+442079460958";
const ADDRESS: &str = "texted@example.com";
const ATTEMPTS: u32 = 5;
const CODE_TTL: i64 = 300;

#[derive(Debug, Clone)]
enum Op {
    /// Sign in with the password: a new challenge, a new text.
    Login,
    /// Confirm challenge `which` (an index among those opened, wrapped)
    /// with `code`.
    Confirm { which: usize, code: CodeChoice },
    /// Move the clock.
    Advance(i64),
}

#[derive(Debug, Clone, Copy)]
enum CodeChoice {
    /// The code texted for that challenge.
    Right,
    /// A code no challenge was sent.
    Wrong,
    /// The code texted for another challenge.
    Other,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Login),
        6 => (0usize..8, prop_oneof![
            3 => Just(CodeChoice::Right),
            2 => Just(CodeChoice::Wrong),
            1 => Just(CodeChoice::Other),
        ])
            .prop_map(|(which, code)| Op::Confirm { which, code }),
        2 => prop_oneof![Just(0i64), 10..120i64, Just(CODE_TTL)].prop_map(Op::Advance),
    ]
}

/// One challenge as the model sees it.
struct Modelled {
    token: String,
    code: String,
    expires_at: Timestamp,
    attempts_used: u32,
    /// Spent by a right code, superseded by a newer sign-in, or gone after
    /// its attempts.
    dead: bool,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Session,
    Wrong(u32),
    Invalid,
}

async fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let stores = memory_stores();
    let clock = FixedClock::default();
    let sms = RecordingSms::new();
    let mut cfg = Config {
        jwt_secret: "sms-model-secret-sms-model-secret-0123456".into(),
        rate_limit_disabled: true,
        ..Config::default()
    };
    cfg.mfa.enable_sms_2fa = true;
    cfg.mfa.sms_max_per_number_per_day = 10_000;
    cfg.mfa.sms_max_per_account_per_day = 10_000;
    let engine = Engine::new(
        cfg,
        Deps {
            stores: stores.clone(),
            hasher: Arc::new(FakeHasher::new()),
            clock: Arc::new(clock.clone()),
            mailer: Arc::new(RecordingMailer::new()),
            sms: Arc::new(sms.clone()),
            events: EventBus::default(),
            template_overrides: Default::default(),
        },
    )
    .unwrap();
    let user = stores.users.insert(new_user(ADDRESS)).await.unwrap();
    assert!(stores
        .mfa
        .set_phone(&user.id, PHONE, None, clock.now())
        .await
        .unwrap());
    let client = ClientContext::default();
    let mut model: Vec<Modelled> = Vec::new();
    let mut used_codes: Vec<String> = Vec::new();
    let mut sessions = 0usize;
    for op in ops {
        match op {
            Op::Login => {
                let texts_before = sms.sent().len();
                let out = engine
                    .login(
                        &email(ADDRESS),
                        &SecretString::from(PASSWORD),
                        None,
                        &client,
                    )
                    .await
                    .map_err(|e| TestCaseError::fail(format!("login: {e:?}")))?;
                let LoginOutcome::MfaRequired(pending) = out else {
                    return Err(TestCaseError::fail("a password alone signed in"));
                };
                prop_assert_eq!(pending.delivery, Method::Sms);
                let texts = sms
                    .wait_for(PHONE, texts_before + 1, Duration::from_secs(5))
                    .await;
                prop_assert_eq!(texts.len(), texts_before + 1, "one text per sign-in");
                let body = &texts[texts_before].body;
                let code: String = body
                    .split("code: ")
                    .nth(1)
                    .unwrap()
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                // A new code supersedes the old one.
                for m in &mut model {
                    m.dead = true;
                }
                model.push(Modelled {
                    token: pending.mfa_pending_token.expose_secret().to_owned(),
                    code,
                    expires_at: clock.now() + TimeDelta::seconds(CODE_TTL),
                    attempts_used: 0,
                    dead: false,
                });
            }
            Op::Advance(s) => clock.advance(TimeDelta::seconds(*s)),
            Op::Confirm { which, code } => {
                if model.is_empty() {
                    continue;
                }
                let i = which % model.len();
                let presented = match code {
                    CodeChoice::Right => model[i].code.clone(),
                    CodeChoice::Wrong => "000000".to_owned(),
                    CodeChoice::Other => model[(i + 1) % model.len()].code.clone(),
                };
                let got = engine
                    .confirm_sign_in(
                        &SecretString::from(model[i].token.clone()),
                        &PresentedCode {
                            code: SecretString::from(presented.clone()),
                            method: None,
                        },
                        &client,
                    )
                    .await;
                let got = match got {
                    Ok(_) => Outcome::Session,
                    Err(AuthError::WrongMfaCode { remaining }) => Outcome::Wrong(remaining),
                    Err(AuthError::MfaChallengeInvalid) => Outcome::Invalid,
                    Err(e) => return Err(TestCaseError::fail(format!("confirm: {e:?}"))),
                };
                // The model.
                let now = clock.now();
                let m = &mut model[i];
                let expected = if m.dead || now >= m.expires_at || m.attempts_used >= ATTEMPTS {
                    m.dead = m.dead || m.attempts_used >= ATTEMPTS;
                    Outcome::Invalid
                } else {
                    m.attempts_used += 1;
                    let left = ATTEMPTS - m.attempts_used;
                    if presented == m.code {
                        m.dead = true;
                        Outcome::Session
                    } else if left > 0 {
                        Outcome::Wrong(left)
                    } else {
                        Outcome::Invalid
                    }
                };
                prop_assert_eq!(&got, &expected, "confirm #{} with {:?}", i, code);
                if got == Outcome::Session {
                    sessions += 1;
                    prop_assert!(
                        !used_codes.contains(&presented),
                        "a texted code signed in twice"
                    );
                    used_codes.push(presented);
                }
            }
        }
    }
    let live = stores
        .sessions
        .list(&user.id, clock.now())
        .await
        .unwrap()
        .len();
    prop_assert_eq!(
        live,
        sessions,
        "every session came from a right, fresh code"
    );
    Ok(())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_texted_code_signs_in_once_only_for_its_newest_live_challenge(
        ops in prop::collection::vec(op(), 1..25),
    ) {
        block_on(run(&ops))?;
    }
}
