//! Password sign-in.
//!
//! ```text
//! Started ──LockoutSkipped / Admitted{failures}──▶ Admitted ──Checked(ok)──▶ Authenticated
//!    │                                                │
//!    └──LockedOut──▶ Locked                           ├──Checked(no account / no password / wrong)──▶ Rejected
//!                                                     └──Checked(right, but disabled / unverified)──▶ Refused
//! ```
//!
//! Invariants (checked by the property tests below):
//! - no `StartSession` without an admission followed by a correct password
//!   on an active, (when required) verified account;
//! - a locked attempt never checks a password (lockout is decided before
//!   any hashing);
//! - at most one password check per sign-in;
//! - every admitted attempt that does not end in a session stays counted
//!   (disabled and unverified accounts included: EN-3);
//! - unknown accounts and password-less accounts cost the same one check as
//!   a wrong password (the runner pays a dummy verify).
//!
//! The second factor will sit between `Admitted` and `Authenticated`
//! (`SecondFactorPending`), so that no sign-in path can skip it.

use regstack_ports::{Timestamp, UserId};

use crate::events::EventKind;

/// Lockout settings the machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures allowed in the window.
    pub threshold: u32,
}

/// Why a correct password still does not sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Disabled by an administrator.
    Disabled,
    /// Address not yet proven while verification is required.
    Unverified,
}

/// Where a sign-in stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// Credentials received, nothing decided.
    Started,
    /// May check the password. `counted` is false when lockout is off.
    Admitted {
        /// Attempts in the window including this one.
        failures: u32,
        /// Whether this attempt was recorded by the lockout store.
        counted: bool,
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
    /// Signed in: a session must start.
    Authenticated {
        /// Who.
        user_id: UserId,
    },
}

/// What the runner observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInEvent {
    /// Lockout is switched off (`rate_limit_disabled`).
    LockoutSkipped,
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
}

/// The result of looking the account up and checking the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialCheck {
    /// No account for the address (a dummy verify was paid).
    NoAccount,
    /// The account has no password (a dummy verify was paid).
    NoPassword,
    /// The password does not match.
    Wrong,
    /// The password matches.
    Right {
        /// Account id.
        user_id: UserId,
        /// Not disabled.
        active: bool,
        /// Verified, or verification not required.
        verified_or_exempt: bool,
    },
}

/// What the runner must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Look the account up and verify the password (or pay a dummy verify).
    CheckPassword,
    /// Forget the lockout attempts of this address.
    ClearFailures,
    /// Start a session for this user (the one function every sign-in path
    /// ends in).
    StartSession(UserId),
    /// Fire an event.
    Emit(EventKind),
}

