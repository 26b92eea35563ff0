//! Password sign-in, and the re-authentication of sensitive changes.
//!
//! ```text
//! Started ──Attempted{device}──▶ Admitting{bucket} ──Admitted{failures}──▶ Admitted ──Checked(right)──▶ Authenticated ──SessionStarted──▶ SignedIn
//!    │       (Admit(bucket))        │                                      ▲  │                           (StartSession)
//!    │                              └──LockedOut──▶ Locked                 │  ├──Checked(no account / no password / wrong)──▶ Rejected
//!    └──Attempted, lockout off (rate_limit_disabled)───────────────────────┘  ├──Checked(right, but disabled / unverified)──▶ Refused
//!                                                                             └──Checked(right), re-authentication──▶ Confirmed
//! ```
//!
//! **Which lockout bucket** (so strangers cannot lock out the owner's
//! browser) is decided here, from what
//! the attempt came with: a client whose device cookie the runner
//! recognised for this address (`Attempted { device: Some(_) }`) is
//! admitted against that device's own bucket ([`Bucket::Device`]) and
//! nothing else, so the address-wide lockout that strangers can trigger
//! never refuses the owner's browser, and that browser's own failures lock
//! only it (a stolen cookie cannot guess for ever either). Every other
//! attempt counts in the address's bucket, exactly as before device cookies
//! existed. A right password clears the bucket the attempt was admitted in
//! and, as before, the address's. (`/login` mints a new device cookie when
//! a run ends in `SignedIn`: see `engine::sign_in`.)
//!
//! One machine serves two purposes ([`Purpose`]): `/login`, which ends in a
//! session, and the current-password check of password change, email
//! change and account deletion, which ends in `Confirmed` and never starts
//! one. Both go through the same lockout (LK-8): the same counter, so
//! guessing a password through a stolen session is no cheaper than through
//! `/login`.
//!
//! Everything a run learns travels in the machine: the account read with
//! the password comes in with `Checked(Right)` and goes out in
//! `StartSession`, whose record carries the credential epoch the store's
//! conditional start compares (`NewSession::credential_epoch`); the
//! started session comes back in `SessionStarted` and ends in `SignedIn`.
//! (A start that finds the epoch moved fails the run with the session
//! starter's "wrong credentials" answer.)
//!
//! Invariants (checked by the property tests below):
//! - no `StartSession` without an admission (or lockout off) followed by a
//!   correct password on an active, (when required) verified account — and
//!   then for exactly the account that password was checked against;
//! - an attempt from a recognised device is admitted against that device's
//!   bucket, any other against the address's; failures are cleared only in
//!   the bucket admitted and the address's;
//! - re-authentication never starts a session;
//! - a locked attempt never checks a password (lockout is decided before
//!   any hashing);
//! - at most one admission and one password check per run;
//! - every admitted attempt that does not end in `Authenticated` or
//!   `Confirmed` stays counted (disabled and unverified accounts included:
//!   EN-3);
//! - unknown accounts and password-less accounts cost the same one check as
//!   a wrong password (the runner pays a dummy verify);
//! - every run that ends `Rejected` or `Refused` reports why, once
//!   ([`Effect::Failed`]: the `login_failed` event and its INFO line), so
//!   operators see a credential-stuffing run that clients cannot tell apart.
//!
//! The second factor will sit between the password check and
//! `Authenticated` (`SecondFactorPending`, where a login run rests until
//! the code arrives), so that no sign-in path can skip it.

use chrono::TimeDelta;
use regstack_ports::{DeviceId, Timestamp, User, UserId};

use super::gate::{Cleared, FirstFactor, Missing};
use super::Machine;
use crate::events::EventKind;

/// The lockout the machine runs an attempt through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures allowed in the window.
    pub threshold: u32,
    /// How far back failures count.
    pub window: TimeDelta,
}

/// Which lockout window an attempt counts in (the runner turns it into a
/// `LockoutKey` with the presented address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bucket {
    /// The address's own, shared by every client without a recognised
    /// device cookie.
    Address,
    /// One device that signed in to the address before.
    Device(DeviceId),
}

