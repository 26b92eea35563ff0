//! [`SessionStore`] over `sessions` and `refresh_tokens`.
//!
//! A session is live while `revoked_at IS NULL AND expires_at > now AND
//! idle_expires_at > now` ([`Session::is_live`]); every conditional write
//! here repeats that condition, so a dead session keeps the reason it died
//! of. A session's refresh tokens (its family) are rows of
//! `refresh_tokens`, stored by hash; `spent_at IS NULL` marks the one live
//! token, and spent rows stay until the session is purged so a replayed or
//! stolen token can still be recognised.
//!
//! [`rotate`](SessionStore::rotate) is one `BEGIN IMMEDIATE` transaction
//! whose first statement is the conditional spend: of any number of
//! concurrent presentations of one token, exactly one changes that row, and
//! the others (queued behind the write lock) find it spent and are told
//! `Replayed` or `Reused`.

use async_trait::async_trait;
use chrono::TimeDelta;
use regstack_ports::{
    NewSession, RevokeReason, Rotation, Session, SessionId, SessionStore, StoreError, Timestamp,
    TokenHash, User, UserId,
};
use sqlx::SqliteConnection;

use super::rows::{self, session_cols, user_cols, USER_COLS};
use super::{commit, rollback, SqliteStores};
use crate::error::map_sqlx;
use crate::time::{to_db, window};

/// Revokes every live (unrevoked, unexpired, not idled-out) session of a
/// user.
pub(super) async fn revoke_live_of_user(
    conn: &mut SqliteConnection,
    user_id: &str,
    reason: RevokeReason,
    now: i64,
) -> Result<u64, StoreError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
         WHERE user_id = ?3 AND revoked_at IS NULL AND expires_at > ?1 \
         AND idle_expires_at > ?1",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(user_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
    .map_err(map_sqlx)
}

/// Deletes every session of a user and their refresh tokens (account
/// deletion). The tokens cascade with the sessions; deleting them by name
/// keeps this correct on a connection opened without foreign keys.
pub(super) async fn delete_all_of_user(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<u64, StoreError> {
    sqlx::query(
        "DELETE FROM refresh_tokens \
         WHERE session_id IN (SELECT id FROM sessions WHERE user_id = ?1)",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await
    .map_err(map_sqlx)?;
    sqlx::query("DELETE FROM sessions WHERE user_id = ?1")
        .bind(user_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_sqlx)
}

/// Names a refused refresh-token insert. SQLite reports the primary key as
/// `refresh_tokens.hash`, which the shared mapping cannot tell apart from
/// other tables' columns.
fn refresh_conflict(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict("refresh token"),
        other => other,
    }
}

/// Stores a live refresh token of `session_id`.
async fn insert_refresh_on(
    conn: &mut SqliteConnection,
    hash: &TokenHash,
    session_id: &str,
    issued_at: i64,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO refresh_tokens (hash, session_id, issued_at) VALUES (?1, ?2, ?3)")
        .bind(hash.as_str())
        .bind(session_id)
        .bind(issued_at)
        .execute(conn)
        .await
        .map(drop)
        .map_err(|e| refresh_conflict(map_sqlx(e)))
}

/// The session and its user, by the session's primary key.
async fn session_and_user_on(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<(Session, User)>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        user_cols!(u),
        ", ",
        session_cols!(s),
        " FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.id = ?1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(map_sqlx)?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((
        rows::session(&row, USER_COLS)?,
        rows::user(&row, 0)?,
    )))
}

