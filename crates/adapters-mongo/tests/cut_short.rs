//! A caller that stops waiting does not stop a MongoDB sequence half-way
//! (issue 19).
//!
//! The HTTP layer drops a request's future at its deadline. Without
//! transactions an account-level change is several document operations, so
//! a future dropped between two of them used to leave half of it: a spent
//! link and no user, sessions revoked with the password unchanged, a
//! session without the epoch check, a superseded link still live. Each
//! test here drops a store call's future right after one of its writes
//! reached the server — then waits for the database to show the whole
//! sequence's end state.
//!
//! How the cut lands: the stores under test talk to the server through a
//! proxy that holds every answer for [`DELAY`] (requests pass at once). A
//! call's `n`-th operation is then executed when the `(n-1)`-th answer
//! arrives, `(n-1) × DELAY` after the call started, and a timeout of
//! `(n - ½) × DELAY` drops the call after its `n`-th operation ran but
//! before the next one was sent. Setup and checks use a second, direct
//! client. Needs `TEST_MONGO_URL`; without it each test says SKIPPED (and
//! fails under `CI=true`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use regstack_adapters_mongo::{self as mongo, Database, MongoStores};
use regstack_ports::*;
use regstack_testkit::fixtures::{self, at, t0};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long the proxy holds each answer.
const DELAY: Duration = Duration::from_millis(300);
/// How long a test waits for the end state to show.
const SETTLE: Duration = Duration::from_secs(15);

/// The test server, or `None` after saying why the test did nothing.
fn server(test: &str) -> Option<String> {
    let url = common::url();
    if url.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !in_ci,
            "`{test}` needs TEST_MONGO_URL, and CI=true forbids skipping"
        );
        eprintln!("SKIPPED `{test}`: TEST_MONGO_URL is not set");
    }
    url
}

/// `host:port` of a plain single-host `mongodb://` URL.
fn upstream_of(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("mongodb://")
        .unwrap_or_else(|| panic!("these tests need a mongodb:// URL, got {url}"));
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    host.parse()
        .unwrap_or_else(|e| panic!("{host} is not a single address without credentials: {e}"))
}

/// Copies `from` to `to`, each chunk [`DELAY`] after it arrived.
async fn held(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((arrived, chunk)) = rx.recv().await {
            tokio::time::sleep_until(arrived + DELAY).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0_u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || tx
                .send((tokio::time::Instant::now(), buf[..n].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A proxy to `upstream` that passes requests at once and holds answers
/// for [`DELAY`]. Runs until the test's runtime ends.
async fn slow_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let (mut client_read, client_write) = client.into_split();
            let (server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            tokio::spawn(held(server_read, client_write));
        }
    });
    addr
}

/// A fresh migrated database, its stores through the slow proxy and
/// direct ones; the proxied client has its connection open already.
async fn rig(test: &str) -> Option<(Stores, Stores)> {
    let (slow, direct) = databases(test).await?;
    Some((mongo::stores(slow), mongo::stores(direct)))
}

/// [`rig`]'s databases: through the slow proxy, and direct (for setup and
/// for reading documents the ports do not show).
async fn databases(test: &str) -> Option<(Database, Database)> {
    let url = server(test)?;
    let db = common::fresh_db().await?;
    let proxy = slow_proxy(upstream_of(&url)).await;
    let slow_db = mongo::connect(
        &format!("mongodb://{proxy}/?directConnection=true"),
        db.name(),
    )
    .await
    .unwrap();
    // Handshake and pool: the cut must fall on the call, not on these.
    mongo::stores(slow_db.clone()).health.ping().await.unwrap();
    Some((slow_db, db))
}

/// Drops `call` after its `n`-th operation ran (module doc).
async fn cut_after<T: std::fmt::Debug>(n: u32, call: impl Future<Output = T>) {
    let cut = DELAY * n - DELAY / 2;
    if let Ok(answer) = tokio::time::timeout(cut, call).await {
        panic!("the call answered ({answer:?}) before the cut at {cut:?}: nothing was cut");
    }
}

/// Waits until `done` holds (the sequence's end state), or fails naming
/// `what` stayed half-done.
async fn settles<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the sequence stopped half-way when its caller stopped waiting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn add_user(stores: &Stores, raw: &str) -> User {
    stores.users.insert(fixtures::new_user(raw)).await.unwrap()
}

async fn start(stores: &Stores, user: &User) -> SessionId {
    let new = NewSession {
        credential_epoch: user.tokens_invalidated_after,
        ..fixtures::new_session(&user.id, t0(), at(chrono::TimeDelta::days(1)))
    };
    let id = new.id.clone();
    assert_eq!(
        stores.sessions.start(new).await.unwrap(),
        SessionStart::Started
    );
    id
}

fn in_2_hours() -> Timestamp {
    at(chrono::TimeDelta::hours(2))
}

async fn hash_of(stores: &Stores, id: &UserId) -> Option<PasswordHash> {
    stores
        .users
        .get(id)
        .await
        .unwrap()
        .and_then(|u| u.password_hash)
}

/// `promote` cut after the pending row was taken: the user is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_cut_short_still_creates_the_user() {
    let Some((slow, direct)) = rig("a_promotion_cut_short").await else {
        return;
    };
    let token = fixtures::token_hash();
    assert!(direct
        .pending
        .put(fixtures::pending("p@example.com", &token, in_2_hours()))
        .await
        .unwrap());
    cut_after(1, slow.pending.promote(&token, &UserId::generate(), t0())).await;
    let email = fixtures::email("p@example.com");
    settles("promote", || async {
        direct.users.find_by_email(&email).await.unwrap().is_some()
    })
    .await;
    assert_eq!(
        direct.pending.find_by_email(&email, t0()).await.unwrap(),
        None
    );
}

