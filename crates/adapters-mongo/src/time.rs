//! Timestamps as stored: `Int64` microseconds since the Unix epoch, UTC.
//!
//! The ports promise microsecond precision ([`Timestamp`]) and BSON dates
//! keep only milliseconds, so the exact instant is an integer (which also
//! compares in an index without conversion). The TTL indexes need a BSON
//! date; [`ttl_date`] makes that copy, rounded up so a document is never
//! reaped before its exact end. Every conversion goes through here.

use chrono::{DateTime, TimeDelta, Utc};
use mongodb::bson::DateTime as BsonDate;
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

/// Reads back an instant computed here (a lock's end); one beyond what
/// chrono can represent is "never", the latest representable instant.
pub(crate) fn from_db_saturating(micros: i64) -> Timestamp {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A duration in stored units. One too long to count in microseconds
/// (≈ 292 000 years) is as good as infinite.
pub(crate) fn span(w: TimeDelta) -> i64 {
    w.num_microseconds().unwrap_or(i64::MAX)
}

/// The first stored instant still inside a window of length `w` ending at
/// `now`: entries with `at > window_start(now, w)` count. An entry exactly
/// `w` old has left the window.
pub(crate) fn window_start(now: Timestamp, w: TimeDelta) -> i64 {
    to_db(now).saturating_sub(span(w))
}

/// The BSON date a TTL index reads for a document whose exact end is
/// `micros`: rounded up to the millisecond, never earlier than the end.
pub(crate) fn ttl_date(micros: i64) -> BsonDate {
    let millis = micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0);
    BsonDate::from_millis(millis)
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

    #[test]
    fn ttl_dates_never_come_before_the_exact_end() {
        assert_eq!(ttl_date(1_000).timestamp_millis(), 1);
        assert_eq!(ttl_date(1_001).timestamp_millis(), 2);
        assert_eq!(ttl_date(-1_001).timestamp_millis(), -1);
        assert_eq!(ttl_date(i64::MAX).timestamp_millis(), i64::MAX / 1000 + 1);
    }
}
