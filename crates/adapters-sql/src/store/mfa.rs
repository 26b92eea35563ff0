//! [`MfaStore`] over `mfa_codes` (the challenges), `mfa_totp` and
//! `mfa_backup_codes`, plus the user's `phone_number`, `is_mfa_enabled`
//! and `must_change_password` columns.
//!
//! The single-use and counting steps are one conditional statement each,
//! decided by the row they change (as every spend in this crate): an
//! attempt is `UPDATE … SET attempts_left = attempts_left - 1 WHERE … AND
//! attempts_left > 0 RETURNING`, a finish and a backup code are `DELETE …
//! RETURNING` / a counted `DELETE`, a TOTP step is `UPDATE … WHERE
//! last_step IS NULL OR last_step < $step`. On PostgreSQL a second writer
//! on the same row waits for the first to commit and re-checks the
//! condition against the new row version, so these never count twice.
//!
//! The factor changes are one transaction each, locking the user row first
//! (the lock order, see [`super`]): they change the factor rows,
//! recompute `is_mfa_enabled` from what is left, move the credential epoch
//! and revoke the other sessions ([`factor_changed`]).

use async_trait::async_trait;
use regstack_ports::{
    ChallengeAttempt, Factors, MfaChallenge, MfaStore, RevokeReason, SessionId, StoreError,
    Timestamp, TokenHash, TotpFactor, UserId,
};

use super::{commit, rollback, SqlStores};
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::error::CorruptRow;
use crate::rows::{self, bump_epoch, challenge_cols, Cells};
use crate::time::{from_db, to_db};

/// A TOTP step as stored (`BIGINT`). Steps count 30-second periods since
/// 1970 (about 5.9e7 now), so one beyond `i64::MAX` is never asked for; it
/// saturates rather than failing, which keeps "later than the last step"
/// monotonic.
fn step_to_db(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// Deletes every challenge, the TOTP factor and the backup codes of a user
/// (account deletion; the foreign keys cascade too, but a SQLite
/// connection opened without them must not leave rows behind).
pub(super) async fn delete_all_of_user(
    conn: &mut impl Conn,
    user_id: &str,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM mfa_codes WHERE user_id = $1",
        "DELETE FROM mfa_totp WHERE user_id = $1",
        "DELETE FROM mfa_backup_codes WHERE user_id = $1",
    ] {
        conn.execute(sql, &[Arg::Text(user_id)]).await?;
    }
    Ok(())
}

/// Replaces all of a user's backup codes with `codes`, inside the caller's
/// transaction. A code given twice is stored once.
async fn replace_codes_on(
    conn: &mut impl Conn,
    user_id: &str,
    codes: &[TokenHash],
) -> Result<(), StoreError> {
    const INSERT: &str = "INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES ($1, $2) \
         ON CONFLICT (user_id, code_hash) DO NOTHING";
    conn.execute(
        "DELETE FROM mfa_backup_codes WHERE user_id = $1",
        &[Arg::Text(user_id)],
    )
    .await?;
    for code in codes {
        conn.execute(INSERT, &[Arg::Text(user_id), Arg::Text(code.as_str())])
            .await?;
    }
    Ok(())
}

/// The common tail of every factor change, inside the transaction that
/// holds the user's row: `is_mfa_enabled` recomputed from what the user
/// now has (a phone, or a TOTP row), `updated_at`, the credential epoch
/// moved strictly forward (so a sign-in or a challenge that read the old
/// one starts no session), and every live session but `keep` revoked.
async fn factor_changed(
    conn: &mut impl Conn,
    user_id: &str,
    keep: Option<&SessionId>,
    now: i64,
) -> Result<(), StoreError> {
    const RECOMPUTE: &str = concat!(
        "UPDATE users SET is_mfa_enabled = (phone_number IS NOT NULL \
         OR EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1)), updated_at = $2, ",
        bump_epoch!("$2"),
        " WHERE id = $1"
    );
    const REVOKE_OTHERS: &str = "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
         WHERE user_id = $3 AND id IS DISTINCT FROM $4 AND revoked_at IS NULL \
         AND expires_at > $1 AND idle_expires_at > $1";
    conn.execute(RECOMPUTE, &[Arg::Text(user_id), Arg::Int(now)])
        .await?;
    let revoke = [
        Arg::Int(now),
        Arg::Text(RevokeReason::FactorChanged.as_str()),
        Arg::Text(user_id),
        Arg::OptText(keep.map(SessionId::as_str)),
    ];
    conn.execute(REVOKE_OTHERS, &revoke).await?;
    Ok(())
}

/// Whether the user row exists, locking it until the transaction ends
/// (the lock order: the user row before its factors and sessions).
async fn lock_user<B: Backend>(conn: &mut B::Conn, user_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .fetch_optional(B::USER_FOR_WRITE, &[Arg::Text(user_id)])
        .await?
        .is_some())
}

