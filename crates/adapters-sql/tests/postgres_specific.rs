//! What only the PostgreSQL backend must prove, beyond the contract suite:
//! migrations (from nothing, twice, and from the previous version with rows
//! in place), that deleting an account leaves no row of it in any table,
//! URL spellings, and faults — a stopped or unreachable server
//! makes every store call `StoreError::Unavailable` (HTTP 503) within
//! seconds, never `Backend` and never a hang, and the same pool serves
//! again once the server is back.
//!
//! Tests that need a server read `TEST_PG_URL`
//! (`scripts/services/postgres.sh up`); without it they print SKIPPED, and
//! under `CI=true` fail. "The server is stopped" is played by testkit's
//! `CutoffProxy`, which can close its port and every connection through it,
//! and open them again, so one server serves every test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::TimeDelta;
use regstack_adapters_sql::postgres::{self, PgPool, PoolSettings, PostgresStores};
use regstack_ports::*;
use regstack_testkit::fixtures::{self, at, t0};
use regstack_testkit::memory::OPERATIONS;
use regstack_testkit::{calls, CutoffProxy};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------
// Harness

/// `TEST_PG_URL`, or `None` after saying loudly that `test` was skipped
/// (a failure under `CI=true`).
fn pg_url(test: &str) -> Option<String> {
    if let Some(url) = std::env::var("TEST_PG_URL").ok().filter(|u| !u.is_empty()) {
        return Some(url);
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "{test}: TEST_PG_URL is not set, and CI=true forbids skipping \
         (scripts/services/postgres.sh up)"
    );
    eprintln!("SKIPPED {test}: TEST_PG_URL is not set (scripts/services/postgres.sh up)");
    None
}

/// A new, empty schema in the database at `url`, and `url` pointed at it
/// (see `contract_postgres.rs`, which drops stale ones).
async fn fresh_schema(url: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let name = format!(
        "t_{now}_{}_s{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(url).await.unwrap();
    admin
        .execute(format!("CREATE SCHEMA \"{name}\"").as_str())
        .await
        .unwrap();
    admin.close().await.unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options[search_path]={name}")
}

/// A fresh schema, migrated, with its pool and stores.
async fn migrated(url: &str) -> (PgPool, Stores) {
    let url = fresh_schema(url).await;
    let pool = postgres::connect(&url).await.unwrap();
    postgres::migrate(&pool).await.unwrap();
    let stores = postgres::stores(pool.clone());
    (pool, stores)
}

/// `url` with its host and port replaced by `addr`.
fn via(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}{addr}{tail}")
}

/// The server `url` names, as a socket address.
async fn upstream_of(url: &str) -> SocketAddr {
    let options = PgConnectOptions::from_str(url).unwrap();
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    tokio::net::lookup_host((host, port))
        .await
        .unwrap()
        .next()
        .unwrap()
}

/// Every method of every store ([`calls::every_store_call`], the one
/// list), each in its own task: `(name, outcome, how long it took)`.
fn every_store_call(stores: &Stores) -> JoinSet<(&'static str, Result<(), StoreError>, Duration)> {
    let mut set = JoinSet::new();
    for call in calls::every_store_call(stores) {
        set.spawn(async move {
            let started = Instant::now();
            let (name, outcome) = call.await;
            (name, outcome, started.elapsed())
        });
    }
    set
}

/// Runs [`every_store_call`] and asserts each call failed with
/// `Unavailable` within `limit`.
async fn assert_every_call_unavailable(stores: &Stores, limit: Duration) {
    let mut set = every_store_call(stores);
    let mut seen = 0;
    let mut wrong = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (name, outcome, took) = joined.unwrap();
        seen += 1;
        match outcome {
            Err(StoreError::Unavailable(_)) if took <= limit => {}
            other => wrong.push(format!("{name}: {other:?} after {took:?}")),
        }
    }
    assert_eq!(seen, OPERATIONS.len());
    assert!(
        wrong.is_empty(),
        "every call must be Unavailable within {limit:?}; these were not:\n{}",
        wrong.join("\n")
    );
}

