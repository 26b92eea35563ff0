//! The second-factor challenge: one presented code against a pending
//! challenge, in one request.
//!
//! ```text
//! Presented ──Count──▶ Counting ──Counted(c)──▶ Checking ──CodeChecked(right f)──▶ Finishing ──Finished(true)──▶ Loading ──Loaded(user)──▶ Passed ──SessionStarted──▶ SignedIn
//!                         │                        │                                 │                              │  (epoch, active)    (StartSession(Cleared))
//!                         ├──Exhausted──▶ Exhausted ├──CodeChecked(wrong), left > 0──▶ Wrong{left}                 │                     (enrolment: ──▶ Confirmed)
//!                         └──Unknown────▶ Expired   └──CodeChecked(wrong), none left─▶ Exhausted   Finished(false)─▶ Expired   Loaded(gone, changed, disabled)─▶ Expired
//! ```
//!
//! The store counts the attempt before the code is looked at
//! (`Count`, one atomic decrement), so however many requests race on one
//! challenge, no more codes are checked than it had attempts; a right code
//! then spends the challenge (`Finish`, one atomic delete), so of two
//! requests with the right code one wins. What the code is checked against
//! — an SMS code's digest, a TOTP step the store has not accepted before,
//! a backup code the store deletes as it is used — is the runner's
//! `CheckCode`; the machine only learns which factor, if any, was proven.
//!
//! A sign-in challenge ends in a session only through the gate:
//! `Cleared::check` with the factor proven, for the account as read
//! *after* the challenge was spent, refused unless its credential epoch is
//! still the one read with the password (a password change or reset in
//! between ends the challenge too) and it is still active. An enrolment
//! challenge (a phone or an authenticator being added) ends in `Confirmed`
//! and never starts a session.
//!
//! Invariants (property-tested below):
//! - `StartSession` only after `Counted`, a right code, a won `Finish` and
//!   a loaded account that is active and has the epoch of the challenge,
//!   and then at most once, cleared by exactly the factor checked;
//! - at most one `Count` and one `CheckCode` per run, and no `CheckCode`
//!   without a counted attempt;
//! - a wrong code never finishes the challenge;
//! - enrolment never starts a session.

use regstack_ports::{MfaChallenge, Timestamp, User, UserId};

use super::gate::{Cleared, FirstFactor, SecondFactor};
use super::Machine;
use crate::events::EventKind;

/// The store's answer to counting an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Counting {
    /// Counted (the record after the count: `attempts_left` is what
    /// remains); the code may be checked.
    Counted(Box<MfaChallenge>),
    /// No attempts were left: the challenge is gone.
    Exhausted,
    /// No live challenge: unknown, expired or already used.
    Unknown,
}

/// What checking the presented code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The code proves this factor (and, for a TOTP step or a backup code,
    /// the store has just made sure it is never accepted again).
    Right(SecondFactor),
    /// It proves nothing.
    Wrong,
}

/// What a challenge run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    /// `/login/mfa-confirm`: ends in a session.
    SignIn,
    /// Confirming a factor being enrolled: ends in `Confirmed`.
    Enrolment,
}

/// Where a challenge run stands. `S` is what a started session gives the
/// caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Challenge<S> {
    /// A code arrived for a pending challenge.
    Presented,
    /// Waiting for the store to count the attempt.
    Counting,
    /// Counted: waiting for the code check.
    Checking(Box<MfaChallenge>),
    /// Right code: waiting to spend the challenge.
    Finishing {
        /// The counted challenge.
        counted: Box<MfaChallenge>,
        /// The factor the code proved.
        factor: SecondFactor,
    },
    /// Spent: waiting for the account.
    Loading {
        /// The counted challenge.
        counted: Box<MfaChallenge>,
        /// The factor the code proved.
        factor: SecondFactor,
    },
    /// Cleared by the gate: a session is starting.
    Passed {
        /// Who.
        user_id: UserId,
    },
    /// Signed in.
    SignedIn(S),
    /// An enrolment challenge was met: what it was opened with (the
    /// number or the sealed secret being enrolled) is the runner's to
    /// commit.
    Confirmed {
        /// The spent challenge.
        challenge: Box<MfaChallenge>,
    },
    /// Wrong code; the challenge lives on.
    Wrong {
        /// Attempts left (≥ 1).
        remaining: u32,
    },
    /// Every attempt is used: the challenge is gone.
    Exhausted,
    /// No live challenge, or it no longer leads anywhere (spent by another
    /// request, the password changed, the account disabled or deleted).
    Expired,
}