/// `complete_password_reset` cut after the link was spent: the password
/// is switched and the sessions end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_cut_short_still_switches_the_password() {
    let Some((slow, direct)) = rig("a_reset_cut_short").await else {
        return;
    };
    let user = add_user(&direct, "r@example.com").await;
    let session = start(&direct, &user).await;
    let token = fixtures::reset_token(&user.id, in_2_hours());
    direct.tokens.issue(token.clone()).await.unwrap();
    let new = fixtures::hash_of("a-new-password-1");
    cut_after(
        1,
        slow.users
            .complete_password_reset(&token.hash, &new, at(chrono::TimeDelta::minutes(1))),
    )
    .await;
    settles("complete_password_reset", || async {
        hash_of(&direct, &user.id).await.as_ref() == Some(&new)
    })
    .await;
    let (s, _) = direct
        .sessions
        .authenticate(&session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.revoked_reason, Some(RevokeReason::PasswordReset));
}

/// `change_password` cut after the sessions were revoked: the password is
/// switched too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_cut_short_still_switches_the_password() {
    let Some((slow, direct)) = rig("a_password_change_cut_short").await else {
        return;
    };
    let user = add_user(&direct, "c@example.com").await;
    let session = start(&direct, &user).await;
    let new = fixtures::hash_of("a-new-password-2");
    // Operation 1 reads the user, 2 revokes the sessions.
    cut_after(
        2,
        slow.users.change_password(
            &user.id,
            &new,
            RevokeReason::PasswordChanged,
            at(chrono::TimeDelta::minutes(1)),
        ),
    )
    .await;
    settles("change_password", || async {
        hash_of(&direct, &user.id).await.as_ref() == Some(&new)
    })
    .await;
    let (s, _) = direct
        .sessions
        .authenticate(&session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.revoked_reason, Some(RevokeReason::PasswordChanged));
}

/// `confirm_email_change` cut after the link was spent: the address is
/// switched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_change_cut_short_still_switches_the_address() {
    let Some((slow, direct)) = rig("an_email_change_cut_short").await else {
        return;
    };
    let user = add_user(&direct, "e@example.com").await;
    let token = fixtures::email_change_token(&user.id, "e2@example.com", in_2_hours());
    direct.tokens.issue(token.clone()).await.unwrap();
    cut_after(
        1,
        slow.users
            .confirm_email_change(&token.hash, at(chrono::TimeDelta::minutes(1))),
    )
    .await;
    settles("confirm_email_change", || async {
        direct.users.get(&user.id).await.unwrap().map(|u| u.email)
            == Some(fixtures::email("e2@example.com"))
    })
    .await;
}