/// Slack on top of the acquire timeout for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------
// Migrations

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let Some(url) = pg_url("migrations_apply_to_an_empty_database_and_are_idempotent") else {
        return;
    };
    let url = fresh_schema(&url).await;
    let pool = postgres::connect(&url).await.unwrap();
    let stores = PostgresStores::new(pool.clone());
    assert!(
        !stores.schema_is_current().await.unwrap(),
        "nothing applied"
    );

    postgres::migrate(&pool).await.unwrap();
    assert!(stores.schema_is_current().await.unwrap());
    postgres::migrate(&pool).await.unwrap();
    assert!(stores.schema_is_current().await.unwrap());
    stores.ping().await.unwrap();

    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        applied,
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        "each migration recorded once"
    );
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename NOT LIKE '\\_%' ORDER BY tablename",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "audit_log",
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
            "users"
        ]
    );
}

#[tokio::test]
async fn two_instances_migrating_at_once_both_succeed() {
    let Some(url) = pg_url("two_instances_migrating_at_once_both_succeed") else {
        return;
    };
    let url = fresh_schema(&url).await;
    let a = postgres::connect(&url).await.unwrap();
    let b = postgres::connect(&url).await.unwrap();
    let (ra, rb) = tokio::join!(postgres::migrate(&a), postgres::migrate(&b));
    ra.unwrap();
    rb.unwrap();
    assert!(PostgresStores::new(a).schema_is_current().await.unwrap());
}

/// A database with the migrations up to `version` only, written with those
/// versions' SQL.
async fn database_at_version(url: &str, dir: &Path, version: i64) -> PgPool {
    let partial = dir.join(format!("migrations-v{version}"));
    std::fs::create_dir(&partial).unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(&all).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let v: i64 = name.split('_').next().unwrap().parse().unwrap();
        if v <= version {
            std::fs::copy(all.join(&name), partial.join(&name)).unwrap();
        }
    }
    let url = fresh_schema(url).await;
    let pool = postgres::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(partial.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

/// Inserts a user as a schema before version 5 stores it, and returns the
/// record the stores read back after migrating: the stores' own
/// statements name `must_change_password`, which those versions lack.
async fn insert_user_before_v5(pool: &PgPool, new: NewUser) -> User {
    sqlx::query(
        "INSERT INTO users (id, email, hashed_password, is_active, is_verified, is_superuser, \
         full_name, created_at, updated_at) VALUES ($1, $2, $3, TRUE, $4, $5, $6, $7, $7)",
    )
    .bind(new.id.as_str())
    .bind(new.email.as_str())
    .bind(new.password_hash.as_ref().map(PasswordHash::as_str))
    .bind(new.is_verified)
    .bind(new.is_superuser)
    .bind(new.full_name.as_deref())
    .bind(new.created_at.timestamp_micros())
    .execute(pool)
    .await
    .unwrap();
    User {
        id: new.id,
        email: new.email,
        password_hash: new.password_hash,
        is_active: true,
        is_verified: new.is_verified,
        is_superuser: new.is_superuser,
        full_name: new.full_name,
        phone_number: None,
        is_mfa_enabled: false,
        must_change_password: false,
        created_at: new.created_at,
        updated_at: new.created_at,
        last_login: None,
        tokens_invalidated_after: None,
        disabled_reason: None,
        disabled_until: None,
    }
}

/// The schema before refresh-token families.
async fn database_at_version_1(url: &str, dir: &Path) -> PgPool {
    database_at_version(url, dir, 1).await
}

/// Version 2 kept every refresh token hash in `refresh_tokens`; version 3
/// moves the family onto the session row. Sessions survive; their old
/// tokens (which carried no session id) cannot rotate, and presenting one
/// revokes nothing.
#[tokio::test]
async fn a_database_at_version_2_keeps_its_sessions_and_drops_the_token_table() {
    let Some(url) = pg_url("a_database_at_version_2_keeps_its_sessions_and_drops_the_token_table")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = database_at_version(&url, dir.path(), 2).await;
    let stores = postgres::stores(pool.clone());
    assert!(!stores.health.schema_is_current().await.unwrap());
    let user = insert_user_before_v5(&pool, fixtures::new_user("v2@example.com")).await;
    let sid = SessionId::generate();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, \
         idle_expires_at, user_agent, ip) VALUES ($1, $2, $3, $3, $4, $5, 'ua', NULL)",
    )
    .bind(sid.as_str())
    .bind(user.id.as_str())
    .bind(t0().timestamp_micros())
    .bind(at(TimeDelta::days(30)).timestamp_micros())
    .bind(at(TimeDelta::days(1)).timestamp_micros())
    .execute(&pool)
    .await
    .unwrap();
    let (spent, live) = (fixtures::token_hash(), fixtures::token_hash());
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, session_id, issued_at, spent_at) \
         VALUES ($1, $3, $4, $4), ($2, $3, $4, NULL)",
    )
    .bind(spent.as_str())
    .bind(live.as_str())
    .bind(sid.as_str())
    .bind(t0().timestamp_micros())
    .execute(&pool)
    .await
    .unwrap();
    // As written above (`authenticate` reads the user with version 5's
    // columns, so it can only be asked after the migration).
    let before = (
        Session {
            id: sid.clone(),
            user_id: user.id.clone(),
            created_at: t0(),
            last_used_at: t0(),
            expires_at: at(TimeDelta::days(30)),
            idle_expires_at: at(TimeDelta::days(1)),
            user_agent: Some("ua".into()),
            ip: None,
            revoked_at: None,
            revoked_reason: None,
        },
        user.clone(),
    );

    postgres::migrate(&pool).await.unwrap();
    assert!(stores.health.schema_is_current().await.unwrap());
    assert_eq!(
        stores.sessions.authenticate(&sid).await.unwrap().unwrap(),
        before,
        "the session is kept as it was"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename = 'refresh_tokens'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0, "the token table is gone");
    let later = at(TimeDelta::minutes(1));
    for old in [&live, &spent] {
        assert!(
            matches!(
            stores
                .sessions
                .rotate(
                    &sid,
                    old,
                    &fixtures::token_hash(),
                    later,
                    TimeDelta::days(1)
                )
                .await
                .unwrap(),
            Rotation::NotLive(f) if f.live.is_none()),
            "a version-2 family has nothing to rotate"
        );
    }
    assert!(
        stores
            .sessions
            .authenticate(&sid)
            .await
            .unwrap()
            .unwrap()
            .0
            .is_live(later),
        "and is not revoked for it"
    );
}