impl<B: Backend> SqlStores<B> {
    /// A durable transaction holding the user's row (the lock order), or
    /// `None` when the user is gone.
    async fn begin_for_user(&self, user: &UserId) -> Result<Option<B::Tx>, StoreError> {
        let mut tx = self.begin(Commit::Durable).await?;
        if lock_user::<B>(&mut tx, user.as_str()).await? {
            Ok(Some(tx))
        } else {
            rollback::<B>(tx).await?;
            Ok(None)
        }
    }
}

/// Ends a factor change that changed something: [`factor_changed`], then
/// commit.
async fn changed<B: Backend>(
    mut tx: B::Tx,
    user: &UserId,
    keep: Option<&SessionId>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    factor_changed(&mut *tx, user.as_str(), keep, to_db(now)).await?;
    commit::<B>(tx).await?;
    Ok(true)
}

/// Ends a factor change that found nothing to change.
async fn unchanged<B: Backend>(tx: B::Tx) -> Result<bool, StoreError> {
    rollback::<B>(tx).await?;
    Ok(false)
}

#[async_trait]
impl<B: Backend> MfaStore for SqlStores<B> {
    async fn open_challenge(&self, c: MfaChallenge) -> Result<(), StoreError> {
        const INSERT: &str = "INSERT INTO mfa_codes (id, user_id, kind, code_hash, payload, \
             attempts_left, credential_epoch, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let mut tx = self.begin(Commit::Durable).await?;
        // The user row first (the lock order). A user deleted meanwhile
        // gets nothing, as `TokenStore::issue` — never a foreign-key error.
        if !lock_user::<B>(&mut tx, c.user_id.as_str()).await? {
            return rollback::<B>(tx).await;
        }
        // A new code supersedes the user's earlier one of this kind.
        tx.execute(
            "DELETE FROM mfa_codes WHERE user_id = $1 AND kind = $2",
            &[Arg::Text(c.user_id.as_str()), Arg::Text(c.kind.as_str())],
        )
        .await?;
        let args = [
            Arg::Text(c.id.as_str()),
            Arg::Text(c.user_id.as_str()),
            Arg::Text(c.kind.as_str()),
            Arg::OptText(c.code_hash.as_ref().map(TokenHash::as_str)),
            Arg::OptText(c.payload.as_deref()),
            Arg::Int(i64::from(c.attempts_left)),
            Arg::OptInt(c.credential_epoch.map(to_db)),
            Arg::Int(to_db(c.created_at)),
            Arg::Int(to_db(c.expires_at)),
        ];
        tx.execute(INSERT, &args).await?;
        commit::<B>(tx).await
    }

    async fn attempt_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<ChallengeAttempt, StoreError> {
        const COUNT: &str = concat!(
            "UPDATE mfa_codes SET attempts_left = attempts_left - 1 \
             WHERE id = $1 AND expires_at > $2 AND attempts_left > 0 RETURNING ",
            challenge_cols!()
        );
        // Reached only when the count missed. Nothing ever raises
        // `attempts_left`, so a live row at zero stays at zero until this
        // deletes it: of concurrent callers one deletes, the rest find
        // nothing.
        const EXHAUST: &str = "DELETE FROM mfa_codes \
             WHERE id = $1 AND expires_at > $2 AND attempts_left = 0";
        let args = [Arg::Text(id.as_str()), Arg::Int(to_db(now))];
        let mut conn = self.write_conn(Commit::Durable).await?;
        if let Some(row) = conn.fetch_optional(COUNT, &args).await? {
            return Ok(ChallengeAttempt::Counted(rows::challenge(&row)?));
        }
        if conn.execute(EXHAUST, &args).await? > 0 {
            return Ok(ChallengeAttempt::Exhausted);
        }
        Ok(ChallengeAttempt::Unknown)
    }

