//! [`PendingStore`] over `pending_registrations`.

use async_trait::async_trait;
use regstack_ports::{
    Email, PendingRegistration, PendingStore, Promotion, StoreError, Timestamp, TokenHash, UserId,
};

use super::{commit, rollback, SqlStores};
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::error::CorruptRow;
use crate::rows::{self, pending_cols, user_cols, Cells};
use crate::time::to_db;

/// Deletes the pending registration for a user's current address (account
/// deletion).
pub(super) async fn delete_for_user_on(
    conn: &mut impl Conn,
    user_id: &str,
) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM pending_registrations \
         WHERE email = (SELECT email FROM users WHERE id = $1)",
        &[Arg::Text(user_id)],
    )
    .await
}

#[async_trait]
impl<B: Backend> PendingStore for SqlStores<B> {
    async fn put(&self, p: PendingRegistration) -> Result<bool, StoreError> {
        // One statement: insert, or take the place of an expired row for
        // the address; a live row is left exactly as it is (no rows
        // affected). Two concurrent puts for one address serialise on the
        // unique index.
        const PUT: &str = "INSERT INTO pending_registrations \
             (email, hashed_password, full_name, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (email) DO UPDATE SET \
             hashed_password = excluded.hashed_password, full_name = excluded.full_name, \
             token_hash = excluded.token_hash, created_at = excluded.created_at, \
             expires_at = excluded.expires_at \
             WHERE pending_registrations.expires_at <= excluded.created_at";
        let args = [
            Arg::Text(p.email.as_str()),
            Arg::Text(p.password_hash.as_str()),
            Arg::OptText(p.full_name.as_deref()),
            Arg::Text(p.token_hash.as_str()),
            Arg::Int(to_db(p.created_at)),
            Arg::Int(to_db(p.expires_at)),
        ];
        Ok(self
            .write_conn(Commit::Relaxed)
            .await?
            .execute(PUT, &args)
            .await?
            > 0)
    }

    async fn find_by_email(
        &self,
        email: &Email,
        now: Timestamp,
    ) -> Result<Option<PendingRegistration>, StoreError> {
        const FIND: &str = concat!(
            "SELECT ",
            pending_cols!(),
            " FROM pending_registrations WHERE email = $1 AND expires_at > $2"
        );
        let args = [Arg::Text(email.as_str()), Arg::Int(to_db(now))];
        self.read_conn()
            .await?
            .fetch_optional(FIND, &args)
            .await?
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
        const REPLACE: &str = "UPDATE pending_registrations SET token_hash = $1, expires_at = $2 \
             WHERE email = $3 AND expires_at > $4";
        let args = [
            Arg::Text(token.as_str()),
            Arg::Int(to_db(expires_at)),
            Arg::Text(email.as_str()),
            Arg::Int(to_db(now)),
        ];
        Ok(self
            .write_conn(Commit::Relaxed)
            .await?
            .execute(REPLACE, &args)
            .await?
            > 0)
    }

    async fn promote(
        &self,
        token: &TokenHash,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        const SPEND: &str = concat!(
            "DELETE FROM pending_registrations WHERE token_hash = $1 AND expires_at > $2 \
             RETURNING ",
            pending_cols!()
        );
        self.promote_with(SPEND, token.as_str(), id, now).await
    }

    async fn promote_email(
        &self,
        email: &Email,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        const SPEND: &str = concat!(
            "DELETE FROM pending_registrations WHERE email = $1 AND expires_at > $2 \
             RETURNING ",
            pending_cols!()
        );
        self.promote_with(SPEND, email.as_str(), id, now).await
    }

    async fn count_live(&self, now: Timestamp) -> Result<u64, StoreError> {
        const COUNT: &str = "SELECT COUNT(*) FROM pending_registrations WHERE expires_at > $1";
        let row = self
            .read_conn()
            .await?
            .fetch_optional(COUNT, &[Arg::Int(to_db(now))])
            .await?
            .ok_or(CorruptRow("count returned no row"))?;
        Ok(u64::try_from(row.int(0)?).unwrap_or(0))
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM pending_registrations WHERE expires_at <= $1",
                &[Arg::Int(to_db(now))],
            )
            .await
    }
}

impl<B: Backend> SqlStores<B> {
    /// Both promotions: `spend` deletes the live pending row chosen by
    /// `key` (`$1`, with `now` as `$2`) and returns it, then the verified
    /// user is inserted in the same transaction.
    async fn promote_with(
        &self,
        spend: &'static str,
        key: &str,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        // An address taken since registration (even by a transaction still
        // in flight: the insert waits for it) leaves no row here — unless
        // the account there is the unverified one this row was made for
        // (same password hash): then it is the one verified.
        const INSERT_USER: &str = concat!(
            "INSERT INTO users (id, email, hashed_password, is_active, is_verified, \
             is_superuser, full_name, created_at, updated_at) \
             VALUES ($1, $2, $3, TRUE, TRUE, FALSE, $4, $5, $5) \
             ON CONFLICT (email) DO UPDATE SET is_verified = TRUE, updated_at = excluded.updated_at \
             WHERE users.is_verified = FALSE AND users.hashed_password = excluded.hashed_password \
             RETURNING ",
            user_cols!()
        );
        let now = to_db(now);
        let mut tx = self.begin(Commit::Durable).await?;
        // The returned row decides the winner: a second caller with the
        // same token (waiting for the first to commit, on PostgreSQL) finds
        // nothing to delete.
        let args = [Arg::Text(key), Arg::Int(now)];
        let Some(row) = tx.fetch_optional(spend, &args).await? else {
            rollback::<B>(tx).await?;
            return Ok(Promotion::InvalidToken);
        };
        let pending = rows::pending(&row)?;
        let insert = [
            Arg::Text(id.as_str()),
            Arg::Text(pending.email.as_str()),
            Arg::Text(pending.password_hash.as_str()),
            Arg::OptText(pending.full_name.as_deref()),
            Arg::Int(now),
        ];
        // Either way the pending row stays deleted.
        let outcome = match tx.fetch_optional(INSERT_USER, &insert).await? {
            Some(row) => Promotion::Promoted(rows::user(&row, 0)?),
            None => Promotion::EmailTaken,
        };
        commit::<B>(tx).await?;
        Ok(outcome)
    }
}
