//! Sliding windows without transactions: [`LoginAttemptStore`] over
//! `login_attempts` and [`RateLimitStore`] over `rate_limit_hits`.
//!
//! **One document per key** (`_id` = the lockout bucket, or the rate-limit
//! key) holds the instants of the attempts it admitted, as an array `at`
//! of `Int64` microseconds. A lockout bucket ([`LockoutKey`]) is `_id` =
//! the address for the address's own, `<address> <device id>` for one
//! trusted device's (a space is in no address and no id, so no two buckets
//! share an `_id`); each lockout document also names its address in
//! `email` (indexed), so that one indexed update or delete reaches every
//! bucket of an address. `admit` and `hit` are each decided by **one**
//! `findOneAndUpdate` on that document with an aggregation-pipeline update
//! that, on the server and in one step:
//!
//! 1. counts the entries still inside the window (`at > now - window`) and
//!    records that count as `last_seen`;
//! 2. records `last_admitted` = whether that count is below `limit`;
//! 3. rewrites `at` as the entries still inside the window, plus `now` if
//!    admitted;
//!
//! and returns the document as it is *after* the update. MongoDB applies an
//! update to a single document atomically (the document is locked from
//! reading its old value to writing the new one; a write conflict makes the
//! server re-run the whole update against the new value), so concurrent
//! calls on one key are applied one after the other, each seeing its
//! predecessor's result — a parallel burst can never fill the window past
//! `limit`. The post-image is this call's own result, so `last_admitted`
//! and `last_seen` in it say exactly what this call did: admitted or not,
//! and `failures` = `last_seen` + 1. (The pre-image would say the same on
//! MongoDB, but SecantusDB 0.7.0b3 hands out a stale pre-image under
//! concurrency — two callers can get the same "before" — while its
//! post-image is taken under the write lock. Post-images are right on both.)
//!
//! The conditional update itself never inserts. When it finds no document
//! (the first call for a key, or one cleared or purged meanwhile), the
//! caller creates the empty document with an idempotent `$setOnInsert`
//! upsert — racing creators are all fine, the unique `_id` keeps one — and
//! runs the update again. (An `upsert` on the deciding update would save
//! that round trip on MongoDB, but SecantusDB 0.7.0b3 sometimes answers
//! concurrent pipeline upserts with no document at all, leaving the caller
//! unable to tell whether its update was applied.)
//!
//! Step 3 prunes with the window of the current call; the configured
//! window is one constant per deployment, so this only forgets what can no
//! longer count, and keeps each document at most `limit` entries long.
//! `expire_at` (for the TTL index) is moved to the end of the window of
//! the newest entry, or later: once it passes, nothing in the document
//! counts any more.

use async_trait::async_trait;
use chrono::TimeDelta;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ReturnDocument;
use mongodb::Collection;
use regstack_ports::{
    Admission, Email, LockoutKey, LoginAttemptStore, RateLimitStore, StoreError, Timestamp,
};

use crate::docs;
use crate::error::{run, CorruptRow, Inconsistent};
use crate::pending::UPSERT_RETRIES;
use crate::schema::hint;
use crate::time::{from_db_saturating, span, to_db, ttl_date, window_start};
use crate::MongoStores;

/// What one conditional append did.
struct Outcome {
    /// Whether `now` was recorded.
    admitted: bool,
    /// Entries inside the window before this call.
    seen: i64,
    /// Entries inside the window after this call, newest first.
    live: Vec<i64>,
}

