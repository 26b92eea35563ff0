//! [`MfaStore`] over `mfa_codes` (challenges), `mfa_totp` and
//! `mfa_backup_codes` (one document per user each), plus the user
//! document's `phone_number`, `is_mfa_enabled` and `must_change_password`.
//!
//! Every decision is one document operation: an attempt is a
//! `findOneAndUpdate` that decrements `attempts_left` only while it is
//! above zero and the challenge is live; finishing is a
//! `findOneAndDelete`; a TOTP step is accepted by an update conditional on
//! the last step being lower; a backup code is spent by `$pull`ing it from
//! the user's array, conditional on its being there. Replacing the backup
//! codes is one document replacement, so the old ones die at once.
//!
//! The factor changes touch three documents (the factor, the user, the
//! sessions) and run to their end in a task of their own
//! ([`to_completion`]). They are ordered so that stopping half-way errs on
//! the side of asking for a second factor and is repaired by a retry:
//! adding a factor writes the factor first and then the user (flag, epoch);
//! removing one writes the user first and then removes the factor. The
//! sessions are revoked last, after the credential epoch moved, so a
//! sign-in racing the change either started its session before the
//! revocation (and loses it) or finds the epoch moved and starts none
//! (`sessions.rs`, `start`). Two factor changes of one user racing each
//! other may leave `is_mfa_enabled` computed from what one of them saw;
//! the next change of that user recomputes it.

use async_trait::async_trait;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use regstack_ports::{
    ChallengeAttempt, Factors, MfaChallenge, MfaStore, RevokeReason, SessionId, StoreError,
    Timestamp, TokenHash, TotpFactor, UserId,
};

use crate::detached::to_completion;
use crate::docs;
use crate::error::{insert_once, run, CorruptRow};
use crate::schema::hint;
use crate::sessions::{live, revocation};
use crate::time::to_db;
use crate::users::epoch_bump;
use crate::MongoStores;

/// A TOTP step as stored (`Int64`). Steps count 30-second periods since
/// 1970, so one beyond `i64::MAX` is never asked for; it saturates rather
/// than failing, which keeps "later than the last step" monotonic.
fn step_to_db(step: u64) -> i64 {
    i64::try_from(step).unwrap_or(i64::MAX)
}

/// The user document's update for a factor change: the flag, `updated_at`
/// and the credential epoch moved strictly forward, as one pipeline stage
/// (`extra` adds the field the change is about).
fn factor_update(is_mfa_enabled: Bson, now: i64, extra: Document) -> Vec<Document> {
    let mut set = doc! {
        "is_mfa_enabled": is_mfa_enabled,
        "updated_at": now,
        "tokens_invalidated_after": epoch_bump(now),
    };
    set.extend(extra);
    vec![doc! { "$set": set }]
}

/// "The user document has a phone", as a pipeline expression (a missing
/// field reads as null).
fn has_phone() -> Bson {
    Bson::Document(doc! { "$ne": [{ "$ifNull": ["$phone_number", Bson::Null] }, Bson::Null] })
}

impl MongoStores {
    /// Deletes every challenge, the TOTP factor and the backup codes of a
    /// user (account deletion).
    pub(crate) async fn delete_factors_of_user(&self, user_id: &str) -> Result<(), StoreError> {
        run(self
            .mfa_codes
            .delete_many(doc! { "user_id": user_id })
            .hint(hint::by(hint::USER_CHALLENGES)))
        .await?;
        run(self.mfa_totp.delete_one(doc! { "_id": user_id })).await?;
        run(self.mfa_backup_codes.delete_one(doc! { "_id": user_id })).await?;
        Ok(())
    }

    async fn has_totp(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(run(self
            .mfa_totp
            .find_one(doc! { "_id": user_id })
            .projection(doc! { "_id": 1 }))
        .await?
        .is_some())
    }

    /// Whether the user document exists (a sequence that wrote something
    /// for a user checks it was not deleted meanwhile).
    pub(crate) async fn user_exists(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(run(self
            .users
            .find_one(doc! { "_id": user_id })
            .projection(doc! { "_id": 1 }))
        .await?
        .is_some())
    }

