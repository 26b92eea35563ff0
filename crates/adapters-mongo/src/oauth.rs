//! [`OAuthStore`] over `oauth_states` (flows in flight) and
//! `oauth_identities` (external accounts linked to ours), plus one field of
//! the user document, `oauth_links`: the ids of the identity documents
//! linked to the account.
//!
//! # Flows
//!
//! Every hand-over is one operation on the flow's document, found by its
//! `_id` (the hash of the `state` value):
//! - `begin` inserts it; the primary key refuses a clash. A link flow then
//!   checks that its account still exists and takes itself back if not:
//!   account deletion sweeps the account's link flows, and one begun after
//!   that sweep would otherwise outlive the account.
//! - `claim` is one `findOneAndUpdate` on `{_id, provider, claimed: false,
//!   expires_at > now}` setting `claimed`: of concurrent callbacks exactly
//!   one matches. On a miss, one `findOneAndDelete` of the same unclaimed
//!   flow past its expiry tells `Expired` (and deletes it) from `Unknown`.
//! - `complete` is one `updateOne` on `{_id, claimed: true, result: null}`
//!   writing the result, the exchange id's hash (`exchange`) and the
//!   completion window.
//! - `redeem` is one `findOneAndDelete` on `{exchange, browser,
//!   result ≠ null, expires_at > now}`: of concurrent redeemers exactly one gets the
//!   document. On a miss, one `findOneAndDelete` of the same browser's
//!   completed flow past its expiry tells `Expired` from `Unknown`. A dead
//!   flow is never handed out (the first filter excludes it, the second
//!   deletes it), and neither touches a flow of another browser.
//!
//! # Identities
//!
//! **An identity is linked when its document exists and its user's
//! document names it in `oauth_links`.** Every read applies that one rule
//! (`find_identity`, `identities_of`, `touch_identity`, `unlink_identity`):
//! a document its user does not name — or whose user does not exist — is
//! not linked, whatever else it holds. The identity document carries the
//! keys the unique indexes guard, `(issuer, subject)` and `(user_id,
//! provider)`; the user document's array is what the "last sign-in method"
//! decision is taken on, in one conditional update.
//!
//! An identity document also has a `state`: `pending` from its insert until
//! the sequence that wrote it confirms it, then `linked`. The state never
//! decides whether an identity is linked; it decides what a later sequence
//! may do with a document that stands in its way (a unique-index conflict):
//! - named by its user: linked, so in use. If still `pending`, the
//!   sequence that wrote it stopped after its commit point (below), and it
//!   is confirmed on the spot.
//! - `linked` but not named: what an unlink or an account deletion left
//!   when it stopped between its steps. Nothing ever names it again (only
//!   the sequence that inserted a document adds it to an array, and it
//!   does so before confirming it), so it is deleted at once.
//! - `pending`, not named, younger than [`UNCONFIRMED_IDENTITY_GRACE`]: a
//!   sequence in progress, so in use.
//! - `pending`, not named, older: a sequence that stopped before its
//!   commit point. It is deleted (conditionally on still being `pending`)
//!   and the insert is tried again.
//!
//! Age is the difference between the document's `linked_at` and the new
//! attempt's: instants from the callers' clocks, as everywhere here.
//!
//! ## `create_user_with_identity`
//!
//! 1. Insert the identity, `pending`, holding the pre-chosen user id,
//!    against both unique indexes. This decides a race of first sign-ins
//!    with one identity: one inserts; the others meet its document (in
//!    use: pending and young, or linked) and answer `IdentityInUse`
//!    having written nothing.
//! 2. Insert the user with `oauth_links: [identity id]`, against the unique
//!    email index. **The commit point**: the account and the link to its
//!    identity appear in one document write. If the address is taken, the
//!    pending identity is deleted again and the answer is `EmailTaken`.
//! 3. Confirm the identity (`linked`).
//!
//! Stopped after 1 (a crash): a pending identity whose user never
//! appeared. Nobody sees it; it only keeps the identity "in use" until the
//! grace has passed, and then the next first sign-in with the identity
//! removes it and succeeds. Stopped after 2: the account and its identity
//! are both there and linked; the document is confirmed by the next
//! sequence that meets it. An error in step 2 other than a taken address
//! also leaves the identity pending, because the user may have been
//! written all the same (an answer lost to a timeout): the same repair
//! settles either case, by whether the user appeared.
//!
//! ## `link_identity`
//!
//! 1. The account must exist (`NoUser`).
//! 2. Insert the identity, `pending`, as above: an `(issuer, subject)`
//!    holder in use answers `IdentityInUse`, a `(user_id, provider)` one
//!    `ProviderTaken`.
//! 3. `$addToSet` its id to the user's `oauth_links` — the commit point.
//!    If no user matches (deleted meanwhile), the identity is deleted again
//!    and the answer is `NoUser`.
//! 4. Confirm the identity.
//!
//! Stopped after 2: as a create stopped after 1. Stopped after 3: linked,
//! confirmed later.
//!
//! ## `unlink_identity`
//!
//! 1. Find the account's identity of the provider; not linked (by the rule
//!    above) answers `NotLinked`.
//! 2. The decision: one conditional `$pull` of its id from the user
//!    document, on `{_id, oauth_links: id, $or: [hashed_password is a
//!    string, oauth_links has a second element]}`. Two concurrent unlinks
//!    of an account's last two identities are two updates of one
//!    document: the second finds one element left and matches nothing
//!    (`LastSignInMethod`). A concurrent unlink of the same identity finds
//!    its id gone (`NotLinked`).
//! 3. Delete the identity document. Stopped before it: a `linked` document
//!    its user does not name — not linked, and removed by the next
//!    sequence it stands in the way of, or by the account's deletion.
//!
//! ## A sequence stalled past the grace
//!
//! Every sequence runs in a task of its own (`detached.rs`) and each of its
//! steps is bounded by [`OPERATION_TIMEOUT`](crate::OPERATION_TIMEOUT), so
//! one in progress finishes well within the grace. If one nevertheless
//! stalls longer before its commit point (a frozen process), another
//! attempt may delete its pending document. Its confirmation is an update
//! by `_id` alone and the repair a delete conditional on `pending`: of the
//! two exactly one happens. If the repair won, the confirmation matches
//! nothing and the sequence takes its commit back — a create deletes the
//! user it inserted, a link pulls the id from the array — and reports
//! `Unavailable` (trying again works). Only a crash inside that
//! compensation, after such a stall, could leave an account naming an
//! identity that no longer exists.
//!
//! ## Account deletion
//!
//! `users.rs` deletes the account's identities and its link flows before
//! the user, and sweeps them again after it. A link that commits after the
//! user is gone matches no user and deletes its identity; a link flow
//! begun after the sweep takes itself back (above).

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use regstack_ports::{
    Claim, Creation, FlowMode, FlowResult, Linking, NewUser, OAuthFlow, OAuthIdentity, OAuthStore,
    Redemption, StoreError, Timestamp, TokenHash, Unlinking, UserId,
};