#[async_trait]
impl SessionStore for SqliteStores {
    async fn start(&self, s: NewSession) -> Result<(), StoreError> {
        let created = to_db(s.created_at);
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO sessions \
             (id, user_id, created_at, last_used_at, expires_at, idle_expires_at, \
             user_agent, ip) \
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(s.id.as_str())
        .bind(s.user_id.as_str())
        .bind(created)
        .bind(to_db(s.expires_at))
        .bind(to_db(s.idle_expires_at))
        .bind(s.user_agent)
        .bind(s.ip)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        insert_refresh_on(&mut tx, &s.refresh_hash, s.id.as_str(), created).await?;
        sqlx::query("UPDATE users SET last_login = ?1 WHERE id = ?2")
            .bind(created)
            .bind(s.user_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        commit(tx).await
    }

    async fn rotate(
        &self,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        grace: TimeDelta,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        let now_db = to_db(now);
        let mut tx = self.write_tx().await?;

        // 1. Spend the token if it is its live family's live token. The
        //    changed row decides the winner of a race.
        let spent_from: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET spent_at = ?1 \
             WHERE hash = ?2 AND spent_at IS NULL AND EXISTS (\
               SELECT 1 FROM sessions AS s WHERE s.id = refresh_tokens.session_id \
               AND s.revoked_at IS NULL AND s.expires_at > ?1 AND s.idle_expires_at > ?1) \
             RETURNING session_id",
        )
        .bind(now_db)
        .bind(presented.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if let Some(session_id) = spent_from {
            insert_refresh_on(&mut tx, successor, &session_id, now_db).await?;
            // The idle end moves forward, never past the absolute end.
            sqlx::query(
                "UPDATE sessions SET last_used_at = ?1, idle_expires_at = MIN(?2, expires_at) \
                 WHERE id = ?3",
            )
            .bind(now_db)
            .bind(now_db.saturating_add(window(idle)))
            .bind(&session_id)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
            // Present: the transaction holds the write lock and just
            // updated the row, and its user cannot go while it exists.
            let Some((session, user)) = session_and_user_on(&mut tx, &session_id).await? else {
                rollback(tx).await?;
                return Ok(Rotation::Invalid);
            };
            commit(tx).await?;
            return Ok(Rotation::Rotated { session, user });
        }

        // 2. Not a live token: unknown, of a dead session, or spent.
        let row = sqlx::query(concat!(
            "SELECT rt.spent_at, ",
            user_cols!(u),
            ", ",
            session_cols!(s),
            " FROM refresh_tokens AS rt JOIN sessions AS s ON s.id = rt.session_id \
             JOIN users AS u ON u.id = s.user_id WHERE rt.hash = ?1"
        ))
        .bind(presented.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let Some(row) = row else {
            rollback(tx).await?;
            return Ok(Rotation::Invalid);
        };
        let spent_at: Option<i64> = sqlx::Row::try_get(&row, 0).map_err(map_sqlx)?;
        let user = rows::user(&row, 1)?;
        let session = rows::session(&row, 1 + USER_COLS)?;
        if !session.is_live(now) {
            // A dead family answers nothing and keeps what it died of.
            rollback(tx).await?;
            return Ok(Rotation::Invalid);
        }
        // Unspent and live would have been spent by step 1 under this lock.
        let Some(spent_at) = spent_at else {
            rollback(tx).await?;
            return Ok(Rotation::Invalid);
        };

        // A retry of a lost answer: spent less than `grace` ago, and its
        // successor (derived from it, so the caller names it) still unused.
        let in_grace = spent_at > now_db.saturating_sub(window(grace));
        if in_grace {
            let successor_unused: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM refresh_tokens \
                 WHERE hash = ?1 AND session_id = ?2 AND spent_at IS NULL)",
            )
            .bind(successor.as_str())
            .bind(session.id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(map_sqlx)?;
            if successor_unused {
                rollback(tx).await?;
                return Ok(Rotation::Replayed { session, user });
            }
        }

        // Theft: the whole family dies.
        sqlx::query(
            "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
             WHERE id = ?3 AND revoked_at IS NULL",
        )
        .bind(now_db)
        .bind(RevokeReason::RefreshReuse.as_str())
        .bind(session.id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        commit(tx).await?;
        Ok(Rotation::Reused {
            session_id: session.id,
            user_id: user.id,
        })
    }

    async fn list(&self, user: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL \
             AND expires_at > ?2 AND idle_expires_at > ?2 \
             ORDER BY created_at DESC, id DESC"
        ))
        .bind(user.as_str())
        .bind(to_db(now))
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?
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
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
             WHERE id = ?3 AND user_id = ?4 AND revoked_at IS NULL \
             AND expires_at > ?1 AND idle_expires_at > ?1",
        )
        .bind(to_db(now))
        .bind(reason.as_str())
        .bind(id.as_str())
        .bind(owner.as_str())
        .execute(&mut *self.write_conn().await?)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        // One query, both sides by primary key.
        let mut conn = self.pool.acquire().await.map_err(map_sqlx)?;
        session_and_user_on(&mut conn, id.as_str()).await
    }

    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Conditional: only a live session changes, so a session is
        // revoked once and keeps its first reason.
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
             WHERE id = ?3 AND revoked_at IS NULL AND expires_at > ?1 \
             AND idle_expires_at > ?1",
        )
        .bind(to_db(now))
        .bind(reason.as_str())
        .bind(id.as_str())
        .execute(&mut *self.write_conn().await?)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_all(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut conn = self.write_conn().await?;
        revoke_live_of_user(&mut conn, user.as_str(), reason, to_db(now)).await
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        // A session has ended when it expired, idled out or was revoked.
        // Its refresh tokens cascade; deleting them by name keeps this
        // correct on a connection opened without foreign keys.
        let before = to_db(before);
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "DELETE FROM refresh_tokens WHERE session_id IN (\
               SELECT id FROM sessions WHERE expires_at < ?1 OR idle_expires_at < ?1 \
               OR (revoked_at IS NOT NULL AND revoked_at < ?1))",
        )
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let purged = sqlx::query(
            "DELETE FROM sessions WHERE expires_at < ?1 OR idle_expires_at < ?1 \
             OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
        )
        .bind(before)
        .execute(&mut *tx)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_sqlx)?;
        commit(tx).await?;
        Ok(purged)
    }
}
