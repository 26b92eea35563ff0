//! Flows as state machines: a state enum, a pure `step(state, event, now)`
//! returning the next state and the effects to perform, and (in
//! [`crate::engine`]) a thin async runner that performs the effects through
//! the ports. The rules live here, readable in one place and driven by
//! property tests; the runner only moves data.

pub mod one_time;
pub mod refresh;
pub mod sign_in;
