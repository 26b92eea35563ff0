//! [`UserStore`] over the `users` table, plus the account-level changes
//! that touch sessions, tokens and counters in the same transaction.

use async_trait::async_trait;
use regstack_ports::{
    Email, EmailChangeOutcome, NewUser, PasswordHash, RevokeReason, StoreError, Timestamp,
    TokenHash, TokenKind, User, UserId, UserStore,
};
use sqlx::SqliteConnection;

use super::{attempts, commit, rate_limits, rollback, sessions, tokens, SqliteStores};
use crate::error::{map_sqlx, CorruptRow};
use crate::rows::{self, bump_epoch, user_cols};
use crate::time::to_db;

/// Loads one user by id on a connection (inside a transaction).
async fn get_on(conn: &mut SqliteConnection, id: &str) -> Result<Option<User>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        user_cols!(),
        " FROM users WHERE id = ?1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(map_sqlx)?
    .map(|r| rows::user(&r, 0))
    .transpose()
}

/// The common tail of every credential change, on a connection holding the
/// write lock: revoke the user's live sessions with `reason`, delete its
/// outstanding reset and email-change tokens, and forget the sign-in
/// attempts against `emails` (a proven owner starts with a clean counter).
async fn invalidate_credentials(
    conn: &mut SqliteConnection,
    user: &User,
    reason: RevokeReason,
    now: i64,
    emails: &[&str],
) -> Result<(), StoreError> {
    sessions::revoke_live_of_user(&mut *conn, user.id.as_str(), reason, now).await?;
    tokens::delete_all_of_user(&mut *conn, user.id.as_str()).await?;
    for email in emails {
        attempts::clear_on(&mut *conn, email).await?;
    }
    Ok(())
}

/// Sets a new password hash, moves the credential epoch strictly forward
/// ([`bump_epoch!`]) and `updated_at` to `now`, then runs [`invalidate_credentials`]. `None` if
/// the user is gone.
async fn set_password_on(
    conn: &mut SqliteConnection,
    id: &str,
    new: &PasswordHash,
    reason: RevokeReason,
    now: i64,
) -> Result<Option<User>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE users SET hashed_password = ?1, ",
        bump_epoch!("?2"),
        ", updated_at = ?2 WHERE id = ?3 RETURNING ",
        user_cols!()
    ))
    .bind(new.as_str())
    .bind(now)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_sqlx)?;
    let Some(row) = row else { return Ok(None) };
    let user = rows::user(&row, 0)?;
    invalidate_credentials(conn, &user, reason, now, &[user.email.as_str()]).await?;
    Ok(Some(user))
}

#[async_trait]
impl UserStore for SqliteStores {
    async fn insert(&self, user: NewUser) -> Result<User, StoreError> {
        let created = to_db(user.created_at);
        let row = sqlx::query(concat!(
            "INSERT INTO users (id, email, hashed_password, is_active, is_verified, \
             is_superuser, full_name, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?7) RETURNING ",
            user_cols!()
        ))
        .bind(user.id.as_str())
        .bind(user.email.as_str())
        .bind(user.password_hash.as_ref().map(PasswordHash::as_str))
        .bind(user.is_verified)
        .bind(user.is_superuser)
        .bind(user.full_name)
        .bind(created)
        .fetch_one(&mut *self.write_conn().await?)
        .await
        .map_err(map_sqlx)?;
        rows::user(&row, 0)
    }

