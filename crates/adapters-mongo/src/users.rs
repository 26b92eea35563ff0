//! [`UserStore`] over `users`, plus the account-level changes that touch
//! sessions, tokens and counters.
//!
//! Without transactions an account-level change is a sequence of document
//! operations. Each sequence here keeps one rule: **the decision first, the
//! invalidations next, the credential switch last.**
//! - The decision is the one operation that picks a winner (spending a
//!   token with `findOneAndDelete`); everything after it runs for that
//!   winner only.
//! - Invalidations (revoke sessions, burn tokens, clear the lockout
//!   counter) only take things away, so running them early or twice is
//!   harmless.
//! - The switch (new password hash, new address) comes last, so a crash or
//!   an error before it leaves the old credentials working and the user
//!   signed out — never a new credential beside live old sessions. The
//!   switch also moves the credential epoch ([`epoch_bump`]) in the same
//!   document update, and the sessions are revoked once more after it: a
//!   sign-in that checked the old credential either started its session
//!   before the switch (and that second revocation ends it) or finds the
//!   epoch moved and gets no session (`sessions.rs`, `start`).
//! - If a step after the decision fails with an error, the spent token is
//!   put back (the same document, so the same link) before the error is
//!   returned, and the user can simply try again. Only a process crash in
//!   that window leaves the link spent; the user then asks for a new one.
//! - Each sequence runs to its end once started, even if the caller stops
//!   waiting (the request deadline drops its future): it runs in a task of
//!   its own ([`to_completion`]).
//! - Account deletion removes what belongs to the user, then the user, then
//!   sweeps sessions, tokens, factors, OAuth identities and flows, and
//!   sign-in attempts once more: a sign-in, a link issued or an identity
//!   linked for the user while the deletion ran either wrote before that
//!   sweep (and is swept) or finds the user gone (and takes back what it
//!   wrote: `sessions.rs`, `start`; `tokens.rs`, `issue`; `oauth.rs`,
//!   `link_identity` and `begin`).

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use regstack_ports::{
    AdminChange, Email, EmailChangeOutcome, NewUser, PasswordHash, RevokeReason, StoreError,
    Timestamp, TokenHash, TokenKind, User, UserCounts, UserCursor, UserFilter, UserId, UserStore,
};

use crate::detached::to_completion;
use crate::docs;
use crate::error::{run, CorruptRow};
use crate::schema::hint;
use crate::time::to_db;
use crate::MongoStores;

/// The credential epoch's move, as an update-pipeline expression:
/// `tokens_invalidated_after` becomes `now`, or one microsecond past its
/// old value if that is not before `now` — strictly forward, so a sign-in
/// holding the old value can never match it again (a missing or null value
/// compares below any number).
pub(crate) fn epoch_bump(now: i64) -> Document {
    doc! { "$cond": [
        { "$gte": ["$tokens_invalidated_after", now] },
        { "$add": ["$tokens_invalidated_after", 1_i64] },
        now,
    ] }
}

