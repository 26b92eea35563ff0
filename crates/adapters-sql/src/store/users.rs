//! [`UserStore`] over the `users` table, plus the account-level changes
//! that touch sessions, tokens and counters in the same transaction.
//!
//! Lock order: every transaction here locks the user row before the user's
//! tokens and sessions (see [`super`]). The token-driven operations
//! therefore look the token's user up first, lock that user, and only then
//! spend the token, whose `DELETE … RETURNING` decides who won.

use async_trait::async_trait;
use regstack_ports::{
    AdminChange, Email, EmailChangeOutcome, NewUser, PasswordHash, RevokeReason, StoreError,
    Timestamp, TokenHash, TokenKind, User, UserCounts, UserCursor, UserFilter, UserId, UserStore,
};

use super::{
    attempts, commit, invites, mfa, oauth, pending, rate_limits, rollback, sessions, tokens,
    SqlStores,
};
use crate::backend::{select_user_by_id, Arg, Backend, Commit, Conn};
use crate::error::CorruptRow;
use crate::rows::{self, bump_epoch, user_cols, Cells};
use crate::time::to_db;

/// How strongly [`lock_user`] locks the row.
#[derive(Clone, Copy)]
enum Lock {
    /// Against other writers (PostgreSQL `FOR NO KEY UPDATE`): enough for
    /// changes to columns no unique index or foreign key refers to.
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

/// Loads one user by id inside a write transaction, locking its row until
/// the transaction ends (SQLite's write lock already covers it).
async fn lock_user<B: Backend>(
    conn: &mut B::Conn,
    id: &str,
    lock: Lock,
) -> Result<Option<User>, StoreError> {
    let sql = match lock {
        Lock::Write => B::USER_FOR_WRITE,
        Lock::KeyChange => B::USER_FOR_KEY_CHANGE,
    };
    conn.fetch_optional(sql, &[Arg::Text(id)])
        .await?
        .map(|r| rows::user(&r, 0))
        .transpose()
}

/// The common tail of every credential change, inside the transaction that
/// holds the user's row: revoke the user's live sessions with `reason`,
/// delete its outstanding reset and email-change tokens, and forget the
/// sign-in attempts against `emails` (a proven owner starts with a clean
/// counter).
async fn invalidate_credentials(
    conn: &mut impl Conn,
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
/// ([`bump_epoch!`]) and `updated_at` to `now`, then runs
/// [`invalidate_credentials`]. `None` if the user is gone.
async fn set_password_on(
    conn: &mut impl Conn,
    id: &str,
    new: &PasswordHash,
    reason: RevokeReason,
    now: i64,
) -> Result<Option<User>, StoreError> {
    const SET_PASSWORD: &str = concat!(
        "UPDATE users SET hashed_password = $1, must_change_password = FALSE, ",
        bump_epoch!("$2"),
        ", updated_at = $2 WHERE id = $3 RETURNING ",
        user_cols!()
    );
    let args = [Arg::Text(new.as_str()), Arg::Int(now), Arg::Text(id)];
    let Some(row) = conn.fetch_optional(SET_PASSWORD, &args).await? else {
        return Ok(None);
    };
    let user = rows::user(&row, 0)?;
    invalidate_credentials(conn, &user, reason, now, &[user.email.as_str()]).await?;
    Ok(Some(user))
}

/// The `WHERE` conditions of a [`UserFilter`], `$1`–`$5`
/// ([`filter_args`]); a null parameter filters nothing.
macro_rules! user_filter {
    () => {
        "($1 IS NULL OR email LIKE $1 ESCAPE '\\') \
         AND ($2 IS NULL OR is_active = $2) AND ($3 IS NULL OR is_verified = $3) \
         AND ($4 IS NULL OR is_superuser = $4) AND ($5 IS NULL OR is_mfa_enabled = $5)"
    };
}

/// The filter's address part as a `LIKE` pattern that matches it
/// literally: `\`, `%` and `_` escaped (the statement names `\` as the
/// escape character).
fn like_pattern(filter: &UserFilter) -> Option<String> {
    filter.email_contains.as_deref().map(|part| {
        let mut p = String::from("%");
        for c in part.chars() {
            if matches!(c, '\\' | '%' | '_') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        p
    })
}

/// `$1`–`$5` of [`user_filter!`].
fn filter_args<'a>(filter: &UserFilter, pattern: Option<&'a str>) -> [Arg<'a>; 5] {
    [
        Arg::OptText(pattern),
        Arg::OptBool(filter.is_active),
        Arg::OptBool(filter.is_verified),
        Arg::OptBool(filter.is_superuser),
        Arg::OptBool(filter.has_mfa),
    ]
}

#[async_trait]
impl<B: Backend> UserStore for SqlStores<B> {
    async fn insert(&self, user: NewUser) -> Result<User, StoreError> {
        // The unique index on `email` refuses a second writer even when both
        // run at once (→ Conflict("email")).
        const INSERT: &str = concat!(
            "INSERT INTO users (id, email, hashed_password, is_active, is_verified, \
             is_superuser, full_name, created_at, updated_at) \
             VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, $7) RETURNING ",
            user_cols!()
        );
        let args = [
            Arg::Text(user.id.as_str()),
            Arg::Text(user.email.as_str()),
            Arg::OptText(user.password_hash.as_ref().map(PasswordHash::as_str)),
            Arg::Bool(user.is_verified),
            Arg::Bool(user.is_superuser),
            Arg::OptText(user.full_name.as_deref()),
            Arg::Int(to_db(user.created_at)),
        ];
        let row = self
            .write_conn(Commit::Relaxed)
            .await?
            .fetch_optional(INSERT, &args)
            .await?;
        rows::user(&row.ok_or(CorruptRow("insert returned no row"))?, 0)
    }

    async fn get(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.read_conn()
            .await?
            .fetch_optional(select_user_by_id!(), &[Arg::Text(id.as_str())])
            .await?
            .map(|r| rows::user(&r, 0))
            .transpose()
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        const BY_EMAIL: &str = concat!("SELECT ", user_cols!(), " FROM users WHERE email = $1");
        self.read_conn()
            .await?
            .fetch_optional(BY_EMAIL, &[Arg::Text(email.as_str())])
            .await?
            .map(|r| rows::user(&r, 0))
            .transpose()
    }

    async fn update_full_name(
        &self,
        id: &UserId,
        full_name: Option<String>,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        const SET_NAME: &str = concat!(
            "UPDATE users SET full_name = $1, updated_at = $2 WHERE id = $3 RETURNING ",
            user_cols!()
        );
        let args = [
            Arg::OptText(full_name.as_deref()),
            Arg::Int(to_db(now)),
            Arg::Text(id.as_str()),
        ];
        self.write_conn(Commit::Relaxed)
            .await?
            .fetch_optional(SET_NAME, &args)
            .await?
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
        // read `expected` wins (the update re-checks the condition on the
        // committed row), and this write does nothing.
        const UPGRADE: &str =
            "UPDATE users SET hashed_password = $1 WHERE id = $2 AND hashed_password = $3";
        let args = [
            Arg::Text(new.as_str()),
            Arg::Text(id.as_str()),
            Arg::Text(expected.as_str()),
        ];
        Ok(self
            .write_conn(Commit::Relaxed)
            .await?
            .execute(UPGRADE, &args)
            .await?
            > 0)
    }

    async fn change_password(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.begin(Commit::Durable).await?;
        match set_password_on(&mut *tx, id.as_str(), new, reason, to_db(now)).await? {
            Some(user) => {
                commit::<B>(tx).await?;
                Ok(Some(user))
            }
            None => {
                rollback::<B>(tx).await?;
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
        let mut tx = self.begin(Commit::Durable).await?;
        // User row first (the lock order), then the spend.
        let Some(owner) = tokens::owner_on(&mut *tx, TokenKind::PasswordReset, token, now).await?
        else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        if lock_user::<B>(&mut *tx, &owner, Lock::Write)
            .await?
            .is_none()
        {
            rollback::<B>(tx).await?;
            return Ok(None);
        }
        // The returned row decides the winner: a second caller with the
        // same token (waiting for the first to commit, on PostgreSQL) finds
        // nothing to delete.
        let Some(spent) = tokens::spend_on(&mut *tx, TokenKind::PasswordReset, token, now).await?
        else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        match set_password_on(
            &mut *tx,
            spent.user_id.as_str(),
            new,
            RevokeReason::PasswordReset,
            now,
        )
        .await?
        {
            Some(user) => {
                commit::<B>(tx).await?;
                Ok(Some(user))
            }
            // Unreachable while the user row is locked; spend nothing if it
            // happens anyway.
            None => {
                rollback::<B>(tx).await?;
                Ok(None)
            }
        }
    }

    async fn confirm_email_change(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<EmailChangeOutcome, StoreError> {
        // Conditional on the address being free. Where the engine runs
        // writers side by side, another transaction may take the address
        // after this check (READ COMMITTED does not see it coming); the
        // unique index does, and the update runs in a savepoint so that its
        // refusal undoes only itself and the token stays spent.
        const SET_EMAIL: &str = concat!(
            "UPDATE users SET email = $1, ",
            bump_epoch!("$2"),
            ", updated_at = $2 \
             WHERE id = $3 AND NOT EXISTS (SELECT 1 FROM users WHERE email = $1 AND id <> $3) \
             RETURNING ",
            user_cols!()
        );
        let now = to_db(now);
        let mut tx = self.begin(Commit::Durable).await?;
        let Some(owner) = tokens::owner_on(&mut *tx, TokenKind::EmailChange, token, now).await?
        else {
            rollback::<B>(tx).await?;
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        // Locked before the spend (the lock order); its current address is
        // needed to clear that address's lockout counter below.
        let Some(old) = lock_user::<B>(&mut *tx, &owner, Lock::KeyChange).await? else {
            rollback::<B>(tx).await?;
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        let Some(spent) = tokens::spend_on(&mut *tx, TokenKind::EmailChange, token, now).await?
        else {
            rollback::<B>(tx).await?;
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        let Some(new_email) = spent.new_email else {
            rollback::<B>(tx).await?;
            return Err(CorruptRow("email-change token without an address").into());
        };
        let args = [
            Arg::Text(new_email.as_str()),
            Arg::Int(now),
            Arg::Text(old.id.as_str()),
        ];
        let row = match tx.fetch_optional_in_savepoint(SET_EMAIL, &args).await {
            Ok(Some(row)) => row,
            // The address was taken meanwhile: the token stays spent.
            Ok(None) | Err(StoreError::Conflict("email")) => {
                commit::<B>(tx).await?;
                return Ok(EmailChangeOutcome::EmailTaken);
            }
            Err(e) => return Err(e),
        };
        let user = rows::user(&row, 0)?;
        invalidate_credentials(
            &mut *tx,
            &user,
            RevokeReason::EmailChanged,
            now,
            &[old.email.as_str(), user.email.as_str()],
        )
        .await?;
        commit::<B>(tx).await?;
        Ok(EmailChangeOutcome::Changed(user))
    }

    async fn revert_email_change(
        &self,
        token: &TokenHash,
        lockout: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        // The address goes back only where it is free; the unique index
        // decides a race with a registration (savepoint, as above).
        const RESTORE_EMAIL: &str = "UPDATE users SET email = $1 \
             WHERE id = $2 AND email <> $1 \
             AND NOT EXISTS (SELECT 1 FROM users WHERE email = $1 AND id <> $2)";
        let now = to_db(now);
        let mut tx = self.begin(Commit::Durable).await?;
        let Some(owner) =
            tokens::owner_on(&mut *tx, TokenKind::EmailChangeRevert, token, now).await?
        else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        let Some(before) = lock_user::<B>(&mut *tx, &owner, Lock::KeyChange).await? else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        // The returned row decides the winner of concurrent presentations.
        let Some(spent) =
            tokens::spend_on(&mut *tx, TokenKind::EmailChangeRevert, token, now).await?
        else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        tokens::delete_later_reverts_on(&mut *tx, &owner, to_db(spent.created_at)).await?;
        if let Some(restore) = &spent.new_email {
            let args = [Arg::Text(restore.as_str()), Arg::Text(owner.as_str())];
            match tx.fetch_optional_in_savepoint(RESTORE_EMAIL, &args).await {
                Ok(_) | Err(StoreError::Conflict("email")) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(user) =
            set_password_on(&mut *tx, &owner, lockout, RevokeReason::EmailChanged, now).await?
        else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        attempts::clear_on(&mut *tx, before.email.as_str()).await?;
        commit::<B>(tx).await?;
        Ok(Some(user))
    }

    async fn delete_account(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        const DELETE: &str = concat!("DELETE FROM users WHERE id = $1 RETURNING ", user_cols!());
        let mut tx = self.begin(Commit::Durable).await?;
        // A pending registration for the address goes first: `promote`
        // deletes the pending row before it inserts a user, so taking the
        // same order here means the two wait for each other, never deadlock.
        pending::delete_for_user_on(&mut *tx, id.as_str()).await?;
        let Some(row) = tx.fetch_optional(DELETE, &[Arg::Text(id.as_str())]).await? else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        let user = rows::user(&row, 0)?;
        // Sessions, tokens, second factors, OAuth identities and link flows
        // cascade with the user;
        // deleting them by name keeps this correct on a SQLite connection
        // opened without foreign keys. The counters are keyed by address
        // and always go by name.
        sessions::delete_all_of_user(&mut *tx, user.id.as_str()).await?;
        tokens::delete_every_token_of_user(&mut *tx, user.id.as_str()).await?;
        mfa::delete_all_of_user(&mut *tx, user.id.as_str()).await?;
        oauth::delete_all_of_user(&mut *tx, user.id.as_str()).await?;
        attempts::clear_on(&mut *tx, user.email.as_str()).await?;
        rate_limits::delete_for_email_on(&mut *tx, user.email.as_str()).await?;
        invites::forget_user_on(&mut *tx, user.id.as_str(), user.email.as_str()).await?;
        commit::<B>(tx).await?;
        Ok(Some(user))
    }

    async fn count_users(&self) -> Result<UserCounts, StoreError> {
        const COUNT: &str = "SELECT COUNT(*), COUNT(*) FILTER (WHERE is_active), \
             COUNT(*) FILTER (WHERE is_verified), COUNT(*) FILTER (WHERE is_superuser) \
             FROM users";
        let row = self
            .read_conn()
            .await?
            .fetch_optional(COUNT, &[])
            .await?
            .ok_or(CorruptRow("count returned no row"))?;
        let n = |i| row.int(i).map(|v| u64::try_from(v).unwrap_or(0));
        Ok(UserCounts {
            total: n(0)?,
            active: n(1)?,
            verified: n(2)?,
            superusers: n(3)?,
        })
    }

    async fn list_users(&self, skip: u64, limit: u64) -> Result<Vec<User>, StoreError> {
        const PAGE: &str = concat!(
            "SELECT ",
            user_cols!(),
            " FROM users ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
        );
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.read_conn()
            .await?
            .fetch_all(PAGE, &[Arg::Int(clamp(limit)), Arg::Int(clamp(skip))])
            .await?
            .iter()
            .map(|r| rows::user(r, 0))
            .collect()
    }

    async fn search_users<'c>(
        &self,
        filter: &UserFilter,
        after: Option<&'c UserCursor>,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<User>, StoreError> {
        const SEARCH: &str = concat!(
            "SELECT ",
            user_cols!(),
            " FROM users WHERE ",
            user_filter!(),
            " AND ($6 IS NULL OR created_at < $6 OR (created_at = $6 AND id < $7)) \
             ORDER BY created_at DESC, id DESC LIMIT $8 OFFSET $9"
        );
        let pattern = like_pattern(filter);
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut args = filter_args(filter, pattern.as_deref()).to_vec();
        args.extend([
            Arg::OptInt(after.map(|c| to_db(c.created_at))),
            Arg::OptText(after.map(|c| c.id.as_str())),
            Arg::Int(clamp(limit)),
            Arg::Int(clamp(skip)),
        ]);
        self.read_conn()
            .await?
            .fetch_all(SEARCH, &args)
            .await?
            .iter()
            .map(|r| rows::user(r, 0))
            .collect()
    }

    async fn count_matching(&self, filter: &UserFilter) -> Result<u64, StoreError> {
        const COUNT: &str = concat!("SELECT COUNT(*) FROM users WHERE ", user_filter!());
        let pattern = like_pattern(filter);
        let row = self
            .read_conn()
            .await?
            .fetch_optional(COUNT, &filter_args(filter, pattern.as_deref()))
            .await?
            .ok_or(CorruptRow("count returned no row"))?;
        Ok(u64::try_from(row.int(0)?).unwrap_or(0))
    }

    async fn admin_update(
        &self,
        id: &UserId,
        change: &AdminChange,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        const SET_FLAGS: &str = concat!(
            "UPDATE users SET is_active = $1, is_superuser = $2, full_name = $3, updated_at = $4, \
             disabled_reason = $6, disabled_until = $7 WHERE id = $5 RETURNING ",
            user_cols!()
        );
        // Disabling is a credential change: the epoch moves in the same
        // statement, the sessions go in the same transaction.
        const DISABLE: &str = concat!(
            "UPDATE users SET is_active = $1, is_superuser = $2, full_name = $3, updated_at = $4, \
             disabled_reason = $6, disabled_until = $7, ",
            bump_epoch!("$4"),
            " WHERE id = $5 RETURNING ",
            user_cols!()
        );
        if change.is_empty() {
            return self.get(id).await;
        }
        let now = to_db(now);
        let mut tx = self.begin(Commit::Durable).await?;
        // The row is locked, so the values computed from it below are
        // written before anyone else can change it.
        let Some(old) = lock_user::<B>(&mut *tx, id.as_str(), Lock::Write).await? else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        let disabling = change.is_active == Some(false);
        let full_name = change.full_name.as_deref().or(old.full_name.as_deref());
        let (reason, until) =
            change.disabled_fields((old.disabled_reason.clone(), old.disabled_until));
        let args = [
            Arg::Bool(change.is_active.unwrap_or(old.is_active)),
            Arg::Bool(change.is_superuser.unwrap_or(old.is_superuser)),
            Arg::OptText(full_name),
            Arg::Int(now),
            Arg::Text(id.as_str()),
            Arg::OptText(reason.as_deref()),
            Arg::OptInt(until.map(to_db)),
        ];
        let sql = if disabling { DISABLE } else { SET_FLAGS };
        let Some(row) = tx.fetch_optional(sql, &args).await? else {
            rollback::<B>(tx).await?;
            return Ok(None);
        };
        let user = rows::user(&row, 0)?;
        if disabling {
            sessions::revoke_live_of_user(&mut *tx, id.as_str(), RevokeReason::Disabled, now)
                .await?;
        }
        commit::<B>(tx).await?;
        Ok(Some(user))
    }

    async fn reenable_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        // One statement: each row is re-checked as it is updated, so a
        // disabling written meanwhile (without end, or a later one) stays.
        const REENABLE: &str = "UPDATE users SET is_active = TRUE, disabled_reason = NULL, \
             disabled_until = NULL, updated_at = $1 \
             WHERE disabled_until IS NOT NULL AND disabled_until <= $1 AND NOT is_active";
        self.write_conn(Commit::Durable)
            .await?
            .execute(REENABLE, &[Arg::Int(to_db(now))])
            .await
    }
}
