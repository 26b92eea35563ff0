//! [`OAuthStore`] over `oauth_states` (the flows in flight) and
//! `oauth_identities` (external accounts linked to ours).
//!
//! Each hand-over of a flow is one conditional statement, decided by the
//! row it changes (as every spend in this crate): a callback claims with
//! `UPDATE … SET claimed = TRUE WHERE NOT claimed … RETURNING`, completes
//! with `UPDATE … WHERE claimed AND NOT completed` (filing the flow under
//! its exchange id's hash), and the exchange redeems with
//! `DELETE … WHERE exchange_hash = … AND completed AND browser_hash = …
//! RETURNING`.
//! On PostgreSQL a second writer on the same row waits for the first to
//! commit and re-checks the condition against the new row version, so each
//! step has one winner.
//!
//! The identity changes that depend on what an account already has
//! (`link_identity`, `unlink_identity`) are one transaction that locks the
//! user row first (the lock order, see [`super`]), so every change to one
//! account's identities queues behind it. A first sign-in
//! (`create_user_with_identity`) inserts the account and then its identity
//! in one transaction, each insert `ON CONFLICT … DO NOTHING`: a concurrent
//! writer of the same address or identity makes it wait for that writer's
//! commit and then find the row, so the race is answered with an outcome,
//! never an error, and a refusal rolls the account back.

use async_trait::async_trait;
use regstack_ports::{
    Claim, Creation, FlowResult, Linking, NewUser, OAuthFlow, OAuthIdentity, OAuthStore,
    PasswordHash, Redemption, StoreError, Timestamp, TokenHash, Unlinking, UserId,
};

use super::{commit, rollback, SqlStores};
use crate::backend::{Arg, Backend, Commit, Conn};
use crate::rows::{self, flow_cols, identity_cols, user_cols, Cells, FLOW_COLS};
use crate::time::to_db;

/// Deletes the user's identities and the flows it began to link one
/// (account deletion; the foreign keys cascade too, but a SQLite
/// connection opened without them must not leave rows behind).
pub(super) async fn delete_all_of_user(
    conn: &mut impl Conn,
    user_id: &str,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM oauth_identities WHERE user_id = $1",
        "DELETE FROM oauth_states WHERE linking_user_id = $1",
    ] {
        conn.execute(sql, &[Arg::Text(user_id)]).await?;
    }
    Ok(())
}

/// Whether `(issuer, subject)` is linked to any account.
async fn identity_in_use(
    conn: &mut impl Conn,
    issuer: &str,
    subject: &str,
) -> Result<bool, StoreError> {
    Ok(conn
        .fetch_optional(
            "SELECT 1 FROM oauth_identities WHERE issuer = $1 AND subject = $2",
            &[Arg::Text(issuer), Arg::Text(subject)],
        )
        .await?
        .is_some())
}

/// Inserts `identity` for `user_id` unless its `(issuer, subject)` is
/// linked already (then nothing happens and the answer is `false`). A
/// writer of the same identity that has not committed yet is waited for.
async fn insert_identity(
    conn: &mut impl Conn,
    user_id: &str,
    identity: &OAuthIdentity,
) -> Result<bool, StoreError> {
    const INSERT: &str = "INSERT INTO oauth_identities \
         (user_id, provider, issuer, subject, email, linked_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (issuer, subject) DO NOTHING";
    let args = [
        Arg::Text(user_id),
        Arg::Text(&identity.provider),
        Arg::Text(&identity.issuer),
        Arg::Text(&identity.subject),
        Arg::OptText(identity.email.as_deref()),
        Arg::Int(to_db(identity.linked_at)),
        Arg::OptInt(identity.last_used_at.map(to_db)),
    ];
    Ok(conn.execute(INSERT, &args).await? > 0)
}

/// Ends a transaction that must change nothing with `answer`.
async fn refuse<B: Backend, T>(tx: B::Tx, answer: T) -> Result<T, StoreError> {
    rollback::<B>(tx).await?;
    Ok(answer)
}

#[async_trait]
impl<B: Backend> OAuthStore for SqlStores<B> {
    async fn begin(&self, flow: OAuthFlow) -> Result<(), StoreError> {
        const INSERT: &str = "INSERT INTO oauth_states (id, provider, pkce_verifier, nonce, mode, \
             linking_user_id, redirect_to, browser_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
        let (mode, linking) = rows::flow_mode(&flow.mode);
        let args = [
            Arg::Text(flow.id.as_str()),
            Arg::Text(&flow.provider),
            Arg::Text(&flow.pkce_verifier),
            Arg::Text(&flow.nonce),
            Arg::Text(mode),
            Arg::OptText(linking),
            Arg::Text(&flow.redirect_to),
            Arg::Text(flow.browser.as_str()),
            Arg::Int(to_db(flow.created_at)),
            Arg::Int(to_db(flow.expires_at)),
        ];
        // A lost flow costs the user a restart of the sign-in, no more.
        let Some(user) = linking else {
            return self
                .write_conn(Commit::Relaxed)
                .await?
                .execute(INSERT, &args)
                .await
                .map(drop);
        };
        // A link names an account: its row first (the lock order). An
        // account deleted meanwhile gets nothing, as `TokenStore::issue` —
        // never a foreign-key error.
        let mut tx = self.begin(Commit::Relaxed).await?;
        if tx
            .fetch_optional(B::USER_FOR_WRITE, &[Arg::Text(user)])
            .await?
            .is_none()
        {
            return rollback::<B>(tx).await;
        }
        tx.execute(INSERT, &args).await?;
        commit::<B>(tx).await
    }

