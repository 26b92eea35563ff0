//! Second factors as a state machine over time: proptest drives random
//! sequences of sign-ins, challenge confirmations, clock moves, TOTP
//! enrolment and removal and backup-code renewal against one [`Engine`]
//! (memory stores, a [`FixedClock`], the cheap [`FakeHasher`], the lockout
//! on or off), next to a plain model of what the account has: whether TOTP
//! is on and with which secret, the last TOTP step accepted, the unused
//! and the dead backup codes, every challenge with its attempts left, the
//! address's lockout counter.
//!
//! After every step the engine's answer must be the model's. Because the
//! model gives a session only for a right password on an account without a
//! second factor, or for a right password followed by a *fresh* code — a
//! TOTP step later than any accepted before and within ±1 step of now, or
//! an unused backup code — on a live challenge with attempts left, opened
//! under the current factors, that comparison is property (a): no session
//! without every factor the account requires. It is backed by checks that
//! do not go through the model: wrappers around the real stores see every
//! `SessionStore::start` and refuse one for an account with
//! `is_mfa_enabled` unless a factor was proven in the same request (b: no
//! bypass by a path the model does not know), count the attempts each
//! challenge answered with `Counted` (never more than
//! `sms_code_max_attempts`, so after five wrong codes even the right one
//! is refused), and record every accepted TOTP step (per secret) and spent
//! backup code (c: each works at most once in the whole run).
//!
//! TOTP codes are computed independently of the engine's `totp-rs`, by the
//! test kit's RFC 6238 implementation (`regstack_testkit::totp`), over the
//! base32 secret `totp_setup` shows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::TimeDelta;
use proptest::prelude::*;
use regstack_core::engine::{LoginOutcome, PresentedCode};
use regstack_core::{AuthError, ClientContext, Config, Deps, Engine, EventBus};
use regstack_ports::{
    ChallengeAttempt, Clock, MfaStore, NewSession, SessionId, SessionStart, SessionStore,
    StoreError, Stores, Timestamp, TokenHash, User, UserId,
};
use regstack_testkit::fixtures::{email, new_user, PASSWORD};
use regstack_testkit::forward::{forwarding, MfaStoreForward, SessionStoreForward};
use regstack_testkit::totp::{base32_decode, code_for_step, step_of};
use regstack_testkit::{memory_stores, FakeHasher, FixedClock, RecordingMailer};
use secrecy::{ExposeSecret, SecretString};

const SECRET: &str = "mfa-model-test-secret-mfa-model-test-0001";
const ADDRESS: &str = "model@example.com";
const MAX_ATTEMPTS: u32 = 5;
const TTL_SECS: i64 = 600;
const THRESHOLD: usize = 5;
const WINDOW_SECS: i64 = 900;
const WRONG_PASSWORD: &str = "not-the-password";
/// A well-formed backup code no run ever issues (2^-50 to collide).
const BOGUS_BACKUP: &str = "zzzzz-zzzzz";

// ---------------------------------------------------------------------
// RFC 6238: the test kit's own implementation (`regstack_testkit::totp`).

/// The step a code matches at `now` (±1 step; the later one if two), as
/// RFC 6238 verification with a one-step skew defines it.
fn matched_step(secret: &[u8], code: &str, now: Timestamp) -> Option<u64> {
    let cur = step_of(now);
    (cur - 1..=cur + 1)
        .filter(|s| code_for_step(secret, *s) == code)
        .max()
}

// ---------------------------------------------------------------------
// Observation of the real stores, independent of the model.

#[derive(Default)]
struct Seen {
    /// `Counted` answers per challenge, over the whole run.
    counted: HashMap<TokenHash, u32>,
    /// Factors proven (a TOTP step accepted, a backup code spent) in the
    /// current request and not yet used by a session start.
    proofs: u32,
    /// Sessions started in the current request.
    starts: u32,
    /// The sealed secret of the TOTP factor enabled last.
    sealed: Option<String>,
    /// Every TOTP step accepted, per sealed secret.
    accepted: HashSet<(String, u64)>,
    /// Every backup code spent.
    spent: HashSet<TokenHash>,
    /// What broke a property, in words.
    violations: Vec<String>,
}

