//! [`SessionStore`] over `sessions`.
//!
//! A session is live while `revoked_at IS NULL AND expires_at > now AND
//! idle_expires_at > now` ([`Session::is_live`]); every conditional write
//! here repeats that condition, so a dead session keeps the reason it died
//! of. A session's refresh family is three columns of its row: the live
//! token's hash, the hash the last rotation spent and when.
//!
//! [`rotate`](SessionStore::rotate) is first one conditional `UPDATE` of that
//! row ([`Backend::rotate_live`]), conditional on the presented hash being
//! the live one: of any number of concurrent presentations exactly one
//! changes the row (SQLite has one writer; on PostgreSQL the others queue on
//! the row lock, then re-check the condition on the new row version and
//! change nothing). Only those, and presentations of anything but the live
//! token, read the row, which `rotate` reports as it found it: telling a
//! replay from reuse is `core`'s rule (`flows/refresh.rs`), and a reuse is
//! ended with the conditional [`revoke`](SessionStore::revoke), so that of
//! concurrent reuses one revokes — and reports.
//! Each statement locks one session row and nothing else, so rotation takes
//! no part in the lock order of the other transactions.

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{
    NewSession, RefreshFamily, RevokeReason, Rotation, Session, SessionId, SessionStart,
    SessionStore, StoreError, Timestamp, TokenHash, User, UserId,
};

use super::{commit, rollback, SqlStores};
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::error::CorruptRow;
use crate::rows::{self, session_cols, user_cols, Cells, USER_COLS};
use crate::time::{from_db_opt, to_db, window};

/// The per-request check: one query, both sides by primary key (the
/// PostgreSQL plan is pinned by a test in `postgres`).
pub(crate) const AUTHENTICATE: &str = concat!(
    "SELECT ",
    user_cols!(u),
    ", ",
    session_cols!(s),
    " FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.id = $1"
);

/// Revokes every live (unrevoked, unexpired, not idled-out) session of a
/// user.
pub(super) async fn revoke_live_of_user(
    conn: &mut impl Conn,
    user_id: &str,
    reason: RevokeReason,
    now: i64,
) -> Result<u64, StoreError> {
    const REVOKE_ALL: &str = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE user_id = $3 AND revoked_at IS NULL AND expires_at > $1 \
         AND idle_expires_at > $1";
    let args = [
        Arg::Int(now),
        Arg::Text(reason.as_str()),
        Arg::Text(user_id),
    ];
    conn.execute(REVOKE_ALL, &args).await
}

/// Revokes one live session. Conditional: only a live session changes, so
/// a session is revoked once and keeps its first reason.
async fn revoke_on(
    conn: &mut impl Conn,
    id: &SessionId,
    reason: RevokeReason,
    now: i64,
) -> Result<bool, StoreError> {
    const REVOKE: &str = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE id = $3 AND revoked_at IS NULL AND expires_at > $1 \
         AND idle_expires_at > $1";
    let args = [
        Arg::Int(now),
        Arg::Text(reason.as_str()),
        Arg::Text(id.as_str()),
    ];
    Ok(conn.execute(REVOKE, &args).await? > 0)
}

/// Deletes every session of a user, refresh families included (account
/// deletion).
pub(super) async fn delete_all_of_user(
    conn: &mut impl Conn,
    user_id: &str,
) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM sessions WHERE user_id = $1",
        &[Arg::Text(user_id)],
    )
    .await
}

#[async_trait]
impl<B: Backend> SessionStore for SqlStores<B> {
    async fn start(&self, s: NewSession) -> Result<SessionStart, StoreError> {
        // The user row first (the lock order), conditional on the
        // credential epoch the sign-in read. A credential change holds this
        // row (SQLite: the write lock) until it commits; this `UPDATE` waits
        // for it and then re-checks the condition against the changed row
        // (READ COMMITTED), so it either runs before the change — whose
        // revocation then ends the new session — or sees the new epoch and
        // writes nothing. Stamping `last_login` before the insert also means
        // this transaction never holds only the foreign-key check's
        // `KEY SHARE` lock while it waits for a stronger one on the same row.
        const STAMP: &str = "UPDATE users SET last_login = $1 \
             WHERE id = $2 AND tokens_invalidated_after IS NOT DISTINCT FROM $3";
        // A duplicate id fails the primary key (→ Conflict) and the whole
        // transaction with it: no session, no `last_login` stamp.
        const INSERT: &str = "INSERT INTO sessions \
             (id, user_id, created_at, last_used_at, expires_at, idle_expires_at, user_agent, \
             ip, refresh_hash) \
             VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8)";
        let created = to_db(s.created_at);
        let mut tx = self.begin(Commit::Relaxed).await?;
        let stamp = [
            Arg::Int(created),
            Arg::Text(s.user_id.as_str()),
            Arg::OptInt(s.credential_epoch.map(to_db)),
        ];
        if tx.execute(STAMP, &stamp).await? == 0 {
            rollback::<B>(tx).await?;
            return Ok(SessionStart::Stale);
        }
        let insert = [
            Arg::Text(s.id.as_str()),
            Arg::Text(s.user_id.as_str()),
            Arg::Int(created),
            Arg::Int(to_db(s.expires_at)),
            Arg::Int(to_db(s.idle_expires_at)),
            Arg::OptText(s.user_agent.as_deref()),
            Arg::OptText(s.ip.as_deref()),
            Arg::Text(s.refresh_hash.as_str()),
        ];
        tx.execute(INSERT, &insert).await?;
        commit::<B>(tx).await?;
        Ok(SessionStart::Started)
    }

