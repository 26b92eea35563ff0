//! A [`Clock`] that stands still until the test moves it.
//!
//! Expiry, lockout windows and token lifetimes are all decided from `now`,
//! so a test that owns the clock can put an instant exactly on a boundary
//! (`expires_at`, `expires_at - 1µs`) instead of sleeping and hoping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use regstack_ports::{Clock, Timestamp};

/// A shared, settable clock. Clones share one instant: hand one clone to the
/// code under test (as `Arc<dyn Clock>`) and keep another to move time.
///
/// The instant is held as microseconds since the Unix epoch in an atomic, so
/// it has exactly the precision every store keeps (see
/// [`Timestamp`]) and there is no lock to poison.
#[derive(Clone, Debug)]
pub struct FixedClock {
    micros: Arc<AtomicI64>,
}

impl FixedClock {
    /// A clock reading `start`, truncated to microseconds.
    pub fn new(start: Timestamp) -> Self {
        Self {
            micros: Arc::new(AtomicI64::new(start.trunc_subsecs(6).timestamp_micros())),
        }
    }

    /// Moves the clock by `by` (which may be negative), at microsecond
    /// precision. Saturates at the ends of the representable range rather
    /// than wrapping, so an absurd step cannot send time backwards.
    pub fn advance(&self, by: TimeDelta) {
        let step = by.num_microseconds().unwrap_or(if by < TimeDelta::zero() {
            i64::MIN
        } else {
            i64::MAX
        });
        // `fetch_update` so two test threads advancing at once both count.
        let _ = self
            .micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(clamp_micros(now.saturating_add(step)))
            });
    }

    /// Sets the clock to `to`, truncated to microseconds.
    pub fn set(&self, to: Timestamp) {
        self.micros
            .store(to.trunc_subsecs(6).timestamp_micros(), Ordering::SeqCst);
    }
}

impl Default for FixedClock {
    /// Starts at [`fixtures::t0`](crate::fixtures::t0), the instant the
    /// contract suite uses, so tests share one reference point.
    fn default() -> Self {
        Self::new(crate::fixtures::t0())
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        let micros = self.micros.load(Ordering::SeqCst);
        // Every stored value came through `clamp_micros` or a real
        // `Timestamp`, so it is always representable.
        DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Keeps a saturated sum inside what `DateTime<Utc>` can represent.
fn clamp_micros(micros: i64) -> i64 {
    let min = DateTime::<Utc>::MIN_UTC.timestamp_micros();
    let max = DateTime::<Utc>::MAX_UTC.timestamp_micros();
    micros.clamp(min, max)
}