/// What the runner observed.
#[derive(Debug, Clone, PartialEq)]
pub enum ChallengeEvent<S> {
    /// A code was presented (the first event of a run).
    Presented,
    /// The store counted the attempt (or could not).
    Counted(Counting),
    /// The code was checked.
    CodeChecked(CodeCheck),
    /// Spending the challenge: `true` for the one request that did.
    Finished(bool),
    /// The account now (`None`: deleted).
    Loaded(Option<Box<User>>),
    /// The session started.
    SessionStarted(S),
}

/// What the runner must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum ChallengeEffect {
    /// Count one attempt on the challenge (reports `Counted`).
    Count,
    /// Check the presented code for this challenge's account (reports
    /// `CodeChecked`).
    CheckCode(Box<MfaChallenge>),
    /// Spend the challenge (reports `Finished`).
    Finish,
    /// Read the account (reports `Loaded`).
    LoadUser(UserId),
    /// Start the session the gate cleared (reports `SessionStarted`).
    StartSession(Cleared),
    /// Fire an event.
    Emit(EventKind),
}

impl<S> Machine for Challenge<S> {
    type Event = ChallengeEvent<S>;
    type Effect = ChallengeEffect;
    type Policy = ChallengePurpose;

    fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::SignedIn(_)
                | Self::Confirmed { .. }
                | Self::Wrong { .. }
                | Self::Exhausted
                | Self::Expired
        )
    }

    /// Advances the run. Pure; terminal states and out-of-order events
    /// leave the state unchanged and do nothing.
    fn step(
        self,
        event: ChallengeEvent<S>,
        now: Timestamp,
        purpose: &ChallengePurpose,
    ) -> (Self, Vec<ChallengeEffect>) {
        use ChallengeEffect as F;
        use ChallengeEvent as E;
        match (self, event) {
            (Challenge::Presented, E::Presented) => (Challenge::Counting, vec![F::Count]),
            (Challenge::Counting, E::Counted(counting)) => match counting {
                Counting::Counted(c) => (Challenge::Checking(c.clone()), vec![F::CheckCode(c)]),
                Counting::Exhausted => (
                    Challenge::Exhausted,
                    vec![F::Emit(EventKind::MfaChallengeExhausted)],
                ),
                Counting::Unknown => (Challenge::Expired, vec![]),
            },
            (Challenge::Checking(counted), E::CodeChecked(check)) => match check {
                CodeCheck::Right(factor) => {
                    (Challenge::Finishing { counted, factor }, vec![F::Finish])
                }
                CodeCheck::Wrong if counted.attempts_left > 0 => (
                    Challenge::Wrong {
                        remaining: counted.attempts_left,
                    },
                    vec![F::Emit(EventKind::MfaChallengeFailed)],
                ),
                CodeCheck::Wrong => (
                    Challenge::Exhausted,
                    vec![
                        F::Emit(EventKind::MfaChallengeFailed),
                        F::Emit(EventKind::MfaChallengeExhausted),
                    ],
                ),
            },
            (Challenge::Finishing { counted, factor }, E::Finished(won)) => {
                if !won {
                    return (Challenge::Expired, vec![]);
                }
                match purpose {
                    ChallengePurpose::Enrolment => {
                        (Challenge::Confirmed { challenge: counted }, vec![])
                    }
                    ChallengePurpose::SignIn => {
                        let user_id = counted.user_id.clone();
                        (
                            Challenge::Loading { counted, factor },
                            vec![F::LoadUser(user_id)],
                        )
                    }
                }
            }
            (Challenge::Loading { counted, factor }, E::Loaded(user)) => {
                let Some(user) = user else {
                    return (Challenge::Expired, vec![]);
                };
                // The account as it is now must still be the one whose
                // password was checked: same id, same credential epoch (a
                // change or reset since ends the challenge), still active.
                if user.id != counted.user_id
                    || user.tokens_invalidated_after != counted.credential_epoch
                    || !user.is_active_at(now)
                {
                    return (Challenge::Expired, vec![]);
                }
                match Cleared::check(user, FirstFactor::Password, Some(factor)) {
                    Ok(cleared) => (
                        Challenge::Passed {
                            user_id: counted.user_id.clone(),
                        },
                        vec![F::StartSession(cleared)],
                    ),
                    Err(_) => (Challenge::Expired, vec![]),
                }
            }
            (Challenge::Passed { .. }, E::SessionStarted(s)) => (Challenge::SignedIn(s), vec![]),
            (state, _) => (state, vec![]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeDelta};
    use proptest::prelude::*;
    use regstack_ports::Email;

    fn now() -> Timestamp {
        DateTime::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    fn epoch() -> Option<Timestamp> {
        Some(now() - TimeDelta::days(1))
    }

    fn account() -> Box<User> {
        Box::new(User {
            id: UserId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            email: Email::parse("mfa@example.com").unwrap(),
            password_hash: None,
            is_active: true,
            is_verified: true,
            is_superuser: false,
            full_name: None,
            phone_number: None,
            is_mfa_enabled: true,
            created_at: now(),
            updated_at: now(),
            last_login: None,
            tokens_invalidated_after: epoch(),
            disabled_reason: None,
            disabled_until: None,
            must_change_password: false,
        })
    }

    fn counted(left: u32) -> Box<MfaChallenge> {
        Box::new(MfaChallenge {
            id: regstack_ports::TokenHash::from_hex("ab".repeat(32)).unwrap(),
            user_id: account().id,
            kind: regstack_ports::ChallengeKind::SignIn,
            code_hash: None,
            payload: None,
            attempts_left: left,
            credential_epoch: epoch(),
            created_at: now(),
            expires_at: now() + TimeDelta::minutes(10),
        })
    }

    type Run = Challenge<u8>;

    fn run(
        events: Vec<ChallengeEvent<u8>>,
        purpose: ChallengePurpose,
    ) -> (Run, Vec<ChallengeEffect>) {
        let mut state = Run::Presented;
        let mut all = vec![];
        for ev in events {
            let (next, effects) = state.step(ev, now(), &purpose);
            state = next;
            all.extend(effects);
        }
        (state, all)
    }

    #[test]
    fn a_right_code_spends_the_challenge_and_the_gate_starts_the_session() {
        let (s, e) = run(
            vec![
                ChallengeEvent::Presented,
                ChallengeEvent::Counted(Counting::Counted(counted(4))),
                ChallengeEvent::CodeChecked(CodeCheck::Right(SecondFactor::Totp)),
                ChallengeEvent::Finished(true),
                ChallengeEvent::Loaded(Some(account())),
            ],
            ChallengePurpose::SignIn,
        );
        assert_eq!(
            s,
            Challenge::Passed {
                user_id: account().id
            }
        );
        let Some(ChallengeEffect::StartSession(cleared)) = e.last() else {
            panic!("no session started: {e:?}");
        };
        assert_eq!(cleared.second_factor(), Some(SecondFactor::Totp));
        assert_eq!(cleared.user(), &*account());
        let (s, _) = s.step(
            ChallengeEvent::SessionStarted(9),
            now(),
            &ChallengePurpose::SignIn,
        );
        assert_eq!(s, Challenge::SignedIn(9));
    }

    #[test]
    fn a_wrong_code_counts_down_and_the_last_one_exhausts() {
        let (s, e) = run(
            vec![
                ChallengeEvent::Presented,
                ChallengeEvent::Counted(Counting::Counted(counted(3))),
                ChallengeEvent::CodeChecked(CodeCheck::Wrong),
            ],
            ChallengePurpose::SignIn,
        );
        assert_eq!(s, Challenge::Wrong { remaining: 3 });
        assert!(!e.contains(&ChallengeEffect::Finish));
        let (s, _) = run(
            vec![
                ChallengeEvent::Presented,
                ChallengeEvent::Counted(Counting::Counted(counted(0))),
                ChallengeEvent::CodeChecked(CodeCheck::Wrong),
            ],
            ChallengePurpose::SignIn,
        );
        assert_eq!(s, Challenge::Exhausted);
    }

    #[test]
    fn a_changed_password_a_disabled_or_deleted_account_or_a_lost_race_ends_it() {
        let mut changed = account();
        changed.tokens_invalidated_after = Some(now());
        let mut disabled = account();
        disabled.is_active = false;
        let mut disabled_until_later = account();
        disabled_until_later.is_active = false;
        disabled_until_later.disabled_until = Some(now() + TimeDelta::microseconds(1));
        for (finished, loaded) in [
            (true, Some(changed)),
            (true, Some(disabled)),
            (true, Some(disabled_until_later)),
            (true, None),
            (false, Some(account())),
        ] {
            let (s, e) = run(
                vec![
                    ChallengeEvent::Presented,
                    ChallengeEvent::Counted(Counting::Counted(counted(2))),
                    ChallengeEvent::CodeChecked(CodeCheck::Right(SecondFactor::Sms)),
                    ChallengeEvent::Finished(finished),
                    ChallengeEvent::Loaded(loaded),
                ],
                ChallengePurpose::SignIn,
            );
            assert_eq!(s, Challenge::Expired);
            assert!(!e
                .iter()
                .any(|e| matches!(e, ChallengeEffect::StartSession(_))));
        }
    }

    #[test]
    fn enrolment_confirms_without_a_session() {
        let (s, e) = run(
            vec![
                ChallengeEvent::Presented,
                ChallengeEvent::Counted(Counting::Counted(counted(4))),
                ChallengeEvent::CodeChecked(CodeCheck::Right(SecondFactor::Sms)),
                ChallengeEvent::Finished(true),
            ],
            ChallengePurpose::Enrolment,
        );
        assert_eq!(
            s,
            Challenge::Confirmed {
                challenge: counted(4)
            }
        );
        assert!(!e.iter().any(|e| matches!(
            e,
            ChallengeEffect::LoadUser(_) | ChallengeEffect::StartSession(_)
        )));
    }

    fn arb_event() -> impl Strategy<Value = ChallengeEvent<u8>> {
        let factor = prop_oneof![
            Just(SecondFactor::Totp),
            Just(SecondFactor::Sms),
            Just(SecondFactor::BackupCode)
        ];
        prop_oneof![
            1 => Just(ChallengeEvent::Presented),
            2 => (0u32..5).prop_map(|left| ChallengeEvent::Counted(Counting::Counted(counted(left)))),
            1 => Just(ChallengeEvent::Counted(Counting::Exhausted)),
            1 => Just(ChallengeEvent::Counted(Counting::Unknown)),
            2 => factor.prop_map(|f| ChallengeEvent::CodeChecked(CodeCheck::Right(f))),
            2 => Just(ChallengeEvent::CodeChecked(CodeCheck::Wrong)),
            2 => any::<bool>().prop_map(ChallengeEvent::Finished),
            2 => (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(there, active, same_epoch, mfa)| {
                ChallengeEvent::Loaded(there.then(|| {
                    let mut u = account();
                    u.is_active = active;
                    u.is_mfa_enabled = mfa;
                    if !same_epoch {
                        u.tokens_invalidated_after = Some(now());
                    }
                    u
                }))
            }),
            1 => any::<u8>().prop_map(ChallengeEvent::SessionStarted),
        ]
    }

    proptest! {
        #[test]
        fn no_session_without_a_counted_attempt_a_right_code_and_a_won_spend(
            enrolment in any::<bool>(),
            events in prop::collection::vec(arb_event(), 0..14),
        ) {
            let purpose = if enrolment { ChallengePurpose::Enrolment } else { ChallengePurpose::SignIn };
            let mut state = Run::Presented;
            let (mut counts, mut checks, mut finishes, mut sessions) = (0, 0, 0, 0);
            let mut counted_seen = false;
            let mut proven: Option<SecondFactor> = None;
            let mut won = false;
            let mut loaded: Option<Option<Box<User>>> = None;
            for ev in events {
                let before = state.clone();
                match (&state, &ev) {
                    (Challenge::Counting, ChallengeEvent::Counted(Counting::Counted(_))) => counted_seen = true,
                    (Challenge::Checking(_), ChallengeEvent::CodeChecked(CodeCheck::Right(f))) => proven = Some(*f),
                    (Challenge::Finishing { .. }, ChallengeEvent::Finished(w)) => won = *w,
                    (Challenge::Loading { .. }, ChallengeEvent::Loaded(u)) => loaded = Some(u.clone()),
                    _ => {}
                }
                let (next, effects) = state.step(ev, now(), &purpose);
                for e in &effects {
                    match e {
                        ChallengeEffect::Count => counts += 1,
                        ChallengeEffect::CheckCode(_) => {
                            checks += 1;
                            prop_assert!(counted_seen);
                        }
                        ChallengeEffect::Finish => {
                            finishes += 1;
                            prop_assert!(proven.is_some(), "a wrong code never spends the challenge");
                        }
                        ChallengeEffect::LoadUser(_) => prop_assert!(won),
                        ChallengeEffect::StartSession(cleared) => {
                            sessions += 1;
                            prop_assert_eq!(purpose, ChallengePurpose::SignIn);
                            prop_assert!(counted_seen && won);
                            prop_assert_eq!(cleared.second_factor(), proven);
                            let Some(Some(user)) = &loaded else {
                                return Err(TestCaseError::fail("session without a loaded account"));
                            };
                            prop_assert!(user.is_active);
                            prop_assert_eq!(user.tokens_invalidated_after, epoch());
                            prop_assert_eq!(cleared.user(), &**user);
                        }
                        ChallengeEffect::Emit(_) => {}
                    }
                }
                if before.is_terminal() {
                    prop_assert!(effects.is_empty());
                    prop_assert_eq!(&next, &before);
                }
                state = next;
            }
            prop_assert!(counts <= 1);
            prop_assert!(checks <= 1);
            prop_assert!(finishes <= 1);
            prop_assert!(sessions <= 1);
        }
    }
}