    async fn get(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(map_sqlx)?;
        get_on(&mut conn, id.as_str()).await
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE email = ?1"
        ))
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?
        .map(|r| rows::user(&r, 0))
        .transpose()
    }

    async fn update_full_name(
        &self,
        id: &UserId,
        full_name: Option<String>,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        sqlx::query(concat!(
            "UPDATE users SET full_name = ?1, updated_at = ?2 WHERE id = ?3 RETURNING ",
            user_cols!()
        ))
        .bind(full_name)
        .bind(to_db(now))
        .bind(id.as_str())
        .fetch_optional(&mut *self.write_conn().await?)
        .await
        .map_err(map_sqlx)?
        .map(|r| rows::user(&r, 0))
        .transpose()
    }

    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        // Compare-and-swap: a password change that landed since the caller
        // read `expected` wins, and this write does nothing.
        let done = sqlx::query(
            "UPDATE users SET hashed_password = ?1 WHERE id = ?2 AND hashed_password = ?3",
        )
        .bind(new.as_str())
        .bind(id.as_str())
        .bind(expected.as_str())
        .execute(&mut *self.write_conn().await?)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    async fn change_password(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.write_tx().await?;
        match set_password_on(&mut tx, id.as_str(), new, reason, to_db(now)).await? {
            Some(user) => {
                commit(tx).await?;
                Ok(Some(user))
            }
            None => {
                rollback(tx).await?;
                Ok(None)
            }
        }
    }

    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        new: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let now = to_db(now);
        let mut tx = self.write_tx().await?;
        // The returned row decides the winner: a second caller with the
        // same token finds nothing to delete.
        let Some(spent) = tokens::spend_on(&mut tx, TokenKind::PasswordReset, token, now).await?
        else {
            rollback(tx).await?;
            return Ok(None);
        };
        match set_password_on(
            &mut tx,
            spent.user_id.as_str(),
            new,
            RevokeReason::PasswordReset,
            now,
        )
        .await?
        {
            Some(user) => {
                commit(tx).await?;
                Ok(Some(user))
            }
            // Unreachable while foreign keys cascade (a deleted user takes
            // its tokens along); spend nothing if it happens anyway.
            None => {
                rollback(tx).await?;
                Ok(None)
            }
        }
    }

    async fn confirm_email_change(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<EmailChangeOutcome, StoreError> {
        let now = to_db(now);
        let mut tx = self.write_tx().await?;
        let Some(spent) = tokens::spend_on(&mut tx, TokenKind::EmailChange, token, now).await?
        else {
            rollback(tx).await?;
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        let Some(new_email) = spent.new_email else {
            rollback(tx).await?;
            return Err(CorruptRow("email-change token without an address").into());
        };
        // Unreachable while foreign keys cascade (a deleted user takes its
        // tokens along); spend nothing if it happens anyway. The old
        // address is needed to clear its lockout counter below.
        let Some(old) = get_on(&mut tx, spent.user_id.as_str()).await? else {
            rollback(tx).await?;
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        // Conditional on the address being free, so there is no
        // unique-violation error to recover from; the transaction holds the
        // write lock, so nobody can take the address between the check and
        // the write.
        let row = sqlx::query(concat!(
            "UPDATE users SET email = ?1, ",
            bump_epoch!("?2"),
            ", updated_at = ?2 \
             WHERE id = ?3 AND NOT EXISTS (SELECT 1 FROM users WHERE email = ?1 AND id <> ?3) \
             RETURNING ",
            user_cols!()
        ))
        .bind(new_email.as_str())
        .bind(now)
        .bind(spent.user_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let Some(row) = row else {
            // The address was taken meanwhile: the token stays spent.
            commit(tx).await?;
            return Ok(EmailChangeOutcome::EmailTaken);
        };
        let user = rows::user(&row, 0)?;
        invalidate_credentials(
            &mut tx,
            &user,
            RevokeReason::EmailChanged,
            now,
            &[old.email.as_str(), user.email.as_str()],
        )
        .await?;
        commit(tx).await?;
        Ok(EmailChangeOutcome::Changed(user))
    }

    async fn delete_account(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(concat!(
            "DELETE FROM users WHERE id = ?1 RETURNING ",
            user_cols!()
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        let Some(row) = row else {
            rollback(tx).await?;
            return Ok(None);
        };
        let user = rows::user(&row, 0)?;
        // Sessions and tokens cascade with the user; deleting them by name
        // keeps this correct on a connection opened without foreign keys.
        sessions::delete_all_of_user(&mut tx, user.id.as_str()).await?;
        tokens::delete_all_of_user(&mut tx, user.id.as_str()).await?;
        attempts::clear_on(&mut tx, user.email.as_str()).await?;
        super::pending::delete_for_email_on(&mut tx, user.email.as_str()).await?;
        rate_limits::delete_for_email_on(&mut tx, user.email.as_str()).await?;
        commit(tx).await?;
        Ok(Some(user))
    }
}