/// `delete_account` cut after the sessions went: the user and its tokens
/// go too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_cut_short_still_removes_the_user_and_its_tokens() {
    let Some((slow, direct)) = rig("a_deletion_cut_short").await else {
        return;
    };
    let user = add_user(&direct, "d@example.com").await;
    start(&direct, &user).await;
    let token = fixtures::reset_token(&user.id, in_2_hours());
    direct.tokens.issue(token.clone()).await.unwrap();
    // Operation 1 reads the user, 2 deletes its sessions.
    cut_after(2, slow.users.delete_account(&user.id)).await;
    settles("delete_account", || async {
        direct.users.get(&user.id).await.unwrap().is_none()
    })
    .await;
    assert_eq!(
        direct
            .tokens
            .peek(TokenKind::PasswordReset, &token.hash, t0())
            .await
            .unwrap(),
        None
    );
}

/// A start with an epoch a password change has moved, cut after its
/// session was inserted: the session goes again (the stamp misses), so no
/// session of the old credential is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_session_start_cut_short_leaves_no_session() {
    let Some((slow, direct)) = rig("a_stale_session_start_cut_short").await else {
        return;
    };
    let user = add_user(&direct, "s@example.com").await;
    direct
        .users
        .change_password(
            &user.id,
            &fixtures::hash_of("moved-the-epoch-1"),
            RevokeReason::PasswordChanged,
            t0(),
        )
        .await
        .unwrap();
    let stale = NewSession {
        credential_epoch: user.tokens_invalidated_after,
        ..fixtures::new_session(&user.id, t0(), at(chrono::TimeDelta::days(1)))
    };
    let id = stale.id.clone();
    cut_after(1, slow.sessions.start(stale)).await;
    settles("sessions.start", || async {
        direct.sessions.authenticate(&id).await.unwrap().is_none()
    })
    .await;
}

/// `issue` cut after the new token was inserted: the older link of the
/// kind is superseded all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_issue_cut_short_still_supersedes_the_older_link() {
    let Some((slow, direct)) = rig("a_link_issue_cut_short").await else {
        return;
    };
    let user = add_user(&direct, "t@example.com").await;
    let older = fixtures::reset_token(&user.id, in_2_hours());
    direct.tokens.issue(older.clone()).await.unwrap();
    let newer = fixtures::reset_token(&user.id, in_2_hours());
    cut_after(1, slow.tokens.issue(newer.clone())).await;
    settles("tokens.issue", || async {
        direct
            .tokens
            .peek(TokenKind::PasswordReset, &older.hash, t0())
            .await
            .unwrap()
            .is_none()
    })
    .await;
    assert!(direct
        .tokens
        .peek(TokenKind::PasswordReset, &newer.hash, t0())
        .await
        .unwrap()
        .is_some());
}

// ---------------------------------------------------------------------------
// OAuth

/// An identity of `provider` for `user`, linked at [`t0`].
fn identity(user: &UserId, provider: &str, subject: &str) -> OAuthIdentity {
    fixtures::oauth_identity(
        user,
        provider,
        &format!("https://{provider}.example"),
        subject,
    )
}

/// A flow of `google` started at [`t0`], live for two hours.
fn flow(mode: FlowMode) -> OAuthFlow {
    fixtures::oauth_flow("google", mode, in_2_hours())
}

/// How many documents of `collection` match `filter`.
async fn count(db: &Database, collection: &str, filter: Document) -> u64 {
    db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

/// The `state` of the identity document with this subject.
async fn identity_state(db: &Database, subject: &str) -> Option<String> {
    db.collection::<Document>("oauth_identities")
        .find_one(doc! { "subject": subject })
        .await
        .unwrap()
        .and_then(|d| d.get_str("state").ok().map(str::to_owned))
}

/// `create_user_with_identity` cut after its pending identity, and after
/// its user: the account is created, its identity linked and confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_oauth_sign_in_cut_short_still_creates_the_linked_account() {
    // Operation 1 inserts the identity, 2 the user, 3 confirms.
    for cut in [1, 2] {
        let Some((slow, direct)) = databases("a_first_oauth_sign_in_cut_short").await else {
            return;
        };
        let (slow, store) = (MongoStores::new(slow), MongoStores::new(direct.clone()));
        let new = NewUser {
            password_hash: None,
            ..fixtures::new_user(&format!("first{cut}@example.com"))
        };
        let linked = identity(&new.id, "google", &format!("sub-{cut}"));
        cut_after(cut, slow.create_user_with_identity(new.clone(), &linked)).await;
        settles("create_user_with_identity", || async {
            identity_state(&direct, &linked.subject).await.as_deref() == Some("linked")
        })
        .await;
        assert_eq!(
            store
                .find_identity(&linked.issuer, &linked.subject)
                .await
                .unwrap(),
            Some(linked.clone())
        );
        assert_eq!(
            UserStore::get(&store, &new.id)
                .await
                .unwrap()
                .map(|u| u.email),
            Some(new.email)
        );
    }
}