    async fn claim(
        &self,
        id: &TokenHash,
        provider: &str,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        const CLAIM: &str = concat!(
            "UPDATE oauth_states SET claimed = TRUE \
             WHERE id = $1 AND provider = $2 AND NOT claimed AND expires_at > $3 RETURNING ",
            flow_cols!()
        );
        // Reached only when the claim missed. Nothing un-claims a flow or
        // moves an unclaimed one's expiry, so a dead unclaimed row stays
        // dead until this deletes it: of concurrent callers one deletes it,
        // the rest find nothing.
        const EXPIRE: &str = "DELETE FROM oauth_states \
             WHERE id = $1 AND provider = $2 AND NOT claimed AND expires_at <= $3";
        let args = [
            Arg::Text(id.as_str()),
            Arg::Text(provider),
            Arg::Int(to_db(now)),
        ];
        let mut conn = self.write_conn(Commit::Durable).await?;
        if let Some(row) = conn.fetch_optional(CLAIM, &args).await? {
            return Ok(Claim::Claimed(Box::new(rows::flow(&row)?)));
        }
        if conn.execute(EXPIRE, &args).await? > 0 {
            return Ok(Claim::Expired);
        }
        Ok(Claim::Unknown)
    }

    async fn complete(
        &self,
        id: &TokenHash,
        exchange: &TokenHash,
        result: &FlowResult,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        const COMPLETE: &str = "UPDATE oauth_states SET completed = TRUE, result_user_id = $2, \
             result_was_new = $3, result_credential_epoch = $4, expires_at = $5, \
             exchange_hash = $6 \
             WHERE id = $1 AND claimed AND NOT completed";
        let args = [
            Arg::Text(id.as_str()),
            Arg::Text(result.user_id.as_str()),
            Arg::Bool(result.was_new),
            Arg::OptInt(result.credential_epoch.map(to_db)),
            Arg::Int(to_db(expires_at)),
            Arg::Text(exchange.as_str()),
        ];
        Ok(self
            .write_conn(Commit::Durable)
            .await?
            .execute(COMPLETE, &args)
            .await?
            > 0)
    }

    async fn redeem(
        &self,
        exchange: &TokenHash,
        browser: &TokenHash,
        now: Timestamp,
    ) -> Result<Redemption, StoreError> {
        // The returned row decides the winner, and whether the window was
        // still open is read from it: a dead flow of this browser goes
        // too, exactly as a live one does. Another browser's flow does not
        // match and stays.
        const REDEEM: &str = concat!(
            "DELETE FROM oauth_states \
             WHERE exchange_hash = $1 AND completed AND browser_hash = $2 RETURNING ",
            flow_cols!(),
            ", result_user_id, result_was_new, result_credential_epoch"
        );
        let args = [Arg::Text(exchange.as_str()), Arg::Text(browser.as_str())];
        let Some(row) = self
            .write_conn(Commit::Durable)
            .await?
            .fetch_optional(REDEEM, &args)
            .await?
        else {
            return Ok(Redemption::Unknown);
        };
        let flow = rows::flow(&row)?;
        if flow.expires_at <= now {
            return Ok(Redemption::Expired);
        }
        let result = rows::flow_result(&row, FLOW_COLS)?;
        Ok(Redemption::Redeemed {
            flow: Box::new(flow),
            result,
        })
    }

    async fn find_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<OAuthIdentity>, StoreError> {
        const FIND: &str = concat!(
            "SELECT ",
            identity_cols!(),
            " FROM oauth_identities WHERE issuer = $1 AND subject = $2"
        );
        self.read_conn()
            .await?
            .fetch_optional(FIND, &[Arg::Text(issuer), Arg::Text(subject)])
            .await?
            .map(|r| rows::identity(&r))
            .transpose()
    }

    async fn identities_of(&self, user: &UserId) -> Result<Vec<OAuthIdentity>, StoreError> {
        // The provider name makes the order total; the unique index on
        // `(user_id, provider)` finds the rows.
        const OF_USER: &str = concat!(
            "SELECT ",
            identity_cols!(),
            " FROM oauth_identities WHERE user_id = $1 ORDER BY linked_at, provider"
        );
        self.read_conn()
            .await?
            .fetch_all(OF_USER, &[Arg::Text(user.as_str())])
            .await?
            .iter()
            .map(rows::identity)
            .collect()
    }