impl SignIn {
    /// Whether the machine has reached an answer.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::Started | Self::Admitted { .. })
    }

    /// Advances the machine. Pure: no clock, no store. Terminal states and
    /// out-of-order events leave the state unchanged and do nothing.
    pub fn step(
        self,
        event: SignInEvent,
        now: Timestamp,
        policy: LockoutPolicy,
    ) -> (SignIn, Vec<Effect>) {
        use SignInEvent as E;
        match (self, event) {
            (SignIn::Started, E::LockoutSkipped) => (
                SignIn::Admitted {
                    failures: 0,
                    counted: false,
                },
                vec![Effect::CheckPassword],
            ),
            (SignIn::Started, E::Admitted { failures }) => (
                SignIn::Admitted {
                    failures,
                    counted: true,
                },
                vec![Effect::CheckPassword],
            ),
            (SignIn::Started, E::LockedOut { retry_at }) => {
                let secs = retry_after_secs(retry_at, now);
                (
                    SignIn::Locked {
                        retry_after_secs: secs,
                    },
                    vec![Effect::Emit(EventKind::LoginLocked)],
                )
            }
            (SignIn::Admitted { failures, counted }, E::Checked(check)) => match check {
                CredentialCheck::NoAccount
                | CredentialCheck::NoPassword
                | CredentialCheck::Wrong => {
                    let remaining = counted
                        .then(|| policy.threshold.saturating_sub(failures))
                        .filter(|r| *r > 0);
                    (SignIn::Rejected { remaining }, vec![])
                }
                CredentialCheck::Right { active: false, .. } => {
                    (SignIn::Refused(Refusal::Disabled), vec![])
                }
                CredentialCheck::Right {
                    verified_or_exempt: false,
                    ..
                } => (SignIn::Refused(Refusal::Unverified), vec![]),
                CredentialCheck::Right { user_id, .. } => {
                    let mut effects = Vec::with_capacity(2);
                    if counted {
                        effects.push(Effect::ClearFailures);
                    }
                    // `StartSession` fires `user_logged_in` itself, whichever
                    // sign-in path reaches it.
                    effects.push(Effect::StartSession(user_id.clone()));
                    (SignIn::Authenticated { user_id }, effects)
                }
            },
            (state, _) => (state, vec![]),
        }
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
    use chrono::{DateTime, TimeDelta};
    use proptest::prelude::*;

    fn now() -> Timestamp {
        DateTime::UNIX_EPOCH + TimeDelta::days(20_000)
    }
    const P: LockoutPolicy = LockoutPolicy { threshold: 5 };

    #[test]
    fn remaining_attempts_count_down_like_regstack() {
        for (failures, expect) in [(1, Some(4)), (4, Some(1)), (5, None)] {
            let (s, _) = SignIn::Started.step(SignInEvent::Admitted { failures }, now(), P);
            let (s, _) = s.step(SignInEvent::Checked(CredentialCheck::Wrong), now(), P);
            assert_eq!(s, SignIn::Rejected { remaining: expect });
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let at = now() + TimeDelta::milliseconds(899_001);
        let (s, e) = SignIn::Started.step(SignInEvent::LockedOut { retry_at: at }, now(), P);
        assert_eq!(
            s,
            SignIn::Locked {
                retry_after_secs: 900
            }
        );
        assert_eq!(e, vec![Effect::Emit(EventKind::LoginLocked)]);
    }

    #[test]
    fn a_disabled_account_with_the_right_password_is_refused_and_stays_counted() {
        let (s, _) = SignIn::Started.step(SignInEvent::Admitted { failures: 1 }, now(), P);
        let right = CredentialCheck::Right {
            user_id: UserId::generate(),
            active: false,
            verified_or_exempt: true,
        };
        let (s, e) = s.step(SignInEvent::Checked(right), now(), P);
        assert_eq!(s, SignIn::Refused(Refusal::Disabled));
        assert!(!e.contains(&Effect::ClearFailures));
    }

    fn arb_event() -> impl Strategy<Value = SignInEvent> {
        let uid = UserId::generate();
        prop_oneof![
            Just(SignInEvent::LockoutSkipped),
            (1u32..8).prop_map(|failures| SignInEvent::Admitted { failures }),
            (0i64..2000).prop_map(|s| SignInEvent::LockedOut {
                retry_at: now() + TimeDelta::seconds(s)
            }),
            Just(SignInEvent::Checked(CredentialCheck::NoAccount)),
            Just(SignInEvent::Checked(CredentialCheck::NoPassword)),
            Just(SignInEvent::Checked(CredentialCheck::Wrong)),
            (any::<bool>(), any::<bool>()).prop_map(move |(active, verified_or_exempt)| {
                SignInEvent::Checked(CredentialCheck::Right {
                    user_id: uid.clone(),
                    active,
                    verified_or_exempt,
                })
            }),
        ]
    }

    proptest! {
        #[test]
        fn no_session_without_admission_and_a_fully_valid_password(events in prop::collection::vec(arb_event(), 0..12)) {
            let mut state = SignIn::Started;
            let mut admitted = false;
            let mut checks = 0;
            let mut sessions = 0;
            let mut last_check = None;
            for ev in events {
                let before_terminal = state.is_terminal();
                let was_locked = matches!(state, SignIn::Locked { .. });
                if matches!((&state, &ev), (SignIn::Started, SignInEvent::Admitted { .. } | SignInEvent::LockoutSkipped)) {
                    admitted = true;
                }
                if let (SignIn::Admitted { .. }, SignInEvent::Checked(c)) = (&state, &ev) {
                    last_check = Some(c.clone());
                }
                let (next, effects) = state.step(ev, now(), P);
                for e in &effects {
                    match e {
                        Effect::CheckPassword => { checks += 1; prop_assert!(!was_locked); }
                        Effect::StartSession(_) => {
                            sessions += 1;
                            prop_assert!(admitted);
                            let ok = matches!(last_check, Some(CredentialCheck::Right { active: true, verified_or_exempt: true, .. }));
                            prop_assert!(ok);
                        }
                        _ => {}
                    }
                }
                if before_terminal { prop_assert!(effects.is_empty()); }
                state = next;
            }
            prop_assert!(checks <= 1);
            prop_assert!(sessions <= 1);
            if matches!(state, SignIn::Locked { .. }) { prop_assert_eq!(checks, 0); }
        }
    }
}
