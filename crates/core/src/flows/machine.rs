//! The one loop every flow machine runs in: [`Machine`] is what a flow
//! is (a pure step from state and event to state and effects), [`drive`]
//! is how a runner runs it, and [`Effects`] is the runner's part — the
//! port calls, one per effect.
//!
//! ```text
//!   first event ─▶ step ─▶ effects ─▶ perform each, in order ─▶ events they report
//!                   ▲                                              │ (in the same order)
//!                   └──────────────────────────────────────────────┘
//!   until the state is terminal, or no event is left (the machine rests)
//! ```
//!
//! **Nothing beside the machine.** A runner is a struct that holds the
//! request's inputs (the engine, the presented credentials, the client) and
//! implements [`Effects`]; what a run *learns* — the account read with the
//! password, the session it started — travels in events back into the
//! machine and out in its final state, never in a runner's locals. So the
//! machine sees everything that decides the answer, and a new state (a
//! second factor between credentials and session) cannot be skipped by a
//! runner that kept the account aside.
//!
//! **Resting.** A run ends when the machine reaches a terminal state
//! ([`Machine::is_terminal`]) — after the effects of that last step, so a
//! terminal transition's effects (an event to fire) still happen — or when
//! no event is left to step: the machine then waits for an event that only
//! a later request can bring (a second-factor challenge pending between
//! the login and the code). [`drive`] returns the state either way; the
//! runner maps it to an answer, and a resting state its flow never rests
//! in is an internal error there.
//!
//! **Bounded.** A machine whose effects keep reporting events would spin;
//! [`drive`] steps at most [`Machine::MAX_STEPS`] events and then fails with
//! an internal error rather than loop forever.
//!
//! **Why a trait for the effects, not a closure.** The handler borrows the
//! engine and the request's inputs, and its futures borrow them in turn. An
//! `async` closure can express that (`AsyncFnMut`), but stable Rust cannot
//! say in a bound that the future it returns is `Send` — and every runner's
//! future must be, since the HTTP layer spawns it. [`Effects::perform`]
//! states `+ Send` once, implementations write a plain `async fn`, nothing
//! is boxed, and each runner's I/O reads as one `match` with an arm per
//! effect.

use std::collections::VecDeque;
use std::future::Future;

use regstack_ports::Timestamp;

use crate::error::AuthError;

/// A flow as a state machine: a state type whose [`step`](Self::step) is
/// pure — no clock, no store; `now` and the settings are parameters.
pub trait Machine: Sized {
    /// What the runner observed (a store's answer, a request).
    type Event;
    /// What the runner must do (a port call, an event to fire).
    type Effect;
    /// The settings a step reads (thresholds, lifetimes, the run's
    /// purpose); `()` when there are none.
    type Policy;

    /// How many events [`drive`] steps before it gives up: far more than a
    /// run of the machine can need.
    const MAX_STEPS: usize = 32;

    /// Advances the machine by one event and says what must happen next.
    fn step(
        self,
        event: Self::Event,
        now: Timestamp,
        policy: &Self::Policy,
    ) -> (Self, Vec<Self::Effect>);

    /// Whether the machine has reached an answer and takes no more steps.
    fn is_terminal(&self) -> bool;
}

/// A runner's side of [`drive`]: performs one effect through the ports and
/// reports what it observed.
pub trait Effects<M: Machine> {
    /// Performs `effect`; `Some(event)` is fed back to the machine (after
    /// the events of the effects before it), `None` when the effect has
    /// nothing to report. An error ends the run with that error.
    fn perform(
        &mut self,
        effect: M::Effect,
    ) -> impl Future<Output = Result<Option<M::Event>, AuthError>> + Send;
}

