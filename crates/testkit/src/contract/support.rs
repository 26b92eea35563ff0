//! What every case file shares: time helpers, the race harness, and short
//! forms of the store calls the cases make again and again.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use regstack_ports::{
    Admission, DeviceId, Email, LockoutKey, NewSession, OneTimeToken, RevokeReason, Rotation,
    Session, SessionId, SessionStart, StoreError, Stores, Timestamp, TokenHash, User, UserId,
};

use crate::fixtures::{self};

use super::RACERS;

pub(crate) fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

pub(crate) fn hours(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}

pub(crate) fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

pub(crate) fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// The reuse grace (regstack-rs's default): the refresh cases present
/// spent tokens around its end, to show the store's report does not depend
/// on it.
pub(crate) fn grace() -> TimeDelta {
    seconds(5)
}

/// The idle lifetime the refresh cases rotate with.
pub(crate) fn idle() -> TimeDelta {
    hours(1)
}

pub(crate) fn instant(rfc3339: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("a valid RFC 3339 instant")
        .with_timezone(&Utc)
}

/// Fires `RACERS` futures made by `make` at once on the runtime's workers
/// and returns their outputs in index order. The barrier makes them start
/// together, so the store — not the scheduler — has to keep them apart.
pub(crate) async fn race<T, Fut>(make: impl Fn(usize) -> Fut) -> Vec<T>
where
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let handles: Vec<_> = (0..RACERS)
        .map(|i| {
            let barrier = barrier.clone();
            let call = make(i);
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(RACERS);
    for handle in handles {
        out.push(handle.await.expect("a racing task panicked"));
    }
    out
}

/// Unwraps every result of a race, failing with all the errors at once.
pub(crate) fn all_ok<T>(what: &str, results: Vec<Result<T, StoreError>>) -> Vec<T> {
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| format!("{e:?}")))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {} of {RACERS} parallel calls returned Err (a store must \
         answer a lost race with its documented 'no', not an error): {errors:?}",
        errors.len()
    );
    results.into_iter().filter_map(Result::ok).collect()
}

pub(crate) async fn add_user(stores: &Stores, raw_email: &str) -> User {
    stores
        .users
        .insert(fixtures::new_user(raw_email))
        .await
        .unwrap_or_else(|e| panic!("insert user {raw_email}: {e:?}"))
}

pub(crate) async fn get_user(stores: &Stores, id: &UserId) -> User {
    stores
        .users
        .get(id)
        .await
        .expect("users.get")
        .expect("the user exists")
}

pub(crate) async fn start_session(
    stores: &Stores,
    user: &UserId,
    created_at: Timestamp,
    expires_at: Timestamp,
) -> SessionId {
    let new = NewSession {
        credential_epoch: get_user(stores, user).await.tokens_invalidated_after,
        ..fixtures::new_session(user, created_at, expires_at)
    };
    let id = new.id.clone();
    assert_eq!(
        stores.sessions.start(new).await.expect("sessions.start"),
        SessionStart::Started
    );
    id
}

/// A refresh token as a store sees it: the session it was minted for
/// (the engine proves that with a MAC before asking the store) and its
/// hash.
#[derive(Clone, Debug)]
pub(crate) struct Tok {
    pub(crate) sid: SessionId,
    pub(crate) hash: TokenHash,
}

/// A token of the same family as `t` that the store has not seen yet.
pub(crate) fn next(t: &Tok) -> Tok {
    Tok {
        sid: t.sid.clone(),
        hash: fixtures::token_hash(),
    }
}

/// Starts a session of `user` and returns it with its first refresh
/// token. `idle_expires_at` is the session's idle end.
pub(crate) async fn start_family(
    stores: &Stores,
    user: &UserId,
    created_at: Timestamp,
    expires_at: Timestamp,
    idle_expires_at: Timestamp,
) -> (SessionId, Tok) {
    let new = NewSession {
        idle_expires_at,
        credential_epoch: get_user(stores, user).await.tokens_invalidated_after,
        ..fixtures::new_session(user, created_at, expires_at)
    };
    let started = (
        new.id.clone(),
        Tok {
            sid: new.id.clone(),
            hash: new.refresh_hash.clone(),
        },
    );
    assert_eq!(
        stores.sessions.start(new).await.expect("sessions.start"),
        SessionStart::Started
    );
    started
}