#[tokio::test]
async fn a_database_at_the_previous_schema_version_migrates_and_keeps_its_rows() {
    let Some(url) = pg_url("a_database_at_the_previous_schema_version_migrates_and_keeps_its_rows")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pool = database_at_version_1(&url, dir.path()).await;
    let stores = postgres::stores(pool.clone());
    assert!(
        !stores.health.schema_is_current().await.unwrap(),
        "version 1 is behind"
    );

    // Rows as version 1 wrote them: sessions without an idle end, and the
    // other tables' rows through the stores that version 1 already had.
    let user = insert_user_before_v5(&pool, fixtures::new_user("before@example.com")).await;
    let live = SessionId::generate();
    let revoked = SessionId::generate();
    let expires = at(TimeDelta::days(30));
    for (id, revoked_at, reason) in [
        (&live, None, None),
        (&revoked, Some(at(TimeDelta::minutes(1))), Some("logout")),
    ] {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, \
             user_agent, ip, revoked_at, revoked_reason) \
             VALUES ($1, $2, $3, $3, $4, 'old agent', '192.0.2.1', $5, $6)",
        )
        .bind(id.as_str())
        .bind(user.id.as_str())
        .bind(t0().timestamp_micros())
        .bind(expires.timestamp_micros())
        .bind(revoked_at.map(|t: Timestamp| t.timestamp_micros()))
        .bind(reason)
        .execute(&pool)
        .await
        .unwrap();
    }
    let reset = fixtures::reset_token(&user.id, at(TimeDelta::hours(2)));
    // Written as version 1 did (`issue` reads the user with version 5's
    // columns).
    sqlx::query(
        "INSERT INTO one_time_tokens (token_hash, kind, user_id, new_email, created_at, \
         expires_at) VALUES ($1, $2, $3, NULL, $4, $5)",
    )
    .bind(reset.hash.as_str())
    .bind(reset.kind.as_str())
    .bind(reset.user_id.as_str())
    .bind(reset.created_at.timestamp_micros())
    .bind(reset.expires_at.timestamp_micros())
    .execute(&pool)
    .await
    .unwrap();
    let pending_token = fixtures::token_hash();
    let pending = fixtures::pending(
        "waiting@example.com",
        &pending_token,
        at(TimeDelta::days(1)),
    );
    stores.pending.put(pending.clone()).await.unwrap();
    let window = TimeDelta::hours(1);
    let who = fixtures::email("before@example.com");
    // A lockout row as versions 1 to 3 wrote it: no bucket column.
    sqlx::query("INSERT INTO login_attempts (email, attempted_at) VALUES ($1, $2)")
        .bind(who.as_str())
        .bind(t0().timestamp_micros())
        .execute(&pool)
        .await
        .unwrap();
    assert!(stores
        .rate_limits
        .hit("mail:before@example.com", t0(), window, 2)
        .await
        .unwrap());

    postgres::migrate(&pool).await.unwrap();
    assert!(stores.health.schema_is_current().await.unwrap());

    assert_eq!(
        stores.users.get(&user.id).await.unwrap(),
        Some(user.clone()),
        "the user is untouched"
    );
    let (s, u) = stores.sessions.authenticate(&live).await.unwrap().unwrap();
    assert_eq!(
        s,
        Session {
            id: live.clone(),
            user_id: user.id.clone(),
            created_at: t0(),
            last_used_at: t0(),
            expires_at: expires,
            idle_expires_at: expires,
            user_agent: Some("old agent".into()),
            ip: Some("192.0.2.1".into()),
            revoked_at: None,
            revoked_reason: None,
        },
        "an existing session idles out when it expires"
    );
    assert_eq!(u, user);
    let (s, _) = stores
        .sessions
        .authenticate(&revoked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.revoked_at, s.revoked_reason),
        (Some(at(TimeDelta::minutes(1))), Some(RevokeReason::Logout)),
        "a revoked session stays revoked"
    );
    assert_eq!(
        stores
            .sessions
            .list(&user.id, at(TimeDelta::minutes(5)))
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        std::slice::from_ref(&live)
    );
    assert_eq!(
        stores
            .tokens
            .peek(TokenKind::PasswordReset, &reset.hash, t0())
            .await
            .unwrap(),
        Some(reset)
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&pending.email, t0())
            .await
            .unwrap(),
        Some(pending)
    );
    assert_eq!(
        stores
            .login_attempts
            .admit(&LockoutKey::address(who.clone()), t0(), window, 5)
            .await
            .unwrap(),
        Admission::Admitted { failures: 2 },
        "the attempt made before the upgrade still counts, in the address's bucket"
    );
    assert_eq!(
        stores
            .login_attempts
            .admit(
                &LockoutKey::device(who.clone(), DeviceId::generate()),
                t0(),
                window,
                5
            )
            .await
            .unwrap(),
        Admission::Admitted { failures: 1 },
        "and in no device's"
    );
    assert!(stores
        .rate_limits
        .hit("mail:before@example.com", t0(), window, 2)
        .await
        .unwrap());
    assert!(
        !stores
            .rate_limits
            .hit("mail:before@example.com", t0(), window, 2)
            .await
            .unwrap(),
        "the hit made before the upgrade still counts"
    );

    // The new surface works on the upgraded database.
    let new = fixtures::new_session(&user.id, at(TimeDelta::hours(1)), at(TimeDelta::days(30)));
    assert_eq!(
        stores.sessions.start(new.clone()).await.unwrap(),
        regstack_ports::SessionStart::Started
    );
    assert!(matches!(
        stores
            .sessions
            .rotate(
                &new.id,
                &new.refresh_hash,
                &fixtures::token_hash(),
                at(TimeDelta::hours(2)),
                TimeDelta::days(14),
            )
            .await
            .unwrap(),
        Rotation::Rotated { .. }
    ));
    stores.users.delete_account(&user.id).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "sessions of a deleted user");
}