/// Runs `machine` from `first`: steps each event, performs the step's
/// effects in order through `effects`, queues the events they report, and
/// returns the state once it is terminal or no event is left. Fails with
/// the first effect's error, or with an internal error if the machine has
/// not settled after [`Machine::MAX_STEPS`] events.
pub async fn drive<M, H>(
    machine: M,
    first: M::Event,
    now: Timestamp,
    policy: &M::Policy,
    effects: &mut H,
) -> Result<M, AuthError>
where
    M: Machine,
    H: Effects<M>,
{
    let mut state = machine;
    let mut events = VecDeque::from([first]);
    let mut steps = 0;
    while let Some(event) = events.pop_front() {
        if steps == M::MAX_STEPS {
            return Err(AuthError::internal(format!(
                "{} did not settle within {} steps",
                std::any::type_name::<M>(),
                M::MAX_STEPS
            )));
        }
        steps += 1;
        let (next, todo) = state.step(event, now, policy);
        state = next;
        for effect in todo {
            if let Some(event) = effects.perform(effect).await? {
                events.push_back(event);
            }
        }
        if state.is_terminal() {
            break;
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeDelta};

    fn now() -> Timestamp {
        DateTime::UNIX_EPOCH + TimeDelta::days(20_000)
    }

    /// Remembers every event it stepped; terminal once it has seen 0.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    struct Trail(Vec<u32>);

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Ask {
        /// Performing it reports this event.
        Report(u32),
        /// Performing it reports nothing.
        Mark,
        /// Performing it fails.
        Fail,
    }

    impl Machine for Trail {
        type Event = u32;
        type Effect = Ask;
        type Policy = ();
        const MAX_STEPS: usize = 8;

        /// The script: which effects each event asks for.
        fn step(mut self, event: u32, _now: Timestamp, _: &()) -> (Self, Vec<Ask>) {
            if self.is_terminal() {
                return (self, vec![]);
            }
            self.0.push(event);
            let effects = match event {
                0 => vec![Ask::Report(5), Ask::Mark],
                1 => vec![Ask::Report(2), Ask::Report(3)],
                2 => vec![Ask::Report(4)],
                4 => vec![Ask::Report(0), Ask::Report(5)],
                7 => vec![Ask::Report(7)],
                9 => vec![Ask::Fail, Ask::Report(0)],
                _ => vec![],
            };
            (self, effects)
        }

        fn is_terminal(&self) -> bool {
            self.0.last() == Some(&0)
        }
    }

    #[derive(Default)]
    struct Recorder(Vec<Ask>);

    impl Effects<Trail> for Recorder {
        async fn perform(&mut self, effect: Ask) -> Result<Option<u32>, AuthError> {
            self.0.push(effect);
            match effect {
                Ask::Report(e) => Ok(Some(e)),
                Ask::Mark => Ok(None),
                Ask::Fail => Err(AuthError::internal("store down")),
            }
        }
    }

    async fn run(first: u32) -> (Result<Trail, AuthError>, Vec<Ask>) {
        let mut rec = Recorder::default();
        let end = drive(Trail::default(), first, now(), &(), &mut rec).await;
        (end, rec.0)
    }

    #[tokio::test]
    async fn reported_events_are_stepped_in_the_order_of_their_effects() {
        let (end, performed) = run(1).await;
        // 1 asks for 2 and 3; 2's own effect (4) queues behind 3.
        assert_eq!(end.unwrap(), Trail(vec![1, 2, 3, 4, 0]));
        assert_eq!(
            performed[..4],
            [
                Ask::Report(2),
                Ask::Report(3),
                Ask::Report(4),
                Ask::Report(0)
            ]
        );
    }

    #[tokio::test]
    async fn a_terminal_step_performs_its_effects_and_steps_nothing_after() {
        let (end, performed) = run(0).await;
        assert_eq!(end.unwrap(), Trail(vec![0]));
        // Both effects of the terminal step ran; the 5 one reported was not
        // stepped (nor was the 5 queued before it in the longer run).
        assert_eq!(performed, vec![Ask::Report(5), Ask::Mark]);
        let (end, _) = run(1).await;
        assert!(!end.unwrap().0.contains(&5));
    }

    #[tokio::test]
    async fn a_machine_with_nothing_left_to_step_rests_where_it_is() {
        let (end, performed) = run(8).await;
        let end = end.unwrap();
        assert_eq!(end, Trail(vec![8]));
        assert!(!end.is_terminal());
        assert!(performed.is_empty());
    }

    #[tokio::test]
    async fn a_machine_that_never_settles_is_stopped_with_an_internal_error() {
        let (end, performed) = run(7).await;
        assert!(matches!(end, Err(AuthError::Internal(_))), "{end:?}");
        assert_eq!(performed.len(), Trail::MAX_STEPS);
    }

    #[tokio::test]
    async fn an_effect_error_ends_the_run_with_that_error_and_performs_nothing_after() {
        let (end, performed) = run(9).await;
        assert!(matches!(end, Err(AuthError::Internal(_))), "{end:?}");
        assert_eq!(performed, vec![Ask::Fail]);
    }
}