use crate::detached::to_completion;
use crate::docs;
use crate::error::{insert_once, run, CorruptRow};
use crate::schema::hint;
use crate::time::{span, to_db, ttl_date};
use crate::MongoStores;

/// How long an identity document may stay `pending` before another
/// attempt may take it for the leftover of a sequence that stopped (module
/// doc). A sequence in progress finishes in a few operations, each bounded
/// by [`OPERATION_TIMEOUT`](crate::OPERATION_TIMEOUT); the margin covers
/// that many times over and clock skew between instances. The cost of a
/// long grace is paid only after a crash: the identity reads as in use
/// that long.
pub const UNCONFIRMED_IDENTITY_GRACE: Duration = Duration::from_secs(10 * 60);

/// The user document's field naming its linked identities.
const LINKS: &str = "oauth_links";
/// `state` of an identity whose sequence has not confirmed it.
const PENDING: &str = "pending";
/// `state` of a confirmed identity.
const LINKED: &str = "linked";
/// How many leftovers one insert clears before it gives up: each round
/// removes one document, and an identity has at most two (one per unique
/// key) in its way.
const REPAIR_ROUNDS: usize = 4;

/// A sequence's pending identity was removed by another attempt while the
/// sequence stalled past [`UNCONFIRMED_IDENTITY_GRACE`]; what it had
/// written was taken back. Reported as `Unavailable`: trying again works.
#[derive(Debug, thiserror::Error)]
#[error("the identity was removed while this sequence stalled; nothing was linked")]
struct Overtaken;

/// A unique key kept finding new holders that vanished again.
#[derive(Debug, thiserror::Error)]
#[error("the identity's unique keys kept changing hands")]
struct Contended;