#[tokio::test]
async fn a_tampered_migration_record_makes_the_schema_not_current() {
    let Some(url) = pg_url("a_tampered_migration_record_makes_the_schema_not_current") else {
        return;
    };
    let (pool, stores) = migrated(&url).await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea WHERE version = 2")
        .execute(&pool)
        .await
        .unwrap();
    assert!(!stores.health.schema_is_current().await.unwrap());
}

// ---------------------------------------------------------------------------
// Account deletion

/// The tables a row of a user can be in, and how a row names the user
/// (`$1` its id, `$2` its address): every table of the schema but the
/// migration record. A new table fails the test below until it is added.
const KEYED_BY_USER: [(&str, &str); 12] = [
    ("users", "id = $1 OR email = $2"),
    // Bound to, spent by or made by the account.
    ("invites", "email = $2 OR used_by = $2 OR created_by = $1"),
    ("pending_registrations", "email = $2"),
    ("one_time_tokens", "user_id = $1"),
    ("sessions", "user_id = $1"),
    ("mfa_codes", "user_id = $1"),
    ("mfa_totp", "user_id = $1"),
    ("mfa_backup_codes", "user_id = $1"),
    ("oauth_identities", "user_id = $1"),
    ("oauth_states", "linking_user_id = $1"),
    ("login_attempts", "email = $2"),
    // Counters are keyed `<purpose>:<address>`; `right` compares
    // literally, where `LIKE` would take `_` for a wildcard.
    ("rate_limit_hits", "right(key, length($2) + 1) = ':' || $2"),
];

