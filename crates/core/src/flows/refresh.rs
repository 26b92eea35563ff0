//! Refresh-token rotation: one family per sign-in (a session).
//!
//! ```text
//! token:  Live ──presented──▶ Spent{at, successor}      (successor is Live)
//!         Spent ──presented, now < at+grace, successor still Live──▶ Replayed (same successor)
//!         Spent ──presented otherwise──▶ family Revoked(RefreshReuse)  (theft)
//! family: Live ──logout / logout-all / password / email change / expiry──▶ dead
//! ```
//!
//! [`Family`] is the specification; what runs is [`judge`]. A store performs
//! only the atomic step — `SessionStore::rotate`, one conditional write to
//! the session record that spends the live token — and on a miss reports the
//! record as it found it ([`RefreshFamily`]); [`judge`] decides from that
//! record whether the presentation is a retry inside the grace window or
//! reuse, and the runner ends a reused family with the store's conditional
//! `revoke`. The successor token itself is derived, not stored
//! ([`crate::refresh_token::RefreshTokens::successor`]), so a replay returns
//! the same one. A store keeps only the live token's hash and the previous
//! one: every token carries its session id under a server MAC, so any other
//! token of a live family that is presented is a spent one. [`Family`]
//! implements [`Machine`] with the answer to a presentation ([`Outcome`])
//! as its effect; a property test below checks that [`judge`], reading only
//! the stored record, always agrees with it. Invariants checked by the
//! property tests below:
//! - a family never has more than one live token;
//! - a spent token never yields a session outside the grace window, nor
//!   after its successor was used;
//! - once a family is dead, no token of it works again;
//! - rotation never moves the absolute end of the family.

use chrono::TimeDelta;
use regstack_ports::{RefreshFamily, RevokeReason, Timestamp, TokenHash};

use super::Machine;

/// Lifetimes of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Replay window for a spent token.
    pub grace: TimeDelta,
    /// Idle lifetime, renewed by each rotation.
    pub idle: TimeDelta,
}

/// One refresh token of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The family's current token.
    Live,
    /// Presented once; `successor` is the index of the token it produced.
    Spent {
        /// When it was spent.
        at: Timestamp,
        /// Index of its successor in the family.
        successor: usize,
    },
}

/// A session's refresh tokens and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Tokens in issue order; index 0 came with the sign-in.
    pub tokens: Vec<Token>,
    /// Set once the family is ended.
    pub revoked: Option<RevokeReason>,
    /// Absolute end.
    pub expires_at: Timestamp,
    /// Idle end.
    pub idle_expires_at: Timestamp,
}

/// What happened to the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyEvent {
    /// Token `i` was presented to `/refresh`.
    Present(usize),
    /// The session was ended (logout, password change, …).
    Revoke(RevokeReason),
}

/// The answer to a presentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Token spent; answer with the successor at this index.
    Rotated(usize),
    /// Retry inside the grace window; answer with the same successor.
    Replayed(usize),
    /// Theft: the family was revoked; answer 401 and fire an event.
    Reused,
    /// Unknown or dead: answer 401.
    Invalid,
}

impl Family {
    /// A family just signed in at `now`.
    pub fn start(now: Timestamp, idle: TimeDelta, absolute: TimeDelta) -> Self {
        let expires_at = now + absolute;
        Self {
            tokens: vec![Token::Live],
            revoked: None,
            expires_at,
            idle_expires_at: (now + idle).min(expires_at),
        }
    }

    /// Whether tokens of the family may be used at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked.is_none() && now < self.expires_at && now < self.idle_expires_at
    }
}

impl Machine for Family {
    type Event = FamilyEvent;
    type Effect = Outcome;
    type Policy = RefreshPolicy;

    /// Advances the family. Pure: `now` is a parameter.
    fn step(
        mut self,
        event: FamilyEvent,
        now: Timestamp,
        policy: &RefreshPolicy,
    ) -> (Family, Vec<Outcome>) {
        match event {
            FamilyEvent::Revoke(reason) => {
                if self.revoked.is_none() {
                    self.revoked = Some(reason);
                }
                (self, vec![])
            }
            FamilyEvent::Present(i) => {
                if !self.is_live(now) {
                    return (self, vec![Outcome::Invalid]);
                }
                match self.tokens.get(i).copied() {
                    None => (self, vec![Outcome::Invalid]),
                    Some(Token::Live) => {
                        let successor = self.tokens.len();
                        self.tokens[i] = Token::Spent { at: now, successor };
                        self.tokens.push(Token::Live);
                        self.idle_expires_at = (now + policy.idle).min(self.expires_at);
                        (self, vec![Outcome::Rotated(successor)])
                    }
                    Some(Token::Spent { at, successor }) => {
                        let successor_unused =
                            matches!(self.tokens.get(successor), Some(Token::Live));
                        if now < at + policy.grace && successor_unused {
                            (self, vec![Outcome::Replayed(successor)])
                        } else {
                            self.revoked = Some(RevokeReason::RefreshReuse);
                            (self, vec![Outcome::Reused])
                        }
                    }
                }
            }
        }
    }