/// What a sign-in run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `/login`: ends in a session.
    Session,
    /// The current-password check of a caller already signed in. It proves
    /// the password only: the account checks (active, verified) were made
    /// when the session started and are repeated by every request's
    /// `authenticate`, and no session starts. A refused lockout fires no
    /// `login_locked` event: nobody tried to sign in.
    Reauthentication,
}

/// The settings a sign-in reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInPolicy {
    /// `None` when lockout is off (`rate_limit_disabled`).
    pub lockout: Option<LockoutPolicy>,
    /// Whether an unverified address is refused (`require_verification`).
    pub require_verification: bool,
    /// What the run is for.
    pub purpose: Purpose,
}

/// Why a correct password still does not sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Disabled by an administrator.
    Disabled,
    /// Address not yet proven while verification is required.
    Unverified,
}

/// Where a sign-in stands. `S` is what a started session gives the caller
/// (the engine's tokens); the machine only carries it to the end.
#[derive(Debug, Clone, PartialEq)]
pub enum SignIn<S> {
    /// Credentials received, nothing decided.
    Started,
    /// Waiting for the lockout store's answer about `bucket`.
    Admitting {
        /// Where the attempt is being counted.
        bucket: Bucket,
    },
    /// May check the password.
    Admitted {
        /// Attempts in the bucket's window including this one.
        failures: u32,
        /// The bucket the lockout store recorded this attempt in; `None`
        /// when lockout is off.
        counted: Option<Bucket>,
    },
    /// Refused before any hashing.
    Locked {
        /// Seconds until an attempt is admitted again (≥ 1).
        retry_after_secs: u64,
    },
    /// Wrong credentials.
    Rejected {
        /// Attempts left, for the regstack hint; `None` when lockout is off
        /// or none are left.
        remaining: Option<u32>,
    },
    /// Right password, but the account may not sign in.
    Refused(Refusal),
    /// The password was right and the account has a second factor: no
    /// session until it is checked (the challenge is the gate's,
    /// [`super::gate`]).
    SecondFactorRequired {
        /// The account as read with the password: the challenge the runner
        /// opens carries its credential epoch.
        user: Box<User>,
    },
    /// The password was right and the account must set a new one before
    /// anything else: no session; the runner hands out a single-use
    /// password-change token.
    PasswordChangeRequired {
        /// The account as read with the password.
        user: Box<User>,
    },
    /// Every factor checked: a session is starting.
    Authenticated {
        /// Who.
        user_id: UserId,
    },
    /// Signed in.
    SignedIn(S),
    /// Re-authentication passed.
    Confirmed,
}

/// What the runner observed.
#[derive(Debug, Clone, PartialEq)]
pub enum SignInEvent<S> {
    /// Credentials were presented.
    Attempted {
        /// The device the client's device cookie names, if the runner
        /// recognised it for the presented address; `None` for no cookie
        /// and for one that is forged, malformed or another address's.
        device: Option<DeviceId>,
    },
    /// The lockout store recorded this attempt.
    Admitted {
        /// Attempts in the window including this one.
        failures: u32,
    },
    /// The lockout store refused this attempt.
    LockedOut {
        /// When the lock lifts.
        retry_at: Timestamp,
    },
    /// The password check finished.
    Checked(CredentialCheck),
    /// The session started.
    SessionStarted(S),
}

/// The result of looking the account up and checking the password.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialCheck {
    /// No account for the address (a dummy verify was paid).
    NoAccount,
    /// The account has no password (a dummy verify was paid).
    NoPassword,
    /// The password does not match.
    Wrong,
    /// The password matches this account, as read together with the hash
    /// that was verified (so its `tokens_invalidated_after` is the
    /// credential epoch a session must be bound to).
    Right(Box<User>),
}

/// Why an attempt failed, as operators see it (the `login_failed` event
/// and its log line). The client gets one answer for the first three
/// (EN-1); the distinction is what lets an operator tell credential
/// stuffing (many unknown addresses) from guessing at one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No account for the address.
    NoAccount,
    /// The account has no password (OAuth-only).
    NoPassword,
    /// The password did not match.
    WrongPassword,
    /// Right password, account disabled.
    Disabled,
    /// Right password, address not verified.
    Unverified,
}

