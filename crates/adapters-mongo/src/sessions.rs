//! [`SessionStore`] over `sessions` and `refresh_tokens`.
//!
//! A session document carries its refresh family's state: the live token
//! (`refresh_current`), the one it replaced (`refresh_previous`) and when
//! that was spent (`refresh_previous_spent_at`). `refresh_tokens` maps
//! every hash the family ever had to the session (`token_hash` is unique),
//! so a presented token is found, and an ancestor presented again is
//! recognised as reuse.
//!
//! **Who rotates** is decided by one conditional `findOneAndUpdate` on the
//! session document: it matches only while `refresh_current` is the
//! presented hash *and* the session is live, and in the same step makes the
//! successor current, records the spend, and moves `last_used_at` and the
//! idle end. Of any number of concurrent presentations exactly one
//! matches. (Deciding on the session rather than on a `spent_at` in the
//! token document means the liveness check, the spend and the session's
//! new state are one atomic write: a loser that reads the session next
//! sees the rotation complete, and answers a replay with exactly the
//! session the winner returned.) Everything else follows from that one
//! document:
//! - the presented hash is `refresh_previous`, spent less than `grace`
//!   ago, and the successor the caller names is `refresh_current` →
//!   `Replayed` (that successor is necessarily unused: using it would have
//!   moved `refresh_previous` on);
//! - any other hash of the family (older ancestors, or the previous one
//!   after its grace) → `Reused`: the session is revoked with
//!   `RefreshReuse`, conditionally on it still being live;
//! - a dead session (revoked, expired, idled out) or an unknown hash →
//!   `Invalid`, and nothing is written.
//!
//! The successor's `refresh_tokens` entry is inserted *before* the
//! deciding update (idempotently: the same hash for the same session is
//! fine), so a family never points at a hash that cannot be found. A crash
//! after the insert but before the update leaves an entry nobody was ever
//! told about; the client, having had no answer, presents its token again
//! and rotates normally. A caller that inserted an entry and then lost the
//! race with a *different* successor removes it again.

use async_trait::async_trait;
use chrono::TimeDelta;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use regstack_ports::{
    NewSession, RevokeReason, Rotation, Session, SessionId, SessionStore, StoreError, Timestamp,
    TokenHash, User, UserId,
};

use crate::docs;
use crate::error::run;
use crate::schema::{hint, USERS};
use crate::time::{span, to_db, ttl_date};
use crate::MongoStores;

/// How many times `rotate` looks again after its conditional write found
/// the family changed under it. Each retry means another caller made
/// progress, so this is only reached under pathological churn; the answer
/// then is `Invalid` (nothing written, the client signs in again).
const ROTATE_ATTEMPTS: usize = 8;

/// How many sessions `purge_expired` deletes per round trip.
const PURGE_BATCH: i64 = 1000;

/// The filter of a live session at `now` ([`Session::is_live`]).
fn live(now: i64) -> Document {
    doc! {
        "revoked_at": Bson::Null,
        "expires_at": { "$gt": now },
        "idle_expires_at": { "$gt": now },
    }
}

/// The update that revokes a session at `now`. A live session ends now,
/// earlier than its expiry or idle end, so `ends_at` (what the purge and
/// the TTL index read) becomes `now`.
fn revocation(reason: RevokeReason, now: i64) -> Document {
    doc! { "$set": {
        "revoked_at": now,
        "revoked_reason": reason.as_str(),
        "ends_at": now,
        "expire_at": ttl_date(now),
    } }
}

/// One call of `rotate`, as `rotate_once` needs it.
struct Presentation<'a> {
    presented: &'a TokenHash,
    successor: &'a TokenHash,
    now: Timestamp,
    grace: TimeDelta,
    idle: TimeDelta,
}

/// A session document with its user, as one aggregation finds them.
struct Loaded {
    raw: Document,
    session: Session,
    user: Option<User>,
}