/// `rotate` with the suite's [`idle`].
pub(crate) async fn rotate(
    stores: &Stores,
    presented: &Tok,
    successor: &Tok,
    now: Timestamp,
) -> Rotation {
    assert_eq!(
        presented.sid, successor.sid,
        "a successor stays in its family"
    );
    stores
        .sessions
        .rotate(
            &presented.sid,
            &presented.hash,
            &successor.hash,
            now,
            idle(),
        )
        .await
        .expect("sessions.rotate")
}

/// Unwraps a `Rotated` answer.
pub(crate) fn rotated(outcome: Rotation, what: &str) -> (Session, User) {
    match outcome {
        Rotation::Rotated { session, user } => (session, user),
        other => panic!("{what}: expected Rotated, got {other:?}"),
    }
}

/// The user's live sessions at `now`, as ids in the order `list` gives.
pub(crate) async fn listed(stores: &Stores, user: &UserId, now: Timestamp) -> Vec<SessionId> {
    stores
        .sessions
        .list(user, now)
        .await
        .expect("sessions.list")
        .into_iter()
        .map(|s| s.id)
        .collect()
}

pub(crate) async fn session(stores: &Stores, id: &SessionId) -> Session {
    stores
        .sessions
        .authenticate(id)
        .await
        .expect("sessions.authenticate")
        .expect("the session and its user exist")
        .0
}

pub(crate) async fn issue(stores: &Stores, token: OneTimeToken) -> OneTimeToken {
    stores
        .tokens
        .issue(token.clone())
        .await
        .expect("tokens.issue");
    token
}

pub(crate) async fn peek(
    stores: &Stores,
    token: &OneTimeToken,
    now: Timestamp,
) -> Option<OneTimeToken> {
    stores
        .tokens
        .peek(token.kind, &token.hash, now)
        .await
        .expect("tokens.peek")
}

/// Admits into the address's own lockout bucket.
pub(crate) async fn admit(
    stores: &Stores,
    who: &Email,
    now: Timestamp,
    window: TimeDelta,
    threshold: u32,
) -> Admission {
    admit_in(
        stores,
        &LockoutKey::address(who.clone()),
        now,
        window,
        threshold,
    )
    .await
}

/// Admits into `key`'s lockout bucket.
pub(crate) async fn admit_in(
    stores: &Stores,
    key: &LockoutKey,
    now: Timestamp,
    window: TimeDelta,
    threshold: u32,
) -> Admission {
    stores
        .login_attempts
        .admit(key, now, window, threshold)
        .await
        .expect("login_attempts.admit")
}

/// The bucket of one trusted device of `who`.
pub(crate) fn device_key(who: &Email, device: &DeviceId) -> LockoutKey {
    LockoutKey::device(who.clone(), device.clone())
}

/// Forgets `key`'s lockout bucket.
pub(crate) async fn clear(stores: &Stores, key: &LockoutKey) {
    stores
        .login_attempts
        .clear(key)
        .await
        .expect("login_attempts.clear");
}

pub(crate) async fn hit(
    stores: &Stores,
    key: &str,
    now: Timestamp,
    window: TimeDelta,
    limit: u32,
) -> bool {
    stores
        .rate_limits
        .hit(key, now, window, limit)
        .await
        .expect("rate_limits.hit")
}

pub(crate) fn admitted(failures: u32) -> Admission {
    Admission::Admitted { failures }
}

pub(crate) fn locked(retry_at: Timestamp) -> Admission {
    Admission::Locked { retry_at }
}

pub(crate) fn assert_revoked(s: &Session, when: Timestamp, why: RevokeReason, what: &str) {
    assert_eq!(
        (s.revoked_at, s.revoked_reason),
        (Some(when), Some(why)),
        "{what}"
    );
}

pub(crate) fn assert_live(s: &Session, what: &str) {
    assert_eq!((s.revoked_at, s.revoked_reason), (None, None), "{what}");
}
