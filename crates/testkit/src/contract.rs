//! The store contract suite: what every implementation of
//! `regstack_ports::stores` must do, written once as ordinary async
//! functions and run against each backend by [`store_contract!`].
//!
//! Each case takes a fresh, empty, migrated [`Stores`] and panics on the
//! first broken promise, naming it. The cases read the port docs literally
//! and pin down what they leave implicit, so that the in-memory fakes,
//! SQLite, PostgreSQL and MongoDB agree on every edge a flow relies on:
//!
//! - **Expiry.** A row is live while `expires_at > now`: at `expires_at`
//!   exactly it is dead, one microsecond earlier it is alive. Reads never
//!   return a dead row, whether or not it was purged.
//! - **Single use under contention.** Each race spawns 20 tasks on a
//!   4-worker runtime, lines them up on a barrier and fires them together:
//!   exactly one wins (exactly `threshold` for counters), the others get the
//!   documented "no" — never an `Err`, never a second winner.
//! - **Time.** Every instant is a fixed value passed as `now`, starting at
//!   [`t0`] (which has a non-zero microsecond part); nothing reads the wall
//!   clock, and instants must come back equal to the microsecond.
//! - **Lockout windows.** An attempt at `at` is counted at `now` while
//!   `at > now - window`; a lock reports `retry_at` = the moment the attempt
//!   whose leaving brings the count below the threshold leaves the window.
//! - **Liveness of a session** is [`Session::is_live`]: not revoked,
//!   `expires_at > now` and `idle_expires_at > now`; revocation never
//!   overwrites the reason a dead session died of, and a session that
//!   expired or idled out is never marked revoked after the fact.
//! - **Refresh families** (DECISIONS.md §7). `rotate` spends the family's
//!   live token and makes the successor live; of any number of concurrent
//!   presentations exactly one rotates. Tokens come with the session they
//!   were minted for (the engine checks that before the store is asked). A
//!   spent token presented again is a replay (no change) while `spent_at +
//!   grace > now` *and* its successor is unused; otherwise it revokes the
//!   session with [`RevokeReason::RefreshReuse`], exactly once however many
//!   race to present it. A token of a dead or unknown session is just
//!   `Invalid` (no revocation, no reason overwritten). Rotation moves
//!   `idle_expires_at` to `min(now + idle, expires_at)`, never `expires_at`.
//!
//! [`store_contract!`]: crate::store_contract!

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use regstack_ports::{
    Admission, Email, EmailChangeOutcome, NewSession, OneTimeToken, PasswordHash, Promotion,
    RevokeReason, Rotation, Session, SessionId, SessionStart, StoreError, Stores, Timestamp,
    TokenHash, TokenKind, User, UserId,
};

use crate::fixtures::{self, at, email, hash_of, micro, t0};

/// How many tasks each race fires at once.
pub const RACERS: usize = 20;