/// How many rows of each table name `user`, read from the tables.
async fn rows_keyed_by(pool: &PgPool, user: &User) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for (table, keyed) in KEYED_BY_USER {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {keyed}"))
            .bind(user.id.as_str())
            .bind(user.email.as_str())
            .fetch_one(pool)
            .await
            .unwrap_or_else(|e| panic!("count {table}: {e}"));
        counts.push((table, n));
    }
    counts
}

/// `delete_account` leaves no row keyed by the user's id or address in
/// any table, counted in the tables themselves (the contract suite sees
/// only what the ports answer), and takes nothing of a neighbour whose
/// address differs only where `LIKE` has a wildcard (`_`), nor a counter
/// whose key merely ends in the address without the `:` before it.
#[tokio::test]
async fn deleting_an_account_removes_every_row_keyed_by_it() {
    let Some(url) = pg_url("deleting_an_account_removes_every_row_keyed_by_it") else {
        return;
    };
    let (pool, stores) = migrated(&url).await;
    // The audit log names the account on purpose and outlives it until
    // `audit.retention_days` purges it (the port's rule).
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' \
         AND table_name <> 'audit_log' ORDER BY table_name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut scanned: Vec<&str> = KEYED_BY_USER.iter().map(|(t, _)| *t).collect();
    scanned.sort_unstable();
    assert_eq!(tables, scanned, "every table is scanned");

    let user = stores
        .users
        .insert(fixtures::new_user("a_b@example.com"))
        .await
        .unwrap();
    let neighbour = stores
        .users
        .insert(fixtures::new_user("axb@example.com"))
        .await
        .unwrap();
    let window = TimeDelta::hours(1);
    for who in [&user, &neighbour] {
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
        assert_eq!(
            stores
                .oauth
                .link_identity(&fixtures::oauth_identity(
                    &who.id,
                    "google",
                    "https://accounts.google.com",
                    who.id.as_str(),
                ))
                .await
                .unwrap(),
            Linking::Linked
        );
        stores
            .oauth
            .begin(fixtures::oauth_flow(
                "google",
                FlowMode::Link(who.id.clone()),
                at(window),
            ))
            .await
            .unwrap();
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
        .hit("mail:xa_b@example.com", t0(), window, 5)
        .await
        .unwrap());
    let before = rows_keyed_by(&pool, &user).await;
    assert!(
        before.iter().all(|(_, n)| *n > 0),
        "every table holds a row of the user before: {before:?}"
    );
    let neighbours = rows_keyed_by(&pool, &neighbour).await;

    let removed = stores.users.delete_account(&user.id).await.unwrap();
    assert_eq!(removed.map(|u| u.id), Some(user.id.clone()));

    assert_eq!(
        rows_keyed_by(&pool, &user).await,
        KEYED_BY_USER.map(|(t, _)| (t, 0)),
        "no row of the deleted user is left"
    );
    assert_eq!(
        rows_keyed_by(&pool, &neighbour).await,
        neighbours,
        "the neighbour keeps every row"
    );
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rate_limit_hits WHERE key = 'mail:xa_b@example.com'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        kept, 1,
        "a key that ends in the address without the ':' stays"
    );
    assert_eq!(stores.users.delete_account(&user.id).await.unwrap(), None);
}

// ---------------------------------------------------------------------------
// URLs and errors

