//! Timestamps as stored: INTEGER microseconds since the Unix epoch, UTC.
//!
//! The ports promise microsecond precision ([`Timestamp`]), so a value
//! written and read back compares equal on every backend (checklist row
//! RL-9: expiries compare exactly, to the microsecond), and integers
//! compare in the index without parsing. Every conversion goes through
//! here.

use chrono::{DateTime, TimeDelta, Utc};
use regstack_ports::Timestamp;

use crate::error::CorruptRow;

/// The stored form of an instant. Sub-microsecond digits (which a
/// [`Clock`](regstack_ports::Clock) never produces) are dropped.
pub(crate) fn to_db(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

/// Reads a stored instant back.
pub(crate) fn from_db(micros: i64) -> Result<Timestamp, CorruptRow> {
    DateTime::from_timestamp_micros(micros).ok_or(CorruptRow("timestamp out of range"))
}

/// Reads a stored optional instant back.
pub(crate) fn from_db_opt(micros: Option<i64>) -> Result<Option<Timestamp>, CorruptRow> {
    micros.map(from_db).transpose()
}

/// Reads back an instant computed here (a lock's end); one beyond what
/// chrono can represent is "never", the latest representable instant.
pub(crate) fn from_db_saturating(micros: i64) -> Timestamp {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A window length in stored units. A window too long to count in
/// microseconds (≈ 292 000 years) is as good as infinite.
pub(crate) fn window(w: TimeDelta) -> i64 {
    w.num_microseconds().unwrap_or(i64::MAX)
}

/// The first stored instant still inside a window of length `w` ending at
/// `now`: rows with `at > window_start(now, w)` count. An attempt exactly
/// `w` old has left the window.
pub(crate) fn window_start(now: Timestamp, w: TimeDelta) -> i64 {
    to_db(now).saturating_sub(window(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SubsecRound;

    #[test]
    fn an_instant_round_trips_to_the_microsecond() {
        let now = Utc::now().trunc_subsecs(6);
        assert_eq!(from_db(to_db(now)).ok(), Some(now));
    }

    #[test]
    fn instants_before_the_epoch_round_trip() {
        let t = DateTime::from_timestamp_micros(-1_234_567).unwrap_or_default();
        assert_eq!(from_db(to_db(t)).ok(), Some(t));
    }

    #[test]
    fn a_huge_window_does_not_overflow() {
        let now = Utc::now();
        assert!(window_start(now, TimeDelta::MAX) < 0);
    }
}