impl MongoStores {
    /// The per-request lookup: the session by `_id` and its user by `_id`,
    /// joined on the server in one round trip (`$lookup` on the users'
    /// primary key).
    async fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let pipeline = vec![
            doc! { "$match": { "_id": id } },
            doc! { "$limit": 1 },
            doc! { "$lookup": {
                "from": USERS,
                "localField": "user_id",
                "foreignField": "_id",
                "as": "user",
            } },
        ];
        let found: Vec<Document> = run(async {
            self.sessions
                .aggregate(pipeline)
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await?;
        let Some(raw) = found.into_iter().next() else {
            return Ok(None);
        };
        let session = docs::session(&raw)?;
        let user = match raw.get_array("user").ok().and_then(|u| u.first()) {
            Some(Bson::Document(u)) => Some(docs::user(u)?),
            _ => None,
        };
        Ok(Some(Loaded { raw, session, user }))
    }

    /// Revokes every live session of a user.
    pub(crate) async fn revoke_live_of_user(
        &self,
        user_id: &str,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let now = to_db(now);
        let mut filter = live(now);
        filter.insert("user_id", user_id);
        Ok(run(self
            .sessions
            .update_many(filter, revocation(reason, now))
            .hint(hint::by(hint::USER_SESSIONS)))
        .await?
        .modified_count)
    }

    /// Deletes the refresh tokens of these sessions.
    async fn delete_refresh_tokens_of(&self, session_ids: Vec<Bson>) -> Result<(), StoreError> {
        run(self
            .refresh_tokens
            .delete_many(doc! { "session_id": { "$in": session_ids } }))
        .await
        .map(drop)
    }

    /// Deletes every session of a user with its refresh tokens (account
    /// deletion). Tokens first: a crash in between leaves sessions without
    /// tokens (which nothing can use), never tokens without a session that
    /// a later purge could no longer find.
    pub(crate) async fn delete_sessions_of_user(&self, user_id: &str) -> Result<(), StoreError> {
        let ids = self.session_ids(doc! { "user_id": user_id }, None).await?;
        self.delete_refresh_tokens_of(ids).await?;
        run(self.sessions.delete_many(doc! { "user_id": user_id }))
            .await
            .map(drop)
    }

    /// The `_id`s of the sessions matching `filter`.
    async fn session_ids(
        &self,
        filter: Document,
        limit: Option<i64>,
    ) -> Result<Vec<Bson>, StoreError> {
        let found: Vec<Document> = run(async {
            let mut find = self.sessions.find(filter).projection(doc! { "_id": 1 });
            if let Some(limit) = limit {
                find = find.limit(limit);
            }
            find.await?.try_collect::<Vec<Document>>().await
        })
        .await?;
        Ok(found
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect())
    }

    /// Makes sure `successor` is recorded as a token of session `sid`.
    /// Returns whether this call inserted it. The same hash for the same
    /// session already present is fine (a concurrent presentation, or a
    /// retry after a crash); for another session it is a conflict.
    async fn record_successor(
        &self,
        successor: &TokenHash,
        sid: &str,
        user_id: &str,
        now: i64,
        session_end: i64,
    ) -> Result<bool, StoreError> {
        let entry = doc! {
            "token_hash": successor.as_str(),
            "session_id": sid,
            "user_id": user_id,
            "created_at": now,
            "expire_at": ttl_date(session_end),
        };
        match run(self.refresh_tokens.insert_one(entry)).await {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(rule)) => {
                let existing = run(self
                    .refresh_tokens
                    .find_one(doc! { "token_hash": successor.as_str() }))
                .await?;
                match existing {
                    Some(d) if docs::string(&d, "session_id")? == sid => Ok(false),
                    // Gone again (purged) or another family's: refuse.
                    _ => Err(StoreError::Conflict(rule)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The decision and its consequences; see the module doc.
    /// `None` when a conditional write found the family changed under it
    /// (look again); `inserted` is set when this call recorded the
    /// successor's entry.
    async fn rotate_once(
        &self,
        sid: &str,
        p: &Presentation<'_>,
        inserted: &mut bool,
    ) -> Result<Option<Rotation>, StoreError> {
        let Presentation {
            presented,
            successor,
            now,
            grace,
            idle,
        } = *p;
        let now_db = to_db(now);
        let Some(Loaded { raw, session, user }) = self.load(sid).await? else {
            return Ok(Some(Rotation::Invalid));
        };
        let Some(user) = user else {
            return Ok(Some(Rotation::Invalid));
        };
        if !session.is_live(now) {
            return Ok(Some(Rotation::Invalid));
        }
        let current = docs::opt_string(&raw, "refresh_current")?;
        if current.as_deref() == Some(presented.as_str()) {
            let expires_at = to_db(session.expires_at);
            if self
                .record_successor(successor, sid, user.id.as_str(), now_db, expires_at)
                .await?
            {
                *inserted = true;
            }
            let idle_end = now_db.saturating_add(span(idle)).min(expires_at);
            let mut filter = live(now_db);
            filter.insert("_id", sid);
            filter.insert("refresh_current", presented.as_str());
            let rotated = run(self
                .sessions
                .find_one_and_update(
                    filter,
                    doc! { "$set": {
                        "refresh_current": successor.as_str(),
                        "refresh_previous": presented.as_str(),
                        "refresh_previous_spent_at": now_db,
                        "last_used_at": now_db,
                        "idle_expires_at": idle_end,
                        "ends_at": idle_end,
                        "expire_at": ttl_date(idle_end),
                    } },
                )
                .hint(hint::by(hint::ID))
                .return_document(ReturnDocument::After))
            .await?;
            return match rotated {
                Some(d) => Ok(Some(Rotation::Rotated {
                    session: docs::session(&d)?,
                    user,
                })),
                // Another presentation won, or the session died: look again.
                None => Ok(None),
            };
        }
        let previous = docs::opt_string(&raw, "refresh_previous")?;
        let spent_at = docs::opt_int(&raw, "refresh_previous_spent_at")?;
        // A retry of a lost answer: the presented token was replaced less
        // than `grace` ago by the successor the caller names (derived from
        // it), and that successor is still the live one, i.e. unused.
        let in_grace = spent_at.is_some_and(|at| at.saturating_add(span(grace)) > now_db);
        if in_grace
            && previous.as_deref() == Some(presented.as_str())
            && current.as_deref() == Some(successor.as_str())
        {
            return Ok(Some(Rotation::Replayed { session, user }));
        }
        // A spent token outside the retry excuse: theft. Revoke the family,
        // but only while it is still live, so a reason is never overwritten.
        let mut filter = live(now_db);
        filter.insert("_id", sid);
        let revoked = run(self
            .sessions
            .update_one(filter, revocation(RevokeReason::RefreshReuse, now_db))
            .hint(hint::by(hint::ID)))
        .await?;
        if revoked.matched_count > 0 {
            Ok(Some(Rotation::Reused {
                session_id: session.id,
                user_id: session.user_id,
            }))
        } else {
            Ok(None)
        }
    }
}

#[async_trait]
impl SessionStore for MongoStores {
    async fn start(&self, s: NewSession) -> Result<(), StoreError> {
        let created = to_db(s.created_at);
        let expires_at = to_db(s.expires_at);
        let idle_expires_at = to_db(s.idle_expires_at);
        let ends_at = expires_at.min(idle_expires_at);
        // The session first: a duplicate id is refused with nothing
        // written. Then its first token: a duplicate hash is refused and
        // the session just inserted is removed again. A crash in between
        // leaves a session without a token, which nobody can use (the
        // caller never got an answer) and the purge removes. The
        // `last_login` stamp comes last, once the sign-in has happened.
        run(self.sessions.insert_one(doc! {
            "_id": s.id.as_str(),
            "user_id": s.user_id.as_str(),
            "created_at": created,
            "last_used_at": created,
            "expires_at": expires_at,
            "idle_expires_at": idle_expires_at,
            "ends_at": ends_at,
            "expire_at": ttl_date(ends_at),
            "user_agent": s.user_agent.as_deref(),
            "ip": s.ip.as_deref(),
            "revoked_at": Bson::Null,
            "revoked_reason": Bson::Null,
            "refresh_current": s.refresh_hash.as_str(),
            "refresh_previous": Bson::Null,
            "refresh_previous_spent_at": Bson::Null,
        }))
        .await?;
        let first = run(self.refresh_tokens.insert_one(doc! {
            "token_hash": s.refresh_hash.as_str(),
            "session_id": s.id.as_str(),
            "user_id": s.user_id.as_str(),
            "created_at": created,
            "expire_at": ttl_date(expires_at),
        }))
        .await;
        if let Err(e) = first {
            if let Err(undo) = run(self.sessions.delete_one(doc! { "_id": s.id.as_str() })).await {
                tracing::warn!(
                    error = %undo,
                    "could not remove a session whose refresh token was refused"
                );
            }
            return Err(e);
        }
        run(self.users.update_one(
            doc! { "_id": s.user_id.as_str() },
            doc! { "$set": { "last_login": created } },
        ))
        .await
        .map(drop)
    }

    async fn rotate(
        &self,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        grace: TimeDelta,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        let Some(token) = run(self
            .refresh_tokens
            .find_one(doc! { "token_hash": presented.as_str() }))
        .await?
        else {
            return Ok(Rotation::Invalid);
        };
        let sid = docs::string(&token, "session_id")?.to_owned();
        let presentation = Presentation {
            presented,
            successor,
            now,
            grace,
            idle,
        };
        let mut inserted = false;
        let mut outcome = Rotation::Invalid;
        for _ in 0..ROTATE_ATTEMPTS {
            if let Some(decided) = self.rotate_once(&sid, &presentation, &mut inserted).await? {
                outcome = decided;
                break;
            }
        }
        if inserted && !matches!(outcome, Rotation::Rotated { .. }) {
            // This call recorded `successor` but did not make it current.
            // If the family's live token is another hash, nobody will ever
            // present this one: remove it. (The same hash made current by
            // another presentation stays.)
            let still_needed = run(self
                .sessions
                .find_one(doc! {
                    "_id": sid.as_str(),
                    "refresh_current": successor.as_str(),
                })
                .hint(hint::by(hint::ID)))
            .await?
            .is_some();
            if !still_needed {
                run(self
                    .refresh_tokens
                    .delete_one(doc! {
                        "token_hash": successor.as_str(),
                        "session_id": sid.as_str(),
                    })
                    .hint(hint::by(hint::TOKEN_HASH)))
                .await?;
            }
        }
        Ok(outcome)
    }

    async fn list(&self, user: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        let mut filter = live(to_db(now));
        filter.insert("user_id", user.as_str());
        let found: Vec<Document> = run(async {
            self.sessions
                .find(filter)
                .sort(doc! { "created_at": -1, "_id": -1 })
                .hint(hint::by(hint::USER_SESSIONS))
                .await?
                .try_collect::<Vec<Document>>()
                .await
        })
        .await?;
        found
            .iter()
            .map(|d| docs::session(d).map_err(StoreError::from))
            .collect()
    }

    async fn revoke_owned(
        &self,
        id: &SessionId,
        owner: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // The owner is part of the filter: another user's session matches
        // nothing and is left as it was.
        let now = to_db(now);
        let mut filter = live(now);
        filter.insert("_id", id.as_str());
        filter.insert("user_id", owner.as_str());
        let done = run(self
            .sessions
            .update_one(filter, revocation(reason, now))
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(done.matched_count > 0)
    }

    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        Ok(self
            .load(id.as_str())
            .await?
            .and_then(|l| l.user.map(|u| (l.session, u))))
    }

    async fn revoke(
        &self,
        id: &SessionId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Conditional: only a live session changes, so a session is revoked
        // once and keeps its first reason (and its refresh tokens die with
        // it: `rotate` requires a live session).
        let now = to_db(now);
        let mut filter = live(now);
        filter.insert("_id", id.as_str());
        let done = run(self
            .sessions
            .update_one(filter, revocation(reason, now))
            .hint(hint::by(hint::ID)))
        .await?;
        Ok(done.matched_count > 0)
    }

    async fn revoke_all(
        &self,
        user: &UserId,
        reason: RevokeReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_live_of_user(user.as_str(), reason, now).await
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        // `ends_at` is the earliest of expiry, idle end and revocation, so
        // one indexed range finds every session that ended before `before`.
        // Per batch: the family's tokens first, then the sessions (see
        // `delete_sessions_of_user` for why that order).
        let before = to_db(before);
        let mut purged = 0;
        loop {
            let ids = self
                .session_ids(doc! { "ends_at": { "$lt": before } }, Some(PURGE_BATCH))
                .await?;
            if ids.is_empty() {
                break;
            }
            let full = i64::try_from(ids.len()).is_ok_and(|n| n >= PURGE_BATCH);
            self.delete_refresh_tokens_of(ids.clone()).await?;
            let deleted = run(self
                .sessions
                .delete_many(doc! {
                    "_id": { "$in": ids },
                    "ends_at": { "$lt": before },
                })
                .hint(hint::by(hint::ID)))
            .await?
            .deleted_count;
            purged += deleted;
            if !full || deleted == 0 {
                break;
            }
        }
        Ok(purged)
    }
}