/// A [`UserFilter`] as a query document. The address part is matched
/// literally: every character a regular expression would read is escaped.
fn filter_doc(f: &UserFilter) -> Document {
    let mut q = doc! {};
    if let Some(part) = &f.email_contains {
        let mut pattern = String::new();
        for c in part.chars() {
            if "\\^$.|?*+()[]{}-/".contains(c) {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        q.insert("email", doc! { "$regex": pattern });
    }
    for (field, want) in [
        ("is_active", f.is_active),
        ("is_verified", f.is_verified),
        ("is_superuser", f.is_superuser),
        ("is_mfa_enabled", f.has_mfa),
    ] {
        if let Some(want) = want {
            q.insert(field, want);
        }
    }
    q
}

impl MongoStores {
    /// Loads a user document by id.
    pub(crate) async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        run(self.users.find_one(doc! { "_id": id }))
            .await?
            .map(|d| docs::user(&d).map_err(StoreError::from))
            .transpose()
    }

    /// Revokes the user's live sessions with `reason`, deletes its
    /// outstanding reset and email-change tokens, and forgets the sign-in
    /// attempts against `emails`: the invalidations every credential change
    /// shares. Each is idempotent.
    async fn invalidate_credentials(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
        emails: &[&Email],
    ) -> Result<(), StoreError> {
        self.revoke_live_of_user(user.as_str(), reason, now).await?;
        self.delete_credential_tokens_of_user(user.as_str()).await?;
        for email in emails {
            self.clear_attempts(email.as_str()).await?;
        }
        Ok(())
    }

    /// The switch: sets the new hash, moves the credential epoch strictly
    /// forward and `updated_at` to `now`, then revokes the sessions that
    /// sign-ins with the old password started meanwhile. `None` if the user
    /// is gone.
    async fn set_password(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let now_db = to_db(now);
        let switched = run(self
            .users
            .find_one_and_update(
                doc! { "_id": id.as_str() },
                vec![doc! { "$set": {
                    // `$literal`: an Argon2 hash starts with `$`, which a
                    // pipeline would read as a field path.
                    "hashed_password": { "$literal": new.as_str() },
                    "must_change_password": false,
                    "tokens_invalidated_after": epoch_bump(now_db),
                    "updated_at": now_db,
                } }],
            )
            .return_document(ReturnDocument::After))
        .await?
        .map(|d| docs::user(&d).map_err(StoreError::from))
        .transpose()?;
        if switched.is_some() {
            self.revoke_live_of_user(id.as_str(), reason, now).await?;
        }
        Ok(switched)
    }

    /// Spends the live token of `kind` with this hash: one
    /// `findOneAndDelete`, so of any number of callers exactly one gets the
    /// document. Returns it raw, so [`Self::restore_token`] can put back
    /// exactly what was taken.
    async fn spend_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: Timestamp,
    ) -> Result<Option<Document>, StoreError> {
        run(self
            .tokens
            .find_one_and_delete(doc! {
                "token_hash": hash.as_str(),
                "kind": kind.as_str(),
                "expires_at": { "$gt": to_db(now) },
            })
            .hint(hint::by(hint::TOKEN_HASH)))
        .await
    }

    /// Compensation: a step after [`Self::spend_token`] failed, so the
    /// token goes back, unchanged, and the link works again. Best effort —
    /// the database may be the thing that failed — and a failure here is
    /// logged, not returned: the caller reports the original error.
    async fn restore_token(&self, spent: Document) {
        if let Err(e) = run(self.tokens.insert_one(spent)).await {
            tracing::warn!(
                error = %e,
                "could not restore a spent one-time token after a failed step; \
                 the user will need a new link"
            );
        }
    }
}

/// Runs `steps` for the winner of a spent token; on error puts the token
/// back first.
async fn or_restore<T>(
    stores: &MongoStores,
    spent: &Document,
    steps: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match steps.await {
        Ok(v) => Ok(v),
        Err(e) => {
            stores.restore_token(spent.clone()).await;
            Err(e)
        }
    }
}

#[async_trait]
impl UserStore for MongoStores {
    async fn insert(&self, user: NewUser) -> Result<User, StoreError> {
        let user = user.into_user();
        // The unique index on `email` decides a race: one insert wins, the
        // others get Conflict("email").
        run(self.users.insert_one(docs::user_doc(&user))).await?;
        Ok(user)
    }

    async fn get(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        self.user_by_id(id.as_str()).await
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        run(self.users.find_one(doc! { "email": email.as_str() }))
            .await?
            .map(|d| docs::user(&d).map_err(StoreError::from))
            .transpose()
    }

    async fn update_full_name(
        &self,
        id: &UserId,
        full_name: Option<String>,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        run(self
            .users
            .find_one_and_update(
                doc! { "_id": id.as_str() },
                doc! { "$set": { "full_name": full_name, "updated_at": to_db(now) } },
            )
            .return_document(ReturnDocument::After))
        .await?
        .map(|d| docs::user(&d).map_err(StoreError::from))
        .transpose()
    }

    async fn upgrade_password_hash(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        // Compare-and-swap in the filter: a password change that landed
        // since the caller read `expected` wins, and this write matches
        // nothing.
        let done = run(self
            .users
            .update_one(
                doc! { "_id": id.as_str(), "hashed_password": expected.as_str() },
                doc! { "$set": { "hashed_password": new.as_str() } },
            )
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(done.matched_count > 0)
    }

    async fn change_password(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let (this, id, new) = (self.clone(), id.clone(), new.clone());
        to_completion(async move { this.change_password_steps(&id, &new, reason, now).await }).await
    }

    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        new: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let (this, token, new) = (self.clone(), token.clone(), new.clone());
        to_completion(async move { this.complete_password_reset_steps(&token, &new, now).await })
            .await
    }