struct Observed {
    inner: Stores,
    seen: Arc<Mutex<Seen>>,
}

#[async_trait]
impl SessionStoreForward for Observed {
    fn sessions(&self) -> &dyn SessionStore {
        &*self.inner.sessions
    }

    async fn start(&self, session: NewSession) -> Result<SessionStart, StoreError> {
        let user = self.inner.users.get(&session.user_id).await?;
        {
            let mut seen = self.seen.lock().unwrap();
            if user.is_some_and(|u| u.is_mfa_enabled) {
                if seen.proofs == 0 {
                    seen.violations.push(
                        "a session started for an account with a second factor, \
                         without a factor proven in that request"
                            .into(),
                    );
                } else {
                    seen.proofs -= 1;
                }
            }
        }
        let started = self.sessions().start(session).await?;
        if started == SessionStart::Started {
            self.seen.lock().unwrap().starts += 1;
        }
        Ok(started)
    }
}

#[async_trait]
impl MfaStoreForward for Observed {
    fn mfa(&self) -> &dyn MfaStore {
        &*self.inner.mfa
    }

    async fn attempt_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<ChallengeAttempt, StoreError> {
        let attempt = self.mfa().attempt_challenge(id, now).await?;
        if matches!(attempt, ChallengeAttempt::Counted(_)) {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.counted.entry(id.clone()).or_default();
            *n += 1;
            if *n > MAX_ATTEMPTS {
                let n = *n;
                seen.violations.push(format!(
                    "challenge counted {n} attempts (max {MAX_ATTEMPTS})"
                ));
            }
        }
        Ok(attempt)
    }

    async fn accept_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        let accepted = self.mfa().accept_totp_step(user, step).await?;
        if accepted {
            let mut seen = self.seen.lock().unwrap();
            let key = (seen.sealed.clone().unwrap_or_default(), step);
            if !seen.accepted.insert(key) {
                seen.violations
                    .push(format!("TOTP step {step} accepted twice for one secret"));
            }
            seen.proofs += 1;
        }
        Ok(accepted)
    }

    async fn spend_backup_code(&self, user: &UserId, hash: &TokenHash) -> Result<bool, StoreError> {
        let spent = self.mfa().spend_backup_code(user, hash).await?;
        if spent {
            let mut seen = self.seen.lock().unwrap();
            if !seen.spent.insert(hash.clone()) {
                seen.violations.push("a backup code was spent twice".into());
            }
            seen.proofs += 1;
        }
        Ok(spent)
    }

    async fn enable_totp<'k>(
        &self,
        user: &UserId,
        sealed_secret: &str,
        backup_codes: &[TokenHash],
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let enabled = self
            .mfa()
            .enable_totp(user, sealed_secret, backup_codes, keep, now)
            .await?;
        if enabled {
            self.seen.lock().unwrap().sealed = Some(sealed_secret.to_owned());
        }
        Ok(enabled)
    }
}

// ---------------------------------------------------------------------
// Operations.

/// A code presented to a sign-in challenge.
#[derive(Debug, Clone)]
enum Code {
    /// The current secret's code for the step `now + offset × 30 s`
    /// (offset −2..=2: ±1 is inside the window, ±2 outside). Without TOTP,
    /// the last secret shown (or none): a code that proves nothing.
    Totp(i64),
    /// The code of the last step accepted: a replay.
    ReplayLastStep,
    /// Six digits picked at random.
    Digits(u32),
    /// One of the unused backup codes.
    UnusedBackup(usize),
    /// A spent or replaced one.
    DeadBackup(usize),
    /// A well-formed code never issued.
    BogusBackup,
}

/// Which pending token a sign-in confirmation presents.
#[derive(Debug, Clone)]
enum Token {
    /// The newest sign-in challenge's.
    Latest,
    /// Any sign-in token seen in the run (mostly superseded).
    Any(usize),
    /// The newest TOTP setup's (a challenge of another kind).
    Setup,
    /// One never issued.
    Bogus,
}

/// Which pending token a TOTP confirmation presents.
#[derive(Debug, Clone)]
enum SetupToken {
    Latest,
    SignIn,
    Bogus,
}