/// Atomically records `now` under `key` if fewer than `limit` entries lie
/// within `window` before `now` (module doc). `born_with` are the fields a
/// new document for `key` is created with.
async fn append_if_room(
    coll: &Collection<Document>,
    key: &str,
    born_with: &Document,
    now: Timestamp,
    window: TimeDelta,
    limit: u32,
) -> Result<Outcome, StoreError> {
    let start = window_start(now, window);
    let now_db = to_db(now);
    let limit = i64::from(limit);
    let expire_at = ttl_date(now_db.saturating_add(span(window)));
    let live = doc! { "$filter": {
        "input": { "$ifNull": ["$at", []] },
        "cond": { "$gt": ["$$this", start] },
    } };
    let update = vec![
        // Stage 1 reads the old `at`; stage 2 still does (stage 1 did not
        // touch it) and reads stage 1's count.
        doc! { "$set": { "last_seen": { "$size": live.clone() } } },
        doc! { "$set": {
            "last_admitted": { "$lt": ["$last_seen", limit] },
            "at": { "$cond": [
                { "$lt": ["$last_seen", limit] },
                { "$concatArrays": [live.clone(), [now_db]] },
                live,
            ] },
            "expire_at": { "$max": ["$expire_at", expire_at] },
        } },
    ];
    let mut tries = 0;
    let after = loop {
        let result = run(coll
            .find_one_and_update(doc! { "_id": key }, update.clone())
            .return_document(ReturnDocument::After))
        .await?;
        match result {
            Some(after) => break after,
            None if tries < UPSERT_RETRIES => {
                tries += 1;
                ensure_exists(coll, key, born_with).await?;
            }
            None => {
                return Err(StoreError::backend(Inconsistent(
                    "a window document vanished repeatedly",
                )))
            }
        }
    };
    let admitted = match after.get("last_admitted") {
        Some(Bson::Boolean(b)) => *b,
        _ => return Err(CorruptRow("last_admitted").into()),
    };
    let mut live = docs::int_array(&after, "at")?;
    live.sort_unstable_by(|a, b| b.cmp(a));
    Ok(Outcome {
        admitted,
        seen: docs::int(&after, "last_seen")?,
        live,
    })
}

