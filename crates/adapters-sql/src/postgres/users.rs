//! [`UserStore`] over the `users` table, plus the account-level changes
//! that touch sessions, tokens and counters in the same transaction.
//!
//! Lock order: every transaction here locks the user row before the user's
//! tokens and sessions (see the module doc of [`super`]). The token-driven
//! operations therefore look the token's user up first, lock that user,
//! and only then spend the token.

use async_trait::async_trait;
use regstack_ports::{
    Email, EmailChangeOutcome, NewUser, PasswordHash, RevokeReason, StoreError, Timestamp,
    TokenHash, TokenKind, User, UserId, UserStore,
};
use sqlx::{Connection, PgConnection};

use super::error::{is_unique_violation, map_pg};
use super::{attempts, commit, pending, rate_limits, rollback, sessions, tokens, PostgresStores};
use crate::error::CorruptRow;
use crate::rows::{self, bump_epoch, user_cols};
use crate::time::to_db;

/// How strongly [`lock_user`] locks the row.
#[derive(Clone, Copy)]
enum Lock {
    /// Against other writers (`FOR NO KEY UPDATE`): enough for changes to
    /// columns no unique index or foreign key refers to.
    Write,
    /// Also against foreign-key checks (`FOR UPDATE`), which take a
    /// `KEY SHARE` lock on the user row: needed to change `email`, which
    /// has a unique index and so counts as a key column. Taken up front, so
    /// the transaction never waits for that upgrade while holding a write
    /// lock that the owner of a `KEY SHARE` lock (anyone inserting a row
    /// that refers to the user) is waiting for — a deadlock the
    /// `parallel_account_changes_of_one_user_never_deadlock` test provokes
    /// without it.
    KeyChange,
}

/// Loads one user by id on a connection, locking its row until the
/// transaction ends.
async fn lock_user(
    conn: &mut PgConnection,
    id: &str,
    lock: Lock,
) -> Result<Option<User>, StoreError> {
    let sql = match lock {
        Lock::Write => concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE id = $1 FOR NO KEY UPDATE"
        ),
        Lock::KeyChange => concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE id = $1 FOR UPDATE"
        ),
    };
    sqlx::query(sql)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(map_pg)?
        .map(|r| rows::user(&r, 0))
        .transpose()
}

/// The common tail of every credential change, inside the transaction that
/// holds the user's row: revoke the user's live sessions with `reason`,
/// delete its outstanding reset and email-change tokens, and forget the
/// sign-in attempts against `emails` (a proven owner starts with a clean
/// counter).
async fn invalidate_credentials(
    conn: &mut PgConnection,
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
    conn: &mut PgConnection,
    id: &str,
    new: &PasswordHash,
    reason: RevokeReason,
    now: i64,
) -> Result<Option<User>, StoreError> {
    let row = sqlx::query(concat!(
        "UPDATE users SET hashed_password = $1, ",
        bump_epoch!("$2"),
        ", updated_at = $2 WHERE id = $3 RETURNING ",
        user_cols!()
    ))
    .bind(new.as_str())
    .bind(now)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_pg)?;
    let Some(row) = row else { return Ok(None) };
    let user = rows::user(&row, 0)?;
    invalidate_credentials(conn, &user, reason, now, &[user.email.as_str()]).await?;
    Ok(Some(user))
}

#[async_trait]
impl UserStore for PostgresStores {
    async fn insert(&self, user: NewUser) -> Result<User, StoreError> {
        // The unique index on `email` refuses a second writer even when both
        // run at once: the later one waits for the first to commit, then
        // fails with a unique violation (→ Conflict("email")).
        let row = sqlx::query(concat!(
            "INSERT INTO users (id, email, hashed_password, is_active, is_verified, \
             is_superuser, full_name, created_at, updated_at) \
             VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, $7) RETURNING ",
            user_cols!()
        ))
        .bind(user.id.as_str())
        .bind(user.email.as_str())
        .bind(user.password_hash.as_ref().map(PasswordHash::as_str))
        .bind(user.is_verified)
        .bind(user.is_superuser)
        .bind(user.full_name)
        .bind(to_db(user.created_at))
        .fetch_one(&self.pool)
        .await
        .map_err(map_pg)?;
        rows::user(&row, 0)
    }

