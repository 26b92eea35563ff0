//! [`TokenStore`] over `one_time_tokens`, plus the clean-up step the
//! [`UserStore`](regstack_ports::UserStore) sequences share. Spending
//! happens in `users.rs` (`findOneAndDelete`).
//!
//! `issue` is three steps — insert, delete the user's older tokens of the
//! kind, check that the user still exists (and take the new token back if
//! not) — run to the end in a task of their own (`detached.rs`), so a
//! caller that stops waiting cannot leave the older link live beside the
//! new one, or a token for a deleted user.

use async_trait::async_trait;
use mongodb::bson::doc;
use mongodb::bson::oid::ObjectId;
use regstack_ports::{OneTimeToken, StoreError, Timestamp, TokenHash, TokenKind, TokenStore};

use crate::detached::to_completion;
use crate::docs;
use crate::error::{insert_once, run};
use crate::schema::hint;
use crate::time::to_db;
use crate::MongoStores;

impl MongoStores {
    /// Deletes every reset and email-change token of a user; its revert
    /// tokens stay (a credential change must not kill the owner's way
    /// back).
    pub(crate) async fn delete_credential_tokens_of_user(
        &self,
        user_id: &str,
    ) -> Result<u64, StoreError> {
        Ok(run(self.tokens.delete_many(doc! {
            "user_id": user_id,
            "kind": { "$ne": TokenKind::EmailChangeRevert.as_str() },
        }))
        .await?
        .deleted_count)
    }

    /// Deletes every token of a user, revert tokens included (account
    /// deletion).
    pub(crate) async fn delete_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        Ok(run(self.tokens.delete_many(doc! { "user_id": user_id }))
            .await?
            .deleted_count)
    }

    /// Deletes the user's revert tokens issued at or after `created_at`:
    /// the earliest "this wasn't me" link wins.
    pub(crate) async fn delete_later_reverts(
        &self,
        user_id: &str,
        created_at: Timestamp,
    ) -> Result<u64, StoreError> {
        Ok(run(self.tokens.delete_many(doc! {
            "user_id": user_id,
            "kind": TokenKind::EmailChangeRevert.as_str(),
            "created_at": { "$gte": to_db(created_at) },
        }))
        .await?
        .deleted_count)
    }

    /// [`TokenStore::issue`]'s steps (module doc).
    async fn issue_steps(&self, token: OneTimeToken) -> Result<(), StoreError> {
        // A newer link supersedes the older ones of the same kind. Insert
        // first, then delete the user's tokens of that kind that are
        // *older than this one* — by `_id`, an ObjectId the driver makes
        // increasing within a process (seconds, then a counter). Two
        // concurrent issues therefore never delete each other: the newer
        // survives, the older goes. (Across server instances within one
        // second the order of ObjectIds is arbitrary; then both may stay
        // live until they expire — never neither. Deleting "everything but
        // mine" would
        // let two racers delete each other's token and leave none; deleting
        // first would let both survive.) A crash between the two steps
        // leaves the older link working until its own expiry, as it did
        // before the new one was asked for.
        let id = ObjectId::new();
        let mut document = docs::token_doc(&token);
        document.insert("_id", id);
        // A retried insert is not a duplicate of itself (`insert_once`):
        // the `_id` is ours, so finding it means the insert landed.
        insert_once(&self.tokens, document, doc! { "_id": id }).await?;
        // A revert link supersedes nothing (the port's rule).
        if token.kind != TokenKind::EmailChangeRevert {
            run(self
                .tokens
                .delete_many(doc! {
                    "user_id": token.user_id.as_str(),
                    "kind": token.kind.as_str(),
                    "_id": { "$lt": id },
                })
                .hint(hint::by(hint::USER_TOKENS)))
            .await?;
        }
        // Account deletion deletes the user, then sweeps its tokens
        // (`users.rs`). A token inserted after that sweep finds the user
        // gone here and goes again: nothing of a deleted user stays, and
        // the issue reads as if the deletion had come after it.
        let user = run(self
            .users
            .find_one(doc! { "_id": token.user_id.as_str() })
            .projection(doc! { "_id": 1 }))
        .await?;
        if user.is_none() {
            run(self.tokens.delete_one(doc! { "_id": id })).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl TokenStore for MongoStores {
    async fn issue(&self, token: OneTimeToken) -> Result<(), StoreError> {
        let this = self.clone();
        to_completion(async move { this.issue_steps(token).await }).await
    }

    async fn peek(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<OneTimeToken>, StoreError> {
        run(self
            .tokens
            .find_one(doc! {
                "token_hash": hash.as_str(),
                "kind": kind.as_str(),
                "expires_at": { "$gt": to_db(now) },
            })
            .hint(hint::by(hint::TOKEN_HASH)))
        .await?
        .map(|d| docs::token(&d).map_err(StoreError::from))
        .transpose()
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(run(self
            .tokens
            .delete_many(doc! { "expires_at": { "$lte": to_db(now) } }))
        .await?
        .deleted_count)
    }
}
