//! [`PendingStore`] over `pending_registrations`.
//!
//! `promote` is two documents (delete the pending row, insert the user)
//! without a transaction. The `findOneAndDelete` on the token decides the
//! winner; the insert against the unique email index decides whether the
//! address is still free. If the insert fails for any other reason the
//! pending row is put back as it was, so the link works again. Only a
//! process crash between the two steps loses the registration (the link
//! reads as used; the address is still free, so registering again works).
//! A caller that stops waiting (the request deadline) does not stop it:
//! the sequence runs in a task of its own (`detached.rs`).

use async_trait::async_trait;
use mongodb::bson::doc;
use mongodb::options::ReturnDocument;
use regstack_ports::{
    Email, NewUser, PasswordHash, PendingRegistration, PendingStore, Promotion, StoreError,
    Timestamp, TokenHash, UserId,
};

use crate::detached::to_completion;
use crate::docs;
use crate::error::{insert_once, run};
use crate::schema::hint;
use crate::time::{to_db, ttl_date};
use crate::MongoStores;

/// How often an upsert that lost a race to a concurrent insert of the same
/// key is retried. MongoDB retries such upserts itself; this covers servers
/// that do not.
pub(crate) const UPSERT_RETRIES: usize = 3;

impl MongoStores {
    /// [`PendingStore::promote`]'s and [`PendingStore::promote_email`]'s
    /// two steps (module doc); `key` names the pending row by its token's
    /// hash or its address, with the index `index`.
    async fn promote_steps(
        &self,
        key: (&'static str, &str),
        index: &'static str,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        // The decision: of any number of callers with this link (or this
        // address), one gets the document; the others find nothing to
        // delete.
        let mut filter = doc! { "expires_at": { "$gt": to_db(now) } };
        filter.insert(key.0, key.1);
        let taken = run(self
            .pending
            .find_one_and_delete(filter)
            .hint(hint::by(index)))
        .await?;
        let Some(row) = taken else {
            return Ok(Promotion::InvalidToken);
        };
        let pending = docs::pending(&row)?;
        let user = NewUser {
            id: id.clone(),
            email: pending.email,
            password_hash: Some(pending.password_hash),
            full_name: pending.full_name,
            is_verified: true,
            is_superuser: false,
            created_at: now,
        }
        .into_user();
        // A retried insert is not a duplicate of itself (`insert_once`):
        // the user is ours if it has this id.
        let mine = doc! { "_id": id.as_str() };
        match insert_once(&self.users, docs::user_doc(&user), mine).await {
            Ok(_) => Ok(Promotion::Promoted(user)),
            // The address is an account's; the pending row stays deleted.
            // If it is the unverified account this row was made for (same
            // password hash), that one is verified, in one conditional
            // update.
            Err(StoreError::Conflict("email")) => {
                let verified = run(self
                    .users
                    .find_one_and_update(
                        doc! {
                            "email": user.email.as_str(),
                            "is_verified": false,
                            "hashed_password": user.password_hash.as_ref().map(PasswordHash::as_str),
                        },
                        doc! { "$set": { "is_verified": true, "updated_at": to_db(now) } },
                    )
                    .return_document(ReturnDocument::After)
                    .hint(hint::by(hint::EMAIL)))
                .await?;
                match verified {
                    Some(d) => Ok(Promotion::Promoted(docs::user(&d)?)),
                    None => Ok(Promotion::EmailTaken),
                }
            }
            Err(e) => {
                // Compensation: put the row back as it was (same `_id`,
                // same token), so the link works again. If a newer
                // registration for the address arrived meanwhile, the
                // unique index keeps the newer one and this is dropped.
                if let Err(restore) = run(self.pending.insert_one(row)).await {
                    tracing::warn!(
                        error = %restore,
                        "could not restore a pending registration after a failed promotion"
                    );
                }
                Err(e)
            }
        }
    }

    /// Deletes the pending registration for an address (account deletion).
    pub(crate) async fn delete_pending_for_email(&self, email: &str) -> Result<u64, StoreError> {
        Ok(run(self.pending.delete_many(doc! { "email": email }))
            .await?
            .deleted_count)
    }
}

#[async_trait]
impl PendingStore for MongoStores {
    async fn put(&self, p: PendingRegistration) -> Result<bool, StoreError> {
        // One replace-or-insert that matches only an expired row for the
        // address: a live row is not matched, so the upsert tries to insert
        // beside it and the unique index on `email` refuses — the live row
        // stays exactly as it was. The same refusal settles two concurrent
        // puts for a new address: one inserts, the other is told `false`.
        let result = run(self
            .pending
            .replace_one(
                doc! {
                    "email": p.email.as_str(),
                    "expires_at": { "$lte": to_db(p.created_at) },
                },
                docs::pending_doc(&p),
            )
            .upsert(true))
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict("email")) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn find_by_email(
        &self,
        email: &Email,
        now: Timestamp,
    ) -> Result<Option<PendingRegistration>, StoreError> {
        run(self
            .pending
            .find_one(doc! {
                "email": email.as_str(),
                "expires_at": { "$gt": to_db(now) },
            })
            .hint(hint::by(hint::EMAIL)))
        .await?
        .map(|d| docs::pending(&d).map_err(StoreError::from))
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
        let expires_at = to_db(expires_at);
        let done = run(self
            .pending
            .update_one(
                doc! { "email": email.as_str(), "expires_at": { "$gt": to_db(now) } },
                doc! { "$set": {
                    "token_hash": token.as_str(),
                    "expires_at": expires_at,
                    "expire_at": ttl_date(expires_at),
                } },
            )
            .hint(hint::by(hint::EMAIL)))
        .await?;
        Ok(done.matched_count > 0)
    }

    async fn promote(
        &self,
        token: &TokenHash,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        let (this, token, id) = (self.clone(), token.clone(), id.clone());
        to_completion(async move {
            this.promote_steps(("token_hash", token.as_str()), hint::TOKEN_HASH, &id, now)
                .await
        })
        .await
    }

    async fn promote_email(
        &self,
        email: &Email,
        id: &UserId,
        now: Timestamp,
    ) -> Result<Promotion, StoreError> {
        let (this, email, id) = (self.clone(), email.clone(), id.clone());
        to_completion(async move {
            this.promote_steps(("email", email.as_str()), hint::EMAIL, &id, now)
                .await
        })
        .await
    }

    async fn count_live(&self, now: Timestamp) -> Result<u64, StoreError> {
        run(self
            .pending
            .count_documents(doc! { "expires_at": { "$gt": to_db(now) } }))
        .await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(run(self
            .pending
            .delete_many(doc! { "expires_at": { "$lte": to_db(now) } }))
        .await?
        .deleted_count)
    }
}
