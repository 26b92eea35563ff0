//! What only the MongoDB backend must prove: migration is idempotent and
//! creates every index, the per-request and OAuth lookups use an index,
//! deleting an account leaves no document of it in any collection, what a
//! stopped OAuth sequence leaves is seen by nobody and repaired by the next
//! attempt, the server's TTL monitor reaps what ended longer ago than the
//! grace, a stopped database answers `Unavailable` quickly, and the same
//! client recovers by itself once the database is back.
//!
//! The tests that need a server read `TEST_MONGO_URL`
//! (`scripts/services/mongo.sh up`); without it they print SKIPPED, and
//! fail under `CI=true`. The closed-port test needs no server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use mongodb::bson::{doc, Bson, Document};
use regstack_adapters_mongo::{self as mongo, Database, MongoStores};
use regstack_ports::*;
use regstack_testkit::calls::{self, StoreCall};
use regstack_testkit::fixtures::{self, at, t0};
use regstack_testkit::CutoffProxy;
use tokio::net::TcpListener;

/// The test server, or `None` after saying why the test did nothing.
/// Under `CI=true` a missing server fails the test instead.
fn server(test: &str) -> Option<String> {
    let url = common::url();
    if url.is_none() {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !in_ci,
            "`{test}` needs TEST_MONGO_URL, and CI=true forbids skipping \
             (scripts/services/mongo.sh up)"
        );
        eprintln!("SKIPPED `{test}`: TEST_MONGO_URL is not set");
    }
    url
}

// ---------------------------------------------------------------------------
// Migration

#[tokio::test]
async fn migrate_is_idempotent_and_creates_every_index() {
    if server("migrate_is_idempotent_and_creates_every_index").is_none() {
        return;
    }
    let db = common::empty_db().await.unwrap();
    let stores = MongoStores::new(db.clone());
    assert!(
        !stores.schema_is_current().await.unwrap(),
        "an empty database is not current"
    );

    assert_eq!(mongo::recorded_version(&db).await.unwrap(), None);
    mongo::migrate(&db).await.expect("first migrate");
    assert!(stores.schema_is_current().await.unwrap());
    assert_eq!(
        mongo::recorded_version(&db).await.unwrap(),
        Some(mongo::SCHEMA_VERSION)
    );
    mongo::migrate(&db)
        .await
        .expect("second migrate changes nothing");
    assert!(stores.schema_is_current().await.unwrap());
    stores.ping().await.unwrap();

    let mut expected = mongo::index_names();
    expected.sort_unstable();
    let mut found = Vec::new();
    for (collection, _) in &expected {
        let indexes: Vec<Document> = db
            .run_command(doc! { "listIndexes": *collection })
            .await
            .unwrap()
            .get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .iter()
            .filter_map(|b| b.as_document().cloned())
            .collect();
        for index in indexes {
            let name = index.get_str("name").unwrap().to_owned();
            if name == "_id_" {
                continue;
            }
            let ttl = index
                .get("expireAfterSeconds")
                .and_then(Bson::as_i64_lenient);
            let unique = index.get_bool("unique").unwrap_or(false);
            found.push((collection.to_string(), name, unique, ttl));
        }
    }
    found.sort();
    found.dedup();
    let names: Vec<(String, String)> = found
        .iter()
        .map(|(c, n, _, _)| (c.clone(), n.clone()))
        .collect();
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(c, n)| (c.to_string(), n.to_string()))
        .collect();
    assert_eq!(names, expected, "exactly the documented indexes");

    for (collection, name, unique, ttl) in &found {
        let should_be_unique = name.ends_with("_unique");
        assert_eq!(*unique, should_be_unique, "{collection}.{name} uniqueness");
        if name == "expire_at_ttl" {
            assert_eq!(
                *ttl,
                Some(mongo::TTL_GRACE.as_secs() as i64),
                "{collection}.{name} is a TTL index with the documented grace"
            );
        } else {
            assert_eq!(*ttl, None, "{collection}.{name} is not a TTL index");
        }
    }
    for unique in [
        ("users", "email_unique"),
        ("pending_registrations", "email_unique"),
        ("pending_registrations", "token_hash_unique"),
        ("one_time_tokens", "token_hash_unique"),
        ("oauth_identities", "issuer_subject_unique"),
        ("oauth_identities", "user_id_provider_unique"),
    ] {
        assert!(
            found
                .iter()
                .any(|(c, n, u, _)| (c.as_str(), n.as_str()) == unique && *u),
            "{unique:?} is a unique index"
        );
    }
}

/// Schema version 1 kept every refresh-token hash in `refresh_tokens`;
/// version 2 keeps the family on the session document. Migrating a
/// version-1 database drops that collection and leaves sessions alone.
#[tokio::test]
async fn migrating_a_version_1_database_drops_the_refresh_token_collection() {
    if server("migrating_a_version_1_database_drops_the_refresh_token_collection").is_none() {
        return;
    }
    let db = common::empty_db().await.unwrap();
    let legacy: mongodb::Collection<Document> = db.collection("refresh_tokens");
    legacy
        .insert_one(doc! { "token_hash": "ab", "session_id": "s" })
        .await
        .unwrap();
    let meta: mongodb::Collection<Document> = db.collection("regstack_meta");
    meta.insert_one(doc! { "_id": "schema", "version": 1_i64 })
        .await
        .unwrap();
    let stores = MongoStores::new(db.clone());
    assert!(
        !stores.schema_is_current().await.unwrap(),
        "version 1 is behind"
    );

    mongo::migrate(&db).await.unwrap();
    assert!(stores.schema_is_current().await.unwrap());
    let names = db.list_collection_names().await.unwrap();
    assert!(
        !names.iter().any(|n| n == "refresh_tokens"),
        "{names:?} still has the version-1 collection"
    );
    mongo::migrate(&db)
        .await
        .expect("and migrating again is fine");
}

