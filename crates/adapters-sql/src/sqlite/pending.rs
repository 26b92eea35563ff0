//! [`PendingStore`] over `pending_registrations`.

use async_trait::async_trait;
use regstack_ports::{
    Email, PendingRegistration, PendingStore, Promotion, StoreError, Timestamp, TokenHash, UserId,
};
use sqlx::SqliteConnection;

use super::{commit, rollback, SqliteStores};
use crate::error::map_sqlx;
use crate::rows::{self, pending_cols, user_cols};
use crate::time::to_db;

/// Deletes the pending registration for an address (account deletion).
pub(super) async fn delete_for_email_on(
    conn: &mut SqliteConnection,
    email: &str,
) -> Result<u64, StoreError> {
    sqlx::query("DELETE FROM pending_registrations WHERE email = ?1")
        .bind(email)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_sqlx)
}

#[async_trait]
impl PendingStore for SqliteStores {
    async fn put(&self, p: PendingRegistration) -> Result<bool, StoreError> {
        // One statement: insert, or take the place of an expired row for
        // the address; a live row is left exactly as it is (no rows
        // affected).
        sqlx::query(
            "INSERT INTO pending_registrations \
             (email, hashed_password, full_name, token_hash, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (email) DO UPDATE SET \
             hashed_password = excluded.hashed_password, full_name = excluded.full_name, \
             token_hash = excluded.token_hash, created_at = excluded.created_at, \
             expires_at = excluded.expires_at \
             WHERE pending_registrations.expires_at <= excluded.created_at",
        )
        .bind(p.email.as_str())
        .bind(p.password_hash.as_str())
        .bind(p.full_name)
        .bind(p.token_hash.as_str())
        .bind(to_db(p.created_at))
        .bind(to_db(p.expires_at))
        .execute(&mut *self.write_conn().await?)
        .await
        .map(|done| done.rows_affected() > 0)
        .map_err(map_sqlx)
    }

    async fn find_by_email(
        &self,
        email: &Email,
        now: Timestamp,
    ) -> Result<Option<PendingRegistration>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            pending_cols!(),
            " FROM pending_registrations WHERE email = ?1 AND expires_at > ?2"
        ))
        .bind(email.as_str())
        .bind(to_db(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?
        .map(|r| rows::pending(&r))
        .transpose()
    }

    async fn replace_token(
        &self,
        email: &Email,
        token: &TokenHash,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Only a live row is renewed: an expired registration reads as
        // absent everywhere else, so a resend must not revive it.
        let done = sqlx::query(
            "UPDATE pending_registrations SET token_hash = ?1, expires_at = ?2 \
             WHERE email = ?3 AND expires_at > ?4",
        )
        .bind(token.as_str())
        .bind(to_db(expires_at))
        .bind(email.as_str())
        .bind(to_db(now))
        .execute(&mut *self.write_conn().await?)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn promote(
        &self,
        token: &TokenHash,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        let now = to_db(now);
        let mut tx = self.write_tx().await?;
        // The returned row decides the winner: a second caller with the
        // same token finds nothing to delete.
        let row = sqlx::query(concat!(
            "DELETE FROM pending_registrations WHERE token_hash = ?1 AND expires_at > ?2 \
             RETURNING ",
            pending_cols!()
        ))
        .bind(token.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let Some(row) = row else {
            rollback(tx).await?;
            return Ok(Promotion::InvalidToken);
        };
        let pending = rows::pending(&row)?;
        // An address taken since registration leaves no row here; the
        // pending row stays deleted either way.
        let user = sqlx::query(concat!(
            "INSERT INTO users (id, email, hashed_password, is_active, is_verified, \
             is_superuser, full_name, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 1, 1, 0, ?4, ?5, ?5) ON CONFLICT (email) DO NOTHING RETURNING ",
            user_cols!()
        ))
        .bind(id.as_str())
        .bind(pending.email.as_str())
        .bind(pending.password_hash.as_str())
        .bind(pending.full_name)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let outcome = match user {
            Some(row) => Promotion::Promoted(rows::user(&row, 0)?),
            None => Promotion::EmailTaken,
        };
        commit(tx).await?;
        Ok(outcome)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM pending_registrations WHERE expires_at <= ?1")
            .bind(to_db(now))
            .execute(&mut *self.write_conn().await?)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_sqlx)
    }
}