#[derive(Debug, Clone)]
enum Op {
    Login {
        right_password: bool,
        one_step: Option<Code>,
    },
    Confirm {
        token: Token,
        code: Code,
    },
    Advance(i64),
    TotpSetup,
    /// `totp_confirm` with the pending secret's code at `now + offset ×
    /// 30 s`, or (`None`) six random digits.
    TotpConfirm {
        token: SetupToken,
        offset: Option<i64>,
        digits: u32,
    },
    TotpDisable {
        right_password: bool,
    },
    RegenerateBackupCodes,
    /// `totp_setup`, then `totp_confirm` with the new secret's code for
    /// now: (re-)enrolment in one go, which ends every pending sign-in.
    Enrol,
}

fn arb_code() -> impl Strategy<Value = Code> {
    prop_oneof![
        6 => (-2i64..=2).prop_map(Code::Totp),
        2 => Just(Code::ReplayLastStep),
        2 => (0u32..1_000_000).prop_map(Code::Digits),
        3 => any::<usize>().prop_map(Code::UnusedBackup),
        2 => any::<usize>().prop_map(Code::DeadBackup),
        1 => Just(Code::BogusBackup),
    ]
}

fn arb_op() -> impl Strategy<Value = Op> {
    let token = prop_oneof![
        6 => Just(Token::Latest),
        2 => any::<usize>().prop_map(Token::Any),
        1 => Just(Token::Setup),
        1 => Just(Token::Bogus),
    ];
    let setup_token = prop_oneof![
        6 => Just(SetupToken::Latest),
        1 => Just(SetupToken::SignIn),
        1 => Just(SetupToken::Bogus),
    ];
    prop_oneof![
        8 => (prop::bool::weighted(0.7), prop::option::weighted(0.25, arb_code()))
            .prop_map(|(right_password, one_step)| Op::Login { right_password, one_step }),
        9 => (token, arb_code()).prop_map(|(token, code)| Op::Confirm { token, code }),
        4 => (0i64..=90).prop_map(Op::Advance),
        1 => Just(Op::TotpSetup),
        2 => (setup_token, prop::option::weighted(0.8, -2i64..=2), 0u32..1_000_000)
            .prop_map(|(token, offset, digits)| Op::TotpConfirm { token, offset, digits }),
        1 => prop::bool::weighted(0.8).prop_map(|right_password| Op::TotpDisable { right_password }),
        1 => Just(Op::RegenerateBackupCodes),
        2 => Just(Op::Enrol),
    ]
}

/// Mostly starts enrolled (setup, then the current code), so TOTP is in
/// play from the first step.
fn arb_run() -> impl Strategy<Value = (bool, Vec<Op>)> {
    (
        any::<bool>(),
        prop::bool::weighted(0.75),
        prop::collection::vec(arb_op(), 1..=23),
    )
        .prop_map(|(rate_limit_disabled, enrol_first, mut ops)| {
            if enrol_first {
                ops.splice(
                    0..0,
                    [
                        Op::TotpSetup,
                        Op::TotpConfirm {
                            token: SetupToken::Latest,
                            offset: Some(0),
                            digits: 0,
                        },
                    ],
                );
            }
            (rate_limit_disabled, ops)
        })
}

// ---------------------------------------------------------------------
// The model.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    SignIn,
    Enrolment,
}

#[derive(Debug, Clone)]
struct Challenge {
    /// The pending token (unknown for a one-step login's challenge).
    token: Option<String>,
    kind: Kind,
    /// For enrolment: the secret being enrolled.
    secret: Option<Vec<u8>>,
    expires_at: Timestamp,
    attempts_left: u32,
    /// The factor generation it was opened under: a factor change since
    /// (which moves the credential epoch) ends a sign-in challenge.
    generation: u32,
    /// Deleted: spent, superseded, or found exhausted.
    gone: bool,
}

#[derive(Debug, Clone)]
struct Totp {
    secret: Vec<u8>,
    last_step: Option<u64>,
}

#[derive(Debug)]
struct Model {
    now: Timestamp,
    lockout_on: bool,
    /// Counted attempts in the address's lockout bucket.
    attempts: Vec<Timestamp>,
    totp: Option<Totp>,
    /// The last secret `totp_setup` showed, enrolled or not.
    last_shown: Option<Vec<u8>>,
    unused_backup: Vec<String>,
    dead_backup: Vec<String>,
    challenges: Vec<Challenge>,
    generation: u32,
}