impl Failure {
    /// The `reason` the event and log line carry.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoAccount => "no_account",
            Self::NoPassword => "no_password",
            Self::WrongPassword => "wrong_password",
            Self::Disabled => "disabled",
            Self::Unverified => "unverified",
        }
    }
}

/// What the runner must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Ask the lockout store to admit this attempt into `Bucket` (reports
    /// `Admitted` or `LockedOut`).
    Admit(Bucket, LockoutPolicy),
    /// Look the account up and verify the password, or pay a dummy verify
    /// (reports `Checked`).
    CheckPassword,
    /// Forget the lockout attempts in this bucket of the address.
    ClearFailures(Bucket),
    /// Start a session for this account — cleared by the gate
    /// ([`Cleared`]) from the record the password was checked against; its
    /// `tokens_invalidated_after` is the credential epoch the store's
    /// conditional start compares (reports `SessionStarted`). Every sign-in
    /// path ends in this effect.
    StartSession(Cleared),
    /// Fire an event.
    Emit(EventKind),
    /// Report a failed attempt (the `login_failed` event and an INFO line).
    Failed(Failure),
}

impl<S> Machine for SignIn<S> {
    type Event = SignInEvent<S>;
    type Effect = Effect;
    type Policy = SignInPolicy;

    fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Locked { .. }
                | Self::Rejected { .. }
                | Self::Refused(_)
                | Self::SecondFactorRequired { .. }
                | Self::PasswordChangeRequired { .. }
                | Self::SignedIn(_)
                | Self::Confirmed
        )
    }

    /// Advances the machine. Pure: no clock, no store. Terminal states and
    /// out-of-order events leave the state unchanged and do nothing.
    fn step(
        self,
        event: SignInEvent<S>,
        now: Timestamp,
        policy: &SignInPolicy,
    ) -> (Self, Vec<Effect>) {
        use SignInEvent as E;
        let session = policy.purpose == Purpose::Session;
        match (self, event) {
            (SignIn::Started, E::Attempted { device }) => match policy.lockout {
                Some(lockout) => {
                    let bucket = device.map_or(Bucket::Address, Bucket::Device);
                    (
                        SignIn::Admitting {
                            bucket: bucket.clone(),
                        },
                        vec![Effect::Admit(bucket, lockout)],
                    )
                }
                None => (
                    SignIn::Admitted {
                        failures: 0,
                        counted: None,
                    },
                    vec![Effect::CheckPassword],
                ),
            },
            (SignIn::Admitting { bucket }, E::Admitted { failures }) => (
                SignIn::Admitted {
                    failures,
                    counted: Some(bucket),
                },
                vec![Effect::CheckPassword],
            ),
            (SignIn::Admitting { .. }, E::LockedOut { retry_at }) => {
                let locked = SignIn::Locked {
                    retry_after_secs: retry_after_secs(retry_at, now),
                };
                let effects = if session {
                    vec![Effect::Emit(EventKind::LoginLocked)]
                } else {
                    vec![]
                };
                (locked, effects)
            }
            (SignIn::Admitted { failures, counted }, E::Checked(check)) => match check {
                CredentialCheck::NoAccount
                | CredentialCheck::NoPassword
                | CredentialCheck::Wrong => {
                    let threshold = policy.lockout.map_or(0, |l| l.threshold);
                    let remaining = counted
                        .is_some()
                        .then(|| threshold.saturating_sub(failures))
                        .filter(|r| *r > 0);
                    let failure = match check {
                        CredentialCheck::NoAccount => Failure::NoAccount,
                        CredentialCheck::NoPassword => Failure::NoPassword,
                        _ => Failure::WrongPassword,
                    };
                    (
                        SignIn::Rejected { remaining },
                        vec![Effect::Failed(failure)],
                    )
                }
                CredentialCheck::Right(_) if !session => (SignIn::Confirmed, clear(counted)),
                CredentialCheck::Right(user) if !user.is_active_at(now) => (
                    SignIn::Refused(Refusal::Disabled),
                    vec![Effect::Failed(Failure::Disabled)],
                ),
                CredentialCheck::Right(user)
                    if policy.require_verification && !user.is_verified =>
                {
                    (
                        SignIn::Refused(Refusal::Unverified),
                        vec![Effect::Failed(Failure::Unverified)],
                    )
                }
                CredentialCheck::Right(user) => {
                    let user_id = user.id.clone();
                    match Cleared::check(user.clone(), FirstFactor::Password, None) {
                        Ok(cleared) => {
                            let mut effects = clear(counted);
                            // The runner's session starter fires
                            // `user_logged_in` itself, whichever sign-in
                            // path reaches it.
                            effects.push(Effect::StartSession(cleared));
                            (SignIn::Authenticated { user_id }, effects)
                        }
                        // Not signed in yet: the attempt stays counted until
                        // the second factor passes (the challenge's runner
                        // clears it then), so someone who has the password
                        // but not the factor is locked out like a guesser.
                        Err(Missing::SecondFactor) => {
                            (SignIn::SecondFactorRequired { user }, vec![])
                        }
                        // The same, for an account that must first set a
                        // new password (`flows::password_change`).
                        Err(Missing::PasswordChange) => {
                            (SignIn::PasswordChangeRequired { user }, vec![])
                        }
                    }
                }
            },
            (SignIn::Authenticated { .. }, E::SessionStarted(signed_in)) => {
                (SignIn::SignedIn(signed_in), vec![])
            }
            (state, _) => (state, vec![]),
        }
    }
}