    /// Applies a factor change's user update to the user matching
    /// `filter`; whether one matched.
    async fn update_user_factors(
        &self,
        filter: Document,
        update: Vec<Document>,
    ) -> Result<bool, StoreError> {
        Ok(run(self
            .users
            .find_one_and_update(filter, update)
            .projection(doc! { "_id": 1 })
            .return_document(ReturnDocument::After))
        .await?
        .is_some())
    }

    /// Revokes every live session of the user but `keep`.
    async fn revoke_others(
        &self,
        user_id: &str,
        keep: Option<&SessionId>,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut filter = live(now);
        filter.insert("user_id", user_id);
        if let Some(keep) = keep {
            filter.insert("_id", doc! { "$ne": keep.as_str() });
        }
        run(self
            .sessions
            .update_many(filter, revocation(RevokeReason::FactorChanged, now))
            .hint(hint::by(hint::USER_SESSIONS)))
        .await?;
        Ok(())
    }

    /// Replaces the user's backup codes with `codes` in one write.
    async fn put_codes(&self, user_id: &str, codes: &[TokenHash]) -> Result<(), StoreError> {
        let mut unique: Vec<&str> = codes.iter().map(TokenHash::as_str).collect();
        unique.sort_unstable();
        unique.dedup();
        run(self
            .mfa_backup_codes
            .replace_one(
                doc! { "_id": user_id },
                doc! { "_id": user_id, "codes": unique },
            )
            .upsert(true))
        .await?;
        Ok(())
    }

    /// [`MfaStore::open_challenge`]'s steps, as `TokenStore::issue`'s
    /// (`tokens.rs`): insert, delete the user's *older* challenges of the
    /// kind (ordered by `opened`, an ObjectId, so two racing opens never
    /// delete each other), then take the new one back if the user is gone.
    async fn open_steps(&self, c: MfaChallenge) -> Result<(), StoreError> {
        let opened = ObjectId::new();
        let mut document = docs::challenge_doc(&c);
        document.insert("opened", opened);
        let mine = doc! { "_id": c.id.as_str(), "opened": opened };
        insert_once(&self.mfa_codes, document, mine).await?;
        run(self
            .mfa_codes
            .delete_many(doc! {
                "user_id": c.user_id.as_str(),
                "kind": c.kind.as_str(),
                "opened": { "$lt": opened },
            })
            .hint(hint::by(hint::USER_CHALLENGES)))
        .await?;
        if !self.user_exists(c.user_id.as_str()).await? {
            run(self.mfa_codes.delete_one(doc! { "_id": c.id.as_str() })).await?;
        }
        Ok(())
    }