/// What a step answers, as the test compares it.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Session,
    MfaRequired,
    BackupCodes,
    Done,
    Locked,
    InvalidCredentials(Option<u32>),
    WrongCurrentPassword,
    WrongMfaCode(u32),
    ChallengeInvalid,
    SetupInvalid,
    TotpNotEnabled,
    NoSecondFactor,
}

fn outcome_of_error(e: &AuthError) -> Outcome {
    match e {
        AuthError::Locked { .. } => Outcome::Locked,
        AuthError::InvalidCredentials { remaining } => Outcome::InvalidCredentials(*remaining),
        AuthError::WrongCurrentPassword => Outcome::WrongCurrentPassword,
        AuthError::WrongMfaCode { remaining } => Outcome::WrongMfaCode(*remaining),
        AuthError::MfaChallengeInvalid => Outcome::ChallengeInvalid,
        AuthError::MfaSetupInvalid => Outcome::SetupInvalid,
        AuthError::TotpNotEnabled => Outcome::TotpNotEnabled,
        AuthError::NoSecondFactor => Outcome::NoSecondFactor,
        other => panic!("unexpected error {other:?}"),
    }
}

enum Attempt {
    Counted(usize),
    Exhausted,
    Unknown,
}

impl Model {
    fn new(lockout_on: bool, now: Timestamp) -> Self {
        Self {
            now,
            lockout_on,
            attempts: Vec::new(),
            totp: None,
            last_shown: None,
            unused_backup: Vec::new(),
            dead_backup: Vec::new(),
            challenges: Vec::new(),
            generation: 0,
        }
    }

    /// The lockout's admission: `Err(Locked)`, or the failures counted
    /// with this attempt (`None` with the lockout off).
    fn admit(&mut self) -> Result<Option<u32>, Outcome> {
        if !self.lockout_on {
            return Ok(None);
        }
        let start = self.now - TimeDelta::seconds(WINDOW_SECS);
        let counted = self.attempts.iter().filter(|t| **t > start).count();
        if counted >= THRESHOLD {
            return Err(Outcome::Locked);
        }
        self.attempts.push(self.now);
        Ok(Some(counted as u32 + 1))
    }

    fn clear_lockout(&mut self) {
        self.attempts.clear();
    }

    /// The current-password check of setup, removal and renewal.
    fn reauthenticate(&mut self, right: bool) -> Result<(), Outcome> {
        self.admit()?;
        if !right {
            return Err(Outcome::WrongCurrentPassword);
        }
        self.clear_lockout();
        Ok(())
    }

    fn open(&mut self, kind: Kind, token: Option<String>, secret: Option<Vec<u8>>) -> usize {
        for c in self.challenges.iter_mut().filter(|c| c.kind == kind) {
            c.gone = true;
        }
        self.challenges.push(Challenge {
            token,
            kind,
            secret,
            expires_at: self.now + TimeDelta::seconds(TTL_SECS),
            attempts_left: MAX_ATTEMPTS,
            generation: self.generation,
            gone: false,
        });
        self.challenges.len() - 1
    }

    fn find(&self, token: &str) -> Option<usize> {
        self.challenges
            .iter()
            .position(|c| c.token.as_deref() == Some(token))
    }

    /// The store's `attempt_challenge`.
    fn attempt(&mut self, idx: Option<usize>) -> Attempt {
        let now = self.now;
        let Some(c) = idx
            .map(|i| &mut self.challenges[i])
            .filter(|c| !c.gone && c.expires_at > now)
        else {
            return Attempt::Unknown;
        };
        if c.attempts_left == 0 {
            c.gone = true;
            return Attempt::Exhausted;
        }
        c.attempts_left -= 1;
        Attempt::Counted(idx.unwrap())
    }

