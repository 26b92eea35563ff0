//! [`SessionStore`] over `sessions`.
//!
//! A session document carries its refresh family's state: the live token
//! (`refresh_current`), the one it replaced (`refresh_previous`) and when
//! that was spent (`refresh_previous_spent_at`). Refresh tokens carry their
//! session id (under a MAC the engine checks), so that is all there is: no
//! collection of token hashes.
//!
//! **Who rotates** is decided by one conditional `findOneAndUpdate` on the
//! session document: it matches only while `refresh_current` is the
//! presented hash *and* the session is live, and in the same step makes the
//! successor current, records the spend, and moves `last_used_at` and the
//! idle end. Of any number of concurrent presentations exactly one
//! matches; a loser reads the session once more and reports the family as
//! it found it (`Rotation::NotLive`). Telling a replay from reuse is
//! `core`'s rule (`flows/refresh.rs`), and a reused family is ended with
//! the conditional `revoke`, so that of concurrent reuses one reports it.

use async_trait::async_trait;
use chrono::TimeDelta;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use regstack_ports::{
    NewSession, RefreshFamily, RevokeReason, Rotation, Session, SessionId, SessionStart,
    SessionStore, StoreError, Timestamp, TokenHash, User, UserId,
};

use crate::detached::to_completion;
use crate::docs;
use crate::error::{insert_once, run, CorruptRow};
use crate::schema::{hint, USERS};
use crate::time::{from_db, span, to_db, ttl_date};
use crate::MongoStores;

/// The filter of a live session at `now` ([`Session::is_live`]).
pub(crate) fn live(now: i64) -> Document {
    doc! {
        "revoked_at": Bson::Null,
        "expires_at": { "$gt": now },
        "idle_expires_at": { "$gt": now },
    }
}

/// The update that revokes a session at `now`. A live session ends now,
/// earlier than its expiry or idle end, so `ends_at` (what the purge and
/// the TTL index read) becomes `now`.
pub(crate) fn revocation(reason: RevokeReason, now: i64) -> Document {
    doc! { "$set": {
        "revoked_at": now,
        "revoked_reason": reason.as_str(),
        "ends_at": now,
        "expire_at": ttl_date(now),
    } }
}

/// A session document with its user, as one aggregation finds them.
struct Loaded {
    raw: Document,
    session: Session,
    user: Option<User>,
}

impl MongoStores {
    /// [`SessionStore::start`]'s steps: insert, stamp, and delete again on
    /// a missed stamp. Run to the end by [`to_completion`], so a caller
    /// that stops waiting never leaves a session without its stamp — one
    /// the epoch check never saw.
    async fn start_steps(&self, s: NewSession) -> Result<SessionStart, StoreError> {
        let created = to_db(s.created_at);
        let expires_at = to_db(s.expires_at);
        let idle_expires_at = to_db(s.idle_expires_at);
        let ends_at = expires_at.min(idle_expires_at);
        // The session, its first refresh token inside it: a duplicate id
        // is refused with nothing written. Then the `last_login` stamp,
        // conditional on the credential epoch the sign-in read. A credential
        // change moves the epoch first and revokes the user's sessions
        // after (`users.rs`), so either this stamp sees the new epoch — and
        // the session goes again before any token of it was handed out — or
        // the session already existed when the revocation ran. The same
        // holds against account deletion, which deletes the user and then
        // sweeps its sessions (`users.rs`): the stamp misses a deleted user.
        let session = doc! {
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
        };
        // A retried insert is not a duplicate of itself: the document is
        // ours if it holds this start's refresh hash (a real duplicate id
        // holds another one and stays a Conflict).
        let mine = doc! {
            "_id": s.id.as_str(),
            "refresh_current": s.refresh_hash.as_str(),
            "created_at": created,
        };
        insert_once(&self.sessions, session, mine).await?;
        let stamped = run(self
            .users
            .update_one(
                doc! {
                    "_id": s.user_id.as_str(),
                    "tokens_invalidated_after": s.credential_epoch.map(to_db),
                },
                doc! { "$set": { "last_login": created } },
            )
            .hint(hint::by(hint::ID)))
        .await?;
        if stamped.matched_count == 0 {
            run(self.sessions.delete_one(doc! { "_id": s.id.as_str() })).await?;
            return Ok(SessionStart::Stale);
        }
        Ok(SessionStart::Started)
    }

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

    /// Deletes every session of a user, refresh families included
    /// (account deletion).
    pub(crate) async fn delete_sessions_of_user(&self, user_id: &str) -> Result<(), StoreError> {
        run(self
            .sessions
            .delete_many(doc! { "user_id": user_id })
            .hint(hint::by(hint::USER_SESSIONS)))
        .await
        .map(drop)
    }
}

#[async_trait]
impl SessionStore for MongoStores {
    async fn start(&self, s: NewSession) -> Result<SessionStart, StoreError> {
        let this = self.clone();
        to_completion(async move { this.start_steps(s).await }).await
    }

    async fn rotate(
        &self,
        id: &SessionId,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        let now_db = to_db(now);
        let sid = id.as_str();
        // The family as it is now (with its user, one round trip). A lost
        // race below reads it once more, to report what it holds: a hash
        // that stopped being the live one never becomes it again.
        let mut may_rotate = true;
        let (raw, session, user) = loop {
            let Some(Loaded { raw, session, user }) = self.load(sid).await? else {
                return Ok(Rotation::Unknown);
            };
            let Some(user) = user else {
                return Ok(Rotation::Unknown);
            };
            let current = docs::opt_string(&raw, "refresh_current")?;
            if !may_rotate
                || !session.is_live(now)
                || current.as_deref() != Some(presented.as_str())
            {
                break (raw, session, user);
            }
            // The live token of a live family: the one deciding write. The
            // idle end moves forward, never past the absolute end (which
            // never changes, so reading it first is safe).
            let expires_at = to_db(session.expires_at);
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
            if let Some(d) = rotated {
                return Ok(Rotation::Rotated {
                    session: docs::session(&d)?,
                    user,
                });
            }
            // Another presentation won, or the session died: look again.
            may_rotate = false;
        };
        // A miss: report the family as it stands; core judges it (replay
        // or reuse), and ends a reused family with the conditional revoke.
        let hash = |field| -> Result<Option<TokenHash>, StoreError> {
            docs::opt_string(&raw, field)?
                .map(|h| TokenHash::from_hex(h).ok_or(CorruptRow("refresh hash")))
                .transpose()
                .map_err(StoreError::from)
        };
        Ok(Rotation::NotLive(RefreshFamily {
            live: hash("refresh_current")?,
            previous: hash("refresh_previous")?,
            rotated_at: docs::opt_int(&raw, "refresh_previous_spent_at")?
                .map(from_db)
                .transpose()?,
            session,
            user,
        }))
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
        // one indexed range finds every session that ended before `before`;
        // its refresh family goes with the document.
        run(self
            .sessions
            .delete_many(doc! { "ends_at": { "$lt": to_db(before) } })
            .hint(hint::by(hint::ENDS_AT)))
        .await
        .map(|r| r.deleted_count)
    }
}