    async fn enable_totp_steps(
        &self,
        user: UserId,
        sealed_secret: String,
        codes: Vec<TokenHash>,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, now) = (user.as_str(), to_db(now));
        if !self.user_exists(id).await? {
            return Ok(false);
        }
        // The factor first, the flag after (module doc).
        run(self
            .mfa_totp
            .replace_one(
                doc! { "_id": id },
                doc! {
                    "_id": id,
                    "sealed_secret": sealed_secret,
                    "last_step": Bson::Null,
                    "created_at": now,
                },
            )
            .upsert(true))
        .await?;
        self.put_codes(id, &codes).await?;
        let update = factor_update(Bson::Boolean(true), now, Document::new());
        if !self.update_user_factors(doc! { "_id": id }, update).await? {
            // Deleted meanwhile: take back what this wrote.
            self.delete_factors_of_user(id).await?;
            return Ok(false);
        }
        self.revoke_others(id, keep.as_ref(), now).await?;
        Ok(true)
    }

    async fn disable_totp_steps(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, now) = (user.as_str(), to_db(now));
        if !self.has_totp(id).await? {
            return Ok(false);
        }
        // The flag first (only a phone is left), the factor after.
        let update = factor_update(has_phone(), now, Document::new());
        let user_doc = run(self
            .users
            .find_one_and_update(doc! { "_id": id }, update)
            .projection(doc! { "phone_number": 1 })
            .return_document(ReturnDocument::After))
        .await?;
        run(self.mfa_totp.delete_one(doc! { "_id": id })).await?;
        let phone = match &user_doc {
            Some(d) => docs::opt_string(d, "phone_number")?,
            None => None,
        };
        if phone.is_none() {
            run(self.mfa_backup_codes.delete_one(doc! { "_id": id })).await?;
        }
        self.revoke_others(id, keep.as_ref(), now).await?;
        Ok(true)
    }

    async fn set_phone_steps(
        &self,
        user: UserId,
        phone: String,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, now) = (user.as_str(), to_db(now));
        let update = factor_update(
            Bson::Boolean(true),
            now,
            doc! { "phone_number": { "$literal": phone } },
        );
        if !self.update_user_factors(doc! { "_id": id }, update).await? {
            return Ok(false);
        }
        self.revoke_others(id, keep.as_ref(), now).await?;
        Ok(true)
    }

    async fn clear_phone_steps(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, now) = (user.as_str(), to_db(now));
        let has_totp = self.has_totp(id).await?;
        let update = factor_update(
            Bson::Boolean(has_totp),
            now,
            doc! { "phone_number": Bson::Null },
        );
        let filter = doc! { "_id": id, "phone_number": { "$ne": Bson::Null } };
        if !self.update_user_factors(filter, update).await? {
            return Ok(false);
        }
        if !has_totp {
            run(self.mfa_backup_codes.delete_one(doc! { "_id": id })).await?;
        }
        self.revoke_others(id, keep.as_ref(), now).await?;
        Ok(true)
    }

    async fn replace_codes_steps(
        &self,
        user: UserId,
        codes: Vec<TokenHash>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = user.as_str();
        if !self.user_exists(id).await? {
            return Ok(false);
        }
        self.put_codes(id, &codes).await?;
        let touched = run(self.users.update_one(
            doc! { "_id": id },
            doc! { "$set": { "updated_at": to_db(now) } },
        ))
        .await?;
        if touched.matched_count == 0 {
            // Deleted meanwhile: take back what this wrote.
            run(self.mfa_backup_codes.delete_one(doc! { "_id": id })).await?;
            return Ok(false);
        }
        Ok(true)
    }
}

#[async_trait]
impl MfaStore for MongoStores {
    async fn open_challenge(&self, challenge: MfaChallenge) -> Result<(), StoreError> {
        let this = self.clone();
        to_completion(async move { this.open_steps(challenge).await }).await
    }

