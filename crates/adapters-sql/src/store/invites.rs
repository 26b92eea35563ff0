//! [`InviteStore`] over `invites`: a redemption is one conditional
//! `UPDATE … RETURNING`; only a miss reads the row again, to say why.

use async_trait::async_trait;
use regstack_ports::{
    Email, Invite, InviteId, InviteRedemption, InviteStore, StoreError, Timestamp, TokenHash,
    UserId,
};

use super::SqlStores;
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::error::CorruptRow;
use crate::rows::Cells;
use crate::time::{from_db, from_db_opt, to_db};

/// The `invites` columns in decoding order.
macro_rules! invite_cols {
    () => {
        "id, code_hash, email, note, created_by, created_at, expires_at, used_at, used_by, \
         revoked_at"
    };
}

fn stored_email(s: Option<String>) -> Result<Option<Email>, CorruptRow> {
    s.map(|e| Email::from_stored(&e).map_err(|_| CorruptRow("email")))
        .transpose()
}

/// Decodes the [`invite_cols!`].
fn invite(row: &impl Cells) -> Result<Invite, StoreError> {
    Ok(Invite {
        id: InviteId::parse(&row.text(0)?).ok_or(CorruptRow("invite id"))?,
        code_hash: TokenHash::from_hex(row.text(1)?).ok_or(CorruptRow("invite code hash"))?,
        email: stored_email(row.opt_text(2)?)?,
        note: row.opt_text(3)?,
        created_by: row
            .opt_text(4)?
            .map(|u| UserId::parse(&u).ok_or(CorruptRow("user id")))
            .transpose()?,
        created_at: from_db(row.int(5)?)?,
        expires_at: from_db(row.int(6)?)?,
        used_at: from_db_opt(row.opt_int(7)?)?,
        used_by: stored_email(row.opt_text(8)?)?,
        revoked_at: from_db_opt(row.opt_int(9)?)?,
    })
}

/// What account deletion takes of the invitations: those bound to or
/// spent by the address go, and the account's name as a maker is cleared
/// (the invitations it made stay usable).
pub(super) async fn forget_user_on(
    conn: &mut impl Conn,
    user_id: &str,
    email: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM invites WHERE email = $1 OR used_by = $1",
        &[Arg::Text(email)],
    )
    .await?;
    conn.execute(
        "UPDATE invites SET created_by = NULL WHERE created_by = $1",
        &[Arg::Text(user_id)],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl<B: Backend> InviteStore for SqlStores<B> {
    async fn create(&self, i: Invite) -> Result<(), StoreError> {
        const INSERT: &str = concat!(
            "INSERT INTO invites (",
            invite_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let args = [
            Arg::Text(i.id.as_str()),
            Arg::Text(i.code_hash.as_str()),
            Arg::OptText(i.email.as_ref().map(Email::as_str)),
            Arg::OptText(i.note.as_deref()),
            Arg::OptText(i.created_by.as_ref().map(UserId::as_str)),
            Arg::Int(to_db(i.created_at)),
            Arg::Int(to_db(i.expires_at)),
            Arg::OptInt(i.used_at.map(to_db)),
            Arg::OptText(i.used_by.as_ref().map(Email::as_str)),
            Arg::OptInt(i.revoked_at.map(to_db)),
        ];
        self.write_conn(Commit::Durable)
            .await?
            .execute(INSERT, &args)
            .await
            .map(drop)
    }

    async fn list(
        &self,
        include_closed: bool,
        limit: u64,
        now: Timestamp,
    ) -> Result<Vec<Invite>, StoreError> {
        const LIST: &str = concat!(
            "SELECT ",
            invite_cols!(),
            " FROM invites WHERE $1 OR (used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $2) ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let args = [
            Arg::Bool(include_closed),
            Arg::Int(to_db(now)),
            Arg::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        ];
        self.read_conn()
            .await?
            .fetch_all(LIST, &args)
            .await?
            .iter()
            .map(invite)
            .collect()
    }

    async fn revoke(&self, id: &InviteId, now: Timestamp) -> Result<Option<Invite>, StoreError> {
        const REVOKE: &str = concat!(
            "UPDATE invites SET revoked_at = $2 \
             WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING ",
            invite_cols!()
        );
        self.write_conn(Commit::Durable)
            .await?
            .fetch_optional(REVOKE, &[Arg::Text(id.as_str()), Arg::Int(to_db(now))])
            .await?
            .map(|r| invite(&r))
            .transpose()
    }

    async fn redeem(
        &self,
        code: &TokenHash,
        email: &Email,
        now: Timestamp,
    ) -> Result<InviteRedemption, StoreError> {
        // One conditional write: on PostgreSQL a concurrent redeemer waits
        // for the first to commit and then finds `used_at` set.
        const REDEEM: &str = concat!(
            "UPDATE invites SET used_at = $3, used_by = $2 \
             WHERE code_hash = $1 AND used_at IS NULL AND revoked_at IS NULL \
             AND expires_at > $3 AND (email IS NULL OR email = $2) RETURNING ",
            invite_cols!()
        );
        const WHY: &str = concat!(
            "SELECT ",
            invite_cols!(),
            " FROM invites WHERE code_hash = $1"
        );
        let mut conn = self.write_conn(Commit::Durable).await?;
        let args = [
            Arg::Text(code.as_str()),
            Arg::Text(email.as_str()),
            Arg::Int(to_db(now)),
        ];
        if let Some(row) = conn.fetch_optional(REDEEM, &args).await? {
            return Ok(InviteRedemption::Redeemed(invite(&row)?));
        }
        let Some(row) = conn.fetch_optional(WHY, &args[..1]).await? else {
            return Ok(InviteRedemption::Unknown);
        };
        let found = invite(&row)?;
        Ok(if found.revoked_at.is_some() {
            InviteRedemption::Revoked
        } else if found.used_at.is_some() {
            InviteRedemption::Spent
        } else if found.expires_at <= now {
            InviteRedemption::Expired
        } else {
            InviteRedemption::WrongAddress
        })
    }

    async fn release(&self, id: &InviteId, email: &Email) -> Result<bool, StoreError> {
        const RELEASE: &str = "UPDATE invites SET used_at = NULL, used_by = NULL \
             WHERE id = $1 AND used_by = $2";
        let n = self
            .write_conn(Commit::Durable)
            .await?
            .execute(
                RELEASE,
                &[Arg::Text(id.as_str()), Arg::Text(email.as_str())],
            )
            .await?;
        Ok(n == 1)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM invites WHERE expires_at <= $1",
                &[Arg::Int(to_db(now))],
            )
            .await
    }
}
