//! The second look of a refresh rotation, shared by both SQL backends.
//!
//! A rotation is first one conditional `UPDATE` of the session row (each
//! backend's `sessions.rs`). When it changed nothing, the backend reads the
//! row once more — `refresh_hash, prev_refresh_hash, rotated_at`, then
//! [`user_cols!`](crate::rows::user_cols) and
//! [`session_cols!`](crate::rows::session_cols) — and [`after_miss`] says
//! what that row makes of the presented token; only revoking is left to the
//! backend.

use chrono::TimeDelta;
use regstack_ports::{Session, StoreError, Timestamp, TokenHash, User};

use crate::rows::{self, Cells, USER_COLS};
use crate::time::window_start;

/// Columns read before the user's and the session's.
pub(crate) const FAMILY_COLS: usize = 3;

/// What a session row says to a presented token that did not rotate.
pub(crate) enum Miss {
    /// No such session, a dead one (it keeps what it died of), or one from
    /// before refresh families: nothing to do.
    Invalid,
    /// The token the last rotation spent, less than `grace` ago, whose
    /// successor (derived from it, so the caller names it) is still the live
    /// one: a client retrying a lost answer.
    Replayed(Session, User),
    /// Any other token of a live family is an older one: theft. The caller
    /// revokes the family, conditionally, so that of racing reuses one
    /// reports it.
    Reuse(Session, User),
}

/// Decides on the row read after a rotation changed nothing.
pub(crate) fn after_miss(
    row: &impl Cells,
    presented: &TokenHash,
    successor: &TokenHash,
    now: Timestamp,
    grace: TimeDelta,
) -> Result<Miss, StoreError> {
    let (live, previous, rotated_at) = (row.opt_text(0)?, row.opt_text(1)?, row.opt_int(2)?);
    let user = rows::user(row, FAMILY_COLS)?;
    let session = rows::session(row, FAMILY_COLS + USER_COLS)?;
    let Some(live) = live else {
        return Ok(Miss::Invalid);
    };
    if !session.is_live(now) {
        return Ok(Miss::Invalid);
    }
    let replay = previous.as_deref() == Some(presented.as_str())
        && live == successor.as_str()
        && rotated_at.is_some_and(|at| at > window_start(now, grace));
    Ok(if replay {
        Miss::Replayed(session, user)
    } else {
        Miss::Reuse(session, user)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::to_db;

    #[test]
    fn the_grace_window_ends_exactly_at_rotated_at_plus_grace() {
        let now = chrono::DateTime::UNIX_EPOCH + TimeDelta::days(20_000);
        let grace = TimeDelta::seconds(5);
        let at = to_db(now - grace);
        assert!(
            at <= window_start(now, grace),
            "at the end: no longer a replay"
        );
        assert!(
            at + 1 > window_start(now, grace),
            "a microsecond later it was"
        );
    }
}
