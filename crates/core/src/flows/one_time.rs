//! One-time tokens: verification, password reset, email change.
//!
//! ```text
//! Issued{expires_at} ──Presented (now < expires_at)──▶ Consumed
//!        │ ──Presented (now ≥ expires_at)──▶ Expired
//!        └ ──Superseded (a newer token for the same user and kind)──▶ Superseded
//! ```
//!
//! This machine is the specification each store implements as one atomic
//! step (`PendingStore::promote`, `UserStore::complete_password_reset`,
//! `UserStore::confirm_email_change`, `TokenStore::issue` for
//! superseding). The property tests check the machine's invariants; the
//! store contract suite checks that every backend behaves like it, under 20
//! concurrent presentations. It implements [`Machine`] (no policy; an
//! answer to every presentation as its effect), though no runner drives it:
//! each backend performs the whole of it as one store step.
//!
//! Invariants:
//! - a token is accepted at most once;
//! - a token is never accepted at or after its expiry;
//! - a superseded token is never accepted;
//! - every refusal looks the same to the client (one message per kind).

use regstack_ports::Timestamp;

use super::Machine;

/// Where a token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Usable until `expires_at` (exclusive).
    Issued {
        /// First instant at which it no longer works.
        expires_at: Timestamp,
    },
    /// Spent.
    Consumed,
    /// Presented too late.
    Expired,
    /// Replaced by a newer token.
    Superseded,
}

/// What happened to the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent {
    /// Someone presented it.
    Presented,
    /// A newer token of the same kind was issued for the same user.
    Superseded,
}

/// The answer to a presentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Apply the token's action (create the user, set the password, …).
    Accept,
    /// Answer with the kind's single "invalid or expired" message.
    Refuse,
}

impl Machine for TokenState {
    type Event = TokenEvent;
    type Effect = Effect;
    type Policy = ();

    /// Advances the machine. Pure. A presentation always gets an answer,
    /// whatever the state.
    fn step(self, event: TokenEvent, now: Timestamp, _: &()) -> (TokenState, Vec<Effect>) {
        match (self, event) {
            (TokenState::Issued { expires_at }, TokenEvent::Presented) if now >= expires_at => {
                (TokenState::Expired, vec![Effect::Refuse])
            }
            (TokenState::Issued { .. }, TokenEvent::Presented) => {
                (TokenState::Consumed, vec![Effect::Accept])
            }
            (TokenState::Issued { .. }, TokenEvent::Superseded) => (TokenState::Superseded, vec![]),
            (done, TokenEvent::Presented) => (done, vec![Effect::Refuse]),
            (done, TokenEvent::Superseded) => (done, vec![]),
        }
    }

    /// Every state but `Issued`: a token never comes back.
    fn is_terminal(&self) -> bool {
        !matches!(self, TokenState::Issued { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeDelta};
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        DateTime::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    #[test]
    fn expiry_is_exclusive() {
        let exp = t0() + TimeDelta::seconds(60);
        let issued = TokenState::Issued { expires_at: exp };
        assert_eq!(
            issued
                .step(TokenEvent::Presented, exp - TimeDelta::microseconds(1), &())
                .1,
            vec![Effect::Accept]
        );
        assert_eq!(
            issued.step(TokenEvent::Presented, exp, &()).1,
            vec![Effect::Refuse]
        );
    }

    proptest! {
        #[test]
        fn accepted_at_most_once_never_late_never_after_supersede(
            ttl in 1i64..1000,
            events in prop::collection::vec((any::<bool>(), 0i64..2000), 0..20),
        ) {
            let exp = t0() + TimeDelta::seconds(ttl);
            let mut s = TokenState::Issued { expires_at: exp };
            let mut accepted = 0;
            let mut superseded = false;
            let mut elapsed = 0;
            for (present, advance) in events {
                elapsed += advance;
                let now = t0() + TimeDelta::seconds(elapsed);
                let ev = if present { TokenEvent::Presented } else { TokenEvent::Superseded };
                let (next, eff) = s.step(ev, now, &());
                prop_assert!(eff.len() <= 1);
                if eff.contains(&Effect::Accept) {
                    accepted += 1;
                    prop_assert!(now < exp);
                    prop_assert!(!superseded);
                }
                if !present { superseded = superseded || matches!(s, TokenState::Issued { .. }); }
                s = next;
            }
            prop_assert!(accepted <= 1);
        }
    }
}