    async fn finish_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        const FINISH: &str = concat!(
            "DELETE FROM mfa_codes WHERE id = $1 AND expires_at > $2 RETURNING ",
            challenge_cols!()
        );
        self.write_conn(Commit::Durable)
            .await?
            .fetch_optional(FINISH, &[Arg::Text(id.as_str()), Arg::Int(to_db(now))])
            .await?
            .map(|r| rows::challenge(&r))
            .transpose()
    }

    async fn factors(&self, user: &UserId) -> Result<Factors, StoreError> {
        const FACTORS: &str = "SELECT u.phone_number, t.sealed_secret, t.last_step, t.created_at, \
             (SELECT count(*) FROM mfa_backup_codes AS b WHERE b.user_id = u.id) \
             FROM users AS u LEFT JOIN mfa_totp AS t ON t.user_id = u.id WHERE u.id = $1";
        let Some(row) = self
            .read_conn()
            .await?
            .fetch_optional(FACTORS, &[Arg::Text(user.as_str())])
            .await?
        else {
            return Ok(Factors::default());
        };
        let totp = match row.opt_text(1)? {
            Some(sealed_secret) => Some(TotpFactor {
                sealed_secret,
                last_step: row
                    .opt_int(2)?
                    .map(|s| u64::try_from(s).map_err(|_| CorruptRow("totp step")))
                    .transpose()?,
                created_at: from_db(row.opt_int(3)?.ok_or(CorruptRow("totp created_at"))?)?,
            }),
            None => None,
        };
        Ok(Factors {
            totp,
            phone_number: row.opt_text(0)?,
            backup_codes_left: u32::try_from(row.int(4)?).unwrap_or(u32::MAX),
        })
    }

    async fn accept_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        const ACCEPT: &str = "UPDATE mfa_totp SET last_step = $2 \
             WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2)";
        let args = [Arg::Text(user.as_str()), Arg::Int(step_to_db(step))];
        Ok(self
            .write_conn(Commit::Durable)
            .await?
            .execute(ACCEPT, &args)
            .await?
            > 0)
    }

    async fn spend_backup_code(&self, user: &UserId, hash: &TokenHash) -> Result<bool, StoreError> {
        const SPEND: &str = "DELETE FROM mfa_backup_codes WHERE user_id = $1 AND code_hash = $2";
        let args = [Arg::Text(user.as_str()), Arg::Text(hash.as_str())];
        Ok(self
            .write_conn(Commit::Durable)
            .await?
            .execute(SPEND, &args)
            .await?
            > 0)
    }

    async fn enable_totp<'k>(
        &self,
        user: &UserId,
        sealed_secret: &str,
        backup_codes: &[TokenHash],
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // A new secret starts with no accepted step: codes of the old one
        // say nothing about the new one's steps.
        const UPSERT: &str =
            "INSERT INTO mfa_totp (user_id, sealed_secret, last_step, created_at) \
             VALUES ($1, $2, NULL, $3) ON CONFLICT (user_id) DO UPDATE \
             SET sealed_secret = excluded.sealed_secret, last_step = NULL, \
             created_at = excluded.created_at";
        let Some(mut tx) = self.begin_for_user(user).await? else {
            return Ok(false);
        };
        let args = [
            Arg::Text(user.as_str()),
            Arg::Text(sealed_secret),
            Arg::Int(to_db(now)),
        ];
        tx.execute(UPSERT, &args).await?;
        replace_codes_on(&mut *tx, user.as_str(), backup_codes).await?;
        changed::<B>(tx, user, keep, now).await
    }

    async fn disable_totp<'k>(
        &self,
        user: &UserId,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Backup codes stand in for a factor; with no phone left there is
        // none for them to stand in for.
        const ORPHANED_CODES: &str = "DELETE FROM mfa_backup_codes WHERE user_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM users WHERE id = $1 AND phone_number IS NOT NULL)";
        let Some(mut tx) = self.begin_for_user(user).await? else {
            return Ok(false);
        };
        let id = [Arg::Text(user.as_str())];
        if tx
            .execute("DELETE FROM mfa_totp WHERE user_id = $1", &id)
            .await?
            == 0
        {
            return unchanged::<B>(tx).await;
        }
        tx.execute(ORPHANED_CODES, &id).await?;
        changed::<B>(tx, user, keep, now).await
    }

    async fn set_phone<'k>(
        &self,
        user: &UserId,
        phone: &str,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(mut tx) = self.begin_for_user(user).await? else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE users SET phone_number = $1 WHERE id = $2",
            &[Arg::Text(phone), Arg::Text(user.as_str())],
        )
        .await?;
        changed::<B>(tx, user, keep, now).await
    }

    async fn clear_phone<'k>(
        &self,
        user: &UserId,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        const CLEAR: &str = "UPDATE users SET phone_number = NULL \
             WHERE id = $1 AND phone_number IS NOT NULL";
        // As in `disable_totp`: no factor left, no codes.
        const ORPHANED_CODES: &str = "DELETE FROM mfa_backup_codes WHERE user_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM mfa_totp WHERE user_id = $1)";
        let Some(mut tx) = self.begin_for_user(user).await? else {
            return Ok(false);
        };
        let id = [Arg::Text(user.as_str())];
        if tx.execute(CLEAR, &id).await? == 0 {
            return unchanged::<B>(tx).await;
        }
        tx.execute(ORPHANED_CODES, &id).await?;
        changed::<B>(tx, user, keep, now).await
    }

    async fn replace_backup_codes(
        &self,
        user: &UserId,
        codes: &[TokenHash],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(mut tx) = self.begin_for_user(user).await? else {
            return Ok(false);
        };
        replace_codes_on(&mut *tx, user.as_str(), codes).await?;
        tx.execute(
            "UPDATE users SET updated_at = $1 WHERE id = $2",
            &[Arg::Int(to_db(now)), Arg::Text(user.as_str())],
        )
        .await?;
        commit::<B>(tx).await?;
        Ok(true)
    }

    async fn set_must_change_password(
        &self,
        user: &UserId,
        value: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        const SET: &str =
            "UPDATE users SET must_change_password = $1, updated_at = $2 WHERE id = $3";
        let args = [
            Arg::Bool(value),
            Arg::Int(to_db(now)),
            Arg::Text(user.as_str()),
        ];
        Ok(self
            .write_conn(Commit::Durable)
            .await?
            .execute(SET, &args)
            .await?
            > 0)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM mfa_codes WHERE expires_at <= $1",
                &[Arg::Int(to_db(now))],
            )
            .await
    }
}