/// Creates the empty window document for `key`, with the fields
/// `born_with`, unless it exists. Idempotent (`$setOnInsert` changes
/// nothing in an existing document), and a concurrent creation that wins
/// the race is as good as this one.
async fn ensure_exists(
    coll: &Collection<Document>,
    key: &str,
    born_with: &Document,
) -> Result<(), StoreError> {
    let mut fields = born_with.clone();
    fields.insert("at", Bson::Array(Vec::new()));
    let created = run(coll
        .update_one(doc! { "_id": key }, doc! { "$setOnInsert": fields })
        .upsert(true))
    .await;
    match created {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the entries older than `before` from every window and returns
/// how many. Each document is trimmed by one `findOneAndUpdate` that also
/// records how many entries it removed (`last_purged`), read from the
/// post-image, so a concurrent `admit` is neither lost nor miscounted; a
/// document left empty is deleted only if it is still empty (the filter
/// says so).
async fn purge_windows(coll: &Collection<Document>, before: i64) -> Result<u64, StoreError> {
    let stale: Vec<Document> = run(async {
        coll.find(doc! { "at": { "$lt": before } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect::<Vec<Document>>()
            .await
    })
    .await?;
    let kept = doc! { "$filter": {
        "input": { "$ifNull": ["$at", []] },
        "cond": { "$gte": ["$$this", before] },
    } };
    let trim = vec![doc! { "$set": {
        "last_purged": { "$subtract": [
            { "$size": { "$ifNull": ["$at", []] } },
            { "$size": kept.clone() },
        ] },
        "at": kept,
    } }];
    let mut purged: u64 = 0;
    for d in stale {
        let Some(id) = d.get("_id").cloned() else {
            continue;
        };
        let after = run(coll
            .find_one_and_update(doc! { "_id": id.clone() }, trim.clone())
            .return_document(ReturnDocument::After))
        .await?;
        if let Some(after) = after {
            let removed = docs::int(&after, "last_purged")?;
            purged = purged.saturating_add(u64::try_from(removed).unwrap_or(0));
        }
        run(coll
            .delete_one(doc! { "_id": id, "at": { "$size": 0 } })
            .hint(hint::by(hint::ID)))
        .await?;
    }
    Ok(purged)
}

/// Escapes `s` for use as a literal inside a regular expression.
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        if "\\^$.|?*+()[]{}/-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Empties the window with `_id` = `id`, keeping the document
/// ([`MongoStores::clear_attempts`] says why).
async fn empty_window(coll: &Collection<Document>, id: &str) -> Result<(), StoreError> {
    run(coll.update_one(doc! { "_id": id }, doc! { "$set": { "at": [] } }))
        .await
        .map(drop)
}

/// The `_id` of a lockout bucket's document (module doc).
fn bucket_id(key: &LockoutKey) -> String {
    match key.device_id() {
        None => key.email().as_str().to_owned(),
        Some(device) => format!("{} {device}", key.email()),
    }
}

impl MongoStores {
    /// Forgets every attempt against an address, in every bucket (a
    /// credential change proved the owner). Windows are emptied, not
    /// deleted: a concurrent `admit` between finding no document and
    /// creating it could otherwise lose it again and again to a stream of
    /// successful sign-ins; an empty window is removed by `purge` (only if
    /// still empty) or by the TTL monitor. The buckets are the documents
    /// naming the address in `email` (one indexed update), and the
    /// address's own by `_id`, which a document from before device buckets
    /// has no `email` for. Each step is idempotent, so a retry after a
    /// failure between them finishes the job.
    pub(crate) async fn clear_attempts(&self, email: &str) -> Result<(), StoreError> {
        run(self
            .login_attempts
            .update_many(doc! { "email": email }, doc! { "$set": { "at": [] } })
            .hint(hint::by(hint::ATTEMPTS_EMAIL)))
        .await?;
        empty_window(&self.login_attempts, email).await
    }

    /// Deletes every window of an address, its devices' too (account
    /// deletion: nothing of the account stays behind), in the same two
    /// idempotent steps as [`clear_attempts`](Self::clear_attempts).
    pub(crate) async fn delete_attempts(&self, email: &str) -> Result<(), StoreError> {
        run(self
            .login_attempts
            .delete_many(doc! { "email": email })
            .hint(hint::by(hint::ATTEMPTS_EMAIL)))
        .await?;
        run(self
            .login_attempts
            .delete_one(doc! { "_id": email })
            .hint(hint::by(hint::ID)))
        .await
        .map(drop)
    }

    /// Deletes the counters keyed by an address (`<anything>:<email>`).
    /// Matched as a literal suffix, so `_` and `%` (legal in addresses, and
    /// wildcards in SQL `LIKE`) and `.` (a wildcard in a regex) match only
    /// themselves.
    pub(crate) async fn delete_rate_limits_for_email(
        &self,
        email: &str,
    ) -> Result<u64, StoreError> {
        let pattern = format!(":{}$", regex_literal(email));
        Ok(run(self
            .rate_limits
            .delete_many(doc! { "_id": { "$regex": Bson::String(pattern) } }))
        .await?
        .deleted_count)
    }
}

#[async_trait]
impl LoginAttemptStore for MongoStores {
    async fn admit(
        &self,
        key: &LockoutKey,
        now: Timestamp,
        window: TimeDelta,
        threshold: u32,
    ) -> Result<Admission, StoreError> {
        let born_with = doc! { "email": key.email().as_str() };
        let outcome = append_if_room(
            &self.login_attempts,
            &bucket_id(key),
            &born_with,
            now,
            window,
            threshold,
        )
        .await?;
        if outcome.admitted {
            return Ok(Admission::Admitted {
                failures: u32::try_from(outcome.seen)
                    .unwrap_or(u32::MAX)
                    .saturating_add(1),
            });
        }
        // Newest first: the threshold-th entry is the one whose exit from
        // the window brings the count below the threshold. With a
        // threshold of 0 nothing is ever admitted; report a full window
        // from now.
        let lifts_from = threshold
            .checked_sub(1)
            .and_then(|i| outcome.live.get(usize::try_from(i).ok()?))
            .copied()
            .unwrap_or(to_db(now));
        Ok(Admission::Locked {
            retry_at: from_db_saturating(lifts_from.saturating_add(span(window))),
        })
    }

    async fn clear(&self, key: &LockoutKey) -> Result<(), StoreError> {
        empty_window(&self.login_attempts, &bucket_id(key)).await
    }

    async fn forget_address(&self, email: &Email) -> Result<(), StoreError> {
        self.clear_attempts(email.as_str()).await
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        purge_windows(&self.login_attempts, to_db(before)).await
    }
}

#[async_trait]
impl RateLimitStore for MongoStores {
    async fn hit(
        &self,
        key: &str,
        now: Timestamp,
        window: TimeDelta,
        limit: u32,
    ) -> Result<bool, StoreError> {
        Ok(
            append_if_room(&self.rate_limits, key, &Document::new(), now, window, limit)
                .await?
                .admitted,
        )
    }

    async fn purge_expired(&self, before: Timestamp) -> Result<u64, StoreError> {
        purge_windows(&self.rate_limits, to_db(before)).await
    }
}

#[cfg(test)]
mod tests {
    use super::regex_literal;

    #[test]
    fn regex_metacharacters_in_addresses_match_only_themselves() {
        assert_eq!(regex_literal("a.b+c@x.io"), r"a\.b\+c@x\.io");
        assert_eq!(regex_literal("del_me@example.com"), r"del_me@example\.com");
    }
}