    async fn attempt_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<ChallengeAttempt, StoreError> {
        let now = to_db(now);
        let counted = run(self
            .mfa_codes
            .find_one_and_update(
                doc! {
                    "_id": id.as_str(),
                    "expires_at": { "$gt": now },
                    "attempts_left": { "$gt": 0_i64 },
                },
                doc! { "$inc": { "attempts_left": -1_i64 } },
            )
            .return_document(ReturnDocument::After)
            .hint(hint::by(hint::ID)))
        .await?;
        if let Some(d) = counted {
            return Ok(ChallengeAttempt::Counted(docs::challenge(&d)?));
        }
        // Nothing ever raises `attempts_left`: a live challenge at zero
        // stays there until one caller deletes it.
        let exhausted = run(self
            .mfa_codes
            .find_one_and_delete(doc! {
                "_id": id.as_str(),
                "expires_at": { "$gt": now },
                "attempts_left": { "$lte": 0_i64 },
            })
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(match exhausted {
            Some(_) => ChallengeAttempt::Exhausted,
            None => ChallengeAttempt::Unknown,
        })
    }

    async fn finish_challenge(
        &self,
        id: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        run(self
            .mfa_codes
            .find_one_and_delete(doc! { "_id": id.as_str(), "expires_at": { "$gt": to_db(now) } })
            .hint(hint::by(hint::ID)))
        .await?
        .map(|d| docs::challenge(&d).map_err(StoreError::from))
        .transpose()
    }

    async fn factors(&self, user: &UserId) -> Result<Factors, StoreError> {
        let id = user.as_str();
        let Some(u) = run(self
            .users
            .find_one(doc! { "_id": id })
            .projection(doc! { "phone_number": 1 }))
        .await?
        else {
            return Ok(Factors::default());
        };
        let totp = run(self.mfa_totp.find_one(doc! { "_id": id }))
            .await?
            .map(|d| -> Result<TotpFactor, CorruptRow> {
                Ok(TotpFactor {
                    sealed_secret: docs::string(&d, "sealed_secret")?.to_owned(),
                    last_step: docs::opt_int(&d, "last_step")?
                        .map(|s| u64::try_from(s).map_err(|_| CorruptRow("last_step")))
                        .transpose()?,
                    created_at: docs::instant(&d, "created_at")?,
                })
            })
            .transpose()?;
        let codes = run(self.mfa_backup_codes.find_one(doc! { "_id": id }))
            .await?
            .map(|d| match d.get_array("codes") {
                Ok(codes) => Ok(u32::try_from(codes.len()).unwrap_or(u32::MAX)),
                Err(_) => Err(CorruptRow("codes")),
            })
            .transpose()?
            .unwrap_or(0);
        Ok(Factors {
            totp,
            phone_number: docs::opt_string(&u, "phone_number")?,
            backup_codes_left: codes,
        })
    }

    async fn accept_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        let step = step_to_db(step);
        let done = run(self
            .mfa_totp
            .update_one(
                doc! {
                    "_id": user.as_str(),
                    "$or": [{ "last_step": Bson::Null }, { "last_step": { "$lt": step } }],
                },
                doc! { "$set": { "last_step": step } },
            )
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(done.modified_count > 0)
    }

    async fn spend_backup_code(&self, user: &UserId, hash: &TokenHash) -> Result<bool, StoreError> {
        let done = run(self
            .mfa_backup_codes
            .update_one(
                doc! { "_id": user.as_str(), "codes": hash.as_str() },
                doc! { "$pull": { "codes": hash.as_str() } },
            )
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(done.modified_count > 0)
    }

    async fn enable_totp<'k>(
        &self,
        user: &UserId,
        sealed_secret: &str,
        backup_codes: &[TokenHash],
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let this = self.clone();
        let (user, secret, codes) = (
            user.clone(),
            sealed_secret.to_owned(),
            backup_codes.to_vec(),
        );
        let keep = keep.cloned();
        to_completion(async move { this.enable_totp_steps(user, secret, codes, keep, now).await })
            .await
    }

    async fn disable_totp<'k>(
        &self,
        user: &UserId,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (this, user, keep) = (self.clone(), user.clone(), keep.cloned());
        to_completion(async move { this.disable_totp_steps(user, keep, now).await }).await
    }

    async fn set_phone<'k>(
        &self,
        user: &UserId,
        phone: &str,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (this, user, phone, keep) =
            (self.clone(), user.clone(), phone.to_owned(), keep.cloned());
        to_completion(async move { this.set_phone_steps(user, phone, keep, now).await }).await
    }

    async fn clear_phone<'k>(
        &self,
        user: &UserId,
        keep: Option<&'k SessionId>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (this, user, keep) = (self.clone(), user.clone(), keep.cloned());
        to_completion(async move { this.clear_phone_steps(user, keep, now).await }).await
    }

    async fn replace_backup_codes(
        &self,
        user: &UserId,
        codes: &[TokenHash],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (this, user, codes) = (self.clone(), user.clone(), codes.to_vec());
        to_completion(async move { this.replace_codes_steps(user, codes, now).await }).await
    }

    async fn set_must_change_password(
        &self,
        user: &UserId,
        value: bool,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = run(self.users.update_one(
            doc! { "_id": user.as_str() },
            doc! { "$set": { "must_change_password": value, "updated_at": to_db(now) } },
        ))
        .await?;
        Ok(done.matched_count > 0)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(run(self
            .mfa_codes
            .delete_many(doc! { "expires_at": { "$lte": to_db(now) } }))
        .await?
        .deleted_count)
    }
}