/// What an identity document standing in the way of an insert is.
enum Holder {
    /// Linked, or a sequence in progress: the key is taken.
    InUse,
    /// A leftover, now removed (or changed under us): insert again.
    Cleared,
}

/// Which unique key an insert asked for, to say who holds it.
#[derive(Clone, Copy)]
enum Key {
    /// `(issuer, subject)`.
    Identity,
    /// `(user_id, provider)`.
    Provider,
}

impl MongoStores {
    // -----------------------------------------------------------------------
    // Flows

    /// [`OAuthStore::begin`]'s steps (module doc).
    async fn begin_steps(&self, flow: OAuthFlow) -> Result<(), StoreError> {
        // `attempt` tells a driver retry of this insert (ours) from a flow
        // that holds the id already (a clash, even of an identical flow).
        let attempt = ObjectId::new();
        let mut document = docs::flow_doc(&flow);
        document.insert("attempt", attempt);
        let mine = doc! { "_id": flow.id.as_str(), "attempt": attempt };
        insert_once(&self.oauth_states, document, mine).await?;
        if let FlowMode::Link(user) = &flow.mode {
            if !self.user_exists(user.as_str()).await? {
                run(self
                    .oauth_states
                    .delete_one(doc! { "_id": flow.id.as_str(), "attempt": attempt })
                    .hint(hint::by(hint::ID)))
                .await?;
            }
        }
        Ok(())
    }

    /// Deletes the account's identities and its link flows, begun or
    /// completed (account deletion). A sign-in flow completed for the
    /// account stays until it expires: redeeming it starts no session, as
    /// the account is gone.
    pub(crate) async fn delete_oauth_of_user(&self, user_id: &str) -> Result<(), StoreError> {
        run(self
            .oauth_identities
            .delete_many(doc! { "user_id": user_id })
            .hint(hint::by(hint::USER_PROVIDER)))
        .await?;
        run(self
            .oauth_states
            .delete_many(doc! { "link_user_id": user_id })
            .hint(hint::by(hint::LINK_USER)))
        .await?;
        Ok(())
    }

    // -----------------------------------------------------------------------
    // Identities: reads

    /// Whether `user_id`'s document exists and names the identity `link`.
    async fn names(&self, user_id: &str, link: ObjectId) -> Result<bool, StoreError> {
        Ok(run(self
            .users
            .find_one(doc! { "_id": user_id, LINKS: link })
            .projection(doc! { "_id": 1 })
            .hint(hint::by(hint::ID)))
        .await?
        .is_some())
    }

    /// The ids the user's document names; empty if the user is gone.
    async fn links_of(&self, user_id: &str) -> Result<Vec<ObjectId>, StoreError> {
        let Some(user) = run(self
            .users
            .find_one(doc! { "_id": user_id })
            .projection(doc! { LINKS: 1 }))
        .await?
        else {
            return Ok(Vec::new());
        };
        match user.get(LINKS) {
            None | Some(Bson::Null) => Ok(Vec::new()),
            Some(Bson::Array(ids)) => ids
                .iter()
                .map(|id| match id {
                    Bson::ObjectId(id) => Ok(*id),
                    _ => Err(StoreError::from(CorruptRow(LINKS))),
                })
                .collect(),
            Some(_) => Err(CorruptRow(LINKS).into()),
        }
    }

    /// The identity document holding `key` for `identity`, linked or not.
    async fn holder(
        &self,
        key: Key,
        identity: &OAuthIdentity,
    ) -> Result<Option<Document>, StoreError> {
        let (filter, index) = match key {
            Key::Identity => (
                doc! { "issuer": &identity.issuer, "subject": &identity.subject },
                hint::ISSUER_SUBJECT,
            ),
            Key::Provider => (
                doc! {
                    "user_id": identity.user_id.as_str(),
                    "provider": &identity.provider,
                },
                hint::USER_PROVIDER,
            ),
        };
        run(self.oauth_identities.find_one(filter).hint(hint::by(index))).await
    }