    async fn rotate(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        const FAMILY: &str = concat!(
            "SELECT s.refresh_hash, s.prev_refresh_hash, s.rotated_at, ",
            user_cols!(u),
            ", ",
            session_cols!(s),
            " FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.id = $1"
        );
        let now_db = to_db(now);

        // Spend the token if it is its live family's live token: one write
        // to one row. The changed row decides the winner of a race.
        let args = [
            Arg::Text(successor.as_str()),
            Arg::Int(now_db),
            Arg::Int(now_db.saturating_add(window(idle))),
            Arg::Text(id.as_str()),
            Arg::Text(presented.as_str()),
        ];
        if let Some((session, user)) = self.backend.rotate_live(&args).await? {
            return Ok(Rotation::Rotated { session, user });
        }
        // A miss: report the family as it stands; core judges it.
        let row = self
            .read_conn()
            .await?
            .fetch_optional(FAMILY, &[Arg::Text(id.as_str())])
            .await?;
        let Some(row) = row else {
            return Ok(Rotation::Unknown);
        };
        let hash = |i| {
            row.opt_text(i)?
                .map(|h| TokenHash::from_hex(h).ok_or(CorruptRow("refresh hash")))
                .transpose()
                .map_err(StoreError::from)
        };
        Ok(Rotation::NotLive(RefreshFamily {
            live: hash(0)?,
            previous: hash(1)?,
            rotated_at: from_db_opt(row.opt_int(2)?)?,
            user: rows::user(&row, 3)?,
            session: rows::session(&row, 3 + USER_COLS)?,
        }))
    }

    async fn list(&self, user: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        // Newest first; the id breaks ties so the order is total.
        const LIST: &str = concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > $2 AND idle_expires_at > $2 \
             ORDER BY created_at DESC, id DESC"
        );
        let args = [Arg::Text(user.as_str()), Arg::Int(to_db(now))];
        self.read_conn()
            .await?
            .fetch_all(LIST, &args)
            .await?
            .iter()
            .map(|r| rows::session(r, 0))
            .collect()
    }

    async fn revoke_owned(
        &self,
        id: &SessionId,
        owner: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // The owner is part of the condition, so another user's id changes
        // nothing and reads exactly like an unknown session.
        const REVOKE_OWNED: &str = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
             WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL \
             AND expires_at > $1 AND idle_expires_at > $1";
        let args = [
            Arg::Int(to_db(now)),
            Arg::Text(reason.as_str()),
            Arg::Text(id.as_str()),
            Arg::Text(owner.as_str()),
        ];
        Ok(self
            .write_conn(Commit::Durable)
            .await?
            .execute(REVOKE_OWNED, &args)
            .await?
            > 0)
    }

    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        let row = self
            .read_conn()
            .await?
            .fetch_optional(AUTHENTICATE, &[Arg::Text(id.as_str())])
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            rows::session(&row, USER_COLS)?,
            rows::user(&row, 0)?,
        )))
    }

    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        revoke_on(
            &mut *self.write_conn(Commit::Durable).await?,
            id,
            reason,
            to_db(now),
        )
        .await
    }

    async fn revoke_all(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        revoke_live_of_user(
            &mut *self.write_conn(Commit::Durable).await?,
            user.as_str(),
            reason,
            to_db(now),
        )
        .await
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        // A session has ended when it expired, idled out or was revoked;
        // its refresh family goes with the row.
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM sessions WHERE expires_at < $1 OR idle_expires_at < $1 \
                 OR (revoked_at IS NOT NULL AND revoked_at < $1)",
                &[Arg::Int(to_db(before))],
            )
            .await
    }
}