#[tokio::test]
async fn regstacks_and_libpqs_url_spellings_connect() {
    let Some(url) = pg_url("regstacks_and_libpqs_url_spellings_connect") else {
        return;
    };
    let rest = url.split_once("://").unwrap().1;
    for scheme in ["postgres", "postgresql", "postgresql+asyncpg"] {
        let spelled = format!("{scheme}://{rest}");
        let pool = postgres::connect(&spelled)
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e:?}"));
        PostgresStores::new(pool).ping().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_server_makes_every_store_call_unavailable_within_seconds() {
    // A port nothing listens on: bound, read, closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let url = format!("postgres://regstack@{closed}/regstack_test");
    let timeout = Duration::from_secs(2);
    let pool = postgres::connect_lazy_with(
        &url,
        PoolSettings {
            acquire_timeout: timeout,
            ..PoolSettings::default()
        },
    )
    .unwrap();
    let stores = postgres::stores(pool);
    let every_call = assert_every_call_unavailable(&stores, timeout + SLACK);

    // The defaults bound a call the same way.
    let default_timeout = async {
        let pool = postgres::connect_lazy(&url).unwrap();
        let started = Instant::now();
        match PostgresStores::new(pool).ping().await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(started.elapsed() <= postgres::ACQUIRE_TIMEOUT + SLACK);
    };

    // Connecting eagerly fails the same way (a host starting while its
    // database is down).
    let eager = async {
        let settings = PoolSettings {
            acquire_timeout: timeout,
            ..PoolSettings::default()
        };
        match postgres::connect_with(&url, settings).await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
    };
    tokio::join!(every_call, default_timeout, eager);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_server_is_unavailable_and_the_same_pool_recovers_when_it_returns() {
    let Some(url) =
        pg_url("a_stopped_server_is_unavailable_and_the_same_pool_recovers_when_it_returns")
    else {
        return;
    };
    let url = fresh_schema(&url).await;
    postgres::migrate(&postgres::connect(&url).await.unwrap())
        .await
        .unwrap();
    let proxy = CutoffProxy::start(upstream_of(&url).await).await;
    let timeout = Duration::from_secs(2);
    let pool = postgres::connect_with(
        &via(&url, proxy.addr()),
        PoolSettings {
            max_connections: 4,
            acquire_timeout: timeout,
        },
    )
    .await
    .unwrap();
    let stores = postgres::stores(pool);

    // Up: the pool holds open connections through the proxy.
    let user = stores
        .users
        .insert(fixtures::new_user("survivor@example.com"))
        .await
        .unwrap();
    let new = fixtures::new_session(&user.id, t0(), at(TimeDelta::days(1)));
    assert_eq!(
        stores.sessions.start(new.clone()).await.unwrap(),
        regstack_ports::SessionStart::Started
    );
    stores.health.ping().await.unwrap();

    // Down: every open connection is cut and new ones are refused.
    proxy.cut().await;
    assert_every_call_unavailable(&stores, timeout + SLACK).await;
    let started = Instant::now();
    match stores.sessions.authenticate(&new.id).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("the per-request check must be Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() <= timeout + SLACK);

    // Back: the same pool serves again, with the data intact.
    proxy.restore().await;
    stores.health.ping().await.unwrap();
    let (session, back) = stores
        .sessions
        .authenticate(&new.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.id, user.id);
    assert!(session.is_live(at(TimeDelta::hours(1))));
    assert!(matches!(
        stores
            .sessions
            .rotate(
                &new.id,
                &new.refresh_hash,
                &fixtures::token_hash(),
                at(TimeDelta::hours(1)),
                TimeDelta::hours(1),
            )
            .await
            .unwrap(),
        Rotation::Rotated { .. }
    ));
    assert_eq!(
        stores
            .login_attempts
            .admit(
                &LockoutKey::address(user.email.clone()),
                t0(),
                TimeDelta::minutes(15),
                5
            )
            .await
            .unwrap(),
        Admission::Admitted { failures: 1 },
        "nothing was recorded while the server was down"
    );
}

// ---------------------------------------------------------------------------
// Concurrency beyond the contract's single-token races

#[tokio::test]
async fn pending_migrations_lists_what_a_fresh_schema_lacks_and_applies_nothing() {
    let Some(url) =
        pg_url("pending_migrations_lists_what_a_fresh_schema_lacks_and_applies_nothing")
    else {
        return;
    };
    let url = fresh_schema(&url).await;
    let pool = postgres::connect(&url).await.unwrap();
    let known: Vec<i64> = postgres::MIGRATOR.iter().map(|m| m.version).collect();
    for _ in 0..2 {
        let pending = postgres::pending_migrations(&pool).await.unwrap();
        let versions: Vec<i64> = pending.iter().map(|m| m.version).collect();
        assert_eq!(versions, known, "listing applies nothing");
    }
    postgres::migrate(&pool).await.unwrap();
    assert!(postgres::pending_migrations(&pool)
        .await
        .unwrap()
        .is_empty());
}