    async fn get(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_pg)?
        .map(|r| rows::user(&r, 0))
        .transpose()
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE email = $1"
        ))
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_pg)?
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
            "UPDATE users SET full_name = $1, updated_at = $2 WHERE id = $3 RETURNING ",
            user_cols!()
        ))
        .bind(full_name)
        .bind(to_db(now))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_pg)?
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
        // read `expected` wins (this update re-checks the condition on the
        // committed row), and this write does nothing.
        let done = sqlx::query(
            "UPDATE users SET hashed_password = $1 WHERE id = $2 AND hashed_password = $3",
        )
        .bind(new.as_str())
        .bind(id.as_str())
        .bind(expected.as_str())
        .execute(&self.pool)
        .await
        .map_err(map_pg)?;
        Ok(done.rows_affected() > 0)
    }

    async fn change_password(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.begin().await?;
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
        let mut tx = self.begin().await?;
        // User row first (the lock order), then the spend.
        let Some(owner) = tokens::owner_on(&mut tx, TokenKind::PasswordReset, token, now).await?
        else {
            rollback(tx).await?;
            return Ok(None);
        };
        if lock_user(&mut tx, &owner, Lock::Write).await?.is_none() {
            rollback(tx).await?;
            return Ok(None);
        }
        // The returned row decides the winner: a second caller with the
        // same token waits for the first to commit, then finds nothing to
        // delete.
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
            // Unreachable while the user row is locked; spend nothing if it
            // happens anyway.
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
        let mut tx = self.begin().await?;
        let Some(owner) = tokens::owner_on(&mut tx, TokenKind::EmailChange, token, now).await?
        else {
            rollback(tx).await?;
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        // Locked before the spend (the lock order); its current address is
        // needed to clear that address's lockout counter below.
        let Some(old) = lock_user(&mut tx, &owner, Lock::KeyChange).await? else {
            rollback(tx).await?;
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        let Some(spent) = tokens::spend_on(&mut tx, TokenKind::EmailChange, token, now).await?
        else {
            rollback(tx).await?;
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        let Some(new_email) = spent.new_email else {
            rollback(tx).await?;
            return Err(CorruptRow("email-change token without an address").into());
        };
        // Another transaction may take the address between any check and
        // this write, and READ COMMITTED would not see it coming; the unique
        // index does. The update runs in a savepoint so that its refusal
        // undoes only itself and the token stays spent.
        let mut savepoint = Connection::begin(&mut *tx).await.map_err(map_pg)?;
        let updated = sqlx::query(concat!(
            "UPDATE users SET email = $1, ",
            bump_epoch!("$2"),
            ", updated_at = $2 \
             WHERE id = $3 RETURNING ",
            user_cols!()
        ))
        .bind(new_email.as_str())
        .bind(now)
        .bind(old.id.as_str())
        .fetch_optional(&mut *savepoint)
        .await;
        let row = match updated {
            Ok(Some(row)) => {
                savepoint.commit().await.map_err(map_pg)?;
                row
            }
            Err(e) if is_unique_violation(&e) => {
                savepoint.rollback().await.map_err(map_pg)?;
                commit(tx).await?;
                return Ok(EmailChangeOutcome::EmailTaken);
            }
            Err(e) => return Err(map_pg(e)),
            // Unreachable while the user row is locked.
            Ok(None) => {
                savepoint.rollback().await.map_err(map_pg)?;
                rollback(tx).await?;
                return Ok(EmailChangeOutcome::InvalidToken);
            }
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
        let mut tx = self.begin().await?;
        // A pending registration for the address goes first: `promote`
        // locks the pending row before it inserts a user, so taking the
        // same order here means the two wait for each other, never deadlock.
        pending::delete_for_user_on(&mut tx, id.as_str()).await?;
        let row = sqlx::query(concat!(
            "DELETE FROM users WHERE id = $1 RETURNING ",
            user_cols!()
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_pg)?;
        let Some(row) = row else {
            rollback(tx).await?;
            return Ok(None);
        };
        let user = rows::user(&row, 0)?;
        // Sessions (with their refresh tokens) and one-time tokens cascade
        // with the user; the counters are keyed by address and go by name.
        attempts::clear_on(&mut tx, user.email.as_str()).await?;
        rate_limits::delete_for_email_on(&mut tx, user.email.as_str()).await?;
        commit(tx).await?;
        Ok(Some(user))
    }
}
