//! Flows as state machines: a state enum, a pure `step(state, event, now,
//! policy)` returning the next state and the effects to perform — the
//! [`Machine`] trait — and one loop, [`drive`], in which a runner in
//! [`crate::engine`] performs the effects through the ports ([`Effects`])
//! and feeds back what they report. The rules live here, readable in one
//! place and driven by property tests; the runner only moves data and
//! keeps no state beside the machine.

pub mod gate;
pub mod machine;
pub mod mfa;
pub mod oauth;
pub mod one_time;
pub mod password_change;
pub mod refresh;
pub mod sign_in;

pub use machine::{drive, Effects, Machine};