    async fn confirm_email_change(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<EmailChangeOutcome, StoreError> {
        let (this, token) = (self.clone(), token.clone());
        to_completion(async move { this.confirm_email_change_steps(&token, now).await }).await
    }

    async fn revert_email_change(
        &self,
        token: &TokenHash,
        lockout: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let (this, token, lockout) = (self.clone(), token.clone(), lockout.clone());
        to_completion(async move { this.revert_email_change_steps(&token, &lockout, now).await })
            .await
    }

    async fn delete_account(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let (this, id) = (self.clone(), id.clone());
        to_completion(async move { this.delete_account_steps(&id).await }).await
    }

    async fn count_users(&self) -> Result<UserCounts, StoreError> {
        let count = |filter: Document| async move { run(self.users.count_documents(filter)).await };
        Ok(UserCounts {
            total: count(doc! {}).await?,
            active: count(doc! { "is_active": true }).await?,
            verified: count(doc! { "is_verified": true }).await?,
            superusers: count(doc! { "is_superuser": true }).await?,
        })
    }

    async fn list_users(&self, skip: u64, limit: u64) -> Result<Vec<User>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found: Vec<Document> = run(async {
            self.users
                .find(doc! {})
                .sort(doc! { "created_at": -1, "_id": -1 })
                .skip(skip)
                .limit(limit)
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await?;
        found
            .iter()
            .map(|d| docs::user(d).map_err(StoreError::from))
            .collect()
    }

    async fn search_users<'c>(
        &self,
        filter: &UserFilter,
        after: Option<&'c UserCursor>,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<User>, StoreError> {
        let mut query = filter_doc(filter);
        if let Some(c) = after {
            let at = to_db(c.created_at);
            query.insert(
                "$or",
                vec![
                    doc! { "created_at": { "$lt": at } },
                    doc! { "created_at": at, "_id": { "$lt": c.id.as_str() } },
                ],
            );
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found: Vec<Document> = run(async {
            self.users
                .find(query)
                .sort(doc! { "created_at": -1, "_id": -1 })
                .skip(skip)
                .limit(limit)
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await?;
        found
            .iter()
            .map(|d| docs::user(d).map_err(StoreError::from))
            .collect()
    }

    async fn count_matching(&self, filter: &UserFilter) -> Result<u64, StoreError> {
        run(self.users.count_documents(filter_doc(filter))).await
    }

    async fn admin_update(
        &self,
        id: &UserId,
        change: &AdminChange,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        if change.is_empty() {
            return self.user_by_id(id.as_str()).await;
        }
        let (this, id, change) = (self.clone(), id.clone(), change.clone());
        to_completion(async move { this.admin_update_steps(&id, &change, now).await }).await
    }

    async fn reenable_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        // One conditional update per document: a disabling written
        // meanwhile (without end, or a later one) no longer matches.
        let now_db = to_db(now);
        let done = run(self.users.update_many(
            doc! { "disabled_until": { "$ne": Bson::Null, "$lte": now_db }, "is_active": false },
            doc! { "$set": {
                "is_active": true,
                "disabled_reason": Bson::Null,
                "disabled_until": Bson::Null,
                "updated_at": now_db,
            } },
        ))
        .await?;
        Ok(done.modified_count)
    }
}

/// The multi-step sequences behind [`UserStore`], each run by its trait
/// method through [`to_completion`].
impl MongoStores {
    /// The flags in one document update; disabling moves the credential
    /// epoch in that same update (the switch), then revokes every live
    /// session. A session started before the switch is revoked by that
    /// sweep; one whose start comes after it finds the epoch moved and
    /// takes itself back (`sessions.rs`, `start`). An error before the
    /// sweep leaves a disabled account, which no request authenticates as.
    async fn admin_update_steps(
        &self,
        id: &UserId,
        change: &AdminChange,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let now_db = to_db(now);
        let mut set = doc! { "updated_at": now_db };
        if let Some(active) = change.is_active {
            set.insert("is_active", active);
        }
        if let Some(superuser) = change.is_superuser {
            set.insert("is_superuser", superuser);
        }
        if let Some(name) = &change.full_name {
            // `$literal`: a name may start with `$`, which a pipeline would
            // read as a field path.
            set.insert("full_name", doc! { "$literal": name.as_str() });
        }
        if change.is_active.is_some() {
            // A disabling states its reason and end; an enabling clears
            // them. `$literal`: a reason may start with `$`.
            let (reason, until) = change.disabled_fields((None, None));
            set.insert(
                "disabled_reason",
                reason.map_or(Bson::Null, |r| doc! { "$literal": r }.into()),
            );
            set.insert("disabled_until", docs::opt_micros(until));
        }
        let disabling = change.is_active == Some(false);
        if disabling {
            set.insert("tokens_invalidated_after", epoch_bump(now_db));
        }
        let updated = run(self
            .users
            .find_one_and_update(doc! { "_id": id.as_str() }, vec![doc! { "$set": set }])
            .return_document(ReturnDocument::After))
        .await?
        .map(|d| docs::user(&d).map_err(StoreError::from))
        .transpose()?;
        if updated.is_some() && disabling {
            self.revoke_live_of_user(id.as_str(), RevokeReason::Disabled, now)
                .await?;
        }
        Ok(updated)
    }

    async fn change_password_steps(
        &self,
        id: &UserId,
        new: &PasswordHash,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        let Some(user) = self.user_by_id(id.as_str()).await? else {
            return Ok(None);
        };
        // Invalidations first, the switch last (module doc): an error in
        // between leaves the old password and the user signed out.
        self.invalidate_credentials(id, reason, now, &[&user.email])
            .await?;
        self.set_password(id, new, reason, now).await
    }

    async fn complete_password_reset_steps(
        &self,
        token: &TokenHash,
        new: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        // The decision: of any number of callers with this link, one gets
        // the document.
        let Some(spent) = self
            .spend_token(TokenKind::PasswordReset, token, now)
            .await?
        else {
            return Ok(None);
        };
        or_restore(self, &spent, async {
            let user_id = docs::user_id(&spent, "user_id")?;
            // A deleted user takes its tokens along; if one was left over,
            // it is spent and nothing else happens.
            let Some(user) = self.user_by_id(user_id.as_str()).await? else {
                return Ok(None);
            };
            self.invalidate_credentials(&user_id, RevokeReason::PasswordReset, now, &[&user.email])
                .await?;
            self.set_password(&user_id, new, RevokeReason::PasswordReset, now)
                .await
        })
        .await
    }

    async fn confirm_email_change_steps(
        &self,
        token: &TokenHash,
        now: Timestamp,
    ) -> Result<EmailChangeOutcome, StoreError> {
        let Some(spent) = self.spend_token(TokenKind::EmailChange, token, now).await? else {
            return Ok(EmailChangeOutcome::InvalidToken);
        };
        or_restore(self, &spent, async {
            let record = docs::token(&spent)?;
            let new_email = record
                .new_email
                .ok_or(CorruptRow("email-change token without an address"))?;
            let Some(old) = self.user_by_id(record.user_id.as_str()).await? else {
                return Ok(EmailChangeOutcome::InvalidToken);
            };
            // Taken already: the token stays spent and nothing else
            // changes (no session is revoked for a change that cannot
            // happen).
            let holder = run(self
                .users
                .find_one(doc! {
                    "email": new_email.as_str(),
                    "_id": { "$ne": old.id.as_str() },
                })
                .hint(hint::by(hint::EMAIL)))
            .await?;
            if holder.is_some() {
                return Ok(EmailChangeOutcome::EmailTaken);
            }
            self.invalidate_credentials(
                &old.id,
                RevokeReason::EmailChanged,
                now,
                &[&old.email, &new_email],
            )
            .await?;
            // The switch, against the unique index: if the address was
            // taken between the check above and here, the index refuses
            // and the answer is EmailTaken (the sessions revoked on the way
            // stay revoked — signing in again is the only cost).
            let now_db = to_db(now);
            let switched = run(self
                .users
                .find_one_and_update(
                    doc! { "_id": old.id.as_str() },
                    vec![doc! { "$set": {
                        "email": { "$literal": new_email.as_str() },
                        "tokens_invalidated_after": epoch_bump(now_db),
                        "updated_at": now_db,
                    } }],
                )
                .return_document(ReturnDocument::After))
            .await;
            match switched {
                Ok(Some(d)) => {
                    let user = docs::user(&d)?;
                    // Sessions a sign-in started between the first
                    // revocation and the switch (module doc).
                    self.revoke_live_of_user(user.id.as_str(), RevokeReason::EmailChanged, now)
                        .await?;
                    Ok(EmailChangeOutcome::Changed(user))
                }
                Ok(None) => Ok(EmailChangeOutcome::InvalidToken),
                Err(StoreError::Conflict("email")) => Ok(EmailChangeOutcome::EmailTaken),
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn revert_email_change_steps(
        &self,
        token: &TokenHash,
        lockout: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        // The decision: of any number of callers with this link, one gets
        // the document.
        let Some(spent) = self
            .spend_token(TokenKind::EmailChangeRevert, token, now)
            .await?
        else {
            return Ok(None);
        };
        or_restore(self, &spent, async {
            let record = docs::token(&spent)?;
            self.delete_later_reverts(record.user_id.as_str(), record.created_at)
                .await?;
            let Some(before) = self.user_by_id(record.user_id.as_str()).await? else {
                return Ok(None);
            };
            // Invalidations first, the switches last (module doc).
            self.invalidate_credentials(
                &before.id,
                RevokeReason::EmailChanged,
                now,
                &[&before.email],
            )
            .await?;
            if let Some(restore) = record.new_email.filter(|e| *e != before.email) {
                let holder = run(self
                    .users
                    .find_one(doc! {
                        "email": restore.as_str(),
                        "_id": { "$ne": before.id.as_str() },
                    })
                    .hint(hint::by(hint::EMAIL)))
                .await?;
                if holder.is_none() {
                    let switched = run(self.users.update_one(
                        doc! { "_id": before.id.as_str() },
                        vec![doc! { "$set": { "email": { "$literal": restore.as_str() } } }],
                    ))
                    .await;
                    match switched {
                        // Taken meanwhile: the address stays.
                        Ok(_) | Err(StoreError::Conflict("email")) => {}
                        Err(e) => return Err(e),
                    }
                    self.clear_attempts(restore.as_str()).await?;
                }
            }
            self.set_password(&before.id, lockout, RevokeReason::EmailChanged, now)
                .await
        })
        .await
    }

    async fn delete_account_steps(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let Some(user) = self.user_by_id(id.as_str()).await? else {
            return Ok(None);
        };
        // Everything that belongs to the user first, the user last: a crash
        // in between leaves an existing account that is merely signed out,
        // and deleting again finishes the job. (The other order would leave
        // rows keyed by an address someone could register anew.)
        self.delete_sessions_of_user(user.id.as_str()).await?;
        self.delete_tokens_of_user(user.id.as_str()).await?;
        self.delete_attempts(user.email.as_str()).await?;
        self.delete_pending_for_email(user.email.as_str()).await?;
        self.delete_rate_limits_for_email(user.email.as_str())
            .await?;
        self.delete_factors_of_user(user.id.as_str()).await?;
        self.delete_oauth_of_user(user.id.as_str()).await?;
        self.forget_invites_of(user.id.as_str(), user.email.as_str())
            .await?;
        let removed = run(self
            .users
            .find_one_and_delete(doc! { "_id": user.id.as_str() }))
        .await?
        .map(|d| docs::user(&d).map_err(StoreError::from))
        .transpose()?;
        // The sweep after: a sign-in or a link issue that raced this
        // deletion wrote before now (and goes here) or finds the user gone
        // and takes back what it wrote (module doc).
        self.delete_sessions_of_user(user.id.as_str()).await?;
        self.delete_tokens_of_user(user.id.as_str()).await?;
        self.delete_factors_of_user(user.id.as_str()).await?;
        self.delete_oauth_of_user(user.id.as_str()).await?;
        self.clear_attempts(user.email.as_str()).await?;
        Ok(removed)
    }
}