    /// Whether `code` proves a factor now; spends what it proves.
    fn check_sign_in_code(&mut self, code: &str) -> bool {
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            let now = self.now;
            let Some(t) = &mut self.totp else {
                return false;
            };
            match matched_step(&t.secret, code, now) {
                Some(s) if t.last_step.is_none_or(|l| l < s) => {
                    t.last_step = Some(s);
                    true
                }
                _ => false,
            }
        } else if let Some(i) = self.unused_backup.iter().position(|c| c == code) {
            let spent = self.unused_backup.remove(i);
            self.dead_backup.push(spent);
            true
        } else {
            false
        }
    }

    /// `confirm_sign_in` of challenge `idx` with `code`.
    fn confirm(&mut self, idx: Option<usize>, code: &str) -> Outcome {
        let i = match self.attempt(idx) {
            Attempt::Counted(i) => i,
            Attempt::Exhausted | Attempt::Unknown => return Outcome::ChallengeInvalid,
        };
        if self.challenges[i].kind != Kind::SignIn {
            return Outcome::ChallengeInvalid;
        }
        if self.check_sign_in_code(code) {
            let c = &mut self.challenges[i];
            c.gone = true;
            if c.generation != self.generation {
                // The factors changed since the password was checked.
                return Outcome::ChallengeInvalid;
            }
            self.clear_lockout();
            return Outcome::Session;
        }
        match self.challenges[i].attempts_left {
            0 => Outcome::ChallengeInvalid,
            left => Outcome::WrongMfaCode(left),
        }
    }

    /// The code string for `code`, as the client would type it.
    fn code_string(&self, code: &Code) -> String {
        let secret = self
            .totp
            .as_ref()
            .map(|t| t.secret.clone())
            .or_else(|| self.last_shown.clone())
            .unwrap_or_else(|| b"no-secret-was-ever-shown".to_vec());
        let pick = |v: &[String], i: usize| {
            if v.is_empty() {
                BOGUS_BACKUP.to_owned()
            } else {
                v[i % v.len()].clone()
            }
        };
        match code {
            Code::Totp(offset) => {
                code_for_step(&secret, step_of(self.now).saturating_add_signed(*offset))
            }
            Code::ReplayLastStep => match self.totp.as_ref().and_then(|t| t.last_step) {
                Some(s) => code_for_step(&secret, s),
                None => code_for_step(&secret, step_of(self.now) - 1),
            },
            Code::Digits(n) => format!("{:06}", n % 1_000_000),
            Code::UnusedBackup(i) => pick(&self.unused_backup, *i),
            Code::DeadBackup(i) => pick(&self.dead_backup, *i),
            Code::BogusBackup => BOGUS_BACKUP.to_owned(),
        }
    }

    fn sign_in_tokens(&self) -> Vec<String> {
        self.challenges
            .iter()
            .filter(|c| c.kind == Kind::SignIn)
            .filter_map(|c| c.token.clone())
            .collect()
    }

    /// The newest token of `kind` the client was given.
    fn latest_token(&self, kind: Kind) -> Option<String> {
        self.challenges
            .iter()
            .rev()
            .filter(|c| c.kind == kind)
            .find_map(|c| c.token.clone())
    }
}

// ---------------------------------------------------------------------
// The run.

struct Harness {
    engine: Engine,
    stores: Stores,
    clock: FixedClock,
    seen: Arc<Mutex<Seen>>,
    user: UserId,
    /// The session `totp_confirm` and `totp_disable` keep (a signed-in
    /// caller's).
    session: SessionId,
}

async fn harness(rate_limit_disabled: bool) -> Harness {
    let inner = memory_stores();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let observed = forwarding(Observed {
        inner: inner.clone(),
        seen: seen.clone(),
    });
    let stores = Stores {
        sessions: observed.clone(),
        mfa: observed,
        ..inner
    };
    let user = stores.users.insert(new_user(ADDRESS)).await.unwrap();
    let clock = FixedClock::default();
    let cfg = Config {
        jwt_secret: SECRET.into(),
        rate_limit_disabled,
        ..Config::default()
    };
    assert_eq!(cfg.mfa.sms_code_max_attempts, MAX_ATTEMPTS);
    assert_eq!(cfg.mfa.mfa_pending_token_ttl_seconds, TTL_SECS as u64);
    assert_eq!(cfg.login_lockout_threshold as usize, THRESHOLD);
    assert_eq!(cfg.login_lockout_window_seconds, WINDOW_SECS as u64);
    let engine = Engine::new(
        cfg,
        Deps {
            stores: stores.clone(),
            hasher: Arc::new(FakeHasher::new()),
            clock: Arc::new(clock.clone()),
            mailer: Arc::new(RecordingMailer::new()),
            sms: Arc::new(regstack_testkit::RecordingSms::new()),
            events: EventBus::default(),
            template_overrides: Default::default(),
        },
    )
    .unwrap();
    Harness {
        engine,
        stores,
        clock,
        seen,
        user: user.id,
        session: SessionId::generate(),
    }
}

