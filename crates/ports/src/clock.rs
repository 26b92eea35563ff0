//! Time as a port: every expiry decision takes `now` from a [`Clock`] so
//! tests can freeze and advance it.

use chrono::{DateTime, SubsecRound, Utc};

/// An instant in UTC, at microsecond precision (what every backend stores
/// exactly, so a value read back compares equal to the value written).
pub type Timestamp = DateTime<Utc>;

/// The source of `now` for flows and stores.
pub trait Clock: Send + Sync + 'static {
    /// The current instant, truncated to microseconds.
    fn now(&self) -> Timestamp;
}

/// The wall clock. The only place in the workspace that reads system time
/// on behalf of the flows.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now().trunc_subsecs(6)
    }
}