/// Runs one case on a fresh multi-thread runtime with 4 workers, as
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` would.
/// Used by [`store_contract!`](crate::store_contract!).
pub fn run_case(case: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("build the contract test runtime")
        .block_on(case);
}

/// Reports a case whose backend was not available. Loud locally; a failure
/// under `CI=true`, where a missing service means a broken pipeline.
pub fn skipped(case: &str, factory: &str) {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "store contract case `{case}`: `{factory}` returned None, and CI=true \
         forbids skipping — start the service (cargo xtask services up)"
    );
    eprintln!(
        "SKIPPED store contract case `{case}`: `{factory}` returned None \
         (service not configured)"
    );
}

// ---------------------------------------------------------------------------
// Helpers

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

fn hours(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// The reuse grace the refresh cases rotate with (regstack-rs's default).
fn grace() -> TimeDelta {
    seconds(5)
}

/// The idle lifetime the refresh cases rotate with.
fn idle() -> TimeDelta {
    hours(1)
}

fn instant(rfc3339: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("a valid RFC 3339 instant")
        .with_timezone(&Utc)
}

/// Fires `RACERS` futures made by `make` at once on the runtime's workers
/// and returns their outputs in index order. The barrier makes them start
/// together, so the store — not the scheduler — has to keep them apart.
async fn race<T, Fut>(make: impl Fn(usize) -> Fut) -> Vec<T>
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
fn all_ok<T>(what: &str, results: Vec<Result<T, StoreError>>) -> Vec<T> {
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

async fn add_user(stores: &Stores, raw_email: &str) -> User {
    stores
        .users
        .insert(fixtures::new_user(raw_email))
        .await
        .unwrap_or_else(|e| panic!("insert user {raw_email}: {e:?}"))
}

async fn get_user(stores: &Stores, id: &UserId) -> User {
    stores
        .users
        .get(id)
        .await
        .expect("users.get")
        .expect("the user exists")
}

async fn start_session(
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
struct Tok {
    sid: SessionId,
    hash: TokenHash,
}

/// A token of the same family as `t` that the store has not seen yet.
fn next(t: &Tok) -> Tok {
    Tok {
        sid: t.sid.clone(),
        hash: fixtures::token_hash(),
    }
}

/// Starts a session of `user` and returns it with its first refresh
/// token. `idle_expires_at` is the session's idle end.
async fn start_family(
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

/// `rotate` with the suite's [`grace`] and [`idle`].
async fn rotate(stores: &Stores, presented: &Tok, successor: &Tok, now: Timestamp) -> Rotation {
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
            grace(),
            idle(),
        )
        .await
        .expect("sessions.rotate")
}

/// Unwraps a `Rotated` answer.
fn rotated(outcome: Rotation, what: &str) -> (Session, User) {
    match outcome {
        Rotation::Rotated { session, user } => (session, user),
        other => panic!("{what}: expected Rotated, got {other:?}"),
    }
}

/// The user's live sessions at `now`, as ids in the order `list` gives.
async fn listed(stores: &Stores, user: &UserId, now: Timestamp) -> Vec<SessionId> {
    stores
        .sessions
        .list(user, now)
        .await
        .expect("sessions.list")
        .into_iter()
        .map(|s| s.id)
        .collect()
}

async fn session(stores: &Stores, id: &SessionId) -> Session {
    stores
        .sessions
        .authenticate(id)
        .await
        .expect("sessions.authenticate")
        .expect("the session and its user exist")
        .0
}

async fn issue(stores: &Stores, token: OneTimeToken) -> OneTimeToken {
    stores
        .tokens
        .issue(token.clone())
        .await
        .expect("tokens.issue");
    token
}

async fn peek(stores: &Stores, token: &OneTimeToken, now: Timestamp) -> Option<OneTimeToken> {
    stores
        .tokens
        .peek(token.kind, &token.hash, now)
        .await
        .expect("tokens.peek")
}

async fn admit(
    stores: &Stores,
    who: &Email,
    now: Timestamp,
    window: TimeDelta,
    threshold: u32,
) -> Admission {
    stores
        .login_attempts
        .admit(who, now, window, threshold)
        .await
        .expect("login_attempts.admit")
}

async fn hit(stores: &Stores, key: &str, now: Timestamp, window: TimeDelta, limit: u32) -> bool {
    stores
        .rate_limits
        .hit(key, now, window, limit)
        .await
        .expect("rate_limits.hit")
}

fn admitted(failures: u32) -> Admission {
    Admission::Admitted { failures }
}

fn locked(retry_at: Timestamp) -> Admission {
    Admission::Locked { retry_at }
}

fn assert_revoked(s: &Session, when: Timestamp, why: RevokeReason, what: &str) {
    assert_eq!(
        (s.revoked_at, s.revoked_reason),
        (Some(when), Some(why)),
        "{what}"
    );
}

fn assert_live(s: &Session, what: &str) {
    assert_eq!((s.revoked_at, s.revoked_reason), (None, None), "{what}");
}

// ---------------------------------------------------------------------------
// Users

/// `insert` stores every field of `NewUser`, fills the rest with the
/// documented defaults, and both lookups return exactly that row; the
/// email lookup is by canonical address.
pub async fn insert_stores_every_field_and_lookups_find_it(stores: Stores) {
    let mut new = fixtures::new_user("Ada.Lovelace@Example.COM");
    new.full_name = Some("Ada Lovelace".to_owned());
    new.is_superuser = true;
    new.is_verified = false;
    let expected = User {
        id: new.id.clone(),
        email: email("ada.lovelace@example.com"),
        password_hash: new.password_hash.clone(),
        is_active: true,
        is_verified: false,
        is_superuser: true,
        full_name: Some("Ada Lovelace".to_owned()),
        phone_number: None,
        is_mfa_enabled: false,
        created_at: t0(),
        updated_at: t0(),
        last_login: None,
        tokens_invalidated_after: None,
    };
    let created = stores.users.insert(new.clone()).await.expect("insert");
    assert_eq!(created, expected, "insert returns the stored row");
    assert_eq!(
        stores.users.get(&new.id).await.expect("get"),
        Some(expected.clone()),
        "get by id"
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&email("ADA.LOVELACE@example.com"))
            .await
            .expect("find_by_email"),
        Some(expected),
        "find by canonical email"
    );

    // An account without a password (OAuth-only) is a first-class row.
    let mut oauth_only = fixtures::new_user("oauth-only@example.com");
    oauth_only.password_hash = None;
    stores
        .users
        .insert(oauth_only.clone())
        .await
        .expect("insert");
    assert_eq!(get_user(&stores, &oauth_only.id).await.password_hash, None);

    assert_eq!(
        stores.users.get(&UserId::generate()).await.expect("get"),
        None
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&email("nobody@example.com"))
            .await
            .expect("find_by_email"),
        None
    );
}

/// A second account for the same canonical address is refused with
/// `Conflict("email")`, whatever its spelling, and changes nothing.
pub async fn email_uniqueness_is_enforced_on_insert(stores: Stores) {
    let alice = add_user(&stores, "alice@example.com").await;
    let mut impostor = fixtures::new_user("ALICE@Example.com");
    impostor.full_name = Some("Impostor".to_owned());
    match stores.users.insert(impostor.clone()).await {
        Err(StoreError::Conflict("email")) => {}
        other => panic!(
            "second insert of alice@example.com: expected Conflict(\"email\"), got {other:?}"
        ),
    }
    assert_eq!(
        stores.users.get(&impostor.id).await.expect("get"),
        None,
        "the refused row must not exist under its own id"
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&alice.email)
            .await
            .expect("find_by_email"),
        Some(alice),
        "the first account is untouched"
    );
}

/// 20 simultaneous registrations of one address: one row, 19
/// `Conflict("email")`, no other error.
pub async fn email_uniqueness_holds_under_20_parallel_inserts(stores: Stores) {
    let users = stores.users.clone();
    let attempts: Vec<_> = (0..RACERS)
        .map(|_| fixtures::new_user("race@example.com"))
        .collect();
    let ids: Vec<UserId> = attempts.iter().map(|u| u.id.clone()).collect();
    let results = race(|i| {
        let users = users.clone();
        let new = attempts[i].clone();
        async move { users.insert(new).await }
    })
    .await;

    let mut winners = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(user) => winners.push((i, user)),
            Err(StoreError::Conflict("email")) => {}
            Err(other) => {
                panic!("parallel insert {i}: expected Ok or Conflict(\"email\"), got {other:?}")
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert wins: {winners:?}");
    let (winner, _) = &winners[0];
    let found = stores
        .users
        .find_by_email(&email("race@example.com"))
        .await
        .expect("find_by_email")
        .expect("the winner exists");
    assert_eq!(found.id, ids[*winner]);
}

/// Instants come back equal to the microsecond, in UTC, from every table:
/// users, pending rows, tokens, sessions, revocations and lockout answers.
pub async fn timestamps_round_trip_exactly(stores: Stores) {
    let y2k_eve = instant("1999-12-31T23:59:59.999999Z");
    let one_micro = instant("2026-01-01T00:00:00.000001Z");
    let past_2038 = instant("2038-01-19T03:14:08.654321Z");

    let mut new = fixtures::new_user("time@example.com");
    new.created_at = y2k_eve;
    let user = stores.users.insert(new).await.expect("insert");
    let stored = get_user(&stores, &user.id).await;
    assert_eq!(
        (stored.created_at, stored.updated_at),
        (y2k_eve, y2k_eve),
        "user created_at / updated_at"
    );

    let renamed = stores
        .users
        .update_full_name(&user.id, Some("T".to_owned()), one_micro)
        .await
        .expect("update_full_name")
        .expect("user exists");
    assert_eq!(renamed.updated_at, one_micro);
    assert_eq!(get_user(&stores, &user.id).await.updated_at, one_micro);

    let mut pending = fixtures::pending(
        "pending-time@example.com",
        &fixtures::token_hash(),
        past_2038,
    );
    pending.created_at = y2k_eve;
    stores.pending.put(pending.clone()).await.expect("put");
    assert_eq!(
        stores
            .pending
            .find_by_email(&pending.email, one_micro)
            .await
            .expect("find_by_email"),
        Some(pending),
        "pending row round trip"
    );

    let mut token = fixtures::reset_token(&user.id, past_2038);
    token.created_at = y2k_eve;
    let token = issue(&stores, token).await;
    assert_eq!(
        peek(&stores, &token, one_micro).await,
        Some(token),
        "token round trip"
    );

    let sid = start_session(&stores, &user.id, one_micro, past_2038).await;
    let (s, u) = stores
        .sessions
        .authenticate(&sid)
        .await
        .expect("authenticate")
        .expect("session exists");
    assert_eq!(
        (
            s.created_at,
            s.last_used_at,
            s.expires_at,
            s.idle_expires_at
        ),
        (one_micro, one_micro, past_2038, past_2038),
        "session instants"
    );
    assert_eq!(u.last_login, Some(one_micro), "last_login");

    assert!(stores
        .sessions
        .revoke(&sid, RevokeReason::Logout, t0())
        .await
        .expect("revoke"));
    assert_revoked(
        &session(&stores, &sid).await,
        t0(),
        RevokeReason::Logout,
        "revoked_at round trip",
    );

    let changed = stores
        .users
        .change_password(
            &user.id,
            &hash_of("new"),
            RevokeReason::PasswordChanged,
            t0() + micro(),
        )
        .await
        .expect("change_password")
        .expect("user exists");
    assert_eq!(changed.tokens_invalidated_after, Some(t0() + micro()));
    assert_eq!(
        get_user(&stores, &user.id).await.tokens_invalidated_after,
        Some(t0() + micro())
    );

    let who = email("time@example.com");
    assert_eq!(
        admit(&stores, &who, one_micro, minutes(15), 1).await,
        admitted(1)
    );
    assert_eq!(
        admit(&stores, &who, one_micro + micro(), minutes(15), 1).await,
        locked(one_micro + minutes(15)),
        "retry_at is computed from the stored instant, to the microsecond"
    );
}

/// `update_full_name` sets and clears the name, stamps `updated_at`, and
/// reports a missing user as `None`.
pub async fn update_full_name_sets_and_clears(stores: Stores) {
    let user = add_user(&stores, "name@example.com").await;
    assert_eq!(user.full_name, None);

    let named = stores
        .users
        .update_full_name(&user.id, Some("Zoë Ōtsuka 名前".to_owned()), at(minutes(1)))
        .await
        .expect("update_full_name")
        .expect("user exists");
    assert_eq!(named.full_name.as_deref(), Some("Zoë Ōtsuka 名前"));
    assert_eq!(named.updated_at, at(minutes(1)));
    assert_eq!(
        get_user(&stores, &user.id).await,
        named,
        "get sees the update"
    );

    let cleared = stores
        .users
        .update_full_name(&user.id, None, at(minutes(2)))
        .await
        .expect("update_full_name")
        .expect("user exists");
    assert_eq!(cleared.full_name, None);
    assert_eq!(cleared.updated_at, at(minutes(2)));
    assert_eq!(get_user(&stores, &user.id).await, cleared);

    assert_eq!(
        stores
            .users
            .update_full_name(&UserId::generate(), Some("x".to_owned()), t0())
            .await
            .expect("update_full_name"),
        None
    );
}

/// The rehash swap happens only while the stored hash is still the one the
/// caller verified against, and touches nothing else.
pub async fn upgrade_password_hash_is_conditional(stores: Stores) {
    let user = add_user(&stores, "rehash@example.com").await;
    let sid = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let current = fixtures::password_hash();
    let stronger = hash_of("same password, stronger parameters");

    assert!(
        !stores
            .users
            .upgrade_password_hash(&user.id, &hash_of("not the stored one"), &stronger)
            .await
            .expect("upgrade"),
        "a wrong `expected` must not swap"
    );
    assert_eq!(
        get_user(&stores, &user.id).await.password_hash,
        Some(current.clone())
    );

    assert!(
        stores
            .users
            .upgrade_password_hash(&user.id, &current, &stronger)
            .await
            .expect("upgrade"),
        "the matching `expected` swaps"
    );
    let after = get_user(&stores, &user.id).await;
    assert_eq!(after.password_hash, Some(stronger.clone()));
    assert_eq!(
        after.tokens_invalidated_after, None,
        "a rehash is not a password change"
    );
    assert_live(&session(&stores, &sid).await, "a rehash revokes no session");

    assert!(
        !stores
            .users
            .upgrade_password_hash(&user.id, &current, &hash_of("stale"))
            .await
            .expect("upgrade"),
        "a stale `expected` (the hash changed meanwhile) must not swap"
    );
    assert_eq!(
        get_user(&stores, &user.id).await.password_hash,
        Some(stronger)
    );

    let mut no_password = fixtures::new_user("oauth@example.com");
    no_password.password_hash = None;
    stores
        .users
        .insert(no_password.clone())
        .await
        .expect("insert");
    assert!(!stores
        .users
        .upgrade_password_hash(&no_password.id, &current, &hash_of("x"))
        .await
        .expect("upgrade"));
    assert_eq!(get_user(&stores, &no_password.id).await.password_hash, None);

    assert!(!stores
        .users
        .upgrade_password_hash(&UserId::generate(), &current, &hash_of("x"))
        .await
        .expect("upgrade"));
}

/// `change_password`: new hash, cutoff moved to `now`, the user's live
/// sessions revoked with the given reason, all its one-time tokens gone —
/// and nobody else's.
pub async fn change_password_burns_outstanding_tokens_and_revokes_sessions(stores: Stores) {
    let user = add_user(&stores, "changer@example.com").await;
    let other = add_user(&stores, "bystander@example.com").await;
    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s2 = start_session(&stores, &user.id, at(minutes(1)), at(days(1))).await;
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(2)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "changer-new@example.com", at(hours(2))),
    )
    .await;
    let other_reset = issue(&stores, fixtures::reset_token(&other.id, at(hours(2)))).await;

    let now = at(hours(1));
    let new_hash = hash_of("a new password");
    let changed = stores
        .users
        .change_password(&user.id, &new_hash, RevokeReason::PasswordChanged, now)
        .await
        .expect("change_password")
        .expect("user exists");
    assert_eq!(changed.password_hash, Some(new_hash));
    assert_eq!(changed.tokens_invalidated_after, Some(now));
    assert_eq!(changed.updated_at, now);
    assert_eq!(
        get_user(&stores, &user.id).await,
        changed,
        "get sees the change"
    );

    for sid in [&s1, &s2] {
        assert_revoked(
            &session(&stores, sid).await,
            now,
            RevokeReason::PasswordChanged,
            "the user's sessions are revoked",
        );
    }
    assert_live(
        &session(&stores, &s_other).await,
        "another user's session is untouched",
    );
    assert_eq!(peek(&stores, &reset, now).await, None, "reset token burnt");
    assert_eq!(
        peek(&stores, &change, now).await,
        None,
        "email-change token burnt"
    );
    assert_eq!(
        peek(&stores, &other_reset, now).await,
        Some(other_reset),
        "another user's token survives"
    );

    assert_eq!(
        stores
            .users
            .change_password(
                &UserId::generate(),
                &hash_of("x"),
                RevokeReason::PasswordChanged,
                now
            )
            .await
            .expect("change_password"),
        None
    );
}

// ---------------------------------------------------------------------------
// Pending registrations

/// `promote` turns the live pending row into a verified user with the
/// given id, carrying its hash and name, created at `now`; the row is gone
/// and the token is spent.
pub async fn promote_creates_a_verified_user_and_removes_the_pending_row(stores: Stores) {
    let token = fixtures::token_hash();
    let mut pending = fixtures::pending("grace@example.com", &token, at(hours(24)));
    pending.full_name = Some("Grace Hopper".to_owned());
    pending.password_hash = hash_of("grace's password");
    stores.pending.put(pending.clone()).await.expect("put");

    let id = UserId::generate();
    let now = at(minutes(5));
    let expected = User {
        id: id.clone(),
        email: pending.email.clone(),
        password_hash: Some(pending.password_hash.clone()),
        is_active: true,
        is_verified: true,
        is_superuser: false,
        full_name: Some("Grace Hopper".to_owned()),
        phone_number: None,
        is_mfa_enabled: false,
        created_at: now,
        updated_at: now,
        last_login: None,
        tokens_invalidated_after: None,
    };
    assert_eq!(
        stores
            .pending
            .promote(&token, &id, now)
            .await
            .expect("promote"),
        Promotion::Promoted(expected.clone())
    );
    assert_eq!(
        stores.users.get(&id).await.expect("get"),
        Some(expected.clone())
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&pending.email)
            .await
            .expect("find_by_email"),
        Some(expected)
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&pending.email, now)
            .await
            .expect("find_by_email"),
        None,
        "the pending row is gone"
    );
    assert_eq!(
        stores
            .pending
            .promote(&token, &UserId::generate(), now)
            .await
            .expect("promote"),
        Promotion::InvalidToken,
        "the token is spent"
    );
}

/// 20 simultaneous clicks on one verification link: one user, 19
/// `InvalidToken`, no error.
pub async fn promote_is_single_use_under_20_parallel_attempts(stores: Stores) {
    let token = fixtures::token_hash();
    let pending = fixtures::pending("clicky@example.com", &token, at(hours(24)));
    stores.pending.put(pending.clone()).await.expect("put");

    let ids: Vec<UserId> = (0..RACERS).map(|_| UserId::generate()).collect();
    let now = at(minutes(1));
    let store = stores.pending.clone();
    let results = race(|i| {
        let store = store.clone();
        let token = token.clone();
        let id = ids[i].clone();
        async move { store.promote(&token, &id, now).await }
    })
    .await;
    let results = all_ok("promote", results);

    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Promotion::Promoted(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one promotion: {results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Promotion::Promoted(_) | Promotion::InvalidToken)),
        "the losers see InvalidToken: {results:?}"
    );
    let user = stores
        .users
        .find_by_email(&pending.email)
        .await
        .expect("find_by_email")
        .expect("the user exists");
    assert_eq!(user.id, ids[winners[0]], "the one user is the winner's");
    for (i, id) in ids.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(
                stores.users.get(id).await.expect("get"),
                None,
                "loser {i} made a user"
            );
        }
    }
}

/// A valid link for an address that became an account meanwhile reports
/// `EmailTaken`, spends the row and leaves the account alone.
pub async fn promote_reports_a_taken_address_and_removes_the_pending_row(stores: Stores) {
    let existing = add_user(&stores, "taken@example.com").await;
    let token = fixtures::token_hash();
    let mut pending = fixtures::pending("taken@example.com", &token, at(hours(24)));
    pending.password_hash = hash_of("someone else's password");
    stores.pending.put(pending.clone()).await.expect("put");

    let id = UserId::generate();
    assert_eq!(
        stores
            .pending
            .promote(&token, &id, t0())
            .await
            .expect("promote"),
        Promotion::EmailTaken
    );
    assert_eq!(stores.users.get(&id).await.expect("get"), None);
    assert_eq!(
        get_user(&stores, &existing.id).await,
        existing,
        "the account is untouched"
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&pending.email, t0())
            .await
            .expect("find_by_email"),
        None,
        "the pending row was removed"
    );
    assert_eq!(
        stores
            .pending
            .promote(&token, &UserId::generate(), t0())
            .await
            .expect("promote"),
        Promotion::InvalidToken
    );
}

/// At `expires_at` exactly a registration is dead: it is not found and
/// cannot be promoted; a microsecond earlier it is alive.
pub async fn expired_pending_registration_cannot_be_promoted(stores: Stores) {
    let expires_at = at(hours(1));
    let late_token = fixtures::token_hash();
    let late = fixtures::pending("late@example.com", &late_token, expires_at);
    let just_in_time_token = fixtures::token_hash();
    let just_in_time =
        fixtures::pending("just-in-time@example.com", &just_in_time_token, expires_at);
    stores.pending.put(late.clone()).await.expect("put");
    stores.pending.put(just_in_time.clone()).await.expect("put");

    assert_eq!(
        stores
            .pending
            .find_by_email(&late.email, expires_at - micro())
            .await
            .expect("find_by_email"),
        Some(late.clone()),
        "alive one microsecond before expiry"
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&late.email, expires_at)
            .await
            .expect("find_by_email"),
        None,
        "dead at expires_at"
    );

    let id = UserId::generate();
    assert_eq!(
        stores
            .pending
            .promote(&late_token, &id, expires_at)
            .await
            .expect("promote"),
        Promotion::InvalidToken
    );
    assert_eq!(stores.users.get(&id).await.expect("get"), None);
    assert_eq!(
        stores
            .users
            .find_by_email(&late.email)
            .await
            .expect("find_by_email"),
        None
    );

    assert!(matches!(
        stores
            .pending
            .promote(
                &just_in_time_token,
                &UserId::generate(),
                expires_at - micro()
            )
            .await
            .expect("promote"),
        Promotion::Promoted(_)
    ));
}

/// Registering again replaces the row: the new data wins and the old
/// link stops working.
pub async fn put_replaces_the_pending_row_and_the_old_token_dies(stores: Stores) {
    let old_token = fixtures::token_hash();
    let mut first = fixtures::pending("twice@example.com", &old_token, at(hours(24)));
    first.full_name = Some("First".to_owned());
    stores.pending.put(first).await.expect("put");

    let new_token = fixtures::token_hash();
    let mut second = fixtures::pending("twice@example.com", &new_token, at(hours(25)));
    second.full_name = Some("Second".to_owned());
    second.password_hash = hash_of("second password");
    second.created_at = at(hours(1));
    stores.pending.put(second.clone()).await.expect("put");

    assert_eq!(
        stores
            .pending
            .find_by_email(&second.email, at(hours(2)))
            .await
            .expect("find_by_email"),
        Some(second.clone()),
        "the second registration replaced the first"
    );
    assert_eq!(
        stores
            .pending
            .promote(&old_token, &UserId::generate(), at(hours(2)))
            .await
            .expect("promote"),
        Promotion::InvalidToken,
        "the old link is dead"
    );
    match stores
        .pending
        .promote(&new_token, &UserId::generate(), at(hours(2)))
        .await
        .expect("promote")
    {
        Promotion::Promoted(user) => {
            assert_eq!(user.full_name.as_deref(), Some("Second"));
            assert_eq!(user.password_hash, Some(second.password_hash));
        }
        other => panic!("the new link promotes: got {other:?}"),
    }
}

/// Resend gives a live row a new token and expiry (the old link dies, the
/// rest of the row stays). A missing row — or an expired one, which reads
/// as missing — reports `false` and changes nothing.
pub async fn replace_token_gives_only_a_live_row_a_new_link(stores: Stores) {
    let old_token = fixtures::token_hash();
    let mut row = fixtures::pending("resend@example.com", &old_token, at(hours(1)));
    row.full_name = Some("Resender".to_owned());
    stores.pending.put(row.clone()).await.expect("put");

    let new_token = fixtures::token_hash();
    assert!(stores
        .pending
        .replace_token(&row.email, &new_token, at(hours(3)), at(minutes(30)))
        .await
        .expect("replace_token"));
    let expected = regstack_ports::PendingRegistration {
        token_hash: new_token.clone(),
        expires_at: at(hours(3)),
        ..row.clone()
    };
    assert_eq!(
        stores
            .pending
            .find_by_email(&row.email, at(hours(2)))
            .await
            .expect("find_by_email"),
        Some(expected),
        "new token and expiry, everything else unchanged"
    );
    assert_eq!(
        stores
            .pending
            .promote(&old_token, &UserId::generate(), at(minutes(40)))
            .await
            .expect("promote"),
        Promotion::InvalidToken,
        "the old link is dead"
    );

    assert!(!stores
        .pending
        .replace_token(
            &email("nobody@example.com"),
            &fixtures::token_hash(),
            at(hours(3)),
            t0()
        )
        .await
        .expect("replace_token"));

    // An expired row cannot be revived: at expires_at exactly it is dead.
    let stale_token = fixtures::token_hash();
    let stale = fixtures::pending("stale@example.com", &stale_token, at(hours(1)));
    stores.pending.put(stale.clone()).await.expect("put");
    let revived_token = fixtures::token_hash();
    assert!(!stores
        .pending
        .replace_token(&stale.email, &revived_token, at(hours(3)), at(hours(1)))
        .await
        .expect("replace_token"));
    assert_eq!(
        stores
            .pending
            .promote(&revived_token, &UserId::generate(), at(hours(2)))
            .await
            .expect("promote"),
        Promotion::InvalidToken,
        "the refused token must not have been stored"
    );

    assert!(matches!(
        stores
            .pending
            .promote(&new_token, &UserId::generate(), at(hours(2)))
            .await
            .expect("promote"),
        Promotion::Promoted(_)
    ));
}

// ---------------------------------------------------------------------------
// One-time tokens

/// 20 simultaneous submissions of one reset link with 20 different new
/// passwords: exactly one is applied, and it is the one stored.
pub async fn complete_password_reset_is_single_use_under_20_parallel_attempts(stores: Stores) {
    let user = add_user(&stores, "reset-race@example.com").await;
    let token = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let hashes: Vec<PasswordHash> = (0..RACERS)
        .map(|i| hash_of(&format!("new password {i}")))
        .collect();
    let now = at(minutes(10));
    let users = stores.users.clone();
    let results = race(|i| {
        let users = users.clone();
        let token = token.hash.clone();
        let new = hashes[i].clone();
        async move { users.complete_password_reset(&token, &new, now).await }
    })
    .await;
    let results = all_ok("complete_password_reset", results);

    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one reset applies: winners {winners:?}"
    );
    assert_eq!(
        get_user(&stores, &user.id).await.password_hash,
        Some(hashes[winners[0]].clone()),
        "the stored hash is the winner's"
    );
}

/// A completed reset: new hash, cutoff at `now`, live sessions revoked with
/// `PasswordReset` (dead ones keep their reason), every other token of the
/// user gone, the address's lockout counter cleared; nobody else touched.
pub async fn reset_revokes_sessions_and_moves_the_cutoff(stores: Stores) {
    let user = add_user(&stores, "reset-me@example.com").await;
    let other = add_user(&stores, "not-me@example.com").await;
    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s2 = start_session(&stores, &user.id, at(minutes(1)), at(days(1))).await;
    let s_old = start_session(&stores, &user.id, t0(), at(days(1))).await;
    assert!(stores
        .sessions
        .revoke(&s_old, RevokeReason::Logout, at(minutes(10)))
        .await
        .expect("revoke"));
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;

    let window = hours(1);
    assert_eq!(
        admit(&stores, &user.email, at(minutes(5)), window, 5).await,
        admitted(1)
    );
    assert_eq!(
        admit(&stores, &user.email, at(minutes(6)), window, 5).await,
        admitted(2)
    );
    assert_eq!(
        admit(&stores, &other.email, at(minutes(6)), window, 5).await,
        admitted(1)
    );

    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "reset-me-new@example.com", at(hours(2))),
    )
    .await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(2)))).await;

    let now = at(minutes(30));
    let new_hash = hash_of("the new password");
    let done = stores
        .users
        .complete_password_reset(&reset.hash, &new_hash, now)
        .await
        .expect("complete_password_reset")
        .expect("the token is live");
    assert_eq!(done.id, user.id);
    assert_eq!(done.password_hash, Some(new_hash));
    assert_eq!(
        done.tokens_invalidated_after,
        Some(now),
        "the cutoff moved to now"
    );
    assert_eq!(done.updated_at, now);
    assert_eq!(
        get_user(&stores, &user.id).await,
        done,
        "get sees the reset"
    );

    for sid in [&s1, &s2] {
        assert_revoked(
            &session(&stores, sid).await,
            now,
            RevokeReason::PasswordReset,
            "live sessions are revoked with PasswordReset",
        );
    }
    assert_revoked(
        &session(&stores, &s_old).await,
        at(minutes(10)),
        RevokeReason::Logout,
        "a session that was already dead keeps its own reason and time",
    );
    assert_live(
        &session(&stores, &s_other).await,
        "another user's session is untouched",
    );

    assert_eq!(
        peek(&stores, &reset, now).await,
        None,
        "the reset token is spent"
    );
    assert_eq!(
        peek(&stores, &change, now).await,
        None,
        "other tokens of the user are gone"
    );
    assert_eq!(
        stores
            .users
            .complete_password_reset(&reset.hash, &hash_of("again"), now)
            .await
            .expect("complete_password_reset"),
        None,
        "the link works once"
    );

    assert_eq!(
        admit(&stores, &user.email, now, window, 5).await,
        admitted(1),
        "the lockout counter of the address was cleared"
    );
    assert_eq!(
        admit(&stores, &other.email, now, window, 5).await,
        admitted(2),
        "another address's counter is untouched"
    );
}

/// Issuing a token deletes the user's earlier tokens of the same kind —
/// not of the other kind, not of other users.
pub async fn a_newer_reset_token_supersedes_the_older(stores: Stores) {
    let user = add_user(&stores, "forgetful@example.com").await;
    let other = add_user(&stores, "other@example.com").await;
    let first = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "forgetful-new@example.com", at(hours(1))),
    )
    .await;
    let other_reset = issue(&stores, fixtures::reset_token(&other.id, at(hours(1)))).await;
    let second = issue(&stores, fixtures::reset_token(&user.id, at(hours(2)))).await;

    let now = at(minutes(5));
    assert_eq!(
        peek(&stores, &first, now).await,
        None,
        "the older reset link is dead"
    );
    assert_eq!(peek(&stores, &second, now).await, Some(second.clone()));
    assert_eq!(
        peek(&stores, &change, now).await,
        Some(change.clone()),
        "a reset token does not supersede an email-change token"
    );
    assert_eq!(
        peek(&stores, &other_reset, now).await,
        Some(other_reset),
        "nor another user's reset token"
    );

    assert_eq!(
        stores
            .users
            .complete_password_reset(&first.hash, &hash_of("via old link"), now)
            .await
            .expect("complete_password_reset"),
        None
    );
    assert_eq!(
        get_user(&stores, &user.id).await.password_hash,
        Some(fixtures::password_hash()),
        "the old link changed nothing"
    );

    let second_change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "forgetful-newer@example.com", at(hours(1))),
    )
    .await;
    assert_eq!(
        peek(&stores, &change, now).await,
        None,
        "the older change link is dead"
    );
    assert_eq!(
        peek(&stores, &second_change, now).await,
        Some(second_change)
    );

    assert!(stores
        .users
        .complete_password_reset(&second.hash, &hash_of("via new link"), now)
        .await
        .expect("complete_password_reset")
        .is_some());
}

/// A token is bound to its kind: a reset token cannot be peeked or spent
/// as an email-change token, nor the reverse, and a wrong-kind attempt
/// leaves both tokens usable for their own purpose.
pub async fn reset_token_is_not_an_email_change_token(stores: Stores) {
    let user = add_user(&stores, "kinds@example.com").await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "kinds-new@example.com", at(hours(1))),
    )
    .await;
    let now = at(minutes(1));

    assert_eq!(
        stores
            .tokens
            .peek(TokenKind::EmailChange, &reset.hash, now)
            .await
            .expect("peek"),
        None
    );
    assert_eq!(
        stores
            .tokens
            .peek(TokenKind::PasswordReset, &change.hash, now)
            .await
            .expect("peek"),
        None
    );
    assert_eq!(
        stores
            .users
            .confirm_email_change(&reset.hash, now)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::InvalidToken
    );
    assert_eq!(
        stores
            .users
            .complete_password_reset(&change.hash, &hash_of("smuggled"), now)
            .await
            .expect("complete_password_reset"),
        None
    );
    assert_eq!(get_user(&stores, &user.id).await, user, "nothing changed");

    assert_eq!(
        peek(&stores, &reset, now).await,
        Some(reset),
        "still a valid reset token"
    );
    assert_eq!(
        peek(&stores, &change, now).await,
        Some(change),
        "still a valid change token"
    );
}

/// At `expires_at` exactly a token is dead for `peek` and for spending; a
/// microsecond earlier it is alive.
pub async fn expired_token_is_refused(stores: Stores) {
    let expires_at = at(hours(1));
    let user = add_user(&stores, "slow@example.com").await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, expires_at)).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "slow-new@example.com", expires_at),
    )
    .await;

    assert_eq!(
        peek(&stores, &reset, expires_at - micro()).await,
        Some(reset.clone())
    );
    assert_eq!(
        peek(&stores, &change, expires_at - micro()).await,
        Some(change.clone())
    );
    assert_eq!(peek(&stores, &reset, expires_at).await, None);
    assert_eq!(peek(&stores, &change, expires_at).await, None);

    assert_eq!(
        stores
            .users
            .complete_password_reset(&reset.hash, &hash_of("too late"), expires_at)
            .await
            .expect("complete_password_reset"),
        None
    );
    assert_eq!(
        stores
            .users
            .confirm_email_change(&change.hash, expires_at)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::InvalidToken
    );
    assert_eq!(get_user(&stores, &user.id).await, user, "nothing changed");

    // The same boundary from the spending side, with a fresh user.
    let punctual = add_user(&stores, "punctual@example.com").await;
    let on_time = issue(&stores, fixtures::reset_token(&punctual.id, expires_at)).await;
    assert!(stores
        .users
        .complete_password_reset(
            &on_time.hash,
            &hash_of("just in time"),
            expires_at - micro()
        )
        .await
        .expect("complete_password_reset")
        .is_some());
}

/// 20 simultaneous confirmations of one email-change link: the address is
/// switched once, 19 callers see `InvalidToken`, no error.
pub async fn confirm_email_change_switches_the_address_once_under_20_parallel_attempts(
    stores: Stores,
) {
    let user = add_user(&stores, "old-address@example.com").await;
    let token = issue(
        &stores,
        fixtures::email_change_token(&user.id, "new-address@example.com", at(hours(1))),
    )
    .await;
    let now = at(minutes(1));
    let users = stores.users.clone();
    let results = race(|_| {
        let users = users.clone();
        let token = token.hash.clone();
        async move { users.confirm_email_change(&token, now).await }
    })
    .await;
    let results = all_ok("confirm_email_change", results);

    let changed: Vec<&User> = results
        .iter()
        .filter_map(|r| match r {
            EmailChangeOutcome::Changed(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "exactly one confirmation applies: {results:?}"
    );
    assert!(
        results.iter().all(|r| matches!(
            r,
            EmailChangeOutcome::Changed(_) | EmailChangeOutcome::InvalidToken
        )),
        "the losers see InvalidToken: {results:?}"
    );
    assert_eq!(changed[0].email, email("new-address@example.com"));
    assert_eq!(
        stores
            .users
            .find_by_email(&email("old-address@example.com"))
            .await
            .expect("find_by_email"),
        None
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&email("new-address@example.com"))
            .await
            .expect("find_by_email")
            .map(|u| u.id),
        Some(user.id)
    );
}

/// A confirmed change: the address switches (the old one is free again),
/// the cutoff moves, live sessions are revoked with `EmailChanged`, every
/// other token of the user is gone; the password and other users stay.
pub async fn confirm_email_change_revokes_sessions_and_burns_other_tokens(stores: Stores) {
    let user = add_user(&stores, "mover@example.com").await;
    let other = add_user(&stores, "stayer@example.com").await;
    let s_live = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s_old = start_session(&stores, &user.id, t0(), at(days(1))).await;
    assert!(stores
        .sessions
        .revoke(&s_old, RevokeReason::Logout, at(minutes(1)))
        .await
        .expect("revoke"));
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let other_reset = issue(&stores, fixtures::reset_token(&other.id, at(hours(1)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "Moved@Example.com", at(hours(1))),
    )
    .await;

    let now = at(minutes(10));
    let moved = match stores
        .users
        .confirm_email_change(&change.hash, now)
        .await
        .expect("confirm_email_change")
    {
        EmailChangeOutcome::Changed(u) => u,
        other => panic!("expected Changed, got {other:?}"),
    };
    assert_eq!(moved.id, user.id);
    assert_eq!(moved.email, email("moved@example.com"));
    assert_eq!(moved.tokens_invalidated_after, Some(now));
    assert_eq!(moved.updated_at, now);
    assert_eq!(
        moved.password_hash, user.password_hash,
        "the password is unchanged"
    );
    assert_eq!(
        get_user(&stores, &user.id).await,
        moved,
        "get sees the change"
    );

    assert_revoked(
        &session(&stores, &s_live).await,
        now,
        RevokeReason::EmailChanged,
        "live sessions are revoked with EmailChanged",
    );
    assert_revoked(
        &session(&stores, &s_old).await,
        at(minutes(1)),
        RevokeReason::Logout,
        "a dead session keeps its own reason",
    );
    assert_live(
        &session(&stores, &s_other).await,
        "another user's session is untouched",
    );
    assert_eq!(
        peek(&stores, &reset, now).await,
        None,
        "the user's reset token is gone"
    );
    assert_eq!(peek(&stores, &other_reset, now).await, Some(other_reset));
    assert_eq!(
        stores
            .users
            .confirm_email_change(&change.hash, now)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::InvalidToken,
        "the link works once"
    );

    // The old address is free for a new account.
    stores
        .users
        .insert(fixtures::new_user("mover@example.com"))
        .await
        .expect("the old address can be registered again");
    assert_eq!(
        get_user(&stores, &user.id).await.email,
        email("moved@example.com")
    );
}

/// Confirming a change to an address taken meanwhile reports `EmailTaken`,
/// spends the token and changes nothing else: both accounts keep their
/// addresses, no session is revoked.
pub async fn confirm_email_change_reports_a_taken_address(stores: Stores) {
    let user = add_user(&stores, "wants-it@example.com").await;
    let holder = add_user(&stores, "has-it@example.com").await;
    let sid = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "has-it@example.com", at(hours(1))),
    )
    .await;

    let user = get_user(&stores, &user.id).await;
    let now = at(minutes(1));
    assert_eq!(
        stores
            .users
            .confirm_email_change(&change.hash, now)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::EmailTaken
    );
    assert_eq!(
        get_user(&stores, &user.id).await,
        user,
        "the requester is unchanged"
    );
    assert_eq!(
        get_user(&stores, &holder.id).await,
        holder,
        "the holder is unchanged"
    );
    assert_live(
        &session(&stores, &sid).await,
        "nothing changed, so nothing is revoked",
    );
    assert_eq!(
        stores
            .users
            .confirm_email_change(&change.hash, now)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::InvalidToken,
        "the token is spent"
    );
}

// ---------------------------------------------------------------------------
// Lockout counter

/// 20 simultaneous sign-ins against a threshold of 5: exactly 5 admitted
/// (counting 1 to 5), 15 locked until the window has passed, no error.
pub async fn admit_never_admits_more_than_the_threshold_under_20_parallel_attempts(stores: Stores) {
    let who = email("brute@example.com");
    let window = minutes(15);
    let now = t0();
    let store = stores.login_attempts.clone();
    let results = race(|_| {
        let store = store.clone();
        let who = who.clone();
        async move { store.admit(&who, now, window, 5).await }
    })
    .await;
    let results = all_ok("admit", results);

    let mut failures: Vec<u32> = results
        .iter()
        .filter_map(|a| match a {
            Admission::Admitted { failures } => Some(*failures),
            Admission::Locked { .. } => None,
        })
        .collect();
    failures.sort_unstable();
    assert_eq!(
        failures,
        vec![1, 2, 3, 4, 5],
        "exactly the threshold is admitted, each counting itself: {results:?}"
    );
    let locked_at: Vec<Timestamp> = results
        .iter()
        .filter_map(|a| match a {
            Admission::Locked { retry_at } => Some(*retry_at),
            Admission::Admitted { .. } => None,
        })
        .collect();
    assert_eq!(
        locked_at,
        vec![now + window; RACERS - 5],
        "the rest are locked"
    );

    assert_eq!(
        admit(&stores, &email("innocent@example.com"), now, window, 5).await,
        admitted(1),
        "other addresses are not affected"
    );
}

/// The window slides: attempts stop counting once they are `window` old,
/// and a lock lifts by itself.
pub async fn admit_window_slides(stores: Stores) {
    let who = email("slider@example.com");
    let window = minutes(10);
    assert_eq!(admit(&stores, &who, t0(), window, 3).await, admitted(1));
    assert_eq!(
        admit(&stores, &who, at(minutes(1)), window, 3).await,
        admitted(2)
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(2)), window, 3).await,
        admitted(3)
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(3)), window, 3).await,
        locked(at(minutes(10)))
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(10)), window, 3).await,
        admitted(3),
        "the attempt at t0 left the window at t0 + window; the other two still count"
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(10)) + micro(), window, 3).await,
        locked(at(minutes(11))),
        "locked again until the attempt at t0 + 1 min leaves"
    );
    assert_eq!(
        admit(&stores, &who, at(hours(1)), window, 3).await,
        admitted(1),
        "long after, the slate is clean"
    );
}

/// `retry_at` is the instant the count would drop below the threshold:
/// still locked a microsecond before it, admitted at it. If the threshold
/// was lowered, more than one attempt has to leave first.
pub async fn locked_retry_at_is_when_the_oldest_attempt_leaves_the_window(stores: Stores) {
    let who = email("waiter@example.com");
    let window = minutes(10);
    for (i, minute) in [0, 1, 2].into_iter().enumerate() {
        assert_eq!(
            admit(&stores, &who, at(minutes(minute)), window, 3).await,
            admitted(i as u32 + 1)
        );
    }
    assert_eq!(
        admit(&stores, &who, at(minutes(5)), window, 3).await,
        locked(at(minutes(10)))
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(10)) - micro(), window, 3).await,
        locked(at(minutes(10))),
        "still locked a microsecond before retry_at"
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(5)), window, 2).await,
        locked(at(minutes(11))),
        "with 3 attempts against a threshold of 2, two must leave: the second-oldest decides"
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(10)), window, 3).await,
        admitted(3),
        "admitted exactly at retry_at"
    );
}

/// `clear` forgets every attempt for the address (and only for it).
pub async fn clear_forgets_attempts(stores: Stores) {
    let who = email("forgiven@example.com");
    let bystander = email("bystander@example.com");
    let window = minutes(15);
    for n in 1..=3 {
        assert_eq!(admit(&stores, &who, t0(), window, 3).await, admitted(n));
    }
    assert_eq!(
        admit(&stores, &bystander, t0(), window, 3).await,
        admitted(1)
    );
    assert_eq!(
        admit(&stores, &who, at(minutes(1)), window, 3).await,
        locked(t0() + window)
    );

    stores.login_attempts.clear(&who).await.expect("clear");
    assert_eq!(
        admit(&stores, &who, at(minutes(1)), window, 3).await,
        admitted(1),
        "a cleared address starts over"
    );
    assert_eq!(
        admit(&stores, &bystander, at(minutes(1)), window, 3).await,
        admitted(2),
        "another address keeps its attempts"
    );
    stores
        .login_attempts
        .clear(&email("never-tried@example.com"))
        .await
        .expect("clearing an unknown address is fine");
}

// ---------------------------------------------------------------------------
// Sessions

/// `start` records the session with its idle end and first refresh token
/// and stamps the user's `last_login`; `authenticate` returns session and
/// user together, including expired sessions (the caller words the
/// refusal); a duplicate id is refused and changes nothing.
pub async fn sessions_start_and_authenticate_in_one_lookup(stores: Stores) {
    let user = add_user(&stores, "signer@example.com").await;
    let created = at(minutes(5));
    let new = NewSession {
        idle_expires_at: at(days(1)),
        ..fixtures::new_session(&user.id, created, at(days(14)))
    };
    assert_eq!(
        stores.sessions.start(new.clone()).await.expect("start"),
        SessionStart::Started
    );

    let (s, u) = stores
        .sessions
        .authenticate(&new.id)
        .await
        .expect("authenticate")
        .expect("the session exists");
    assert_eq!(
        s,
        Session {
            id: new.id.clone(),
            user_id: user.id.clone(),
            created_at: created,
            last_used_at: created,
            expires_at: at(days(14)),
            idle_expires_at: at(days(1)),
            user_agent: new.user_agent.clone(),
            ip: new.ip.clone(),
            revoked_at: None,
            revoked_reason: None,
        }
    );
    let expected_user = User {
        last_login: Some(created),
        ..user.clone()
    };
    assert_eq!(
        u, expected_user,
        "the user comes with it, last_login stamped"
    );
    assert_eq!(get_user(&stores, &user.id).await, expected_user);

    let later = at(hours(2));
    let second = start_session(&stores, &user.id, later, at(days(14))).await;
    assert_eq!(
        get_user(&stores, &user.id).await.last_login,
        Some(later),
        "each sign-in stamps last_login"
    );
    assert_eq!(session(&stores, &second).await.user_id, user.id);

    // No `now` in authenticate: an expired session is returned as stored.
    let expired = start_session(&stores, &user.id, t0(), t0() + micro()).await;
    assert_eq!(session(&stores, &expired).await.expires_at, t0() + micro());

    let mut duplicate = fixtures::new_session(&user.id, later, at(days(14)));
    duplicate.id = new.id.clone();
    match stores.sessions.start(duplicate).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a duplicate session id must be refused with Conflict, got {other:?}"),
    }
    assert_eq!(
        session(&stores, &new.id).await.created_at,
        created,
        "the refused start overwrote nothing"
    );

    let first = Tok {
        sid: new.id.clone(),
        hash: new.refresh_hash.clone(),
    };
    let (rotated_session, _) = rotated(
        rotate(&stores, &first, &next(&first), at(hours(4))).await,
        "the first refresh token is the session's live one",
    );
    assert_eq!(rotated_session.id, new.id);

    assert_eq!(
        stores
            .sessions
            .authenticate(&SessionId::generate())
            .await
            .expect("authenticate"),
        None
    );
}

/// A session starts only on the credential epoch its sign-in read: after
/// a password change, a reset or an email change, a start carrying the
/// old `tokens_invalidated_after` is `Stale` and writes nothing (no
/// session, no `last_login` stamp). The epoch moves strictly forward on
/// every change — also for two changes at the same instant, and for a
/// change whose `now` is behind the last one (an instance with a slow
/// clock) — so an old value never matches again. An unknown user is
/// `Stale` too.
pub async fn a_session_starts_only_on_the_credential_epoch_it_checked(stores: Stores) {
    let user = add_user(&stores, "epoch@example.com").await;
    let first_login = at(minutes(1));
    let before = start_session(&stores, &user.id, first_login, at(days(1))).await;
    let start_on = |epoch: Option<Timestamp>, created_at: Timestamp| {
        let stores = stores.clone();
        let new = NewSession {
            credential_epoch: epoch,
            ..fixtures::new_session(&user.id, created_at, at(days(2)))
        };
        async move {
            let id = new.id.clone();
            let outcome = stores.sessions.start(new).await.expect("sessions.start");
            (outcome, id)
        }
    };
    let refused = |outcome: (SessionStart, SessionId), what: &str| {
        assert_eq!(outcome.0, SessionStart::Stale, "{what}");
        outcome.1
    };

    // A password change.
    let changed_at = at(hours(1));
    let e0 = user.tokens_invalidated_after;
    let changed = stores
        .users
        .change_password(
            &user.id,
            &hash_of("changed once"),
            RevokeReason::PasswordChanged,
            changed_at,
        )
        .await
        .expect("change_password")
        .expect("the user exists");
    let e1 = changed.tokens_invalidated_after;
    assert_eq!(
        e1,
        Some(changed_at),
        "the first change moves the epoch to now"
    );
    let stale = refused(
        start_on(e0, at(hours(2))).await,
        "a start with the epoch from before the change",
    );
    assert_eq!(
        stores
            .sessions
            .authenticate(&stale)
            .await
            .expect("authenticate"),
        None,
        "a stale start writes no session"
    );
    assert_eq!(
        get_user(&stores, &user.id).await.last_login,
        Some(first_login),
        "a stale start stamps no last_login"
    );
    assert_revoked(
        &session(&stores, &before).await,
        changed_at,
        RevokeReason::PasswordChanged,
        "the session from before the change",
    );

    // A second change at the very same instant still moves the epoch.
    let again = stores
        .users
        .change_password(
            &user.id,
            &hash_of("changed twice"),
            RevokeReason::PasswordChanged,
            changed_at,
        )
        .await
        .expect("change_password")
        .expect("the user exists");
    let e2 = again.tokens_invalidated_after;
    assert!(e2 > e1, "same-instant changes: {e2:?} must be after {e1:?}");
    refused(
        start_on(e1, at(hours(2))).await,
        "the epoch of the first change",
    );

    // A reset.
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(days(1)))).await;
    let after_reset = stores
        .users
        .complete_password_reset(&reset.hash, &hash_of("reset"), changed_at)
        .await
        .expect("complete_password_reset")
        .expect("the token is live");
    let e3 = after_reset.tokens_invalidated_after;
    assert!(e3 > e2, "a reset moves the epoch: {e3:?} after {e2:?}");
    refused(
        start_on(e2, at(hours(2))).await,
        "the epoch from before the reset",
    );

    // An email change from an instance whose clock is an hour behind.
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "epoch-new@example.com", at(days(1))),
    )
    .await;
    match stores
        .users
        .confirm_email_change(&change.hash, changed_at - hours(1))
        .await
        .expect("confirm_email_change")
    {
        EmailChangeOutcome::Changed(u) => {
            let e4 = u.tokens_invalidated_after;
            assert!(
                e4 > e3,
                "a change behind the clock still moves the epoch forward"
            );
            refused(
                start_on(e3, at(hours(2))).await,
                "the epoch from before the email change",
            );
            let (outcome, live) = start_on(e4, at(hours(3))).await;
            assert_eq!(outcome, SessionStart::Started, "the current epoch starts");
            assert_live(
                &session(&stores, &live).await,
                "the session on the current epoch",
            );
            assert_eq!(
                get_user(&stores, &user.id).await.last_login,
                Some(at(hours(3)))
            );
        }
        other => panic!("the email change must succeed, got {other:?}"),
    }
    assert_eq!(
        listed(&stores, &user.id, at(hours(4))).await.len(),
        1,
        "only the start on the current epoch left a session"
    );

    let stranger = NewSession {
        credential_epoch: None,
        ..fixtures::new_session(&UserId::generate(), at(hours(1)), at(days(1)))
    };
    assert_eq!(
        stores
            .sessions
            .start(stranger)
            .await
            .expect("sessions.start"),
        SessionStart::Stale,
        "an unknown user gets no session"
    );
}

/// Sign-ins that checked the old password race a password change: of
/// [`RACERS`] − 1 parallel starts on the old epoch and one change, every
/// start either lands before the change (and the change revokes it) or
/// is `Stale` — never a live session once the change has returned. Run
/// for several rounds, each on a fresh user, so the change lands at
/// different points of the burst.
pub async fn starts_racing_a_password_change_leave_no_session_of_the_old_credential(
    stores: Stores,
) {
    enum Step {
        Start(SessionStart),
        Changed,
    }
    for round in 0..5 {
        let user = add_user(&stores, &format!("racer-{round}@example.com")).await;
        let epoch = user.tokens_invalidated_after;
        let changed_at = at(hours(1));
        let outcomes = race(|i| {
            let stores = stores.clone();
            let id = user.id.clone();
            async move {
                if i == RACERS / 2 {
                    stores
                        .users
                        .change_password(
                            &id,
                            &hash_of("the new password"),
                            RevokeReason::PasswordChanged,
                            changed_at,
                        )
                        .await
                        .map(|_| Step::Changed)
                } else {
                    let new = NewSession {
                        credential_epoch: epoch,
                        ..fixtures::new_session(&id, at(minutes(30)), at(days(1)))
                    };
                    stores.sessions.start(new).await.map(Step::Start)
                }
            }
        })
        .await;
        let outcomes = all_ok("starts racing a password change", outcomes);
        assert!(outcomes.iter().any(|o| matches!(o, Step::Changed)));
        let started = outcomes
            .iter()
            .filter(|o| matches!(o, Step::Start(SessionStart::Started)))
            .count();
        let live = listed(&stores, &user.id, at(minutes(90))).await;
        assert!(
            live.is_empty(),
            "round {round}: {} of the {started} session(s) started from the old password \
             survived the change",
            live.len()
        );
    }
}

/// `revoke` ends a live session once: `true` the first time, `false` after,
/// for unknown ids, and for sessions already past their end; a dead
/// session keeps the reason and time it died with.
pub async fn revoke_is_idempotent_and_reports_liveness(stores: Stores) {
    let user = add_user(&stores, "leaver@example.com").await;
    let sid = start_session(&stores, &user.id, t0(), at(days(1))).await;

    assert!(stores
        .sessions
        .revoke(&sid, RevokeReason::Logout, at(minutes(1)))
        .await
        .expect("revoke"));
    let (s, u) = stores
        .sessions
        .authenticate(&sid)
        .await
        .expect("authenticate")
        .expect("a revoked session is still returned");
    assert_revoked(&s, at(minutes(1)), RevokeReason::Logout, "revoked");
    assert_eq!(u.id, user.id);

    assert!(
        !stores
            .sessions
            .revoke(&sid, RevokeReason::Revoked, at(minutes(2)))
            .await
            .expect("revoke"),
        "a second revoke reports the session was already dead"
    );
    assert_revoked(
        &session(&stores, &sid).await,
        at(minutes(1)),
        RevokeReason::Logout,
        "the second revoke overwrote nothing",
    );

    assert!(!stores
        .sessions
        .revoke(&SessionId::generate(), RevokeReason::Logout, t0())
        .await
        .expect("revoke"));

    let expired = start_session(&stores, &user.id, t0(), at(hours(1))).await;
    assert!(
        !stores
            .sessions
            .revoke(&expired, RevokeReason::Logout, at(hours(1)))
            .await
            .expect("revoke"),
        "a session at its expires_at is already dead"
    );
    assert_live(
        &session(&stores, &expired).await,
        "an expired session is not marked revoked after the fact",
    );
}

/// `revoke_all` revokes exactly the user's live sessions and counts them;
/// dead ones keep their reason; other users' sessions are untouched.
pub async fn revoke_all_touches_only_that_users_live_sessions(stores: Stores) {
    let user = add_user(&stores, "everywhere@example.com").await;
    let other = add_user(&stores, "elsewhere@example.com").await;
    let live1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let live2 = start_session(&stores, &user.id, at(minutes(1)), at(days(1))).await;
    let old = start_session(&stores, &user.id, t0(), at(days(1))).await;
    assert!(stores
        .sessions
        .revoke(&old, RevokeReason::Logout, at(minutes(2)))
        .await
        .expect("revoke"));
    let expired = start_session(&stores, &user.id, t0(), at(minutes(30))).await;
    let others = start_session(&stores, &other.id, t0(), at(days(1))).await;

    let now = at(hours(1));
    assert_eq!(
        stores
            .sessions
            .revoke_all(&user.id, RevokeReason::LogoutAll, now)
            .await
            .expect("revoke_all"),
        2,
        "two sessions were live"
    );
    for sid in [&live1, &live2] {
        assert_revoked(
            &session(&stores, sid).await,
            now,
            RevokeReason::LogoutAll,
            "live → revoked",
        );
    }
    assert_revoked(
        &session(&stores, &old).await,
        at(minutes(2)),
        RevokeReason::Logout,
        "a revoked session keeps its reason",
    );
    assert_live(
        &session(&stores, &expired).await,
        "an expired session is not revoked after the fact",
    );
    assert_live(
        &session(&stores, &others).await,
        "another user's session is untouched",
    );

    assert_eq!(
        stores
            .sessions
            .revoke_all(&user.id, RevokeReason::LogoutAll, now)
            .await
            .expect("revoke_all"),
        0,
        "nothing left to revoke"
    );
}

// ---------------------------------------------------------------------------
// Refresh-token families

/// Unwraps a `Replayed` answer.
fn replayed(outcome: Rotation, what: &str) -> (Session, User) {
    match outcome {
        Rotation::Replayed { session, user } => (session, user),
        other => panic!("{what}: expected Replayed, got {other:?}"),
    }
}

fn reused(session_id: &SessionId, user_id: &UserId) -> Rotation {
    Rotation::Reused {
        session_id: session_id.clone(),
        user_id: user_id.clone(),
    }
}

/// `rotate` spends the family's live token and makes the successor the
/// live one. The answer carries the session as updated (`last_used_at =
/// now`, idle end `now + idle`, absolute end unchanged) and its user; the
/// spent token is no longer live (presenting it again right away is a
/// replay that changes nothing); the successor rotates in turn; a token
/// of an unknown session is `Invalid`.
pub async fn rotate_spends_the_token_and_makes_the_successor_live(stores: Stores) {
    let user = add_user(&stores, "rotor@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(hours(1))).await;
    let (r1, r2) = (next(&r0), next(&r0));
    let before = session(&stores, &sid).await;

    let now = at(minutes(30));
    let (s, u) = rotated(
        rotate(&stores, &r0, &r1, now).await,
        "the first token rotates",
    );
    let expected = Session {
        last_used_at: now,
        idle_expires_at: now + idle(),
        ..before
    };
    assert_eq!(s, expected, "the answer is the session as rotated");
    assert_eq!(
        session(&stores, &sid).await,
        expected,
        "authenticate sees the rotation"
    );
    assert_eq!(
        u,
        get_user(&stores, &user.id).await,
        "the user comes with it"
    );

    let (s, u) = replayed(
        rotate(&stores, &r0, &r1, now + seconds(1)).await,
        "the spent token presented again inside its grace",
    );
    assert_eq!(s, expected, "a replay changes nothing");
    assert_eq!(u.id, user.id);
    assert_eq!(session(&stores, &sid).await, expected);

    let later = at(minutes(50));
    let (s, _) = rotated(
        rotate(&stores, &r1, &r2, later).await,
        "the successor is the family's live token",
    );
    assert_eq!(
        (s.last_used_at, s.idle_expires_at, s.expires_at),
        (later, later + idle(), at(days(30)))
    );

    let stranger = Tok {
        sid: SessionId::generate(),
        hash: fixtures::token_hash(),
    };
    assert_eq!(
        rotate(&stores, &stranger, &next(&stranger), later).await,
        Rotation::Invalid,
        "a token of an unknown session"
    );
    assert_live(&session(&stores, &sid).await, "and it revoked nothing");
}

/// 20 simultaneous presentations of one live token (a client retrying, a
/// tab racing another) at one instant: exactly one `Rotated`, the other 19
/// `Replayed` with the session as that rotation left it — no `Reused`, no
/// `Err`, no revocation. The successor then rotates normally.
pub async fn rotate_with_20_parallel_presentations_yields_one_rotation_and_only_replays_inside_grace(
    stores: Stores,
) {
    let user = add_user(&stores, "retrying@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let r1 = next(&r0);
    let now = at(hours(1));
    let sessions = stores.sessions.clone();
    let results = race(|_| {
        let sessions = sessions.clone();
        let (r0, r1) = (r0.clone(), r1.clone());
        async move {
            sessions
                .rotate(&r0.sid, &r0.hash, &r1.hash, now, grace(), idle())
                .await
        }
    })
    .await;

    let mut rotations = Vec::new();
    let mut replays = Vec::new();
    for (i, outcome) in all_ok("rotate", results).into_iter().enumerate() {
        match outcome {
            Rotation::Rotated { session, user } => rotations.push((session, user)),
            Rotation::Replayed { session, user } => replays.push((session, user)),
            other => panic!(
                "parallel rotate {i}: inside the grace window every loser is a replay, got {other:?}"
            ),
        }
    }
    assert_eq!(
        (rotations.len(), replays.len()),
        (1, RACERS - 1),
        "exactly one presentation rotates, the others replay (Rotated, Replayed)"
    );
    let (winner, _) = &rotations[0];
    assert_eq!(
        (&winner.id, winner.last_used_at),
        (&sid, now),
        "the rotation is of this session, at now"
    );
    for (s, u) in &replays {
        assert_eq!(
            s, winner,
            "a replay answers with the session as the rotation left it"
        );
        assert_eq!(u.id, user.id);
    }
    assert_live(
        &session(&stores, &sid).await,
        "no replay revoked the family",
    );

    rotated(
        rotate(&stores, &r1, &next(&r1), now + seconds(1)).await,
        "the successor rotates after the race",
    );
}

/// A spent token presented once its grace has run out (`spent_at + grace
/// <= now`; one microsecond earlier it was a replay) is theft: `Reused`,
/// and the session is revoked with `RefreshReuse`, so its live successor
/// dies with it. Presenting the stolen token again changes nothing more.
/// The user's other sessions are separate families and keep working.
pub async fn a_spent_token_outside_grace_revokes_the_whole_family(stores: Stores) {
    let user = add_user(&stores, "victim@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let (other_sid, other_r0) =
        start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let (r1, r2) = (next(&r0), next(&r0));

    let spent = at(hours(1));
    rotated(rotate(&stores, &r0, &r1, spent).await, "r0 → r1");
    replayed(
        rotate(&stores, &r0, &r1, spent + grace() - micro()).await,
        "one microsecond before the grace ends",
    );

    let stolen = spent + grace();
    assert_eq!(
        rotate(&stores, &r0, &r1, stolen).await,
        reused(&sid, &user.id),
        "at spent_at + grace the spent token is reuse"
    );
    let revoked = session(&stores, &sid).await;
    assert_revoked(
        &revoked,
        stolen,
        RevokeReason::RefreshReuse,
        "the family is revoked",
    );
    assert_eq!(
        rotate(&stores, &r1, &r2, stolen + micro()).await,
        Rotation::Invalid,
        "the successor died with its family"
    );
    assert_eq!(
        rotate(&stores, &r0, &r1, stolen + seconds(1)).await,
        Rotation::Invalid,
        "the stolen token again: the family is already dead"
    );
    assert_eq!(
        session(&stores, &sid).await,
        revoked,
        "and it still died when and of what it first did"
    );

    assert_live(
        &session(&stores, &other_sid).await,
        "another session of the user is another family",
    );
    rotated(
        rotate(&stores, &other_r0, &next(&other_r0), stolen + seconds(1)).await,
        "and keeps rotating",
    );
}

/// A spent token whose successor has already been used is reuse even
/// inside its grace: the retry excuse only holds while the client can not
/// have seen the successor work. (The successor itself, spent a moment ago
/// with its own successor unused, was still a replay.)
pub async fn a_spent_token_after_its_successor_was_used_is_reuse_even_inside_grace(stores: Stores) {
    let user = add_user(&stores, "careless@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let (r1, r2, r3) = (next(&r0), next(&r0), next(&r0));
    let t = at(hours(1));
    rotated(rotate(&stores, &r0, &r1, t).await, "r0 → r1");
    rotated(rotate(&stores, &r1, &r2, t + seconds(1)).await, "r1 → r2");
    replayed(
        rotate(&stores, &r1, &r2, t + seconds(2)).await,
        "r1 inside its grace, its successor unused",
    );

    let now = t + seconds(2);
    assert!(now < t + grace(), "the case presents r0 inside its grace");
    assert_eq!(
        rotate(&stores, &r0, &r1, now).await,
        reused(&sid, &user.id),
        "r0 inside its grace, but r1 was already used"
    );
    assert_revoked(
        &session(&stores, &sid).await,
        now,
        RevokeReason::RefreshReuse,
        "the family is revoked",
    );
    assert_eq!(
        rotate(&stores, &r2, &r3, now + seconds(1)).await,
        Rotation::Invalid,
        "the live token died with its family"
    );
}

/// 20 simultaneous presentations of a stolen token two generations old:
/// exactly one `Reused` (one theft event, one revocation), the other 19
/// `Invalid` — never a rotation, never a replay — and the session died of
/// `RefreshReuse` at that instant.
pub async fn rotate_with_20_parallel_reuses_revokes_the_family_once(stores: Stores) {
    let user = add_user(&stores, "robbed@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let (r1, r2) = (next(&r0), next(&r0));
    rotated(rotate(&stores, &r0, &r1, at(minutes(10))).await, "r0 → r1");
    rotated(rotate(&stores, &r1, &r2, at(minutes(20))).await, "r1 → r2");

    let now = at(minutes(30));
    let sessions = stores.sessions.clone();
    let results = race(|_| {
        let sessions = sessions.clone();
        let (r0, r1) = (r0.clone(), r1.clone());
        async move {
            sessions
                .rotate(&r0.sid, &r0.hash, &r1.hash, now, grace(), idle())
                .await
        }
    })
    .await;
    let outcomes = all_ok("rotate", results);
    let reuses = outcomes
        .iter()
        .filter(|o| **o == reused(&sid, &user.id))
        .count();
    let invalid = outcomes.iter().filter(|o| **o == Rotation::Invalid).count();
    assert_eq!(
        (reuses, invalid),
        (1, RACERS - 1),
        "one presentation revokes, the others find the family dead: {outcomes:?}"
    );
    assert_revoked(
        &session(&stores, &sid).await,
        now,
        RevokeReason::RefreshReuse,
        "the family is revoked",
    );
    assert_eq!(
        rotate(&stores, &r2, &next(&r2), now + micro()).await,
        Rotation::Invalid,
        "the live token died with it"
    );
}

/// Rotation moves the idle end to `now + idle` but never past
/// `expires_at`, and never moves `expires_at`: one microsecond before it a
/// token still rotates, at it the live token is `Invalid` (and a spent one
/// is not even a replay). The session is not marked revoked for it.
pub async fn rotation_never_extends_the_absolute_lifetime(stores: Stores) {
    let user = add_user(&stores, "mortal@example.com").await;
    let end = at(hours(2));
    let (sid, r0) = start_family(&stores, &user.id, t0(), end, at(hours(1))).await;
    let r: Vec<Tok> = (0..4).map(|_| next(&r0)).collect();

    let (s, _) = rotated(rotate(&stores, &r0, &r[0], at(minutes(30))).await, "early");
    assert_eq!(
        (s.idle_expires_at, s.expires_at),
        (at(minutes(90)), end),
        "the idle end moves forward; the absolute end stays"
    );
    let (s, _) = rotated(
        rotate(&stores, &r[0], &r[1], at(minutes(90)) - micro()).await,
        "late",
    );
    assert_eq!(
        (s.idle_expires_at, s.expires_at),
        (end, end),
        "now + idle is past the absolute end: capped at it"
    );
    let (s, _) = rotated(
        rotate(&stores, &r[1], &r[2], end - micro()).await,
        "one microsecond before the absolute end",
    );
    assert_eq!((s.idle_expires_at, s.expires_at), (end, end));

    assert_eq!(
        rotate(&stores, &r[2], &r[3], end).await,
        Rotation::Invalid,
        "at expires_at the live token is dead"
    );
    assert_eq!(
        rotate(&stores, &r[1], &r[2], end).await,
        Rotation::Invalid,
        "a spent token of an ended session is not a replay"
    );
    let s = session(&stores, &sid).await;
    assert_eq!(s.expires_at, end);
    assert_live(&s, "an expired session is not marked revoked");
    assert_eq!(
        listed(&stores, &user.id, end).await,
        Vec::<SessionId>::new()
    );
}

/// A session whose idle end has come (`idle_expires_at <= now`) is dead
/// although its absolute end is far: its live token is `Invalid` (one
/// microsecond earlier a token rotates), a spent token of it is `Invalid`
/// rather than reuse, and it is neither listed nor revocable — nor marked
/// revoked after the fact.
pub async fn an_idle_session_cannot_rotate(stores: Stores) {
    let user = add_user(&stores, "idler@example.com").await;
    let idle_end = at(hours(1));
    let (idle_sid, idle_r0) = start_family(&stores, &user.id, t0(), at(days(30)), idle_end).await;
    let (busy_sid, busy_r0) = start_family(&stores, &user.id, t0(), at(days(30)), idle_end).await;
    let busy_r1 = next(&busy_r0);

    let (s, _) = rotated(
        rotate(&stores, &busy_r0, &busy_r1, idle_end - micro()).await,
        "one microsecond before its idle end a session rotates",
    );
    let busy_end = idle_end - micro() + idle();
    assert_eq!(s.idle_expires_at, busy_end);

    assert_eq!(
        rotate(&stores, &idle_r0, &next(&idle_r0), idle_end).await,
        Rotation::Invalid,
        "at idle_expires_at the live token is dead"
    );
    assert_eq!(
        listed(&stores, &user.id, idle_end).await,
        std::slice::from_ref(&busy_sid),
        "an idle session is not listed"
    );
    assert!(
        !stores
            .sessions
            .revoke(&idle_sid, RevokeReason::Logout, idle_end)
            .await
            .expect("revoke"),
        "an idle session is already dead to revoke"
    );
    assert!(
        !stores
            .sessions
            .revoke_owned(&idle_sid, &user.id, RevokeReason::Revoked, idle_end)
            .await
            .expect("revoke_owned"),
        "and to revoke_owned"
    );
    assert_eq!(
        stores
            .sessions
            .revoke_all(&user.id, RevokeReason::LogoutAll, busy_end)
            .await
            .expect("revoke_all"),
        0,
        "and to revoke_all, once the other one idled out too"
    );
    assert_eq!(
        rotate(&stores, &busy_r0, &busy_r1, busy_end).await,
        Rotation::Invalid,
        "a spent token of an idle session is not reuse"
    );
    for sid in [&idle_sid, &busy_sid] {
        assert_live(
            &session(&stores, sid).await,
            "an idled-out session is not marked revoked after the fact",
        );
    }
}

/// However a session was revoked — `revoke`, `revoke_all`,
/// `change_password` — its tokens are `Invalid`; a spent token of a revoked
/// session is `Invalid` too (not reuse) and overwrites no reason.
pub async fn revoked_sessions_refuse_rotation(stores: Stores) {
    let alice = add_user(&stores, "alice-refresh@example.com").await;
    let bob = add_user(&stores, "bob-refresh@example.com").await;
    let family = |user: UserId| {
        let stores = stores.clone();
        async move { start_family(&stores, &user, t0(), at(days(30)), at(days(1))).await }
    };
    let (logged_out, lo_r0) = family(alice.id.clone()).await;
    let (all1, all1_r0) = family(alice.id.clone()).await;
    let (all2, all2_r0) = family(alice.id.clone()).await;
    let (changed, ch_r0) = family(bob.id.clone()).await;

    let lo_r1 = next(&lo_r0);
    rotated(
        rotate(&stores, &lo_r0, &lo_r1, at(minutes(1))).await,
        "lo_r0 → lo_r1",
    );
    let t = at(minutes(2));
    assert!(stores
        .sessions
        .revoke(&logged_out, RevokeReason::Logout, t)
        .await
        .expect("revoke"));
    assert_eq!(
        rotate(&stores, &lo_r1, &next(&lo_r1), t).await,
        Rotation::Invalid,
        "after revoke, the live token"
    );
    assert_eq!(
        rotate(&stores, &lo_r0, &lo_r1, t + minutes(1)).await,
        Rotation::Invalid,
        "after revoke, a spent token outside its grace"
    );
    assert_revoked(
        &session(&stores, &logged_out).await,
        t,
        RevokeReason::Logout,
        "the session still died of the logout",
    );

    let t = at(minutes(3));
    assert_eq!(
        stores
            .sessions
            .revoke_all(&alice.id, RevokeReason::LogoutAll, t)
            .await
            .expect("revoke_all"),
        2
    );
    for token in [&all1_r0, &all2_r0] {
        assert_eq!(
            rotate(&stores, token, &next(token), t).await,
            Rotation::Invalid,
            "after revoke_all"
        );
    }
    for sid in [&all1, &all2] {
        assert_revoked(
            &session(&stores, sid).await,
            t,
            RevokeReason::LogoutAll,
            "revoke_all",
        );
    }

    stores
        .users
        .change_password(&bob.id, &hash_of("new"), RevokeReason::PasswordChanged, t)
        .await
        .expect("change_password")
        .expect("bob exists");
    assert_eq!(
        rotate(&stores, &ch_r0, &next(&ch_r0), t).await,
        Rotation::Invalid,
        "after change_password"
    );
    assert_revoked(
        &session(&stores, &changed).await,
        t,
        RevokeReason::PasswordChanged,
        "change_password",
    );
}

/// `list` returns exactly the user's live sessions — not revoked, not
/// expired, not idled out, nobody else's — newest `created_at` first
/// (rotation does not reorder them), each as `authenticate` returns it.
pub async fn list_shows_only_live_sessions_of_that_user_newest_first(stores: Stores) {
    let user = add_user(&stores, "lister@example.com").await;
    let other = add_user(&stores, "not-listed@example.com").await;
    let now = at(hours(2));
    let (oldest, oldest_r0) = start_family(&stores, &user.id, t0(), at(days(1)), at(days(1))).await;
    let newest = start_session(&stores, &user.id, at(minutes(2)), at(days(1))).await;
    let middle = start_session(&stores, &user.id, at(minutes(1)), at(days(1))).await;
    let revoked = start_session(&stores, &user.id, at(minutes(3)), at(days(1))).await;
    assert!(stores
        .sessions
        .revoke(&revoked, RevokeReason::Logout, at(minutes(4)))
        .await
        .expect("revoke"));
    let expired = start_session(&stores, &user.id, at(minutes(4)), now).await;
    start_family(&stores, &user.id, at(minutes(5)), at(days(1)), at(hours(1))).await;
    let others = start_session(&stores, &other.id, at(minutes(6)), at(days(1))).await;
    rotated(
        rotate(&stores, &oldest_r0, &next(&oldest_r0), at(minutes(90))).await,
        "the oldest session was used most recently",
    );

    let live = stores
        .sessions
        .list(&user.id, now)
        .await
        .expect("sessions.list");
    let mut expected = Vec::new();
    for sid in [&newest, &middle, &oldest] {
        expected.push(session(&stores, sid).await);
    }
    assert_eq!(live, expected, "live sessions, newest created first");
    assert_eq!(
        listed(&stores, &user.id, now - micro()).await,
        [expired, newest, middle, oldest],
        "one microsecond before its end the expired one was live"
    );
    assert_eq!(listed(&stores, &other.id, now).await, [others]);
    assert_eq!(
        listed(&stores, &UserId::generate(), now).await,
        Vec::<SessionId>::new()
    );
}

/// `revoke_owned` revokes a live session only for its owner: another
/// user's id gets `false` and changes nothing; the owner gets `true` once,
/// with the given reason, after which the session's tokens are dead;
/// unknown and already-ended sessions get `false`.
pub async fn revoke_owned_refuses_another_users_session(stores: Stores) {
    let alice = add_user(&stores, "owner@example.com").await;
    let mallory = add_user(&stores, "mallory@example.com").await;
    let (sid, r0) = start_family(&stores, &alice.id, t0(), at(days(30)), at(days(1))).await;
    let expired = start_session(&stores, &alice.id, t0(), at(minutes(5))).await;
    let revoke_owned = |id: SessionId, owner: UserId, reason: RevokeReason, now: Timestamp| {
        let stores = stores.clone();
        async move {
            stores
                .sessions
                .revoke_owned(&id, &owner, reason, now)
                .await
                .expect("revoke_owned")
        }
    };

    let t = at(minutes(10));
    assert!(
        !revoke_owned(sid.clone(), mallory.id.clone(), RevokeReason::Revoked, t).await,
        "another user cannot end alice's session"
    );
    assert_live(
        &session(&stores, &sid).await,
        "the refused call changed nothing",
    );

    assert!(revoke_owned(sid.clone(), alice.id.clone(), RevokeReason::Revoked, t).await);
    assert_revoked(
        &session(&stores, &sid).await,
        t,
        RevokeReason::Revoked,
        "the owner ended it",
    );
    assert!(
        !revoke_owned(
            sid.clone(),
            alice.id.clone(),
            RevokeReason::Logout,
            t + minutes(1)
        )
        .await,
        "a second time it is already dead"
    );
    assert_revoked(
        &session(&stores, &sid).await,
        t,
        RevokeReason::Revoked,
        "and keeps its reason",
    );
    assert_eq!(
        rotate(&stores, &r0, &next(&r0), t + minutes(1)).await,
        Rotation::Invalid,
        "its token is dead"
    );

    assert!(
        !revoke_owned(
            SessionId::generate(),
            alice.id.clone(),
            RevokeReason::Revoked,
            t
        )
        .await
    );
    assert!(
        !revoke_owned(expired.clone(), alice.id.clone(), RevokeReason::Revoked, t).await,
        "an expired session is already dead"
    );
    assert_live(
        &session(&stores, &expired).await,
        "and is not marked revoked after the fact",
    );
}

/// `delete_account` takes the user's refresh tokens along, live and spent:
/// presenting either is `Invalid` (there is no family left to revoke).
pub async fn delete_account_removes_refresh_tokens_too(stores: Stores) {
    let user = add_user(&stores, "gone-refresh@example.com").await;
    let stayer = add_user(&stores, "stays-refresh@example.com").await;
    let (_, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let r1 = next(&r0);
    rotated(rotate(&stores, &r0, &r1, at(minutes(1))).await, "r0 → r1");

    stores
        .users
        .delete_account(&user.id)
        .await
        .expect("delete_account")
        .expect("the user existed");

    let now = at(minutes(1)) + seconds(1);
    assert_eq!(
        rotate(&stores, &r1, &next(&r1), now).await,
        Rotation::Invalid,
        "the live token of a deleted account"
    );
    assert_eq!(
        rotate(&stores, &r0, &r1, now).await,
        Rotation::Invalid,
        "a spent token of a deleted account (inside its grace)"
    );
    assert_live(
        &session(
            &stores,
            &start_session(&stores, &stayer.id, now, at(days(1))).await,
        )
        .await,
        "other users sign in as before",
    );
}

/// `purge_expired` deletes sessions that expired, idled out or were
/// revoked before `before` together with all their refresh tokens, and
/// keeps a session that ended exactly at
/// `before` and every token of a live family — a spent one included, so a
/// later theft is still caught as reuse.
pub async fn refresh_tokens_are_purged_with_their_session(stores: Stores) {
    let user = add_user(&stores, "purged-refresh@example.com").await;
    let now = at(days(1));

    let (expired, e0) = start_family(
        &stores,
        &user.id,
        now - days(2),
        now - hours(1),
        now - hours(1),
    )
    .await;
    let e1 = next(&e0);
    rotated(rotate(&stores, &e0, &e1, now - hours(2)).await, "e0 → e1");
    let (idled, i0) = start_family(
        &stores,
        &user.id,
        now - hours(3),
        now + days(1),
        now - hours(2),
    )
    .await;
    let (revoked, v0) = start_family(
        &stores,
        &user.id,
        now - hours(3),
        now + days(1),
        now + days(1),
    )
    .await;
    assert!(stores
        .sessions
        .revoke(&revoked, RevokeReason::Logout, now - hours(1))
        .await
        .expect("revoke"));
    let (just_idled, _) = start_family(&stores, &user.id, now - hours(3), now + days(1), now).await;
    let (live, l0) = start_family(
        &stores,
        &user.id,
        now - hours(3),
        now + days(1),
        now + hours(1),
    )
    .await;
    let l1 = next(&l0);
    rotated(
        rotate(&stores, &l0, &l1, now - minutes(30)).await,
        "l0 → l1",
    );

    assert_eq!(
        stores.sessions.purge_expired(now).await.expect("purge"),
        3,
        "expired, idled-out and revoked sessions are purged"
    );
    for sid in [&expired, &idled, &revoked] {
        assert_eq!(
            stores
                .sessions
                .authenticate(sid)
                .await
                .expect("authenticate"),
            None
        );
    }
    assert_eq!(
        session(&stores, &just_idled).await.idle_expires_at,
        now,
        "a session that idled out exactly at `before` is kept"
    );
    for hash in [&e0, &e1, &i0, &v0] {
        assert_eq!(
            rotate(&stores, hash, &next(hash), now).await,
            Rotation::Invalid,
            "a purged family's token"
        );
    }
    assert_eq!(
        rotate(&stores, &l0, &l1, now).await,
        reused(&live, &user.id),
        "a spent token of a live family survives the purge and is caught as reuse"
    );
}

// ---------------------------------------------------------------------------
// Account deletion

/// `delete_account` removes the user and everything of it — sessions,
/// tokens, lockout attempts, rate-limit hits keyed `…:{email}`, a pending
/// row for the address — and nothing of anyone else, including a user
/// whose address differs only where a SQL `LIKE` pattern would match
/// (`_` is a wildcard there).
pub async fn delete_account_removes_every_row_of_the_user(stores: Stores) {
    let user = add_user(&stores, "del_me@example.com").await;
    let other = add_user(&stores, "delxme@example.com").await;
    let user_key = format!("mail:{}", user.email);
    let other_key = format!("mail:{}", other.email);
    let window = hours(1);

    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s2 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(2)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "del_me.new@example.com", at(hours(2))),
    )
    .await;
    let other_reset = issue(&stores, fixtures::reset_token(&other.id, at(hours(2)))).await;
    for n in 1..=2 {
        assert_eq!(
            admit(&stores, &user.email, t0(), window, 5).await,
            admitted(n)
        );
        assert_eq!(
            admit(&stores, &other.email, t0(), window, 5).await,
            admitted(n)
        );
    }
    for key in [&user_key, &other_key] {
        for _ in 0..3 {
            assert!(hit(&stores, key, t0(), window, 3).await);
        }
        assert!(
            !hit(&stores, key, t0(), window, 3).await,
            "{key} is at its limit"
        );
    }
    let pending_token = fixtures::token_hash();
    stores
        .pending
        .put(fixtures::pending(
            "del_me@example.com",
            &pending_token,
            at(days(1)),
        ))
        .await
        .expect("put");

    let removed = stores
        .users
        .delete_account(&user.id)
        .await
        .expect("delete_account")
        .expect("the user existed");
    assert_eq!(removed.id, user.id);
    assert_eq!(removed.email, user.email);

    let now = at(minutes(1));
    assert_eq!(stores.users.get(&user.id).await.expect("get"), None);
    assert_eq!(
        stores
            .users
            .find_by_email(&user.email)
            .await
            .expect("find_by_email"),
        None
    );
    for sid in [&s1, &s2] {
        assert_eq!(
            stores
                .sessions
                .authenticate(sid)
                .await
                .expect("authenticate"),
            None,
            "the user's sessions are gone"
        );
    }
    assert_eq!(peek(&stores, &reset, now).await, None);
    assert_eq!(peek(&stores, &change, now).await, None);
    assert_eq!(
        stores
            .pending
            .find_by_email(&user.email, now)
            .await
            .expect("find_by_email"),
        None,
        "a pending row for the address is gone"
    );
    assert_eq!(
        stores
            .pending
            .promote(&pending_token, &UserId::generate(), now)
            .await
            .expect("promote"),
        Promotion::InvalidToken
    );
    assert_eq!(
        admit(&stores, &user.email, now, window, 5).await,
        admitted(1),
        "the lockout counter starts fresh"
    );
    for _ in 0..3 {
        assert!(
            hit(&stores, &user_key, now, window, 3).await,
            "the address's rate-limit hits are gone"
        );
    }
    assert!(!hit(&stores, &user_key, now, window, 3).await);

    // The neighbour is untouched.
    assert_eq!(get_user(&stores, &other.id).await, {
        let mut o = other.clone();
        o.last_login = Some(t0());
        o
    });
    assert_live(
        &session(&stores, &s_other).await,
        "another user's session survives",
    );
    assert_eq!(peek(&stores, &other_reset, now).await, Some(other_reset));
    assert_eq!(
        admit(&stores, &other.email, now, window, 5).await,
        admitted(3),
        "another address keeps its attempts"
    );
    assert!(
        !hit(&stores, &other_key, now, window, 3).await,
        "another address keeps its rate-limit hits"
    );

    assert_eq!(
        stores
            .users
            .delete_account(&user.id)
            .await
            .expect("delete_account"),
        None,
        "deleting twice finds nothing"
    );
    stores
        .users
        .insert(fixtures::new_user("del_me@example.com"))
        .await
        .expect("the address is free again");
}

// ---------------------------------------------------------------------------
// Rate limits

/// 20 simultaneous hits against a limit of 5: exactly 5 recorded.
pub async fn rate_limit_hit_never_exceeds_the_limit_under_20_parallel_hits(stores: Stores) {
    let key = "mail:flooded@example.com";
    let window = hours(1);
    let now = t0();
    let store = stores.rate_limits.clone();
    let results = race(|_| {
        let store = store.clone();
        async move { store.hit(key, now, window, 5).await }
    })
    .await;
    let results = all_ok("hit", results);
    assert_eq!(
        results.iter().filter(|&&ok| ok).count(),
        5,
        "exactly the limit is recorded: {results:?}"
    );
    assert!(
        !hit(&stores, key, now, window, 5).await,
        "and no more afterwards"
    );
}

/// Hits stop counting once they are `window` old, and every key has its
/// own counter.
pub async fn rate_limit_window_slides_and_keys_are_independent(stores: Stores) {
    let key = "mail:a@example.com";
    let window = hours(1);
    assert!(hit(&stores, key, t0(), window, 2).await);
    assert!(hit(&stores, key, at(minutes(1)), window, 2).await);
    assert!(!hit(&stores, key, at(minutes(2)), window, 2).await);
    assert!(
        hit(&stores, "mail:b@example.com", at(minutes(2)), window, 2).await,
        "another key has its own counter"
    );
    assert!(
        hit(&stores, key, at(hours(1)), window, 2).await,
        "the hit at t0 left the window at t0 + window"
    );
    assert!(!hit(&stores, key, at(hours(1)) + micro(), window, 2).await);
    assert!(hit(&stores, key, at(hours(3)), window, 2).await);
}

// ---------------------------------------------------------------------------
// Housekeeping

/// Each `purge_expired` deletes exactly the dead rows, reports how many,
/// and leaves live rows working: pending rows and tokens at or past
/// `expires_at`, sessions that expired or were revoked before `before`,
/// attempts and hits older than `before`.
pub async fn purge_expired_removes_only_dead_rows(stores: Stores) {
    let now = at(days(1));

    // Pending registrations: dead from expires_at on.
    let live_token = fixtures::token_hash();
    for (addr, expires_at) in [
        ("gone-long-ago@example.com", now - hours(1)),
        ("gone-just-now@example.com", now),
    ] {
        stores
            .pending
            .put(fixtures::pending(addr, &fixtures::token_hash(), expires_at))
            .await
            .expect("put");
    }
    let live = fixtures::pending("still-here@example.com", &live_token, now + micro());
    stores.pending.put(live.clone()).await.expect("put");
    assert_eq!(
        stores.pending.purge_expired(now).await.expect("purge"),
        2,
        "pending purged"
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&live.email, now)
            .await
            .expect("find_by_email"),
        Some(live)
    );
    assert_eq!(
        stores.pending.purge_expired(now).await.expect("purge"),
        0,
        "idempotent"
    );

    // Tokens: one user each, so none supersedes another.
    let u1 = add_user(&stores, "u1@example.com").await;
    let u2 = add_user(&stores, "u2@example.com").await;
    let u3 = add_user(&stores, "u3@example.com").await;
    issue(&stores, fixtures::reset_token(&u1.id, now - hours(1))).await;
    issue(&stores, fixtures::reset_token(&u2.id, now)).await;
    let live_reset = issue(&stores, fixtures::reset_token(&u3.id, now + micro())).await;
    assert_eq!(
        stores.tokens.purge_expired(now).await.expect("purge"),
        2,
        "tokens purged"
    );
    assert_eq!(peek(&stores, &live_reset, now).await, Some(live_reset));

    // Sessions: ended (expired or revoked) before `before`.
    let expired = start_session(&stores, &u1.id, now - days(2), now - hours(1)).await;
    let revoked = start_session(&stores, &u2.id, now - hours(2), now + days(1)).await;
    assert!(stores
        .sessions
        .revoke(&revoked, RevokeReason::Logout, now - hours(1))
        .await
        .expect("revoke"));
    let alive = start_session(&stores, &u3.id, now - hours(2), now + days(1)).await;
    assert_eq!(
        stores.sessions.purge_expired(now).await.expect("purge"),
        2,
        "sessions purged"
    );
    for sid in [&expired, &revoked] {
        assert_eq!(
            stores
                .sessions
                .authenticate(sid)
                .await
                .expect("authenticate"),
            None
        );
    }
    assert_live(
        &session(&stores, &alive).await,
        "a live session survives the purge",
    );

    // Lockout attempts older than `before`. A wide window keeps every
    // attempt counted when made, so none can be pruned early.
    let who = email("purged-attempts@example.com");
    let wide = days(1);
    for (n, when) in [now - hours(2), now - minutes(90), now - minutes(1)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            admit(&stores, &who, when, wide, 10).await,
            admitted(n as u32 + 1)
        );
    }
    assert_eq!(
        stores
            .login_attempts
            .purge_expired(now - hours(1))
            .await
            .expect("purge"),
        2,
        "attempts purged"
    );
    assert_eq!(
        admit(&stores, &who, now, wide, 10).await,
        admitted(2),
        "only the recent attempt is left"
    );

    // Rate-limit hits older than `before`.
    let key = "mail:purged-hits@example.com";
    for when in [now - hours(2), now - minutes(90), now - minutes(1)] {
        assert!(hit(&stores, key, when, wide, 10).await);
    }
    assert_eq!(
        stores
            .rate_limits
            .purge_expired(now - hours(1))
            .await
            .expect("purge"),
        2,
        "hits purged"
    );
    assert!(
        hit(&stores, key, now, wide, 2).await,
        "one recent hit left, room for one more"
    );
    assert!(!hit(&stores, key, now, wide, 2).await);
}

/// A fresh, migrated store answers its health checks.
pub async fn health_ping_and_schema(stores: Stores) {
    stores.health.ping().await.expect("ping");
    assert!(
        stores
            .health
            .schema_is_current()
            .await
            .expect("schema_is_current"),
        "a freshly migrated store has a current schema"
    );
}