/// A lockout window written before device buckets (schema version 2) has
/// no `email` field: it still counts in the address's bucket, and the
/// credential changes and deletion, which forget every bucket of the
/// address, still reach it by `_id` — as they reach the device buckets by
/// `email`.
#[tokio::test]
async fn a_lockout_window_from_before_device_buckets_is_still_forgotten() {
    if server("a_lockout_window_from_before_device_buckets_is_still_forgotten").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let stores = mongo::stores(db.clone());
    let attempts = db.collection::<Document>("login_attempts");
    let window = TimeDelta::hours(1);
    let now = at(TimeDelta::minutes(5));
    for deleting in [false, true] {
        let user = stores
            .users
            .insert(fixtures::new_user(&format!("old-{deleting}@example.com")))
            .await
            .unwrap();
        let address = LockoutKey::address(user.email.clone());
        let device = LockoutKey::device(user.email.clone(), DeviceId::generate());
        attempts
            .insert_one(doc! { "_id": user.email.as_str(), "at": [t0().timestamp_micros()] })
            .await
            .unwrap();
        let admit = |key: LockoutKey| {
            let stores = stores.clone();
            async move {
                stores
                    .login_attempts
                    .admit(&key, now, window, 5)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(
            admit(address.clone()).await,
            Admission::Admitted { failures: 2 },
            "the old window counts in the address's bucket"
        );
        assert_eq!(
            admit(device.clone()).await,
            Admission::Admitted { failures: 1 }
        );

        if deleting {
            stores.users.delete_account(&user.id).await.unwrap();
            for id in [
                user.email.to_string(),
                format!("{} {}", user.email, device.device_id().unwrap()),
            ] {
                assert_eq!(
                    attempts.find_one(doc! { "_id": &id }).await.unwrap(),
                    None,
                    "{id}: deletion leaves no window behind"
                );
            }
        } else {
            stores
                .users
                .change_password(
                    &user.id,
                    &fixtures::hash_of("new"),
                    RevokeReason::PasswordChanged,
                    now,
                )
                .await
                .unwrap();
            assert_eq!(admit(address).await, Admission::Admitted { failures: 1 });
            assert_eq!(admit(device).await, Admission::Admitted { failures: 1 });
        }
    }
}

/// Small helper: BSON numbers of either width as `i64`.
trait LenientInt {
    fn as_i64_lenient(&self) -> Option<i64>;
}

impl LenientInt for Bson {
    fn as_i64_lenient(&self) -> Option<i64> {
        match self {
            Bson::Int32(n) => Some(i64::from(*n)),
            Bson::Int64(n) => Some(*n),
            Bson::Double(f) => Some(*f as i64),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Index use

/// Every `stage` name and `indexName` anywhere in an explain answer.
fn plan_words(value: &Bson, stages: &mut Vec<String>, indexes: &mut Vec<String>) {
    match value {
        Bson::Document(d) => {
            for (k, v) in d {
                match (k.as_str(), v) {
                    ("stage", Bson::String(s)) => stages.push(s.clone()),
                    ("indexName", Bson::String(s)) => indexes.push(s.clone()),
                    _ => plan_words(v, stages, indexes),
                }
            }
        }
        Bson::Array(items) => {
            for v in items {
                plan_words(v, stages, indexes);
            }
        }
        _ => {}
    }
}

/// Explains `command` and asserts its plan reads through `index`: an index
/// scan stage (`IXSCAN`; `IDHACK` / `EXPRESS_IXSCAN` are MongoDB's fast
/// paths for `_id` and unique equality), the index named, and no
/// collection scan anywhere.
async fn assert_uses_index(db: &Database, what: &str, command: Document, index: &str) {
    let explained = db
        .run_command(doc! { "explain": command, "verbosity": "queryPlanner" })
        .await
        .unwrap_or_else(|e| panic!("explain {what}: {e}"));
    let mut stages = Vec::new();
    let mut indexes = Vec::new();
    for key in ["queryPlanner", "stages"] {
        if let Some(v) = explained.get(key) {
            plan_words(v, &mut stages, &mut indexes);
        }
    }
    assert!(
        !stages.iter().any(|s| s == "COLLSCAN"),
        "{what} scans the collection: {stages:?}"
    );
    assert!(
        stages
            .iter()
            .any(|s| s.contains("IXSCAN") || s.contains("IDHACK")),
        "{what} reads no index: {stages:?}"
    );
    // MongoDB's `_id` fast paths may leave the name out; a named index
    // must be the one expected.
    assert!(
        indexes.is_empty() || indexes.iter().any(|i| i == index),
        "{what} reads {indexes:?}, not {index}"
    );
    eprintln!("{what}: stages {stages:?}, indexes {indexes:?}");
}

/// A `find` as the stores send it: single-field lookups plain, lookups
/// with more conditions naming their index (`schema.rs`, `hint`:
/// SecantusDB's planner only picks an index by itself for a filter on one
/// field).
fn find(collection: &str, filter: Document, hint: Option<&str>) -> Document {
    let mut command = doc! { "find": collection, "filter": filter };
    if let Some(hint) = hint {
        command.insert("hint", hint);
    }
    command
}

#[tokio::test]
async fn per_request_lookups_read_an_index_not_the_collection() {
    if server("per_request_lookups_read_an_index_not_the_collection").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let stores = mongo::stores(db.clone());
    let now = at(TimeDelta::minutes(1));
    let now_db = now.timestamp_micros();

    // A little data, so a plan has something to choose from.
    let user = stores
        .users
        .insert(fixtures::new_user("indexed@example.com"))
        .await
        .unwrap();
    for n in 0..5 {
        stores
            .users
            .insert(fixtures::new_user(&format!("other{n}@example.com")))
            .await
            .unwrap();
    }
    let session = fixtures::new_session(&user.id, t0(), at(TimeDelta::days(1)));
    assert_eq!(
        stores.sessions.start(session.clone()).await.unwrap(),
        regstack_ports::SessionStart::Started
    );
    let reset = fixtures::reset_token(&user.id, at(TimeDelta::hours(1)));
    stores.tokens.issue(reset.clone()).await.unwrap();
    let pending_token = fixtures::token_hash();
    stores
        .pending
        .put(fixtures::pending(
            "pending@example.com",
            &pending_token,
            at(TimeDelta::hours(1)),
        ))
        .await
        .unwrap();

    // Every request: `SessionStore::authenticate`, the session by id joined
    // with its user by id, in one aggregation.
    assert_uses_index(
        &db,
        "authenticate (aggregate: session by _id, $lookup user by _id)",
        doc! {
            "aggregate": "sessions",
            "pipeline": [
                { "$match": { "_id": session.id.as_str() } },
                { "$limit": 1 },
                { "$lookup": {
                    "from": "users",
                    "localField": "user_id",
                    "foreignField": "_id",
                    "as": "user",
                } },
            ],
            "cursor": {},
        },
        "_id_",
    )
    .await;
    // SecantusDB's explain does not describe how `$lookup` reads the
    // foreign collection (MongoDB reports `indexesUsed` / an
    // `EQ_LOOKUP` strategy); the join key is the users' primary key, whose
    // lookup is shown here.
    assert_uses_index(
        &db,
        "user by _id (the $lookup join key)",
        find("users", doc! { "_id": user.id.as_str() }, None),
        "_id_",
    )
    .await;
    assert_uses_index(
        &db,
        "sign-in: user by email",
        find("users", doc! { "email": user.email.as_str() }, None),
        "email_unique",
    )
    .await;
    assert_uses_index(
        &db,
        "refresh: the rotation's conditional write, the session by _id",
        find(
            "sessions",
            doc! {
                "_id": session.id.as_str(),
                "refresh_current": session.refresh_hash.as_str(),
                "revoked_at": Bson::Null,
                "expires_at": { "$gt": now_db },
                "idle_expires_at": { "$gt": now_db },
            },
            Some("_id_"),
        ),
        "_id_",
    )
    .await;
    assert_uses_index(
        &db,
        "reset / email change: token by hash",
        find(
            "one_time_tokens",
            doc! {
                "token_hash": reset.hash.as_str(),
                "kind": reset.kind.as_str(),
                "expires_at": { "$gt": now_db },
            },
            Some("token_hash_unique"),
        ),
        "token_hash_unique",
    )
    .await;
    assert_uses_index(
        &db,
        "verify: pending registration by token hash",
        find(
            "pending_registrations",
            doc! { "token_hash": pending_token.as_str(), "expires_at": { "$gt": now_db } },
            Some("token_hash_unique"),
        ),
        "token_hash_unique",
    )
    .await;
    assert_uses_index(
        &db,
        "sessions of a user (list, revoke_all)",
        find(
            "sessions",
            doc! {
                "user_id": user.id.as_str(),
                "revoked_at": Bson::Null,
                "expires_at": { "$gt": now_db },
                "idle_expires_at": { "$gt": now_db },
            },
            Some("user_id_created_at"),
        ),
        "user_id_created_at",
    )
    .await;

    // And the stores answer through those lookups.
    let (s, u) = stores
        .sessions
        .authenticate(&session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((s.id, u.id), (session.id, user.id));
}

// ---------------------------------------------------------------------------
// Account deletion

/// The collections that hold documents of users: every collection
/// `migrate` makes but the schema record. A new one fails the deletion
/// test until [`documents_keyed_by`] counts it.
const USER_COLLECTIONS: [&str; 12] = [
    "invites",
    "login_attempts",
    "mfa_backup_codes",
    "mfa_codes",
    "mfa_totp",
    "oauth_identities",
    "oauth_states",
    "one_time_tokens",
    "pending_registrations",
    "rate_limit_hits",
    "sessions",
    "users",
];

/// How many documents of each of [`USER_COLLECTIONS`] name `user` — by
/// its id or its address — read from the collections themselves.
async fn documents_keyed_by(db: &Database, user: &User) -> Vec<(&'static str, u64)> {
    use futures::TryStreamExt;
    let (id, email) = (user.id.as_str(), user.email.as_str());
    let mut counts = Vec::new();
    for name in USER_COLLECTIONS {
        let coll: mongodb::Collection<Document> = db.collection(name);
        let filter = match name {
            "users" => doc! { "$or": [{ "_id": id }, { "email": email }] },
            "pending_registrations" => doc! { "email": email },
            "one_time_tokens" | "sessions" | "mfa_codes" | "oauth_identities" => {
                doc! { "user_id": id }
            }
            "oauth_states" => doc! { "link_user_id": id },
            "mfa_totp" | "mfa_backup_codes" => doc! { "_id": id },
            "login_attempts" => doc! { "_id": email },
            "invites" => doc! {
                "$or": [{ "email": email }, { "used_by": email }, { "created_by": id }]
            },
            // Counters are keyed `<purpose>:<address>`: the suffix is
            // compared in Rust, literally (a regex would take `.` for a
            // wildcard).
            "rate_limit_hits" => {
                let suffix = format!(":{email}");
                let all: Vec<Document> = coll
                    .find(doc! {})
                    .await
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap();
                let n = all
                    .iter()
                    .filter(|d| d.get_str("_id").is_ok_and(|k| k.ends_with(&suffix)))
                    .count();
                counts.push((name, n as u64));
                continue;
            }
            other => panic!("no filter for the collection {other}"),
        };
        counts.push((name, coll.count_documents(filter).await.unwrap()));
    }
    counts
}

/// `delete_account` leaves no document keyed by the user's id or address
/// in any collection, counted in the collections themselves (the contract
/// suite sees only what the ports answer), and takes nothing of a
/// neighbour whose address differs only where a regex or `LIKE` has a
/// wildcard (`.`, `_`), nor a counter whose key merely ends in the address
/// without the `:` before it.
#[tokio::test]
async fn deleting_an_account_removes_every_document_keyed_by_it() {
    if server("deleting_an_account_removes_every_document_keyed_by_it").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let stores = mongo::stores(db.clone());
    let mut collections = db.list_collection_names().await.unwrap();
    // The audit log names the account on purpose and outlives it until
    // `audit.retention_days` purges it (the port's rule).
    collections.retain(|c| c != "regstack_meta" && c != "audit_log");
    collections.sort_unstable();
    assert_eq!(collections, USER_COLLECTIONS, "every collection is scanned");

    let user = stores
        .users
        .insert(fixtures::new_user("a_b.c@example.com"))
        .await
        .unwrap();
    let neighbour = stores
        .users
        .insert(fixtures::new_user("axbxc@example.com"))
        .await
        .unwrap();
    let window = TimeDelta::hours(1);
    let oauth = &stores.oauth;
    for who in [&user, &neighbour] {
        // An identity, a link flow it began, and one completed, waiting
        // for the exchange.
        assert_eq!(
            oauth
                .link_identity(&identity(&who.id, "google", who.id.as_str(), t0()))
                .await
                .unwrap(),
            Linking::Linked
        );
        oauth
            .begin(flow("google", FlowMode::Link(who.id.clone()), at(window)))
            .await
            .unwrap();
        let completed = flow("corp-sso", FlowMode::Link(who.id.clone()), at(window));
        oauth.begin(completed.clone()).await.unwrap();
        assert!(matches!(
            oauth.claim(&completed.id, "corp-sso", t0()).await.unwrap(),
            Claim::Claimed(_)
        ));
        let result = FlowResult {
            user_id: who.id.clone(),
            was_new: false,
            credential_epoch: None,
        };
        assert!(oauth
            .complete(&completed.id, &fixtures::token_hash(), &result, at(window))
            .await
            .unwrap());
        let session = fixtures::new_session(&who.id, t0(), at(TimeDelta::days(1)));
        assert_eq!(
            stores.sessions.start(session).await.unwrap(),
            SessionStart::Started
        );
        stores
            .tokens
            .issue(fixtures::reset_token(&who.id, at(window)))
            .await
            .unwrap();
        stores
            .tokens
            .issue(fixtures::email_change_token(
                &who.id,
                &format!("new.{}", who.email),
                at(window),
            ))
            .await
            .unwrap();
        stores
            .login_attempts
            .admit(&LockoutKey::address(who.email.clone()), t0(), window, 5)
            .await
            .unwrap();
        assert!(stores
            .mfa
            .enable_totp(&who.id, "sealed", &[fixtures::token_hash()], None, t0())
            .await
            .unwrap());
        stores
            .mfa
            .open_challenge(MfaChallenge {
                id: fixtures::token_hash(),
                user_id: who.id.clone(),
                kind: ChallengeKind::SignIn,
                code_hash: None,
                payload: None,
                attempts_left: 5,
                credential_epoch: None,
                created_at: t0(),
                expires_at: at(window),
            })
            .await
            .unwrap();
        assert!(stores
            .rate_limits
            .hit(&format!("mail:{}", who.email), t0(), window, 5)
            .await
            .unwrap());
        // An invitation bound to the address, one it spent, and one the
        // account made (which stays, without its maker's name).
        let mut made = fixtures::invite(&fixtures::token_hash(), None, at(window));
        made.created_by = Some(who.id.clone());
        stores.invites.create(made).await.unwrap();
        let bound = fixtures::invite(
            &fixtures::token_hash(),
            Some(who.email.as_str()),
            at(window),
        );
        stores.invites.create(bound).await.unwrap();
        let spent = fixtures::invite(&fixtures::token_hash(), None, at(window));
        stores.invites.create(spent.clone()).await.unwrap();
        assert!(matches!(
            stores
                .invites
                .redeem(&spent.code_hash, &who.email, t0())
                .await
                .unwrap(),
            regstack_ports::InviteRedemption::Redeemed(_)
        ));
        // A pending row for a held address: a registration that lost the
        // race, or one from before the address was taken.
        assert!(stores
            .pending
            .put(fixtures::pending(
                who.email.as_str(),
                &fixtures::token_hash(),
                at(window)
            ))
            .await
            .unwrap());
    }
    assert!(stores
        .rate_limits
        .hit("mail:xa_b.c@example.com", t0(), window, 5)
        .await
        .unwrap());
    let before = documents_keyed_by(&db, &user).await;
    assert!(
        before.iter().all(|(_, n)| *n > 0),
        "every collection holds a document of the user before: {before:?}"
    );
    let neighbours = documents_keyed_by(&db, &neighbour).await;

    let removed = stores.users.delete_account(&user.id).await.unwrap();
    assert_eq!(removed.map(|u| u.id), Some(user.id.clone()));

    assert_eq!(
        documents_keyed_by(&db, &user).await,
        USER_COLLECTIONS.map(|c| (c, 0)),
        "no document of the deleted user is left"
    );
    assert_eq!(
        documents_keyed_by(&db, &neighbour).await,
        neighbours,
        "the neighbour keeps every document"
    );
    let hits: mongodb::Collection<Document> = db.collection("rate_limit_hits");
    assert_eq!(
        hits.count_documents(doc! { "_id": "mail:xa_b.c@example.com" })
            .await
            .unwrap(),
        1,
        "a key that ends in the address without the ':' stays"
    );
    assert_eq!(stores.users.delete_account(&user.id).await.unwrap(), None);
}

// ---------------------------------------------------------------------------
// TTL reaping

/// How long [`the_servers_ttl_monitor_reaps_what_ended_longer_ago_than_the_grace`]
/// waits for the monitor: it sweeps every 60 s, and one sweep of a shared
/// test server holding a thousand databases takes more than a minute itself.
const TTL_MONITOR_PATIENCE: Duration = Duration::from_secs(8 * 60);

/// The server's own TTL monitor deletes, through the `expire_at_ttl`
/// indexes `migrate` creates, every document that ended longer ago than
/// [`TTL_GRACE`](mongo::TTL_GRACE), in each of the five collections whose
/// documents end; it keeps one that ended within the grace and one still
/// alive; and before any reaping, reads already refuse what ended (expiry
/// never waits for the monitor).
///
/// Which of the two this proves: **the server's monitor, not
/// `purge_expired`** — nothing here calls a purge. SecantusDB has a TTL
/// monitor: like mongod's `ttlMonitor`, its storage layer sweeps every
/// collection with a TTL index every 60 s (`ttl_sweep_seconds`, 60 by
/// default; read in secantusdb 0.7.0b3, and a probe saw a document reaped
/// 50 s after it was written), so the test waits for a sweep of the real
/// thing, on SecantusDB and MongoDB alike, up to [`TTL_MONITOR_PATIENCE`];
/// on a server of its own that takes about a minute. Unlike every other
/// test, its database keeps the monitor running, and its instants come
/// from the wall clock, which the monitor compares `expire_at` with: days
/// of margin either side of the grace cover any skew between this machine
/// and the server. The lockout and rate-limit windows have no read that
/// writes nothing; that their expired entries no longer count is the
/// contract suite's (`admit_window_slides`,
/// `rate_limit_window_slides_and_keys_are_independent`).
#[tokio::test]
async fn the_servers_ttl_monitor_reaps_what_ended_longer_ago_than_the_grace() {
    if server("the_servers_ttl_monitor_reaps_what_ended_longer_ago_than_the_grace").is_none() {
        return;
    }
    let db = common::empty_db().await.unwrap();
    mongo::migrate(&db).await.unwrap();
    let stores = mongo::stores(db.clone());
    let now = chrono::Utc::now();
    let window = TimeDelta::minutes(15);
    let ages = [
        ("long-dead", now - TimeDelta::days(3)),
        ("lately-dead", now - TimeDelta::hours(1)),
        ("alive", now + TimeDelta::hours(1)),
    ];

    // One document of each age in every collection whose documents end,
    // each ending at its age's instant; found again by these filters.
    let mut written: Vec<(&str, &str, Document)> = Vec::new();
    for (age, end) in ages {
        let addr = format!("{age}@example.com");
        let pending = fixtures::token_hash();
        assert!(stores
            .pending
            .put(fixtures::pending(&addr, &pending, end))
            .await
            .unwrap());
        let user = stores
            .users
            .insert(fixtures::new_user(&format!("{age}-user@example.com")))
            .await
            .unwrap();
        let reset = fixtures::reset_token(&user.id, end);
        stores.tokens.issue(reset.clone()).await.unwrap();
        let session = fixtures::new_session(&user.id, end - TimeDelta::days(1), end);
        assert_eq!(
            stores.sessions.start(session.clone()).await.unwrap(),
            SessionStart::Started
        );
        // A window's document ends when its newest entry leaves the window.
        stores
            .login_attempts
            .admit(
                &LockoutKey::address(fixtures::email(&addr)),
                end - window,
                window,
                5,
            )
            .await
            .unwrap();
        let key = format!("mail:{addr}");
        assert!(stores
            .rate_limits
            .hit(&key, end - window, window, 5)
            .await
            .unwrap());

        let alive = age == "alive";
        assert_eq!(
            stores
                .pending
                .find_by_email(&fixtures::email(&addr), now)
                .await
                .unwrap()
                .is_some(),
            alive,
            "{age} pending registration is read as {}",
            if alive { "live" } else { "gone" }
        );
        assert_eq!(
            stores
                .tokens
                .peek(reset.kind, &reset.hash, now)
                .await
                .unwrap()
                .is_some(),
            alive,
            "{age} token"
        );
        assert_eq!(
            stores.sessions.list(&user.id, now).await.unwrap().len(),
            usize::from(alive),
            "{age} session"
        );

        written.push(("pending_registrations", age, doc! { "email": &addr }));
        written.push((
            "one_time_tokens",
            age,
            doc! { "token_hash": reset.hash.as_str() },
        ));
        written.push(("sessions", age, doc! { "_id": session.id.as_str() }));
        written.push(("login_attempts", age, doc! { "_id": &addr }));
        written.push(("rate_limit_hits", age, doc! { "_id": &key }));
    }
    let present = |collection: &str, filter: &Document| {
        let coll: mongodb::Collection<Document> = db.collection(collection);
        let filter = filter.clone();
        async move { coll.count_documents(filter).await.unwrap() }
    };
    for (collection, age, filter) in &written {
        assert_eq!(
            present(collection, filter).await,
            1,
            "the {age} document of {collection} was written"
        );
    }

    let started = Instant::now();
    loop {
        let mut left = Vec::new();
        for (collection, age, filter) in &written {
            if *age == "long-dead" && present(collection, filter).await > 0 {
                left.push(*collection);
            }
        }
        if left.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < TTL_MONITOR_PATIENCE,
            "after {:?} the TTL monitor has not reaped the long-dead documents of {left:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    eprintln!(
        "the TTL monitor reaped the long-dead documents within {:?}",
        started.elapsed()
    );
    for (collection, age, filter) in &written {
        if *age != "long-dead" {
            assert_eq!(
                present(collection, filter).await,
                1,
                "the {age} document of {collection} is kept"
            );
        }
    }
    let users: mongodb::Collection<Document> = db.collection("users");
    assert_eq!(
        users.count_documents(doc! {}).await.unwrap(),
        3,
        "users do not expire"
    );
}

// ---------------------------------------------------------------------------
// Faults

/// One call of every store method ([`calls::every_store_call`], the one
/// list) and of `migrate`, each reduced to its error.
fn every_store_call(stores: &Stores, db: &Database) -> Vec<StoreCall> {
    let db = db.clone();
    let migrate: StoreCall = Box::pin(async move { ("migrate", mongo::migrate(&db).await) });
    let mut all = vec![migrate];
    all.extend(calls::every_store_call(stores));
    all
}

/// A loopback port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_unreachable_every_store_call_is_unavailable_within_5_seconds() {
    let url = format!("mongodb://127.0.0.1:{}/", closed_port().await);
    let db = mongo::connect(&url, "regstack_down")
        .await
        .expect("connect is lazy");
    let stores = mongo::stores(db.clone());

    let started = Instant::now();
    let results = futures::future::join_all(every_store_call(&stores, &db).into_iter().map(
        |call| async move {
            let t = Instant::now();
            let (name, result) = call.await;
            (name, result, t.elapsed())
        },
    ))
    .await;
    let total = started.elapsed();

    for (name, result, took) in &results {
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{name}: expected Unavailable, got {result:?}"
        );
        assert!(
            *took < Duration::from_secs(5),
            "{name} took {took:?} to give up"
        );
    }
    eprintln!(
        "{} calls, all Unavailable; slowest {:?}, all together {total:?}",
        results.len(),
        results.iter().map(|(_, _, t)| *t).max().unwrap_or_default()
    );
}

/// `host:port` of a plain single-host `mongodb://` URL.
fn upstream_of(url: &str) -> SocketAddr {
    let rest = url
        .strip_prefix("mongodb://")
        .unwrap_or_else(|| panic!("the recovery test needs a mongodb:// URL, got {url}"));
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    assert!(
        !host.contains('@') && !host.contains(','),
        "the recovery test needs a single host without credentials: {url}"
    );
    host.parse()
        .unwrap_or_else(|e| panic!("{host} is not an address: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_answers_unavailable_while_the_database_is_down_and_recovers_by_itself() {
    let Some(url) = server("the_same_client_recovers") else {
        return;
    };
    let proxy = CutoffProxy::start(upstream_of(&url)).await;
    // `directConnection`: SecantusDB announces itself as a one-node replica
    // set under its own address; without this the driver would discover
    // that address and go around the proxy.
    let proxied = format!("mongodb://{}/?directConnection=true", proxy.addr());
    let db = mongo::connect(&proxied, &common::fresh_name())
        .await
        .unwrap();
    mongo::migrate(&db).await.unwrap();
    common::pause_ttl(&db).await;
    let stores = mongo::stores(db);

    let before = stores
        .users
        .insert(fixtures::new_user("before@example.com"))
        .await
        .expect("insert while up");
    stores.health.ping().await.expect("ping while up");

    proxy.cut().await;
    for attempt in ["get", "insert", "ping"] {
        let t = Instant::now();
        let result = match attempt {
            "get" => stores.users.get(&before.id).await.map(drop),
            "insert" => stores
                .users
                .insert(fixtures::new_user("during@example.com"))
                .await
                .map(drop),
            _ => stores.health.ping().await,
        };
        let took = t.elapsed();
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{attempt} while down: expected Unavailable, got {result:?}"
        );
        assert!(took < Duration::from_secs(5), "{attempt} took {took:?}");
        eprintln!("{attempt} while down: Unavailable after {took:?}");
    }

    proxy.restore().await;
    let reopened = Instant::now();
    let deadline = reopened + Duration::from_secs(30);
    let found = loop {
        match stores.users.get(&before.id).await {
            Ok(found) => break found,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("after the database came back: {e:?}"),
        }
    };
    eprintln!(
        "recovered {:?} after the database came back",
        reopened.elapsed()
    );
    assert_eq!(found, Some(before), "the data is still there");
    let after = stores
        .users
        .insert(fixtures::new_user("after@example.com"))
        .await
        .expect("writes work again");
    assert_eq!(
        stores
            .users
            .find_by_email(&after.email)
            .await
            .unwrap()
            .map(|u| u.id),
        Some(after.id)
    );
    proxy.cut().await;
}

// ---------------------------------------------------------------------------
// OAuth identities: what a stopped sequence leaves, and how the next
// attempt repairs it
//
// Without transactions an identity is linked when its document exists and
// its user's document names it in `oauth_links` (`oauth.rs`). Each test
// writes, by hand, exactly what a sequence leaves when its process dies
// after one of its steps, and checks that nobody sees it and that the next
// attempt it stands in the way of repairs it.

/// An identity of `provider` for `user`, linked at `linked_at`.
fn identity(user: &UserId, provider: &str, subject: &str, linked_at: Timestamp) -> OAuthIdentity {
    let issuer = format!("https://{provider}.example");
    OAuthIdentity {
        linked_at,
        ..fixtures::oauth_identity(user, provider, &issuer, subject)
    }
}

/// A flow of `provider` started at [`t0`].
fn flow(provider: &str, mode: FlowMode, expires_at: Timestamp) -> OAuthFlow {
    fixtures::oauth_flow(provider, mode, expires_at)
}

/// A new account without a password, as a first OAuth sign-in makes it.
fn oauth_user(raw: &str) -> NewUser {
    NewUser {
        password_hash: None,
        ..fixtures::new_user(raw)
    }
}

/// The raw `oauth_identities` document a sequence writes first: pending,
/// holding `identity`'s keys.
fn pending_document(identity: &OAuthIdentity) -> Document {
    doc! {
        "_id": mongodb::bson::oid::ObjectId::new(),
        "user_id": identity.user_id.as_str(),
        "provider": &identity.provider,
        "issuer": &identity.issuer,
        "subject": &identity.subject,
        "email": identity.email.as_deref(),
        "linked_at": identity.linked_at.timestamp_micros(),
        "last_used_at": Bson::Null,
        "state": "pending",
    }
}

fn identities(db: &Database) -> mongodb::Collection<Document> {
    db.collection("oauth_identities")
}

/// How long a pending identity blocks its keys, as a `TimeDelta`.
fn grace() -> TimeDelta {
    TimeDelta::from_std(mongo::UNCONFIRMED_IDENTITY_GRACE).unwrap()
}

/// A first sign-in that died after inserting its pending identity (the
/// user never appeared) leaves nothing anyone sees; the identity reads as
/// in use only until the grace has passed, and then the next first
/// sign-in with it removes the leftover and creates its account.
#[tokio::test]
async fn a_first_sign_in_that_died_before_its_user_is_repaired_by_the_next_one_after_the_grace() {
    if server("a_first_sign_in_that_died_before_its_user_is_repaired").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let store = MongoStores::new(db.clone());
    let dead = identity(&UserId::generate(), "google", "sub-1", t0());
    identities(&db)
        .insert_one(pending_document(&dead))
        .await
        .unwrap();
    assert_eq!(
        store
            .find_identity(&dead.issuer, &dead.subject)
            .await
            .unwrap(),
        None,
        "a pending identity whose user never appeared is not linked"
    );
    assert_eq!(store.identities_of(&dead.user_id).await.unwrap(), vec![]);

    // Within the grace it may be a sequence still running: in use.
    let soon = oauth_user("soon@example.com");
    let attempt = identity(
        &soon.id,
        "google",
        "sub-1",
        t0() + grace() - fixtures::micro(),
    );
    assert_eq!(
        store
            .create_user_with_identity(soon.clone(), &attempt)
            .await
            .unwrap(),
        Creation::IdentityInUse
    );
    assert_eq!(store.get(&soon.id).await.unwrap(), None, "nothing written");

    // After it, the leftover goes and the sign-in succeeds.
    let later = oauth_user("later@example.com");
    let attempt = identity(&later.id, "google", "sub-1", t0() + grace());
    let Creation::Created(user) = store
        .create_user_with_identity(later.clone(), &attempt)
        .await
        .unwrap()
    else {
        panic!("the leftover was not repaired");
    };
    assert_eq!(user.id, later.id);
    assert_eq!(
        store
            .find_identity(&dead.issuer, &dead.subject)
            .await
            .unwrap(),
        Some(attempt.clone())
    );
    assert_eq!(
        identities(&db)
            .count_documents(doc! { "subject": "sub-1" })
            .await
            .unwrap(),
        1,
        "the leftover is gone"
    );
    assert_eq!(
        identities(&db)
            .find_one(doc! { "subject": "sub-1" })
            .await
            .unwrap()
            .unwrap()
            .get_str("state")
            .unwrap(),
        "linked"
    );
}

/// A first sign-in that died after inserting its user (the commit point)
/// but before confirming the identity: account and identity are both
/// there and linked; the next attempt with the identity is refused as in
/// use and confirms the document.
#[tokio::test]
async fn a_first_sign_in_that_died_after_its_user_is_linked_and_confirmed_by_the_next_attempt() {
    if server("a_first_sign_in_that_died_after_its_user").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let store = MongoStores::new(db.clone());
    let new = oauth_user("committed@example.com");
    let dead = identity(&new.id, "google", "sub-2", t0());
    let pending = pending_document(&dead);
    let link = pending.get_object_id("_id").unwrap();
    identities(&db).insert_one(pending).await.unwrap();
    let user = store.insert(new.clone()).await.unwrap();
    db.collection::<Document>("users")
        .update_one(
            doc! { "_id": user.id.as_str() },
            doc! { "$set": { "oauth_links": [link] } },
        )
        .await
        .unwrap();

    assert_eq!(
        store
            .find_identity(&dead.issuer, &dead.subject)
            .await
            .unwrap(),
        Some(dead.clone()),
        "the commit point passed: linked"
    );
    assert_eq!(
        store.identities_of(&user.id).await.unwrap(),
        vec![dead.clone()]
    );

    let other = oauth_user("other@example.com");
    let attempt = identity(&other.id, "google", "sub-2", at(TimeDelta::days(1)));
    assert_eq!(
        store
            .create_user_with_identity(other, &attempt)
            .await
            .unwrap(),
        Creation::IdentityInUse
    );
    let doc = identities(&db)
        .find_one(doc! { "_id": link })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.get_str("state").unwrap(), "linked", "confirmed");
    assert_eq!(
        store
            .find_identity(&dead.issuer, &dead.subject)
            .await
            .unwrap(),
        Some(dead)
    );
}

/// A link that died after inserting its pending identity but before
/// naming it in the user document: not linked (no sign-in through it, the
/// account still counts only its old ways in, unlinking finds nothing);
/// a link of the same provider is refused until the grace has passed,
/// then repairs it.
#[tokio::test]
async fn a_link_that_died_before_naming_its_identity_is_not_linked_and_is_repaired_after_the_grace()
{
    if server("a_link_that_died_before_naming_its_identity").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let store = MongoStores::new(db.clone());
    let first = identity(&UserId::generate(), "google", "sub-3", t0());
    let Creation::Created(user) = store
        .create_user_with_identity(
            NewUser {
                id: first.user_id.clone(),
                ..oauth_user("linker@example.com")
            },
            &first,
        )
        .await
        .unwrap()
    else {
        panic!("create");
    };
    let dead = identity(&user.id, "github", "gh-3", t0());
    identities(&db)
        .insert_one(pending_document(&dead))
        .await
        .unwrap();

    assert_eq!(
        store
            .find_identity(&dead.issuer, &dead.subject)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.identities_of(&user.id).await.unwrap(),
        vec![first.clone()]
    );
    assert_eq!(
        store.unlink_identity(&user.id, "github").await.unwrap(),
        Unlinking::NotLinked
    );
    assert_eq!(
        store.unlink_identity(&user.id, "google").await.unwrap(),
        Unlinking::LastSignInMethod,
        "the unfinished link is no way in"
    );

    let again = identity(
        &user.id,
        "github",
        "gh-3b",
        t0() + grace() - fixtures::micro(),
    );
    assert_eq!(
        store.link_identity(&again).await.unwrap(),
        Linking::ProviderTaken,
        "within the grace it may be a link in progress"
    );
    let again = identity(&user.id, "github", "gh-3b", t0() + grace());
    assert_eq!(store.link_identity(&again).await.unwrap(), Linking::Linked);
    assert_eq!(
        store.identities_of(&user.id).await.unwrap(),
        vec![first, again]
    );
    assert_eq!(
        identities(&db)
            .count_documents(doc! { "subject": "gh-3" })
            .await
            .unwrap(),
        0
    );
}

/// An unlink that died between its decision (the id pulled from the user
/// document) and deleting the identity document: the identity is no
/// longer linked, and its leftover document is removed at once by the next
/// link that meets it — no grace, since nothing can link it again.
#[tokio::test]
async fn an_unlink_that_died_before_deleting_the_identity_leaves_it_unlinked_and_repairable_at_once(
) {
    if server("an_unlink_that_died_before_deleting_the_identity").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let store = MongoStores::new(db.clone());
    let user = store
        .insert(fixtures::new_user("unlinker@example.com"))
        .await
        .unwrap();
    let linked = identity(&user.id, "google", "sub-4", t0());
    assert_eq!(store.link_identity(&linked).await.unwrap(), Linking::Linked);
    // The decision of an unlink, and then nothing.
    db.collection::<Document>("users")
        .update_one(
            doc! { "_id": user.id.as_str() },
            doc! { "$set": { "oauth_links": [] } },
        )
        .await
        .unwrap();

    assert_eq!(
        store
            .find_identity(&linked.issuer, &linked.subject)
            .await
            .unwrap(),
        None
    );
    assert!(store.identities_of(&user.id).await.unwrap().is_empty());
    assert!(!store
        .touch_identity(&linked.issuer, &linked.subject, t0())
        .await
        .unwrap());
    assert_eq!(
        store.unlink_identity(&user.id, "google").await.unwrap(),
        Unlinking::NotLinked
    );

    // The same identity, linked again at once (by this account), and
    // another account's first sign-in with a second identity both pass.
    let relinked = identity(&user.id, "google", "sub-4", t0() + fixtures::micro());
    assert_eq!(
        store.link_identity(&relinked).await.unwrap(),
        Linking::Linked
    );
    assert_eq!(
        store
            .find_identity(&linked.issuer, &linked.subject)
            .await
            .unwrap(),
        Some(relinked)
    );
    assert_eq!(
        identities(&db)
            .count_documents(doc! { "user_id": user.id.as_str() })
            .await
            .unwrap(),
        1
    );
}

/// An account deletion that died after removing the user but before its
/// sweep leaves identity documents of a user that does not exist: not
/// linked, and the next first sign-in with the identity removes them at
/// once.
#[tokio::test]
async fn identities_of_a_deleted_account_are_not_linked_and_are_repaired_at_once() {
    if server("identities_of_a_deleted_account_are_not_linked").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let store = MongoStores::new(db.clone());
    let new = oauth_user("gone@example.com");
    let linked = identity(&new.id, "google", "sub-5", t0());
    assert!(matches!(
        store
            .create_user_with_identity(new.clone(), &linked)
            .await
            .unwrap(),
        Creation::Created(_)
    ));
    db.collection::<Document>("users")
        .delete_one(doc! { "_id": new.id.as_str() })
        .await
        .unwrap();
    assert_eq!(
        store
            .find_identity(&linked.issuer, &linked.subject)
            .await
            .unwrap(),
        None
    );

    let next = oauth_user("gone@example.com");
    let attempt = identity(&next.id, "google", "sub-5", t0());
    assert!(matches!(
        store
            .create_user_with_identity(next, &attempt)
            .await
            .unwrap(),
        Creation::Created(_)
    ));
    assert_eq!(
        store
            .find_identity(&linked.issuer, &linked.subject)
            .await
            .unwrap(),
        Some(attempt)
    );
}

/// A first sign-in refused for its address takes its pending identity
/// back at once: the identity is free for the next attempt, with no grace
/// to wait out.
#[tokio::test]
async fn a_first_sign_in_refused_for_its_address_leaves_no_identity_document() {
    if server("a_first_sign_in_refused_for_its_address").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let store = MongoStores::new(db.clone());
    store
        .insert(fixtures::new_user("taken@example.com"))
        .await
        .unwrap();
    let new = oauth_user("taken@example.com");
    let attempt = identity(&new.id, "google", "sub-6", t0());
    assert_eq!(
        store
            .create_user_with_identity(new, &attempt)
            .await
            .unwrap(),
        Creation::EmailTaken
    );
    assert_eq!(identities(&db).count_documents(doc! {}).await.unwrap(), 0);
    let other = oauth_user("free@example.com");
    let attempt = identity(&other.id, "google", "sub-6", t0());
    assert!(matches!(
        store
            .create_user_with_identity(other, &attempt)
            .await
            .unwrap(),
        Creation::Created(_)
    ));
}

/// A database from before OAuth (schema version 4) is not current until
/// migrated, and its users — without `oauth_links` — keep their password
/// as their only way in.
#[tokio::test]
async fn a_version_4_database_needs_migrating_and_its_users_have_no_identities() {
    if server("a_version_4_database_needs_migrating").is_none() {
        return;
    }
    // Not `fresh_db`: its paused TTL indexes would differ from what a
    // second `migrate` asks for. Nothing here expires.
    let db = common::empty_db().await.unwrap();
    mongo::migrate(&db).await.unwrap();
    let store = MongoStores::new(db.clone());
    let user = store
        .insert(fixtures::new_user("old@example.com"))
        .await
        .unwrap();
    db.collection::<Document>("regstack_meta")
        .update_one(
            doc! { "_id": "schema" },
            doc! { "$set": { "version": 4_i64 } },
        )
        .await
        .unwrap();
    assert!(!store.schema_is_current().await.unwrap());
    mongo::migrate(&db).await.unwrap();
    assert!(store.schema_is_current().await.unwrap());
    assert!(store.identities_of(&user.id).await.unwrap().is_empty());
    assert_eq!(
        store.unlink_identity(&user.id, "google").await.unwrap(),
        Unlinking::NotLinked
    );
    let linked = identity(&user.id, "google", "sub-7", t0());
    assert_eq!(store.link_identity(&linked).await.unwrap(), Linking::Linked);
    assert_eq!(
        store.unlink_identity(&user.id, "google").await.unwrap(),
        Unlinking::Unlinked(linked),
        "the password is a way in"
    );
}

/// The OAuth lookups — the identity of a sign-in, the account's
/// identities, the link check on the user, each flow hand-over, and the
/// deletion sweeps — read an index, with the hints the store sends.
#[tokio::test]
async fn oauth_lookups_read_an_index_not_the_collection() {
    if server("oauth_lookups_read_an_index_not_the_collection").is_none() {
        return;
    }
    let db = common::fresh_db().await.unwrap();
    let store = MongoStores::new(db.clone());
    let now_db = at(TimeDelta::minutes(1)).timestamp_micros();
    let mut linked = Vec::new();
    for n in 0..5 {
        let user = store
            .insert(fixtures::new_user(&format!("oauth{n}@example.com")))
            .await
            .unwrap();
        let i = identity(&user.id, "google", &format!("sub-{n}"), t0());
        assert_eq!(store.link_identity(&i).await.unwrap(), Linking::Linked);
        let f = flow(
            "google",
            FlowMode::Link(user.id.clone()),
            at(TimeDelta::hours(1)),
        );
        store.begin(f.clone()).await.unwrap();
        linked.push((user, i, f));
    }
    let (user, i, f) = &linked[2];
    let link = identities(&db)
        .find_one(doc! { "subject": &i.subject })
        .await
        .unwrap()
        .unwrap()
        .get_object_id("_id")
        .unwrap();

    assert_uses_index(
        &db,
        "OAuth sign-in: identity by (issuer, subject)",
        find(
            "oauth_identities",
            doc! { "issuer": &i.issuer, "subject": &i.subject },
            Some("issuer_subject_unique"),
        ),
        "issuer_subject_unique",
    )
    .await;
    assert_uses_index(
        &db,
        "whether the user names the identity",
        find(
            "users",
            doc! { "_id": user.id.as_str(), "oauth_links": link },
            Some("_id_"),
        ),
        "_id_",
    )
    .await;
    assert_uses_index(
        &db,
        "an account's identity of a provider (unlink), and all of them",
        find(
            "oauth_identities",
            doc! { "user_id": user.id.as_str(), "provider": "google" },
            Some("user_id_provider_unique"),
        ),
        "user_id_provider_unique",
    )
    .await;
    assert_uses_index(
        &db,
        "claim / complete / redeem: the flow by _id",
        find(
            "oauth_states",
            doc! {
                "_id": f.id.as_str(),
                "browser": f.browser.as_str(),
                "result": { "$ne": Bson::Null },
                "expires_at": { "$gt": now_db },
            },
            Some("_id_"),
        ),
        "_id_",
    )
    .await;
    assert_uses_index(
        &db,
        "deletion: the account's link flows",
        find(
            "oauth_states",
            doc! { "link_user_id": user.id.as_str() },
            Some("link_user_id"),
        ),
        "link_user_id",
    )
    .await;
    assert_eq!(
        store.find_identity(&i.issuer, &i.subject).await.unwrap(),
        Some(i.clone())
    );
}