/// What a right password clears: the bucket the attempt was admitted in
/// and, as before device buckets, the address's own (the owner has proven
/// the password, so the clients without a cookie start over too). Nothing
/// when lockout is off.
fn clear(counted: Option<Bucket>) -> Vec<Effect> {
    match counted {
        None => vec![],
        Some(Bucket::Address) => vec![Effect::ClearFailures(Bucket::Address)],
        Some(device) => vec![
            Effect::ClearFailures(device),
            Effect::ClearFailures(Bucket::Address),
        ],
    }
}

/// Whole seconds until a lock lifts at `retry_at`, rounded up and at
/// least 1: what `Retry-After` and the refusal's text say.
pub fn retry_after_secs(retry_at: Timestamp, now: Timestamp) -> u64 {
    let micros = (retry_at - now)
        .num_microseconds()
        .unwrap_or(i64::MAX)
        .max(0);
    (micros as u64).div_ceil(1_000_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use proptest::prelude::*;
    use regstack_ports::Email;

    fn now() -> Timestamp {
        DateTime::UNIX_EPOCH + TimeDelta::days(20_000)
    }
    const LOCKOUT: LockoutPolicy = LockoutPolicy {
        threshold: 5,
        window: TimeDelta::minutes(15),
    };
    const P: SignInPolicy = SignInPolicy {
        lockout: Some(LOCKOUT),
        require_verification: true,
        purpose: Purpose::Session,
    };
    const REAUTH: SignInPolicy = SignInPolicy {
        purpose: Purpose::Reauthentication,
        ..P
    };

    /// The session a test run "starts".
    type Run = SignIn<u8>;

    fn user(active: bool, verified: bool) -> Box<User> {
        Box::new(User {
            id: UserId::generate(),
            email: Email::parse("a@example.com").unwrap(),
            password_hash: None,
            is_active: active,
            is_verified: verified,
            is_superuser: false,
            full_name: None,
            phone_number: None,
            is_mfa_enabled: false,
            must_change_password: false,
            created_at: now(),
            updated_at: now(),
            last_login: None,
            tokens_invalidated_after: Some(now() - TimeDelta::days(1)),
            disabled_reason: None,
            disabled_until: None,
        })
    }

    /// What the gate makes of a password sign-in of `account`.
    fn cleared(account: &User) -> Cleared {
        Cleared::check(Box::new(account.clone()), FirstFactor::Password, None).unwrap()
    }

    #[test]
    fn a_right_password_for_an_account_with_a_second_factor_starts_no_session() {
        let mut account = user(true, true);
        account.is_mfa_enabled = true;
        let (s, e) = run(
            vec![
                SignInEvent::Attempted { device: None },
                SignInEvent::Admitted { failures: 1 },
                SignInEvent::Checked(CredentialCheck::Right(account.clone())),
            ],
            &P,
        );
        assert_eq!(
            s,
            SignIn::SecondFactorRequired {
                user: account.clone()
            }
        );
        assert!(s.is_terminal());
        assert!(!e.iter().any(|e| matches!(e, Effect::StartSession(_))));
        assert!(
            !e.iter().any(|e| matches!(e, Effect::ClearFailures(_))),
            "the attempt stays counted until the factor passes"
        );
    }

    /// Steps `events` from `Started`, collecting every effect.
    fn run(events: Vec<SignInEvent<u8>>, policy: &SignInPolicy) -> (Run, Vec<Effect>) {
        let mut state = Run::Started;
        let mut all = vec![];
        for ev in events {
            let (next, effects) = state.step(ev, now(), policy);
            state = next;
            all.extend(effects);
        }
        (state, all)
    }

    #[test]
    fn remaining_attempts_count_down_like_regstack() {
        for (failures, expect) in [(1, Some(4)), (4, Some(1)), (5, None)] {
            let (s, _) = run(
                vec![
                    SignInEvent::Attempted { device: None },
                    SignInEvent::Admitted { failures },
                    SignInEvent::Checked(CredentialCheck::Wrong),
                ],
                &P,
            );
            assert_eq!(s, SignIn::Rejected { remaining: expect });
        }
    }

    #[test]
    fn an_attempt_asks_the_lockout_store_first_unless_lockout_is_off() {
        let (s, e) = Run::Started.step(SignInEvent::Attempted { device: None }, now(), &P);
        assert_eq!(
            s,
            SignIn::Admitting {
                bucket: Bucket::Address
            }
        );
        assert_eq!(e, vec![Effect::Admit(Bucket::Address, LOCKOUT)]);
        let off = SignInPolicy { lockout: None, ..P };
        let (s, e) = Run::Started.step(SignInEvent::Attempted { device: None }, now(), &off);
        assert_eq!(
            s,
            SignIn::Admitted {
                failures: 0,
                counted: None
            }
        );
        assert_eq!(e, vec![Effect::CheckPassword]);
    }

    #[test]
    fn a_recognised_device_counts_in_its_own_bucket_only() {
        let device = devices()[0].clone();
        let mine = Bucket::Device(device.clone());
        let attempt = SignInEvent::Attempted {
            device: Some(device),
        };
        let (s, e) = Run::Started.step(attempt.clone(), now(), &P);
        assert_eq!(
            s,
            SignIn::Admitting {
                bucket: mine.clone()
            }
        );
        assert_eq!(
            e,
            vec![Effect::Admit(mine.clone(), LOCKOUT)],
            "the address's bucket is not asked: strangers' failures cannot refuse it"
        );
        // Its own failures count down its own budget, and lock it alone.
        let (s, _) = run(
            vec![
                attempt.clone(),
                SignInEvent::Admitted { failures: 4 },
                SignInEvent::Checked(CredentialCheck::Wrong),
            ],
            &P,
        );
        assert_eq!(s, SignIn::Rejected { remaining: Some(1) });
        let (s, e) = run(
            vec![
                attempt.clone(),
                SignInEvent::LockedOut {
                    retry_at: now() + TimeDelta::seconds(30),
                },
            ],
            &P,
        );
        assert_eq!(
            s,
            SignIn::Locked {
                retry_after_secs: 30
            }
        );
        assert_eq!(
            e,
            vec![
                Effect::Admit(mine.clone(), LOCKOUT),
                Effect::Emit(EventKind::LoginLocked)
            ]
        );
        // Lockout off: no bucket at all.
        let off = SignInPolicy { lockout: None, ..P };
        let (_, e) = Run::Started.step(attempt, now(), &off);
        assert_eq!(e, vec![Effect::CheckPassword]);
    }

    #[test]
    fn a_right_password_clears_the_bucket_admitted_and_the_addresss() {
        let device = devices()[1].clone();
        let account = user(true, true);
        let (s, e) = run(
            vec![
                SignInEvent::Attempted {
                    device: Some(device.clone()),
                },
                SignInEvent::Admitted { failures: 3 },
                SignInEvent::Checked(CredentialCheck::Right(account.clone())),
            ],
            &P,
        );
        assert!(matches!(s, SignIn::Authenticated { .. }));
        assert_eq!(
            e,
            vec![
                Effect::Admit(Bucket::Device(device.clone()), LOCKOUT),
                Effect::CheckPassword,
                Effect::ClearFailures(Bucket::Device(device)),
                Effect::ClearFailures(Bucket::Address),
                Effect::StartSession(cleared(&account)),
            ]
        );
        let (_, e) = run(
            vec![
                SignInEvent::Attempted { device: None },
                SignInEvent::Admitted { failures: 1 },
                SignInEvent::Checked(CredentialCheck::Right(account.clone())),
            ],
            &P,
        );
        assert_eq!(
            e,
            vec![
                Effect::Admit(Bucket::Address, LOCKOUT),
                Effect::CheckPassword,
                Effect::ClearFailures(Bucket::Address),
                Effect::StartSession(cleared(&account)),
            ],
            "without a device, only the address's bucket, as before"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let at = now() + TimeDelta::milliseconds(899_001);
        let (s, e) = run(
            vec![
                SignInEvent::Attempted { device: None },
                SignInEvent::LockedOut { retry_at: at },
            ],
            &P,
        );
        assert_eq!(
            s,
            SignIn::Locked {
                retry_after_secs: 900
            }
        );
        assert_eq!(
            e,
            vec![
                Effect::Admit(Bucket::Address, LOCKOUT),
                Effect::Emit(EventKind::LoginLocked)
            ]
        );
    }

    #[test]
    fn a_disabled_account_with_the_right_password_is_refused_and_stays_counted() {
        let (s, e) = run(
            vec![
                SignInEvent::Attempted { device: None },
                SignInEvent::Admitted { failures: 1 },
                SignInEvent::Checked(CredentialCheck::Right(user(false, true))),
            ],
            &P,
        );
        assert_eq!(s, SignIn::Refused(Refusal::Disabled));
        assert!(!e.iter().any(|e| matches!(e, Effect::ClearFailures(_))));
    }

    #[test]
    fn a_timed_disabling_refuses_until_its_end_and_not_from_it_on() {
        let sign_in = |until| {
            let mut account = user(false, true);
            account.disabled_until = Some(until);
            account.disabled_reason = Some("cool-off".into());
            run(
                vec![
                    SignInEvent::Attempted { device: None },
                    SignInEvent::Admitted { failures: 1 },
                    SignInEvent::Checked(CredentialCheck::Right(account)),
                ],
                &P,
            )
        };
        let (s, _) = sign_in(now() + TimeDelta::microseconds(1));
        assert_eq!(
            s,
            SignIn::Refused(Refusal::Disabled),
            "one µs before its end"
        );
        let (s, e) = sign_in(now());
        assert!(
            matches!(s, SignIn::Authenticated { .. }),
            "at its end: {s:?}"
        );
        assert!(e.iter().any(|e| matches!(e, Effect::StartSession(_))));
    }

    #[test]
    fn the_session_starts_from_the_account_the_password_was_checked_against() {
        let account = user(true, true);
        let (s, e) = run(
            vec![
                SignInEvent::Attempted { device: None },
                SignInEvent::Admitted { failures: 1 },
                SignInEvent::Checked(CredentialCheck::Right(account.clone())),
            ],
            &P,
        );
        assert_eq!(
            s,
            SignIn::Authenticated {
                user_id: account.id.clone()
            }
        );
        assert_eq!(
            e.last(),
            Some(&Effect::StartSession(cleared(&account))),
            "the record, and so its credential epoch, travels unchanged"
        );
        let (s, _) = s.step(SignInEvent::SessionStarted(7), now(), &P);
        assert_eq!(s, SignIn::SignedIn(7));
        assert!(s.is_terminal());
    }

    #[test]
    fn re_authentication_confirms_without_a_session_and_locks_out_silently() {
        let (s, e) = run(
            vec![
                SignInEvent::Attempted { device: None },
                SignInEvent::Admitted { failures: 2 },
                SignInEvent::Checked(CredentialCheck::Right(user(true, false))),
            ],
            &REAUTH,
        );
        assert_eq!(s, SignIn::Confirmed);
        assert_eq!(
            e,
            vec![
                Effect::Admit(Bucket::Address, LOCKOUT),
                Effect::CheckPassword,
                Effect::ClearFailures(Bucket::Address)
            ]
        );
        let (s, e) = run(
            vec![
                SignInEvent::Attempted { device: None },
                SignInEvent::LockedOut { retry_at: now() },
            ],
            &REAUTH,
        );
        assert_eq!(
            s,
            SignIn::Locked {
                retry_after_secs: 1
            }
        );
        assert_eq!(e, vec![Effect::Admit(Bucket::Address, LOCKOUT)]);
    }

    /// A few devices, so that runs repeat them.
    fn devices() -> [DeviceId; 3] {
        [
            DeviceId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            DeviceId::parse("fedcba9876543210fedcba9876543210").unwrap(),
            DeviceId::parse("00000000000000000000000000000000").unwrap(),
        ]
    }

    fn arb_event() -> impl Strategy<Value = SignInEvent<u8>> {
        prop_oneof![
            3 => prop::option::of(0usize..3)
                .prop_map(|d| SignInEvent::Attempted { device: d.map(|i| devices()[i].clone()) }),
            2 => (1u32..8).prop_map(|failures| SignInEvent::Admitted { failures }),
            1 => (0i64..2000).prop_map(|s| SignInEvent::LockedOut {
                retry_at: now() + TimeDelta::seconds(s)
            }),
            1 => Just(SignInEvent::Checked(CredentialCheck::NoAccount)),
            1 => Just(SignInEvent::Checked(CredentialCheck::NoPassword)),
            1 => Just(SignInEvent::Checked(CredentialCheck::Wrong)),
            3 => (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(active, verified, mfa, change)| {
                let mut u = user(active, verified);
                u.is_mfa_enabled = mfa;
                u.must_change_password = change;
                SignInEvent::Checked(CredentialCheck::Right(u))
            }),
            1 => any::<u8>().prop_map(SignInEvent::SessionStarted),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = SignInPolicy> {
        (
            prop::option::of(1u32..8),
            any::<bool>(),
            prop_oneof![Just(Purpose::Session), Just(Purpose::Reauthentication)],
        )
            .prop_map(|(threshold, require_verification, purpose)| SignInPolicy {
                lockout: threshold.map(|threshold| LockoutPolicy {
                    threshold,
                    window: TimeDelta::minutes(15),
                }),
                require_verification,
                purpose,
            })
    }

    proptest! {
        #[test]
        fn no_session_without_admission_and_a_fully_valid_password(
            policy in arb_policy(),
            events in prop::collection::vec(arb_event(), 0..12),
        ) {
            let mut state = Run::Started;
            let mut admitted = false;
            let (mut admits, mut checks, mut sessions, mut failed) = (0, 0, 0, 0);
            let mut last_check = None;
            // The device the run's attempt came with, and the bucket the
            // lockout store was asked about.
            let mut attempted_from: Option<Option<DeviceId>> = None;
            let mut asked: Option<Bucket> = None;
            for ev in events {
                let before = state.clone();
                if matches!((&state, &ev), (SignIn::Admitting { .. }, SignInEvent::Admitted { .. }))
                    || matches!((&state, &ev, policy.lockout), (SignIn::Started, SignInEvent::Attempted { .. }, None))
                {
                    admitted = true;
                }
                if let (SignIn::Started, SignInEvent::Attempted { device }) = (&state, &ev) {
                    attempted_from = Some(device.clone());
                }
                if let (SignIn::Admitted { .. }, SignInEvent::Checked(c)) = (&state, &ev) {
                    last_check = Some(c.clone());
                }
                let was_locked = matches!(state, SignIn::Locked { .. });
                let (next, effects) = state.step(ev, now(), &policy);
                for e in &effects {
                    match e {
                        Effect::Admit(bucket, l) => {
                            admits += 1;
                            prop_assert_eq!(Some(*l), policy.lockout);
                            // A recognised device counts in its own bucket,
                            // every other attempt in the address's.
                            let expected = match attempted_from.clone().flatten() {
                                Some(d) => Bucket::Device(d),
                                None => Bucket::Address,
                            };
                            prop_assert_eq!(bucket, &expected);
                            asked = Some(bucket.clone());
                        }
                        Effect::CheckPassword => {
                            checks += 1;
                            prop_assert!(!was_locked);
                            prop_assert!(admitted);
                        }
                        Effect::StartSession(cleared) => {
                            sessions += 1;
                            prop_assert_eq!(policy.purpose, Purpose::Session);
                            prop_assert!(admitted);
                            let Some(CredentialCheck::Right(checked)) = &last_check else {
                                return Err(TestCaseError::fail("session without a right password"));
                            };
                            let u = cleared.user();
                            prop_assert_eq!(&**checked, u);
                            prop_assert!(u.is_active);
                            prop_assert!(u.is_verified || !policy.require_verification);
                            // The password alone never clears an account
                            // with a second factor.
                            prop_assert!(!u.is_mfa_enabled);
                            prop_assert!(!u.must_change_password);
                            prop_assert_eq!(cleared.second_factor(), None);
                        }
                        Effect::ClearFailures(bucket) => {
                            prop_assert!(policy.lockout.is_some());
                            // Only the bucket admitted, and the address's.
                            prop_assert!(
                                *bucket == Bucket::Address || Some(bucket) == asked.as_ref()
                            );
                            prop_assert!(matches!(last_check, Some(CredentialCheck::Right(_))));
            let cleared_on_success = matches!(next, SignIn::Authenticated { .. } | SignIn::Confirmed);
                            prop_assert!(cleared_on_success);
                        }
                        Effect::Failed(failure) => {
                            failed += 1;
                            // Exactly the attempts that end refused after
                            // a password check, for the reason checked.
                            let expected = match (&last_check, &next) {
                                (Some(CredentialCheck::NoAccount), SignIn::Rejected { .. }) => Failure::NoAccount,
                                (Some(CredentialCheck::NoPassword), SignIn::Rejected { .. }) => Failure::NoPassword,
                                (Some(CredentialCheck::Wrong), SignIn::Rejected { .. }) => Failure::WrongPassword,
                                (Some(CredentialCheck::Right(_)), SignIn::Refused(Refusal::Disabled)) => Failure::Disabled,
                                (Some(CredentialCheck::Right(_)), SignIn::Refused(Refusal::Unverified)) => Failure::Unverified,
                                _ => return Err(TestCaseError::fail("a failure reported without a failed check")),
                            };
                            prop_assert_eq!(*failure, expected);
                        }
                        Effect::Emit(kind) => {
                            prop_assert_eq!(*kind, EventKind::LoginLocked);
                            prop_assert_eq!(policy.purpose, Purpose::Session);
                            let locked = matches!(next, SignIn::Locked { .. });
                            prop_assert!(locked);
                        }
                    }
                }
                if before.is_terminal() {
                    prop_assert!(effects.is_empty());
                    prop_assert_eq!(&next, &before);
                }
                if matches!(next, SignIn::SignedIn(_)) && !before.is_terminal() {
                    let from_authenticated = matches!(before, SignIn::Authenticated { .. });
                    prop_assert!(from_authenticated);
                }
                if next == SignIn::Confirmed && before != SignIn::Confirmed {
                    prop_assert_eq!(policy.purpose, Purpose::Reauthentication);
                    prop_assert!(matches!(last_check, Some(CredentialCheck::Right(_))));
                }
                state = next;
            }
            prop_assert!(admits <= 1);
            prop_assert!(checks <= 1);
            prop_assert!(sessions <= 1);
            prop_assert!(failed <= 1);
            // Every run refused after its password check reported why.
            if matches!(state, SignIn::Rejected { .. } | SignIn::Refused(_)) { prop_assert_eq!(failed, 1); }
            if matches!(state, SignIn::Locked { .. }) { prop_assert_eq!(checks, 0); }
        }
    }
}