/// `link_identity` cut after its pending identity: the identity is linked
/// and confirmed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_short_still_links_the_identity() {
    let Some((slow, direct)) = databases("a_link_cut_short").await else {
        return;
    };
    let (slow, store) = (MongoStores::new(slow), MongoStores::new(direct.clone()));
    let user = store
        .insert(fixtures::new_user("l@example.com"))
        .await
        .unwrap();
    let linked = identity(&user.id, "google", "sub-l");
    // Operation 1 reads the user, 2 inserts the identity, 3 names it in
    // the user, 4 confirms.
    cut_after(2, slow.link_identity(&linked)).await;
    settles("link_identity", || async {
        identity_state(&direct, &linked.subject).await.as_deref() == Some("linked")
    })
    .await;
    assert_eq!(store.identities_of(&user.id).await.unwrap(), vec![linked]);
}

/// `unlink_identity` cut after its decision: the identity document goes
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlink_cut_short_still_deletes_the_identity() {
    let Some((slow, direct)) = databases("an_unlink_cut_short").await else {
        return;
    };
    let (slow, store) = (MongoStores::new(slow), MongoStores::new(direct.clone()));
    let user = store
        .insert(fixtures::new_user("u@example.com"))
        .await
        .unwrap();
    let linked = identity(&user.id, "google", "sub-u");
    assert_eq!(store.link_identity(&linked).await.unwrap(), Linking::Linked);
    // Operation 1 finds the identity, 2 takes it off the user, 3 deletes it.
    cut_after(2, slow.unlink_identity(&user.id, "google")).await;
    settles("unlink_identity", || async {
        count(&direct, "oauth_identities", doc! {}).await == 0
    })
    .await;
    assert!(store.identities_of(&user.id).await.unwrap().is_empty());
}

/// `begin` of a link flow for an account deleted meanwhile, cut after its
/// insert: the flow is taken back all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_flow_begun_for_a_deleted_account_and_cut_short_is_still_taken_back() {
    let Some((slow, direct)) = databases("a_link_flow_begun_for_a_deleted_account").await else {
        return;
    };
    let slow = MongoStores::new(slow);
    // Operation 1 inserts the flow, 2 looks for the account, 3 deletes.
    cut_after(2, slow.begin(flow(FlowMode::Link(UserId::generate())))).await;
    settles("begin", || async {
        count(&direct, "oauth_states", doc! {}).await == 0
    })
    .await;
}

/// `delete_account` cut after the sessions went: the account's identities
/// and its link flows go too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_cut_short_still_removes_the_identities_and_link_flows() {
    let Some((slow, direct)) = databases("a_deletion_cut_short_oauth").await else {
        return;
    };
    let (slow, store) = (MongoStores::new(slow), MongoStores::new(direct.clone()));
    let user = store
        .insert(fixtures::new_user("do@example.com"))
        .await
        .unwrap();
    let linked = identity(&user.id, "google", "sub-do");
    assert_eq!(store.link_identity(&linked).await.unwrap(), Linking::Linked);
    store
        .begin(flow(FlowMode::Link(user.id.clone())))
        .await
        .unwrap();
    // Operation 1 reads the user, 2 deletes its sessions.
    cut_after(2, UserStore::delete_account(&slow, &user.id)).await;
    settles("delete_account", || async {
        UserStore::get(&store, &user.id).await.unwrap().is_none()
            && count(&direct, "oauth_identities", doc! {}).await == 0
            && count(&direct, "oauth_states", doc! {}).await == 0
    })
    .await;
}