impl Harness {
    async fn user(&self) -> User {
        self.stores.users.get(&self.user).await.unwrap().unwrap()
    }

    /// Runs `op` on the engine and the model; the two outcomes.
    async fn step(&self, m: &mut Model, op: &Op) -> (Outcome, Outcome) {
        let client = ClientContext::default();
        match op {
            Op::Enrol => {
                let setup = Box::pin(self.step(m, &Op::TotpSetup)).await;
                if setup != (Outcome::Done, Outcome::Done) {
                    return setup;
                }
                let confirm = Op::TotpConfirm {
                    token: SetupToken::Latest,
                    offset: Some(0),
                    digits: 0,
                };
                Box::pin(self.step(m, &confirm)).await
            }
            Op::Advance(s) => {
                self.clock.advance(TimeDelta::seconds(*s));
                m.now += TimeDelta::seconds(*s);
                (Outcome::Done, Outcome::Done)
            }
            Op::Login {
                right_password,
                one_step,
            } => {
                let password = if *right_password {
                    PASSWORD
                } else {
                    WRONG_PASSWORD
                };
                let code = one_step.as_ref().map(|c| m.code_string(c));
                let presented = code.clone().map(|c| PresentedCode {
                    code: SecretString::from(c),
                    method: None,
                });
                let got = self
                    .engine
                    .login(
                        &email(ADDRESS),
                        &SecretString::from(password),
                        presented,
                        &client,
                    )
                    .await;
                // The model.
                let expected = (|| {
                    let failures = m.admit()?;
                    if !right_password {
                        let remaining = failures.map(|f| THRESHOLD as u32 - f).filter(|r| *r > 0);
                        return Err(Outcome::InvalidCredentials(remaining));
                    }
                    if m.totp.is_none() {
                        m.clear_lockout();
                        return Ok(Outcome::Session);
                    }
                    let idx = m.open(Kind::SignIn, None, None);
                    match &code {
                        None => Ok(Outcome::MfaRequired),
                        Some(code) => Ok(m.confirm(Some(idx), code)),
                    }
                })()
                .unwrap_or_else(|o| o);
                let got = match got {
                    Ok(LoginOutcome::SignedIn(_)) => Outcome::Session,
                    Ok(LoginOutcome::MfaRequired(p)) => {
                        // The token names the newest sign-in challenge.
                        if let Some(c) = m
                            .challenges
                            .iter_mut()
                            .rev()
                            .find(|c| c.kind == Kind::SignIn && c.token.is_none())
                        {
                            c.token = Some(p.mfa_pending_token.expose_secret().to_owned());
                        }
                        Outcome::MfaRequired
                    }
                    Ok(LoginOutcome::PasswordChangeRequired(_)) => {
                        unreachable!("no account here must change its password")
                    }
                    Err(e) => outcome_of_error(&e),
                };
                (got, expected)
            }
            Op::Confirm { token, code } => {
                let token = match token {
                    Token::Latest => m.latest_token(Kind::SignIn),
                    Token::Any(i) => {
                        let all = m.sign_in_tokens();
                        (!all.is_empty()).then(|| all[i % all.len()].clone())
                    }
                    Token::Setup => m.latest_token(Kind::Enrolment),
                    Token::Bogus => None,
                }
                .unwrap_or_else(|| "never-issued-pending-token".to_owned());
                let code = m.code_string(code);
                let got = self
                    .engine
                    .confirm_sign_in(
                        &SecretString::from(token.clone()),
                        &PresentedCode {
                            code: SecretString::from(code.clone()),
                            method: None,
                        },
                        &client,
                    )
                    .await;
                let idx = m.find(&token);
                let expected = m.confirm(idx, &code);
                let got = match got {
                    Ok(_) => Outcome::Session,
                    Err(e) => outcome_of_error(&e),
                };
                (got, expected)
            }
            Op::TotpSetup => {
                let user = self.user().await;
                let got = self
                    .engine
                    .totp_setup(&user, &SecretString::from(PASSWORD))
                    .await;
                let expected = m.reauthenticate(true).map(|()| Outcome::Done);
                let got = match got {
                    Ok(setup) => {
                        let secret = base32_decode(setup.secret.expose_secret());
                        assert_eq!(secret.len(), 20);
                        if expected.is_ok() {
                            let token = setup.pending_token.expose_secret().to_owned();
                            m.open(Kind::Enrolment, Some(token), Some(secret.clone()));
                            m.last_shown = Some(secret);
                        }
                        Outcome::Done
                    }
                    Err(e) => outcome_of_error(&e),
                };
                (got, expected.unwrap_or_else(|o| o))
            }
            Op::TotpConfirm {
                token,
                offset,
                digits,
            } => {
                let token = match token {
                    SetupToken::Latest => m.latest_token(Kind::Enrolment),
                    SetupToken::SignIn => m.latest_token(Kind::SignIn),
                    SetupToken::Bogus => None,
                }
                .unwrap_or_else(|| "never-issued-setup-token".to_owned());
                let idx = m.find(&token);
                let pending_secret = idx
                    .and_then(|i| m.challenges[i].secret.clone())
                    .or_else(|| m.last_shown.clone())
                    .unwrap_or_else(|| b"no-secret-was-ever-shown".to_vec());
                let code = match offset {
                    Some(o) => {
                        code_for_step(&pending_secret, step_of(m.now).saturating_add_signed(*o))
                    }
                    None => format!("{:06}", digits % 1_000_000),
                };
                let user = self.user().await;
                let got = self
                    .engine
                    .totp_confirm(
                        &user,
                        &self.session,
                        &SecretString::from(token),
                        &SecretString::from(code.clone()),
                        &client,
                    )
                    .await;
                // The model.
                let expected = match m.attempt(idx) {
                    Attempt::Exhausted | Attempt::Unknown => Outcome::SetupInvalid,
                    Attempt::Counted(i) if m.challenges[i].kind != Kind::Enrolment => {
                        Outcome::SetupInvalid
                    }
                    Attempt::Counted(i) => {
                        let secret = m.challenges[i].secret.clone().unwrap();
                        match matched_step(&secret, &code, m.now) {
                            Some(_) if m.challenges[i].generation != m.generation => {
                                // Spent, but the factors changed since the
                                // setup began (the credential epoch moved):
                                // nothing chosen before is committed after.
                                m.challenges[i].gone = true;
                                Outcome::SetupInvalid
                            }
                            Some(step) => {
                                m.challenges[i].gone = true;
                                m.totp = Some(Totp {
                                    secret,
                                    last_step: Some(step),
                                });
                                m.generation += 1;
                                let old = std::mem::take(&mut m.unused_backup);
                                m.dead_backup.extend(old);
                                Outcome::BackupCodes
                            }
                            None => match m.challenges[i].attempts_left {
                                0 => Outcome::SetupInvalid,
                                left => Outcome::WrongMfaCode(left),
                            },
                        }
                    }
                };
                let got = match got {
                    Ok(codes) => {
                        assert_eq!(codes.0.len(), 10);
                        if expected == Outcome::BackupCodes {
                            m.unused_backup = codes
                                .0
                                .iter()
                                .map(|c| c.expose_secret().to_owned())
                                .collect();
                        }
                        Outcome::BackupCodes
                    }
                    Err(e) => outcome_of_error(&e),
                };
                (got, expected)
            }
            Op::TotpDisable { right_password } => {
                let password = if *right_password {
                    PASSWORD
                } else {
                    WRONG_PASSWORD
                };
                let user = self.user().await;
                let got = self
                    .engine
                    .totp_disable(&user, &self.session, &SecretString::from(password), &client)
                    .await;
                let expected = (|| {
                    m.reauthenticate(*right_password)?;
                    if m.totp.take().is_none() {
                        return Err(Outcome::TotpNotEnabled);
                    }
                    m.generation += 1;
                    let old = std::mem::take(&mut m.unused_backup);
                    m.dead_backup.extend(old);
                    Ok(Outcome::Done)
                })()
                .unwrap_or_else(|o| o);
                let got = match got {
                    Ok(()) => Outcome::Done,
                    Err(e) => outcome_of_error(&e),
                };
                (got, expected)
            }
            Op::RegenerateBackupCodes => {
                let user = self.user().await;
                let got = self
                    .engine
                    .regenerate_backup_codes(&user, &SecretString::from(PASSWORD))
                    .await;
                let expected = (|| {
                    m.reauthenticate(true)?;
                    if m.totp.is_none() {
                        return Err(Outcome::NoSecondFactor);
                    }
                    Ok(Outcome::BackupCodes)
                })()
                .unwrap_or_else(|o| o);
                let got = match got {
                    Ok(codes) => {
                        if expected == Outcome::BackupCodes {
                            let old = std::mem::take(&mut m.unused_backup);
                            m.dead_backup.extend(old);
                            m.unused_backup = codes
                                .0
                                .iter()
                                .map(|c| c.expose_secret().to_owned())
                                .collect();
                        }
                        Outcome::BackupCodes
                    }
                    Err(e) => outcome_of_error(&e),
                };
                (got, expected)
            }
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs `ops`; the first broken property, in words.
async fn run(rate_limit_disabled: bool, ops: &[Op]) -> Result<(), String> {
    let h = harness(rate_limit_disabled).await;
    let mut m = Model::new(!rate_limit_disabled, h.clock.now());
    for (n, op) in ops.iter().enumerate() {
        {
            let mut seen = h.seen.lock().unwrap();
            seen.proofs = 0;
            seen.starts = 0;
        }
        let (got, expected) = h.step(&mut m, op).await;
        let at = format!("step {n} ({op:?})");
        let (violation, starts) = {
            let seen = h.seen.lock().unwrap();
            (seen.violations.first().cloned(), seen.starts)
        };
        if let Some(v) = violation {
            return Err(format!("{at}: {v}"));
        }
        if got != expected {
            return Err(format!(
                "{at}: engine answered {got:?}, the model {expected:?}"
            ));
        }
        if starts != u32::from(got == Outcome::Session) {
            return Err(format!(
                "{at}: {starts} session(s) started, the answer was {got:?}"
            ));
        }
        let user = h.user().await;
        if user.is_mfa_enabled != m.totp.is_some() {
            return Err(format!(
                "{at}: is_mfa_enabled = {}, the model says TOTP is {}",
                user.is_mfa_enabled,
                if m.totp.is_some() { "on" } else { "off" }
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// (a) no session without every factor the account requires, (b) no
    /// challenge counts more than five attempts, (c) every TOTP step and
    /// backup code works once — and every answer is the model's.
    #[test]
    fn random_runs_never_sign_in_around_a_factor_nor_reuse_a_code((rate_limit_disabled, ops) in arb_run()) {
        let result = block_on(run(rate_limit_disabled, &ops));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// (b), spelled out: five wrong codes use up the challenge, and the right
/// code on that pending token is refused after them.
#[test]
fn after_five_wrong_codes_the_right_one_is_refused() {
    let wrong = |n| Op::Confirm {
        token: Token::Latest,
        code: Code::Digits(n),
    };
    let mut ops = vec![
        Op::TotpSetup,
        Op::TotpConfirm {
            token: SetupToken::Latest,
            offset: Some(0),
            digits: 0,
        },
        Op::Advance(30),
        Op::Login {
            right_password: true,
            one_step: None,
        },
    ];
    ops.extend((0..5).map(|i| wrong(100_000 + i)));
    ops.push(Op::Confirm {
        token: Token::Latest,
        code: Code::Totp(0),
    });
    ops.push(Op::Confirm {
        token: Token::Latest,
        code: Code::UnusedBackup(0),
    });
    for rate_limit_disabled in [false, true] {
        block_on(run(rate_limit_disabled, &ops)).unwrap();
    }
}
