//! [`TokenStore`] over `one_time_tokens`, plus the spending and clean-up
//! steps the [`UserStore`](regstack_ports::UserStore) transactions share.

use async_trait::async_trait;
use regstack_ports::{OneTimeToken, StoreError, Timestamp, TokenHash, TokenKind, TokenStore};
use sqlx::PgConnection;

use super::error::map_pg;
use super::{commit, PostgresStores};
use crate::rows::{self, token_cols};
use crate::time::to_db;

/// The user a live token of `kind` acts on, read without spending or
/// locking it: the caller locks that user first (the lock order), then
/// spends the token with [`spend_on`], which decides.
pub(super) async fn owner_on(
    conn: &mut PgConnection,
    kind: TokenKind,
    hash: &TokenHash,
    now: i64,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar(
        "SELECT user_id FROM one_time_tokens \
         WHERE token_hash = $1 AND kind = $2 AND expires_at > $3",
    )
    .bind(hash.as_str())
    .bind(kind.as_str())
    .bind(now)
    .fetch_optional(conn)
    .await
    .map_err(map_pg)
}

/// Spends the live token of `kind` with this hash: one
/// `DELETE … RETURNING`. A concurrent caller waits for the row, re-checks
/// it after the first commits and finds it gone, so exactly one gets it.
pub(super) async fn spend_on(
    conn: &mut PgConnection,
    kind: TokenKind,
    hash: &TokenHash,
    now: i64,
) -> Result<Option<OneTimeToken>, StoreError> {
    sqlx::query(concat!(
        "DELETE FROM one_time_tokens WHERE token_hash = $1 AND kind = $2 AND expires_at > $3 \
         RETURNING ",
        token_cols!()
    ))
    .bind(hash.as_str())
    .bind(kind.as_str())
    .bind(now)
    .fetch_optional(conn)
    .await
    .map_err(map_pg)?
    .map(|r| rows::token(&r))
    .transpose()
}

/// Deletes every reset and email-change token of a user.
pub(super) async fn delete_all_of_user(
    conn: &mut PgConnection,
    user_id: &str,
) -> Result<u64, StoreError> {
    sqlx::query("DELETE FROM one_time_tokens WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected())
        .map_err(map_pg)
}

#[async_trait]
impl TokenStore for PostgresStores {
    async fn issue(&self, token: OneTimeToken) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        // The user row first (the lock order): an issue and a reset or
        // account deletion of the same user queue on it instead of each
        // holding token rows the other needs. A missing user is left to the
        // foreign key below.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(token.user_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_pg)?;
        // A newer link supersedes the older ones of the same kind.
        sqlx::query("DELETE FROM one_time_tokens WHERE user_id = $1 AND kind = $2")
            .bind(token.user_id.as_str())
            .bind(token.kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(map_pg)?;
        sqlx::query(
            "INSERT INTO one_time_tokens \
             (token_hash, kind, user_id, new_email, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.hash.as_str())
        .bind(token.kind.as_str())
        .bind(token.user_id.as_str())
        .bind(token.new_email.as_ref().map(|e| e.as_str()))
        .bind(to_db(token.created_at))
        .bind(to_db(token.expires_at))
        .execute(&mut *tx)
        .await
        .map_err(map_pg)?;
        commit(tx).await
    }

    async fn peek(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            token_cols!(),
            " FROM one_time_tokens WHERE token_hash = $1 AND kind = $2 AND expires_at > $3"
        ))
        .bind(hash.as_str())
        .bind(kind.as_str())
        .bind(to_db(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_pg)?
        .map(|r| rows::token(&r))
        .transpose()
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        sqlx::query("DELETE FROM one_time_tokens WHERE expires_at <= $1")
            .bind(to_db(now))
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(map_pg)
    }
}