    async fn link_identity(&self, identity: &OAuthIdentity) -> Result<Linking, StoreError> {
        const PROVIDER_TAKEN: &str =
            "SELECT 1 FROM oauth_identities WHERE user_id = $1 AND provider = $2";
        let user = identity.user_id.as_str();
        let mut tx = self.begin(Commit::Durable).await?;
        // The account row first: while it is held, no other change to this
        // account's identities can land (each locks it too), so the
        // provider check below stays true until the insert.
        if tx
            .fetch_optional(B::USER_FOR_WRITE, &[Arg::Text(user)])
            .await?
            .is_none()
        {
            return refuse::<B, _>(tx, Linking::NoUser).await;
        }
        if identity_in_use(&mut *tx, &identity.issuer, &identity.subject).await? {
            return refuse::<B, _>(tx, Linking::IdentityInUse).await;
        }
        let taken = tx
            .fetch_optional(
                PROVIDER_TAKEN,
                &[Arg::Text(user), Arg::Text(&identity.provider)],
            )
            .await?;
        if taken.is_some() {
            return refuse::<B, _>(tx, Linking::ProviderTaken).await;
        }
        // Another account may link the same identity, or a first sign-in
        // create an account with it, after the check above: the insert
        // waits for that writer and then finds its row.
        if !insert_identity(&mut *tx, user, identity).await? {
            return refuse::<B, _>(tx, Linking::IdentityInUse).await;
        }
        commit::<B>(tx).await?;
        Ok(Linking::Linked)
    }

    async fn create_user_with_identity(
        &self,
        user: NewUser,
        identity: &OAuthIdentity,
    ) -> Result<Creation, StoreError> {
        // As `UserStore::insert`, but a taken address answers instead of
        // failing (a conflict on the id still fails: the caller chose it).
        const INSERT_USER: &str = concat!(
            "INSERT INTO users (id, email, hashed_password, is_active, is_verified, \
             is_superuser, full_name, created_at, updated_at) \
             VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, $7) ON CONFLICT (email) DO NOTHING \
             RETURNING ",
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
        let mut tx = self.begin(Commit::Durable).await?;
        let Some(row) = tx.fetch_optional(INSERT_USER, &args).await? else {
            // The address is taken. If the identity is too, that is what
            // the caller lost to (a concurrent first sign-in with one
            // address writes both): say so.
            let answer = if identity_in_use(&mut *tx, &identity.issuer, &identity.subject).await? {
                Creation::IdentityInUse
            } else {
                Creation::EmailTaken
            };
            return refuse::<B, _>(tx, answer).await;
        };
        let created = rows::user(&row, 0)?;
        if !insert_identity(&mut *tx, created.id.as_str(), identity).await? {
            // The account goes back with the transaction.
            return refuse::<B, _>(tx, Creation::IdentityInUse).await;
        }
        commit::<B>(tx).await?;
        Ok(Creation::Created(created))
    }

    async fn unlink_identity(
        &self,
        user: &UserId,
        provider: &str,
    ) -> Result<Unlinking, StoreError> {
        const OF_USER: &str = "SELECT provider FROM oauth_identities WHERE user_id = $1";
        const UNLINK: &str = concat!(
            "DELETE FROM oauth_identities WHERE user_id = $1 AND provider = $2 RETURNING ",
            identity_cols!()
        );
        let mut tx = self.begin(Commit::Durable).await?;
        // The account row first: held, it keeps its password and its set
        // of identities as read here until the delete (every change to
        // either locks it too), so the check and the removal are one step.
        let Some(row) = tx
            .fetch_optional(B::USER_FOR_WRITE, &[Arg::Text(user.as_str())])
            .await?
        else {
            return refuse::<B, _>(tx, Unlinking::NotLinked).await;
        };
        let has_password = rows::user(&row, 0)?.password_hash.is_some();
        let providers = tx
            .fetch_all(OF_USER, &[Arg::Text(user.as_str())])
            .await?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<Vec<String>, StoreError>>()?;
        if !providers.iter().any(|p| p == provider) {
            return refuse::<B, _>(tx, Unlinking::NotLinked).await;
        }
        if !has_password && providers.len() <= 1 {
            return refuse::<B, _>(tx, Unlinking::LastSignInMethod).await;
        }
        let Some(row) = tx
            .fetch_optional(UNLINK, &[Arg::Text(user.as_str()), Arg::Text(provider)])
            .await?
        else {
            // Unreachable while the user row is held.
            return refuse::<B, _>(tx, Unlinking::NotLinked).await;
        };
        let unlinked = rows::identity(&row)?;
        commit::<B>(tx).await?;
        Ok(Unlinking::Unlinked(unlinked))
    }

    async fn touch_identity(
        &self,
        issuer: &str,
        subject: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        const TOUCH: &str =
            "UPDATE oauth_identities SET last_used_at = $3 WHERE issuer = $1 AND subject = $2";
        let args = [Arg::Text(issuer), Arg::Text(subject), Arg::Int(to_db(now))];
        Ok(self
            .write_conn(Commit::Relaxed)
            .await?
            .execute(TOUCH, &args)
            .await?
            > 0)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write_conn(Commit::Relaxed)
            .await?
            .execute(
                "DELETE FROM oauth_states WHERE expires_at <= $1",
                &[Arg::Int(to_db(now))],
            )
            .await
    }
}
