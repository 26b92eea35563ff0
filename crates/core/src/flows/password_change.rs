//! The forced password change: an account flagged `must_change_password`
//! signs in with its password, gets a single-use token instead of a
//! session, and sets a new password with it — then goes on through the
//! gate like any sign-in (a second factor is still asked for).
//!
//! ```text
//! Presented ──Count──▶ Counting ──Counted(c)──▶ Loading ──Loaded(user: same epoch, active, flagged)──▶ Comparing ──Compared(differs)──▶ Finishing ──Finished(true)──▶ Changing ──Changed(user')──▶ gate
//!                         └─Exhausted/Unknown─▶ Expired      └─Loaded(else)─▶ Expired           └─Compared(same)─▶ Same    └─Finished(false)─▶ Expired   └─Changed(none)─▶ Expired
//! gate: Cleared ─▶ Passed ──SessionStarted──▶ SignedIn · a second factor due ─▶ SecondFactorRequired{user'}
//! ```
//!
//! The token is a challenge of kind `PasswordChange` bound to the
//! credential epoch read with the password: a reset or another change in
//! between ends it. Its attempts bound how often a holder may propose the
//! current password again; it is spent (one winner) before the password
//! is changed, and the gate is asked about the account *as changed* — the
//! store cleared the flag and moved the epoch in the same step — so the
//! session binds to the new credentials.
//!
//! Invariants (property-tested below): no `ChangePassword` without a
//! counted attempt on a live token of an account still flagged and
//! unchanged since, a new password that differs, and a won spend; no
//! `StartSession` but from the changed account; at most one change per run.

use regstack_ports::{MfaChallenge, Timestamp, User, UserId};

use super::gate::{Cleared, FirstFactor, Missing};
use super::mfa::Counting;
use super::Machine;

/// Where a forced change stands. `S` is what a started session gives.
#[derive(Debug, Clone, PartialEq)]
pub enum ForcedChange<S> {
    /// A token and a new password arrived.
    Presented,
    /// Waiting for the store to count the attempt.
    Counting,
    /// Waiting for the account.
    Loading(Box<MfaChallenge>),
    /// Waiting to learn whether the new password is the current one.
    Comparing(Box<MfaChallenge>),
    /// Waiting to spend the token.
    Finishing(Box<MfaChallenge>),
    /// Waiting for the store to change the password.
    Changing(Box<MfaChallenge>),
    /// Cleared by the gate: a session is starting.
    Passed {
        /// Who.
        user_id: UserId,
    },
    /// Signed in.
    SignedIn(S),
    /// Changed; the account's second factor is due before a session.
    SecondFactorRequired {
        /// The account as changed.
        user: Box<User>,
    },
    /// The new password is the current one; the token lives on.
    Same,
    /// No live token, or it no longer leads anywhere.
    Expired,
}

/// What the runner observed.
#[derive(Debug, Clone, PartialEq)]
pub enum ForcedChangeEvent<S> {
    /// The first event of a run.
    Presented,
    /// The store counted the attempt (or could not).
    Counted(Counting),
    /// The account now.
    Loaded(Option<Box<User>>),
    /// Whether the new password differs from the current one.
    Compared {
        /// `true` when it differs.
        differs: bool,
    },
    /// Spending the token: `true` for the one request that did.
    Finished(bool),
    /// The account after the change (`None`: gone).
    Changed(Option<Box<User>>),
    /// The session started.
    SessionStarted(S),
}

/// What the runner must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum ForcedChangeEffect {
    /// Count one attempt on the token (reports `Counted`).
    Count,
    /// Read the account (reports `Loaded`).
    LoadUser(UserId),
    /// Check the new password against the account's current hash (reports
    /// `Compared`).
    Compare(Box<User>),
    /// Spend the token (reports `Finished`).
    Finish,
    /// Hash and set the new password, clearing the flag and moving the
    /// epoch (reports `Changed`).
    ChangePassword(UserId),
    /// Start the session the gate cleared (reports `SessionStarted`).
    StartSession(Cleared),
}

impl<S> Machine for ForcedChange<S> {
    type Event = ForcedChangeEvent<S>;
    type Effect = ForcedChangeEffect;
    type Policy = ();

    fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::SignedIn(_) | Self::SecondFactorRequired { .. } | Self::Same | Self::Expired
        )
    }

    /// Advances the run. Pure; terminal states and out-of-order events
    /// leave the state unchanged and do nothing.
    fn step(
        self,
        event: ForcedChangeEvent<S>,
        now: Timestamp,
        _policy: &(),
    ) -> (Self, Vec<ForcedChangeEffect>) {
        use ForcedChange as C;
        use ForcedChangeEffect as F;
        use ForcedChangeEvent as E;
        match (self, event) {
            (C::Presented, E::Presented) => (C::Counting, vec![F::Count]),
            (C::Counting, E::Counted(Counting::Counted(c))) => {
                let id = c.user_id.clone();
                (C::Loading(c), vec![F::LoadUser(id)])
            }
            (C::Counting, E::Counted(_)) => (C::Expired, vec![]),
            (C::Loading(c), E::Loaded(Some(user)))
                if user.id == c.user_id
                    && user.tokens_invalidated_after == c.credential_epoch
                    && user.is_active_at(now)
                    && user.must_change_password =>
            {
                (C::Comparing(c), vec![F::Compare(user)])
            }
            (C::Loading(_), E::Loaded(_)) => (C::Expired, vec![]),
            (C::Comparing(c), E::Compared { differs: true }) => (C::Finishing(c), vec![F::Finish]),
            (C::Comparing(_), E::Compared { differs: false }) => (C::Same, vec![]),
            (C::Finishing(c), E::Finished(true)) => {
                let id = c.user_id.clone();
                (C::Changing(c), vec![F::ChangePassword(id)])
            }
            (C::Finishing(_), E::Finished(false)) => (C::Expired, vec![]),
            (C::Changing(c), E::Changed(Some(user))) if user.id == c.user_id => {
                match Cleared::check(user.clone(), FirstFactor::Password, None) {
                    Ok(cleared) => (
                        C::Passed {
                            user_id: c.user_id.clone(),
                        },
                        vec![F::StartSession(cleared)],
                    ),
                    Err(Missing::SecondFactor) => (C::SecondFactorRequired { user }, vec![]),
                    Err(Missing::PasswordChange) => (C::Expired, vec![]),
                }
            }
            (C::Changing(_), E::Changed(_)) => (C::Expired, vec![]),
            (C::Passed { .. }, E::SessionStarted(s)) => (C::SignedIn(s), vec![]),
            (state, _) => (state, vec![]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeDelta};
    use proptest::prelude::*;
    use regstack_ports::{ChallengeKind, Email, TokenHash};

    fn now() -> Timestamp {
        DateTime::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    fn epoch() -> Option<Timestamp> {
        Some(now() - TimeDelta::days(1))
    }

    fn account(flagged: bool, mfa: bool) -> Box<User> {
        Box::new(User {
            id: UserId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            email: Email::parse("forced@example.com").unwrap(),
            password_hash: None,
            is_active: true,
            is_verified: true,
            is_superuser: false,
            full_name: None,
            phone_number: None,
            is_mfa_enabled: mfa,
            created_at: now(),
            updated_at: now(),
            last_login: None,
            tokens_invalidated_after: epoch(),
            disabled_reason: None,
            disabled_until: None,
            must_change_password: flagged,
        })
    }

    /// The account after the store's change: flag cleared, epoch moved.
    fn changed(mfa: bool) -> Box<User> {
        let mut u = account(false, mfa);
        u.tokens_invalidated_after = Some(now());
        u
    }

    fn token(left: u32) -> Box<MfaChallenge> {
        Box::new(MfaChallenge {
            id: TokenHash::from_hex("cd".repeat(32)).unwrap(),
            user_id: account(true, false).id,
            kind: ChallengeKind::PasswordChange,
            code_hash: None,
            payload: None,
            attempts_left: left,
            credential_epoch: epoch(),
            created_at: now(),
            expires_at: now() + TimeDelta::minutes(10),
        })
    }

    type Run = ForcedChange<u8>;

    fn run(events: Vec<ForcedChangeEvent<u8>>) -> (Run, Vec<ForcedChangeEffect>) {
        let mut state = Run::Presented;
        let mut all = vec![];
        for ev in events {
            let (next, effects) = state.step(ev, now(), &());
            state = next;
            all.extend(effects);
        }
        (state, all)
    }

    fn happy(mfa: bool) -> Vec<ForcedChangeEvent<u8>> {
        vec![
            ForcedChangeEvent::Presented,
            ForcedChangeEvent::Counted(Counting::Counted(token(4))),
            ForcedChangeEvent::Loaded(Some(account(true, mfa))),
            ForcedChangeEvent::Compared { differs: true },
            ForcedChangeEvent::Finished(true),
            ForcedChangeEvent::Changed(Some(changed(mfa))),
        ]
    }

    #[test]
    fn a_new_password_signs_in_through_the_gate_as_changed() {
        let (s, e) = run(happy(false));
        assert!(matches!(s, ForcedChange::Passed { .. }));
        let Some(ForcedChangeEffect::StartSession(cleared)) = e.last() else {
            panic!("{e:?}");
        };
        assert_eq!(cleared.user(), &*changed(false), "bound to the new epoch");
    }

    #[test]
    fn a_second_factor_is_still_asked_for() {
        let (s, e) = run(happy(true));
        assert_eq!(
            s,
            ForcedChange::SecondFactorRequired {
                user: changed(true)
            }
        );
        assert!(!e
            .iter()
            .any(|e| matches!(e, ForcedChangeEffect::StartSession(_))));
    }

    #[test]
    fn the_current_password_again_changes_nothing_and_keeps_the_token() {
        let mut events = happy(false);
        events[3] = ForcedChangeEvent::Compared { differs: false };
        let (s, e) = run(events);
        assert_eq!(s, ForcedChange::Same);
        assert!(!e.contains(&ForcedChangeEffect::Finish));
    }

    #[test]
    fn a_token_from_before_another_change_or_reset_is_dead() {
        let mut moved = account(true, false);
        moved.tokens_invalidated_after = Some(now());
        let mut events = happy(false);
        events[2] = ForcedChangeEvent::Loaded(Some(moved));
        let (s, e) = run(events);
        assert_eq!(s, ForcedChange::Expired);
        assert!(!e
            .iter()
            .any(|e| matches!(e, ForcedChangeEffect::ChangePassword(_))));
    }

    fn arb_event() -> impl Strategy<Value = ForcedChangeEvent<u8>> {
        prop_oneof![
            Just(ForcedChangeEvent::Presented),
            (0u32..3).prop_map(|l| ForcedChangeEvent::Counted(Counting::Counted(token(l)))),
            Just(ForcedChangeEvent::Counted(Counting::Unknown)),
            (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
                |(there, flagged, active, same_epoch)| {
                    ForcedChangeEvent::Loaded(there.then(|| {
                        let mut u = account(flagged, false);
                        u.is_active = active;
                        if !same_epoch {
                            u.tokens_invalidated_after = Some(now());
                        }
                        u
                    }))
                }
            ),
            any::<bool>().prop_map(|differs| ForcedChangeEvent::Compared { differs }),
            any::<bool>().prop_map(ForcedChangeEvent::Finished),
            (any::<bool>(), any::<bool>()).prop_map(|(there, mfa)| {
                ForcedChangeEvent::Changed(there.then(|| changed(mfa)))
            }),
            any::<u8>().prop_map(ForcedChangeEvent::SessionStarted),
        ]
    }

    proptest! {
        #[test]
        fn no_change_without_a_live_token_a_different_password_and_a_won_spend(
            events in prop::collection::vec(arb_event(), 0..12),
        ) {
            let mut state = Run::Presented;
            let (mut counted, mut loaded_ok, mut differs, mut won) = (false, false, false, false);
            let (mut changes, mut sessions) = (0, 0);
            for ev in events {
                match (&state, &ev) {
                    (ForcedChange::Counting, ForcedChangeEvent::Counted(Counting::Counted(_))) => counted = true,
                    (ForcedChange::Loading(_), ForcedChangeEvent::Loaded(Some(u))) => {
                        loaded_ok = u.must_change_password && u.is_active && u.tokens_invalidated_after == epoch();
                    }
                    (ForcedChange::Comparing(_), ForcedChangeEvent::Compared { differs: d }) => differs = *d,
                    (ForcedChange::Finishing(_), ForcedChangeEvent::Finished(w)) => won = *w,
                    _ => {}
                }
                let before = state.clone();
                let (next, effects) = state.step(ev, now(), &());
                for e in &effects {
                    match e {
                        ForcedChangeEffect::ChangePassword(_) => {
                            changes += 1;
                            prop_assert!(counted && loaded_ok && differs && won);
                        }
                        ForcedChangeEffect::StartSession(c) => {
                            sessions += 1;
                            prop_assert!(changes == 1);
                            prop_assert!(!c.user().must_change_password);
                            prop_assert!(!c.user().is_mfa_enabled);
                        }
                        _ => {}
                    }
                }
                if before.is_terminal() {
                    prop_assert!(effects.is_empty());
                }
                state = next;
            }
            prop_assert!(changes <= 1);
            prop_assert!(sessions <= 1);
        }
    }
}