    /// Revoked: no token of it works again. (An expired family is dead
    /// too, but that depends on `now`: [`Family::is_live`].)
    fn is_terminal(&self) -> bool {
        self.revoked.is_some()
    }
}

/// What a presentation that the store could not rotate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A client retrying a lost answer: answer with the same successor.
    Replay,
    /// Theft: revoke the family ([`RevokeReason::RefreshReuse`]).
    Reuse,
    /// The session is dead (it keeps what it died of), or from before
    /// refresh families: answer 401, change nothing.
    Dead,
}

/// Judges a missed rotation from the family record the store read:
/// `presented` and its derived `successor` against the live and previous
/// hashes. A replay is the token the last rotation spent, less than `grace`
/// ago, whose successor is still the live one; any other token of a live
/// family is an older one.
pub fn judge(
    family: &RefreshFamily,
    presented: &TokenHash,
    successor: &TokenHash,
    now: Timestamp,
    grace: TimeDelta,
) -> Verdict {
    if family.live.is_none() || !family.session.is_live(now) {
        return Verdict::Dead;
    }
    let replay = family.previous.as_ref() == Some(presented)
        && family.live.as_ref() == Some(successor)
        && family.rotated_at.is_some_and(|at| now < at + grace);
    if replay {
        Verdict::Replay
    } else {
        Verdict::Reuse
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        DateTime::UNIX_EPOCH + TimeDelta::days(20_000)
    }
    const POLICY: RefreshPolicy = RefreshPolicy {
        grace: TimeDelta::seconds(5),
        idle: TimeDelta::seconds(600),
    };

    fn fresh() -> Family {
        Family::start(t0(), POLICY.idle, TimeDelta::seconds(3600))
    }

    #[test]
    fn a_retry_inside_grace_gets_the_same_successor_and_later_reuse_kills_the_family() {
        let (f, o) = fresh().step(FamilyEvent::Present(0), t0(), &POLICY);
        assert_eq!(o, vec![Outcome::Rotated(1)]);
        let (f, o) = f.step(
            FamilyEvent::Present(0),
            t0() + TimeDelta::seconds(4),
            &POLICY,
        );
        assert_eq!(o, vec![Outcome::Replayed(1)]);
        let (f, o) = f.step(
            FamilyEvent::Present(0),
            t0() + TimeDelta::seconds(5),
            &POLICY,
        );
        assert_eq!(o, vec![Outcome::Reused]);
        let (_, o) = f.step(
            FamilyEvent::Present(1),
            t0() + TimeDelta::seconds(6),
            &POLICY,
        );
        assert_eq!(o, vec![Outcome::Invalid]);
    }

    #[test]
    fn replaying_after_the_successor_was_used_is_theft_even_inside_grace() {
        let (f, _) = fresh().step(FamilyEvent::Present(0), t0(), &POLICY);
        let (f, o) = f.step(
            FamilyEvent::Present(1),
            t0() + TimeDelta::seconds(1),
            &POLICY,
        );
        assert_eq!(o, vec![Outcome::Rotated(2)]);
        let (f, o) = f.step(
            FamilyEvent::Present(0),
            t0() + TimeDelta::seconds(2),
            &POLICY,
        );
        assert_eq!(o, vec![Outcome::Reused]);
        assert_eq!(f.revoked, Some(RevokeReason::RefreshReuse));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Present(usize),
        Advance(i64),
        Revoke,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..8).prop_map(Op::Present),
            3 => (0i64..900).prop_map(Op::Advance),
            1 => Just(Op::Revoke),
        ]
    }

    proptest! {
        #[test]
        fn families_keep_their_invariants(ops in prop::collection::vec(op(), 0..40)) {
            let mut f = fresh();
            let mut now = t0();
            let absolute_end = f.expires_at;
            for op in ops {
                match op {
                    Op::Advance(s) => now += TimeDelta::seconds(s),
                    Op::Revoke => f = f.step(FamilyEvent::Revoke(RevokeReason::Logout), now, &POLICY).0,
                    Op::Present(i) => {
                        let before = f.clone();
                        let (next, outcomes) = f.step(FamilyEvent::Present(i), now, &POLICY);
                        prop_assert!(outcomes.len() <= 1);
                        let outcome = outcomes.first().copied();
                        match outcome {
                            Some(Outcome::Rotated(_)) => {
                                prop_assert!(before.is_live(now));
                                prop_assert_eq!(before.tokens.get(i), Some(&Token::Live));
                            }
                            Some(Outcome::Replayed(s)) => {
                                let Some(Token::Spent { at, successor }) = before.tokens.get(i).copied() else {
                                    return Err(TestCaseError::fail("replay of a token that was not spent"));
                                };
                                prop_assert!(now < at + POLICY.grace);
                                prop_assert_eq!(successor, s);
                                prop_assert_eq!(before.tokens.get(s), Some(&Token::Live));
                            }
                            Some(Outcome::Reused) => prop_assert!(next.revoked.is_some()),
                            Some(Outcome::Invalid) | None => {}
                        }
                        if before.revoked.is_some() {
                            prop_assert_eq!(outcome, Some(Outcome::Invalid));
                        }
                        f = next;
                    }
                }
                let live = f.tokens.iter().filter(|t| **t == Token::Live).count();
                prop_assert!(live <= 1, "{} live tokens", live);
                prop_assert_eq!(f.expires_at, absolute_end);
                prop_assert!(f.idle_expires_at <= f.expires_at);
            }
        }
    }

    /// The hash a model token index stands for.
    fn hash(i: usize) -> TokenHash {
        TokenHash::from_hex(format!("{i:064x}"))
            .unwrap_or_else(regstack_testkit::fixtures::token_hash)
    }

    /// The record a store holds for a model family: the live token, the one
    /// the last rotation spent and when, the lifetimes and the revocation.
    fn record(f: &Family) -> RefreshFamily {
        let live = f.tokens.iter().position(|t| *t == Token::Live);
        let last = live.and_then(|l| {
            f.tokens.iter().enumerate().find_map(|(i, t)| match t {
                Token::Spent { at, successor } if *successor == l => Some((i, *at)),
                _ => None,
            })
        });
        let user = regstack_testkit::fixtures::new_user("ann@example.com");
        RefreshFamily {
            session: regstack_ports::Session {
                id: regstack_ports::SessionId::generate(),
                user_id: user.id.clone(),
                created_at: t0(),
                last_used_at: t0(),
                expires_at: f.expires_at,
                idle_expires_at: f.idle_expires_at,
                user_agent: None,
                ip: None,
                revoked_at: f.revoked.map(|_| t0()),
                revoked_reason: f.revoked,
            },
            user: regstack_ports::User {
                id: user.id,
                email: user.email,
                password_hash: None,
                is_active: true,
                is_verified: true,
                is_superuser: false,
                full_name: None,
                phone_number: None,
                is_mfa_enabled: false,
                must_change_password: false,
                created_at: t0(),
                updated_at: t0(),
                last_login: None,
                tokens_invalidated_after: None,
                disabled_reason: None,
                disabled_until: None,
            },
            live: live.map(hash),
            previous: last.map(|(i, _)| hash(i)),
            rotated_at: last.map(|(_, at)| at),
        }
    }

    proptest! {
        /// What runs ([`judge`] on the stored record, after the store's
        /// conditional write missed) agrees with the specification
        /// ([`Family`]) on every presentation of a token that is not the
        /// live one of a live family, whatever came before.
        #[test]
        fn judging_the_stored_record_agrees_with_the_family_machine(ops in prop::collection::vec(op(), 0..40)) {
            let mut f = fresh();
            let mut now = t0();
            for op in ops {
                match op {
                    Op::Advance(s) => now += TimeDelta::seconds(s),
                    Op::Revoke => f = f.step(FamilyEvent::Revoke(RevokeReason::Logout), now, &POLICY).0,
                    Op::Present(i) => {
                        let stored = record(&f);
                        let minted = i < f.tokens.len();
                        let rotates = f.is_live(now) && f.tokens.get(i) == Some(&Token::Live);
                        let (next, outcomes) = f.step(FamilyEvent::Present(i), now, &POLICY);
                        let outcome = outcomes.first().copied();
                        // Tokens past the end were never minted: the MAC
                        // keeps them from reaching the store.
                        if minted && !rotates {
                            let verdict = judge(&stored, &hash(i), &hash(i + 1), now, POLICY.grace);
                            let expected = match outcome {
                                Some(Outcome::Replayed(_)) => Verdict::Replay,
                                Some(Outcome::Reused) => Verdict::Reuse,
                                _ => Verdict::Dead,
                            };
                            prop_assert_eq!(verdict, expected, "token {} of {:?}", i, stored);
                        }
                        f = next;
                    }
                }
            }
        }
    }
}
