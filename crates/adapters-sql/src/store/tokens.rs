//! [`TokenStore`] over `one_time_tokens`, plus the spending and clean-up
//! steps the [`UserStore`](regstack_ports::UserStore) transactions share.

use async_trait::async_trait;
use regstack_ports::{OneTimeToken, StoreError, Timestamp, TokenHash, TokenKind, TokenStore};

use super::{commit, rollback, SqlStores};
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::rows::{self, token_cols, Cells};
use crate::time::to_db;

/// The user a live token of `kind` acts on, read without spending or
/// locking it: the caller locks that user first (the lock order), then
/// spends the token with [`spend_on`], which decides.
pub(super) async fn owner_on(
    conn: &mut impl Conn,
    kind: TokenKind,
    hash: &TokenHash,
    now: i64,
) -> Result<Option<String>, StoreError> {
    const OWNER: &str = "SELECT user_id FROM one_time_tokens \
         WHERE token_hash = $1 AND kind = $2 AND expires_at > $3";
    let args = [
        Arg::Text(hash.as_str()),
        Arg::Text(kind.as_str()),
        Arg::Int(now),
    ];
    conn.fetch_optional(OWNER, &args)
        .await?
        .map(|r| r.text(0))
        .transpose()
}

/// Spends the live token of `kind` with this hash: one
/// `DELETE … RETURNING`. A concurrent caller finds it gone (on PostgreSQL
/// after waiting for the first to commit), so exactly one gets it.
pub(super) async fn spend_on(
    conn: &mut impl Conn,
    kind: TokenKind,
    hash: &TokenHash,
    now: i64,
) -> Result<Option<OneTimeToken>, StoreError> {
    const SPEND: &str = concat!(
        "DELETE FROM one_time_tokens WHERE token_hash = $1 AND kind = $2 AND expires_at > $3 \
         RETURNING ",
        token_cols!()
    );
    let args = [
        Arg::Text(hash.as_str()),
        Arg::Text(kind.as_str()),
        Arg::Int(now),
    ];
    conn.fetch_optional(SPEND, &args)
        .await?
        .map(|r| rows::token(&r))
        .transpose()
}

/// Deletes every reset and email-change token of a user; its revert
/// tokens stay (`TokenKind::EmailChangeRevert`: a credential change must
/// not kill the owner's way back).
pub(super) async fn delete_all_of_user(
    conn: &mut impl Conn,
    user_id: &str,
) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM one_time_tokens WHERE user_id = $1 AND kind <> 'email_change_revert'",
        &[Arg::Text(user_id)],
    )
    .await
}

/// Deletes every token of a user, revert tokens included (account
/// deletion).
pub(super) async fn delete_every_token_of_user(
    conn: &mut impl Conn,
    user_id: &str,
) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM one_time_tokens WHERE user_id = $1",
        &[Arg::Text(user_id)],
    )
    .await
}

/// Deletes the user's revert tokens issued at or after `created_at` (µs):
/// the earliest "this wasn't me" link wins.
pub(super) async fn delete_later_reverts_on(
    conn: &mut impl Conn,
    user_id: &str,
    created_at: i64,
) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM one_time_tokens \
         WHERE user_id = $1 AND kind = 'email_change_revert' AND created_at >= $2",
        &[Arg::Text(user_id), Arg::Int(created_at)],
    )
    .await
}

#[async_trait]
impl<B: Backend> TokenStore for SqlStores<B> {
    async fn issue(&self, token: OneTimeToken) -> Result<(), StoreError> {
        const INSERT: &str = "INSERT INTO one_time_tokens \
             (token_hash, kind, user_id, new_email, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        let user = [Arg::Text(token.user_id.as_str())];
        let mut tx = self.begin(Commit::Durable).await?;
        // The user row first (the lock order): an issue and a reset or
        // account deletion of the same user queue on it instead of each
        // holding token rows the other needs. A user deleted meanwhile (the
        // deletion committed first) gets nothing — as if the deletion had
        // come after the issue and taken the token along — rather than a
        // foreign-key violation.
        if tx.fetch_optional(B::USER_FOR_WRITE, &user).await?.is_none() {
            return rollback::<B>(tx).await;
        }
        // A newer link supersedes the older ones of the same kind; a
        // revert link supersedes nothing (the port's rule).
        if token.kind != TokenKind::EmailChangeRevert {
            tx.execute(
                "DELETE FROM one_time_tokens WHERE user_id = $1 AND kind = $2",
                &[user[0], Arg::Text(token.kind.as_str())],
            )
            .await?;
        }
        let args = [
            Arg::Text(token.hash.as_str()),
            Arg::Text(token.kind.as_str()),
            Arg::Text(token.user_id.as_str()),
            Arg::OptText(token.new_email.as_ref().map(|e| e.as_str())),
            Arg::Int(to_db(token.created_at)),
            Arg::Int(to_db(token.expires_at)),
        ];
        tx.execute(INSERT, &args).await?;
        commit::<B>(tx).await
    }

    async fn peek(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        const PEEK: &str = concat!(
            "SELECT ",
            token_cols!(),
            " FROM one_time_tokens WHERE token_hash = $1 AND kind = $2 AND expires_at > $3"
        );
        let args = [
            Arg::Text(hash.as_str()),
            Arg::Text(kind.as_str()),
            Arg::Int(to_db(now)),
        ];
        self.read_conn()
            .await?
            .fetch_optional(PEEK, &args)
            .await?
            .map(|r| rows::token(&r))
            .transpose()
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM one_time_tokens WHERE expires_at <= $1",
                &[Arg::Int(to_db(now))],
            )
            .await
    }
}