    /// The linked identity document with this `(issuer, subject)`.
    async fn linked_by_subject(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Document>, StoreError> {
        let Some(d) = run(self
            .oauth_identities
            .find_one(doc! { "issuer": issuer, "subject": subject })
            .hint(hint::by(hint::ISSUER_SUBJECT)))
        .await?
        else {
            return Ok(None);
        };
        let linked = self
            .names(docs::string(&d, "user_id")?, docs::link_id(&d)?)
            .await?;
        Ok(linked.then_some(d))
    }

    // -----------------------------------------------------------------------
    // Identities: repairs

    /// Decides what a document standing in the way of an insert is, at
    /// `now` (the new attempt's `linked_at`), and removes it if it is a
    /// leftover (module doc).
    async fn judge(&self, holder: &Document, now: i64) -> Result<Holder, StoreError> {
        let link = docs::link_id(holder)?;
        if self.names(docs::string(holder, "user_id")?, link).await? {
            // Its sequence passed its commit point; confirm it for it.
            run(self
                .oauth_identities
                .update_one(
                    doc! { "_id": link, "state": PENDING },
                    doc! { "$set": { "state": LINKED } },
                )
                .hint(hint::by(hint::ID)))
            .await?;
            return Ok(Holder::InUse);
        }
        let state = docs::string(holder, "state")?;
        let stale = match state {
            LINKED => true,
            PENDING => {
                let age = now.saturating_sub(docs::int(holder, "linked_at")?);
                age >= span_of(UNCONFIRMED_IDENTITY_GRACE)
            }
            _ => return Err(CorruptRow("state").into()),
        };
        if !stale {
            return Ok(Holder::InUse);
        }
        // Conditional on the state read: a sequence that confirmed its
        // document meanwhile keeps it, and the next round sees it named.
        run(self
            .oauth_identities
            .delete_one(doc! { "_id": link, "state": state })
            .hint(hint::by(hint::ID)))
        .await?;
        tracing::info!(
            state,
            "removed an OAuth identity document left by a sequence that stopped"
        );
        Ok(Holder::Cleared)
    }

    /// Inserts `identity` as a pending document under `link`, clearing
    /// leftovers in its way. `Err(key)` names the key found in use.
    async fn insert_pending(
        &self,
        identity: &OAuthIdentity,
        link: ObjectId,
    ) -> Result<Result<(), Key>, StoreError> {
        let now = to_db(identity.linked_at);
        let document = docs::identity_doc(identity, link, PENDING);
        for _ in 0..REPAIR_ROUNDS {
            match insert_once(
                &self.oauth_identities,
                document.clone(),
                doc! { "_id": link },
            )
            .await
            {
                Ok(()) => return Ok(Ok(())),
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            // Whichever index refused, the identity's own key is judged
            // first: an identity linked to this very account is in use,
            // not a provider taken.
            for key in [Key::Identity, Key::Provider] {
                if let Some(holder) = self.holder(key, identity).await? {
                    match self.judge(&holder, now).await? {
                        Holder::InUse => return Ok(Err(key)),
                        Holder::Cleared => break,
                    }
                }
            }
        }
        Err(StoreError::unavailable(Contended))
    }

    /// Confirms the pending identity `link`; `false` if another attempt
    /// removed it (module doc, "stalled past the grace").
    async fn confirm(&self, link: ObjectId) -> Result<bool, StoreError> {
        let done = run(self
            .oauth_identities
            .update_one(doc! { "_id": link }, doc! { "$set": { "state": LINKED } })
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(done.matched_count > 0)
    }

    /// Deletes a pending identity this sequence inserted and will not link.
    /// Best effort: a failure leaves a pending document that nobody sees
    /// and the grace repairs, so it is logged, not returned.
    async fn withdraw(&self, link: ObjectId) {
        let withdrawn = run(self
            .oauth_identities
            .delete_one(doc! { "_id": link, "state": PENDING })
            .hint(hint::by(hint::ID)))
        .await;
        if let Err(e) = withdrawn {
            tracing::warn!(
                error = %e,
                "could not withdraw a pending OAuth identity; it is removed after the grace"
            );
        }
    }

    // -----------------------------------------------------------------------
    // Identities: sequences

    /// [`OAuthStore::create_user_with_identity`]'s steps (module doc).
    async fn create_steps(
        &self,
        new: NewUser,
        identity: OAuthIdentity,
    ) -> Result<Creation, StoreError> {
        // The identity belongs to the account being created, whatever id
        // the caller put in it.
        let identity = OAuthIdentity {
            user_id: new.id.clone(),
            ..identity
        };
        let link = ObjectId::new();
        if self.insert_pending(&identity, link).await?.is_err() {
            return Ok(Creation::IdentityInUse);
        }
        let user = new.into_user();
        let mut document = docs::user_doc(&user);
        document.insert(LINKS, vec![link]);
        // The commit point. A retried insert is not a duplicate of itself
        // (`insert_once`): the user is ours if it has this id.
        match insert_once(&self.users, document, doc! { "_id": user.id.as_str() }).await {
            Ok(()) => {}
            // Refused: the user was certainly not written.
            Err(StoreError::Conflict(rule)) => {
                self.withdraw(link).await;
                return match rule {
                    "email" => Ok(Creation::EmailTaken),
                    _ => Err(StoreError::Conflict(rule)),
                };
            }
            // Perhaps written: the identity stays pending (module doc).
            Err(e) => return Err(e),
        }
        if !self.confirm(link).await? {
            run(self
                .users
                .delete_one(doc! { "_id": user.id.as_str(), LINKS: [link] })
                .hint(hint::by(hint::ID)))
            .await?;
            return Err(StoreError::unavailable(Overtaken));
        }
        Ok(Creation::Created(user))
    }

    /// [`OAuthStore::link_identity`]'s steps (module doc).
    async fn link_steps(&self, identity: OAuthIdentity) -> Result<Linking, StoreError> {
        let user = identity.user_id.as_str();
        if !self.user_exists(user).await? {
            return Ok(Linking::NoUser);
        }
        let link = ObjectId::new();
        match self.insert_pending(&identity, link).await? {
            Ok(()) => {}
            Err(Key::Identity) => return Ok(Linking::IdentityInUse),
            Err(Key::Provider) => return Ok(Linking::ProviderTaken),
        }
        // The commit point.
        let added = run(self
            .users
            .update_one(doc! { "_id": user }, doc! { "$addToSet": { LINKS: link } })
            .hint(hint::by(hint::ID)))
        .await?;
        if added.matched_count == 0 {
            self.withdraw(link).await;
            return Ok(Linking::NoUser);
        }
        if !self.confirm(link).await? {
            run(self
                .users
                .update_one(doc! { "_id": user }, doc! { "$pull": { LINKS: link } })
                .hint(hint::by(hint::ID)))
            .await?;
            return Err(StoreError::unavailable(Overtaken));
        }
        Ok(Linking::Linked)
    }

    /// [`OAuthStore::unlink_identity`]'s steps (module doc).
    async fn unlink_steps(&self, user: UserId, provider: String) -> Result<Unlinking, StoreError> {
        let uid = user.as_str();
        let Some(found) = run(self
            .oauth_identities
            .find_one(doc! { "user_id": uid, "provider": &provider })
            .hint(hint::by(hint::USER_PROVIDER)))
        .await?
        else {
            return Ok(Unlinking::NotLinked);
        };
        let link = docs::link_id(&found)?;
        // The decision, in one update of the user document.
        let pulled = run(self
            .users
            .update_one(
                doc! {
                    "_id": uid,
                    LINKS: link,
                    "$or": [
                        { "hashed_password": { "$type": "string" } },
                        { "oauth_links.1": { "$exists": true } },
                    ],
                },
                doc! { "$pull": { LINKS: link } },
            )
            .hint(hint::by(hint::ID)))
        .await?;
        if pulled.matched_count == 0 {
            // Not named (never linked, or unlinked meanwhile), or the last
            // way in.
            return Ok(if self.names(uid, link).await? {
                Unlinking::LastSignInMethod
            } else {
                Unlinking::NotLinked
            });
        }
        run(self
            .oauth_identities
            .delete_one(doc! { "_id": link })
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(Unlinking::Unlinked(docs::identity(&found)?))
    }
}

/// A duration in stored units.
fn span_of(d: Duration) -> i64 {
    span(chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX))
}

#[async_trait]
impl OAuthStore for MongoStores {
    async fn begin(&self, flow: OAuthFlow) -> Result<(), StoreError> {
        let this = self.clone();
        to_completion(async move { this.begin_steps(flow).await }).await
    }

    async fn claim(
        &self,
        id: &TokenHash,
        provider: &str,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        let now = to_db(now);
        let claimed = run(self
            .oauth_states
            .find_one_and_update(
                doc! {
                    "_id": id.as_str(),
                    "provider": provider,
                    "claimed": false,
                    "expires_at": { "$gt": now },
                },
                doc! { "$set": { "claimed": true } },
            )
            .return_document(ReturnDocument::After)
            .hint(hint::by(hint::ID)))
        .await?;
        if let Some(d) = claimed {
            return Ok(Claim::Claimed(Box::new(docs::flow(&d)?)));
        }
        let expired = run(self
            .oauth_states
            .find_one_and_delete(doc! {
                "_id": id.as_str(),
                "provider": provider,
                "claimed": false,
                "expires_at": { "$lte": now },
            })
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(match expired {
            Some(_) => Claim::Expired,
            None => Claim::Unknown,
        })
    }

    async fn complete(
        &self,
        id: &TokenHash,
        exchange: &TokenHash,
        result: &FlowResult,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let expires_at = to_db(expires_at);
        let done = run(self
            .oauth_states
            .update_one(
                doc! { "_id": id.as_str(), "claimed": true, "result": Bson::Null },
                doc! { "$set": {
                    "result": docs::flow_result_doc(result),
                    "exchange": exchange.as_str(),
                    "expires_at": expires_at,
                    "expire_at": ttl_date(expires_at),
                } },
            )
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(done.matched_count > 0)
    }

    async fn redeem(
        &self,
        exchange: &TokenHash,
        browser: &TokenHash,
        now: Timestamp,
    ) -> Result<Redemption, StoreError> {
        let now = to_db(now);
        let completed = |expiry: Document| {
            doc! {
                "exchange": exchange.as_str(),
                "browser": browser.as_str(),
                "result": { "$ne": Bson::Null },
                "expires_at": expiry,
            }
        };
        let redeemed = run(self
            .oauth_states
            .find_one_and_delete(completed(doc! { "$gt": now }))
            .hint(hint::by(hint::EXCHANGE)))
        .await?;
        if let Some(d) = redeemed {
            return Ok(Redemption::Redeemed {
                flow: Box::new(docs::flow(&d)?),
                result: docs::flow_result(&d)?,
            });
        }
        let expired = run(self
            .oauth_states
            .find_one_and_delete(completed(doc! { "$lte": now }))
            .hint(hint::by(hint::EXCHANGE)))
        .await?;
        Ok(match expired {
            Some(_) => Redemption::Expired,
            None => Redemption::Unknown,
        })
    }

    async fn find_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<OAuthIdentity>, StoreError> {
        self.linked_by_subject(issuer, subject)
            .await?
            .map(|d| docs::identity(&d).map_err(StoreError::from))
            .transpose()
    }

    async fn identities_of(&self, user: &UserId) -> Result<Vec<OAuthIdentity>, StoreError> {
        let links = self.links_of(user.as_str()).await?;
        if links.is_empty() {
            return Ok(Vec::new());
        }
        let found: Vec<Document> = run(async {
            self.oauth_identities
                .find(doc! { "user_id": user.as_str() })
                .hint(hint::by(hint::USER_PROVIDER))
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await?;
        let mut linked = Vec::new();
        for d in &found {
            if links.contains(&docs::link_id(d)?) {
                linked.push(docs::identity(d)?);
            }
        }
        // Oldest link first; the provider name (unique per account) breaks
        // a tie.
        linked.sort_by(|a, b| (a.linked_at, &a.provider).cmp(&(b.linked_at, &b.provider)));
        Ok(linked)
    }

    async fn link_identity(&self, identity: &OAuthIdentity) -> Result<Linking, StoreError> {
        let (this, identity) = (self.clone(), identity.clone());
        to_completion(async move { this.link_steps(identity).await }).await
    }

    async fn create_user_with_identity(
        &self,
        user: NewUser,
        identity: &OAuthIdentity,
    ) -> Result<Creation, StoreError> {
        let (this, identity) = (self.clone(), identity.clone());
        to_completion(async move { this.create_steps(user, identity).await }).await
    }

    async fn unlink_identity(
        &self,
        user: &UserId,
        provider: &str,
    ) -> Result<Unlinking, StoreError> {
        let (this, user, provider) = (self.clone(), user.clone(), provider.to_owned());
        to_completion(async move { this.unlink_steps(user, provider).await }).await
    }

    async fn touch_identity(
        &self,
        issuer: &str,
        subject: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(d) = self.linked_by_subject(issuer, subject).await? else {
            return Ok(false);
        };
        let done = run(self
            .oauth_identities
            .update_one(
                doc! { "_id": docs::link_id(&d)? },
                doc! { "$set": { "last_used_at": to_db(now) } },
            )
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(done.matched_count > 0)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        Ok(run(self
            .oauth_states
            .delete_many(doc! { "expires_at": { "$lte": to_db(now) } }))
        .await?
        .deleted_count)
    }
}
