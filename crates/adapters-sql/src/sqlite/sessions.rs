//! [`SessionStore`] over `sessions`.

use async_trait::async_trait;
use regstack_ports::{
    NewSession, RevokeReason, Session, SessionId, SessionStore, StoreError, Timestamp, User, UserId,
};
use sqlx::SqliteConnection;

use super::rows::{self, session_cols, user_cols, USER_COLS};
use super::{commit, SqliteStores};
use crate::error::map_sqlx;
use crate::time::to_db;

/// Revokes every live (unrevoked, unexpired) session of a user.
pub(super) async fn revoke_live_of_user(
    conn: &mut SqliteConnection,
    user_id: &str,
    reason: RevokeReason,
    now: i64,
) -> Result<u64, StoreError> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
         WHERE user_id = ?3 AND revoked_at IS NULL AND expires_at > ?1",
    )
    .bind(now)
    .bind(reason.as_str())
    .bind(user_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
    .map_err(map_sqlx)
}

/// Deletes every session of a user (account deletion).
pub(super) async fn delete_all_of_user(
    conn: &mut SqliteConnection,
    user_id: &str,
) -> Result<u64, StoreError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = ?1")
        .bind(user_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_sqlx)
}

#[async_trait]
impl SessionStore for SqliteStores {
    async fn start(&self, s: NewSession) -> Result<(), StoreError> {
        let created = to_db(s.created_at);
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO sessions \
             (id, user_id, created_at, last_used_at, expires_at, user_agent, ip) \
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
        )
        .bind(s.id.as_str())
        .bind(s.user_id.as_str())
        .bind(created)
        .bind(to_db(s.expires_at))
        .bind(s.user_agent)
        .bind(s.ip)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        sqlx::query("UPDATE users SET last_login = ?1 WHERE id = ?2")
            .bind(created)
            .bind(s.user_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        commit(tx).await
    }

    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        // One query, both sides by primary key.
        let row = sqlx::query(concat!(
            "SELECT ",
            user_cols!(u),
            ", ",
            session_cols!(s),
            " FROM sessions AS s JOIN users AS u ON u.id = s.user_id WHERE s.id = ?1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?;
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
        // Conditional: only a live session changes, so a session is
        // revoked once and keeps its first reason.
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = ?1, revoked_reason = ?2 \
             WHERE id = ?3 AND revoked_at IS NULL AND expires_at > ?1",
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
        // A session has ended when it expired or was revoked.
        sqlx::query(
            "DELETE FROM sessions WHERE expires_at < ?1 \
             OR (revoked_at IS NOT NULL AND revoked_at < ?1)",
        )
        .bind(to_db(before))
        .execute(&mut *self.write_conn().await?)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_sqlx)
    }
}
