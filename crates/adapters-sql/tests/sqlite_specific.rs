//! What only the SQLite backend must prove: connection settings, URL
//! spellings, migrations, exact timestamps, and that concurrent writers on
//! a file database never surface as errors (regstack answers 500 "database
//! is locked" under 16 concurrent sign-ins).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Component, Path};
use std::str::FromStr;

use chrono::{DateTime, TimeDelta};
use regstack_adapters_sql::sqlite::{self, SqlitePool};
use regstack_adapters_sql::SqliteStores;
use regstack_ports::*;
use sqlx::Row;

/// A fresh, migrated file database in a temporary directory that lives as
/// long as the test process.
async fn file_db() -> (SqlitePool, Stores, &'static Path) {
    let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let url = format!("sqlite://{}", dir.path().join("regstack.db").display());
    let pool = sqlite::connect(&url).await.unwrap();
    sqlite::migrate(&pool).await.unwrap();
    let stores = sqlite::stores(pool.clone());
    (pool, stores, dir.path())
}

fn t(micros: i64) -> Timestamp {
    DateTime::from_timestamp_micros(micros).unwrap()
}

/// A fixed "now" with every microsecond digit set.
fn now() -> Timestamp {
    t(1_767_225_600_123_457)
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn hash_of(n: u64) -> TokenHash {
    TokenHash::from_hex(format!("{n:064x}")).unwrap()
}

fn phc(s: &str) -> PasswordHash {
    PasswordHash::new(format!("$argon2id$v=19$m=19456,t=2,p=1${s}"))
}

fn new_user(addr: &str, at: Timestamp) -> NewUser {
    NewUser {
        id: UserId::generate(),
        email: email(addr),
        password_hash: Some(phc("old")),
        full_name: Some("Ada".into()),
        is_verified: true,
        is_superuser: false,
        created_at: at,
    }
}

fn pending(addr: &str, token: u64) -> PendingRegistration {
    PendingRegistration {
        email: email(addr),
        password_hash: phc("pending"),
        full_name: None,
        token_hash: hash_of(token),
        created_at: now(),
        expires_at: now() + TimeDelta::hours(1),
    }
}

fn session_for(user: &UserId, at: Timestamp) -> NewSession {
    NewSession {
        id: SessionId::generate(),
        user_id: user.clone(),
        created_at: at,
        expires_at: at + TimeDelta::days(30),
        idle_expires_at: at + TimeDelta::days(14),
        refresh_hash: regstack_testkit::fixtures::token_hash(),
        user_agent: Some("test".into()),
        ip: Some("127.0.0.1".into()),
        credential_epoch: None,
    }
}

async fn pragma(pool: &SqlitePool, name: &'static str) -> String {
    let row = sqlx::query(match name {
        "journal_mode" => "PRAGMA journal_mode",
        "busy_timeout" => "PRAGMA busy_timeout",
        "synchronous" => "PRAGMA synchronous",
        "foreign_keys" => "PRAGMA foreign_keys",
        _ => panic!("unknown pragma"),
    })
    .fetch_one(pool)
    .await
    .unwrap();
    row.try_get::<String, _>(0)
        .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
        .unwrap()
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("fresh.db").display());
    let pool = sqlite::connect(&url).await.unwrap();
    let stores = SqliteStores::new(pool.clone());
    assert!(!stores.schema_is_current().await.unwrap());

    sqlite::migrate(&pool).await.unwrap();
    assert!(stores.schema_is_current().await.unwrap());
    sqlite::migrate(&pool).await.unwrap();
    assert!(stores.schema_is_current().await.unwrap());
    stores.ping().await.unwrap();

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
         AND name NOT LIKE 'sqlite%' ORDER BY name",
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

/// A database with the migrations up to `version` only, written with those
/// versions' SQL.
async fn database_at_version(dir: &Path, version: i64) -> SqlitePool {
    let partial = dir.join(format!("migrations-v{version}"));
    std::fs::create_dir(&partial).unwrap();
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&all).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let v: i64 = name.split('_').next().unwrap().parse().unwrap();
        if v <= version {
            std::fs::copy(all.join(&name), partial.join(&name)).unwrap();
        }
    }
    let url = format!("sqlite://{}", dir.join(format!("v{version}.db")).display());
    let pool = sqlite::connect(&url).await.unwrap();
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
async fn insert_user_before_v5(pool: &SqlitePool, new: NewUser) -> User {
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
async fn database_at_version_1(dir: &Path) -> SqlitePool {
    database_at_version(dir, 1).await
}

/// Version 2 kept every refresh token hash in `refresh_tokens`; version 3
/// moves the family onto the session row. Sessions survive; their old
/// tokens (which carried no session id) cannot rotate, and presenting one
/// revokes nothing.
#[tokio::test]
async fn a_database_at_version_2_keeps_its_sessions_and_drops_the_token_table() {
    let dir = tempfile::tempdir().unwrap();
    let pool = database_at_version(dir.path(), 2).await;
    let stores = sqlite::stores(pool.clone());
    assert!(!stores.health.schema_is_current().await.unwrap());
    let user = insert_user_before_v5(&pool, new_user("v2@example.com", now())).await;
    let sid = SessionId::generate();
    let (expires, idle_end) = (now() + TimeDelta::days(30), now() + TimeDelta::days(1));
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, \
         idle_expires_at, user_agent, ip) VALUES (?1, ?2, ?3, ?3, ?4, ?5, 'ua', NULL)",
    )
    .bind(sid.as_str())
    .bind(user.id.as_str())
    .bind(now().timestamp_micros())
    .bind(expires.timestamp_micros())
    .bind(idle_end.timestamp_micros())
    .execute(&pool)
    .await
    .unwrap();
    let (spent, live) = (hash_of(1), hash_of(2));
    sqlx::query(
        "INSERT INTO refresh_tokens (hash, session_id, issued_at, spent_at) \
         VALUES (?1, ?3, ?4, ?4), (?2, ?3, ?4, NULL)",
    )
    .bind(spent.as_str())
    .bind(live.as_str())
    .bind(sid.as_str())
    .bind(now().timestamp_micros())
    .execute(&pool)
    .await
    .unwrap();
    // As written above (`authenticate` reads the user with version 5's
    // columns, so it can only be asked after the migration).
    let before = (
        Session {
            id: sid.clone(),
            user_id: user.id.clone(),
            created_at: now(),
            last_used_at: now(),
            expires_at: expires,
            idle_expires_at: idle_end,
            user_agent: Some("ua".into()),
            ip: None,
            revoked_at: None,
            revoked_reason: None,
        },
        user.clone(),
    );

    sqlite::migrate(&pool).await.unwrap();
    assert!(stores.health.schema_is_current().await.unwrap());
    assert_eq!(
        stores.sessions.authenticate(&sid).await.unwrap().unwrap(),
        before,
        "the session is kept as it was"
    );
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'refresh_tokens'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0, "the token table is gone");
    let later = now() + TimeDelta::minutes(1);
    for old in [&live, &spent] {
        assert!(
            matches!(
            stores
                .sessions
                .rotate(
                    &sid,
                    old,
                    &hash_of(3),
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
    let dir = tempfile::tempdir().unwrap();
    let pool = database_at_version_1(dir.path()).await;
    let stores = sqlite::stores(pool.clone());
    assert!(
        !stores.health.schema_is_current().await.unwrap(),
        "version 1 is behind"
    );

    // Rows as version 1 wrote them: sessions without an idle end.
    let user = insert_user_before_v5(&pool, new_user("before@example.com", now())).await;
    let live = SessionId::generate();
    let revoked = SessionId::generate();
    let expires = now() + TimeDelta::days(30);
    for (id, revoked_at, reason) in [
        (&live, None, None),
        (
            &revoked,
            Some(now() + TimeDelta::minutes(1)),
            Some("logout"),
        ),
    ] {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, \
             user_agent, ip, revoked_at, revoked_reason) \
             VALUES (?1, ?2, ?3, ?3, ?4, 'old agent', '192.0.2.1', ?5, ?6)",
        )
        .bind(id.as_str())
        .bind(user.id.as_str())
        .bind(now().timestamp_micros())
        .bind(expires.timestamp_micros())
        .bind(revoked_at.map(|t: Timestamp| t.timestamp_micros()))
        .bind(reason)
        .execute(&pool)
        .await
        .unwrap();
    }
    // A lockout row as versions 1 to 3 wrote it: no bucket column.
    let who = email("before@example.com");
    sqlx::query("INSERT INTO login_attempts (email, attempted_at) VALUES (?1, ?2)")
        .bind(who.as_str())
        .bind(now().timestamp_micros())
        .execute(&pool)
        .await
        .unwrap();

    sqlite::migrate(&pool).await.unwrap();
    assert!(stores.health.schema_is_current().await.unwrap());
    let window = TimeDelta::hours(1);
    assert_eq!(
        stores
            .login_attempts
            .admit(&LockoutKey::address(who.clone()), now(), window, 5)
            .await
            .unwrap(),
        Admission::Admitted { failures: 2 },
        "the attempt made before the upgrade counts in the address's bucket"
    );
    assert_eq!(
        stores
            .login_attempts
            .admit(
                &LockoutKey::device(who.clone(), DeviceId::generate()),
                now(),
                window,
                5
            )
            .await
            .unwrap(),
        Admission::Admitted { failures: 1 },
        "and in no device's"
    );

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
            created_at: now(),
            last_used_at: now(),
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
        (
            Some(now() + TimeDelta::minutes(1)),
            Some(RevokeReason::Logout)
        ),
        "a revoked session stays revoked"
    );
    assert_eq!(
        stores.sessions.list(&user.id, now()).await.unwrap(),
        [stores
            .sessions
            .authenticate(&live)
            .await
            .unwrap()
            .unwrap()
            .0]
    );

    // The rebuilt table keeps its indexes and its foreign key.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' \
         AND name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(indexes, ["ix_sessions_expires_at", "ix_sessions_user_id"]);
    let violations: Vec<String> =
        sqlx::query_scalar("SELECT \"table\" FROM pragma_foreign_key_check")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(violations.is_empty(), "{violations:?}");

    // The new surface works on the migrated file.
    let new = session_for(&user.id, now() + TimeDelta::hours(1));
    assert_eq!(
        stores.sessions.start(new.clone()).await.unwrap(),
        regstack_ports::SessionStart::Started
    );
    let successor = hash_of(42);
    assert!(matches!(
        stores
            .sessions
            .rotate(
                &new.id,
                &new.refresh_hash,
                &successor,
                now() + TimeDelta::hours(2),
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
    let (pool, stores, _) = file_db().await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00'")
        .execute(&pool)
        .await
        .unwrap();
    assert!(!stores.health.schema_is_current().await.unwrap());
}

#[tokio::test]
async fn file_databases_run_in_wal_mode_with_a_busy_timeout_and_foreign_keys() {
    let (pool, _, _) = file_db().await;
    assert_eq!(pragma(&pool, "journal_mode").await, "wal");
    assert!(pragma(&pool, "busy_timeout").await.parse::<i64>().unwrap() >= 5000);
    assert_eq!(pragma(&pool, "foreign_keys").await, "1");
}

/// The writes that carry a security decision commit with
/// `synchronous=FULL` (a power loss cannot undo them); a rotation, a
/// lockout count or a new session with `NORMAL`. Seen on the connection
/// each write used: the pool has one connection here, so `PRAGMA
/// synchronous` afterwards reads what the last write set.
#[tokio::test]
async fn security_decisions_commit_durably_and_the_rest_do_not_wait_for_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("one.db").display());
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    sqlite::migrate(&pool).await.unwrap();
    let stores = sqlite::stores(pool.clone());
    let user = stores
        .users
        .insert(new_user("durable@example.com", now()))
        .await
        .unwrap();
    assert_eq!(pragma(&pool, "synchronous").await, "1", "insert: NORMAL");
    let session = session_for(&user.id, now());
    assert_eq!(
        stores.sessions.start(session.clone()).await.unwrap(),
        SessionStart::Started
    );
    assert_eq!(pragma(&pool, "synchronous").await, "1", "start: NORMAL");
    stores
        .sessions
        .revoke(&session.id, RevokeReason::Logout, now())
        .await
        .unwrap();
    assert_eq!(pragma(&pool, "synchronous").await, "2", "revoke: FULL");
    stores
        .login_attempts
        .admit(
            &LockoutKey::address(user.email.clone()),
            now(),
            TimeDelta::minutes(15),
            5,
        )
        .await
        .unwrap();
    assert_eq!(pragma(&pool, "synchronous").await, "1", "admit: NORMAL");
    stores
        .users
        .change_password(&user.id, &phc("new"), RevokeReason::PasswordChanged, now())
        .await
        .unwrap();
    assert_eq!(
        pragma(&pool, "synchronous").await,
        "2",
        "change_password: FULL"
    );
}

#[tokio::test]
async fn regstacks_sqlalchemy_url_spellings_connect() {
    let dir = tempfile::tempdir().unwrap();

    // Four slashes: an absolute path.
    let abs = dir.path().join("abs.db");
    let url = format!("sqlite+aiosqlite:///{}", abs.display());
    let pool = sqlite::connect(&url).await.unwrap();
    sqlite::migrate(&pool).await.unwrap();
    assert!(abs.exists());

    // `///./…`: relative to the working directory, as regstack's default
    // `sqlite+aiosqlite:///./regstack.db`.
    let cwd = std::env::current_dir().unwrap();
    let ups = cwd
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count();
    let rel_target = dir.path().join("rel.db");
    let rel = format!(
        "./{}{}",
        "../".repeat(ups),
        rel_target.strip_prefix("/").unwrap().display()
    );
    let pool = sqlite::connect(&format!("sqlite+aiosqlite:///{rel}"))
        .await
        .unwrap();
    sqlite::migrate(&pool).await.unwrap();
    assert!(rel_target.exists());
    // The plain sqlx spelling of the same relative path also works.
    sqlite::connect(&format!("sqlite:///{rel}"))
        .await
        .unwrap()
        .close()
        .await;
}

#[tokio::test]
async fn an_in_memory_database_keeps_its_data_across_calls() {
    let pool = sqlite::connect("sqlite::memory:").await.unwrap();
    sqlite::migrate(&pool).await.unwrap();
    let stores = sqlite::stores(pool);
    let user = stores
        .users
        .insert(new_user("mem@example.com", now()))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(stores.users.get(&user.id).await.unwrap(), Some(user));
}

#[tokio::test]
async fn a_closed_pool_is_unavailable_not_a_backend_failure() {
    let (pool, stores, _) = file_db().await;
    pool.close().await;
    let err = stores.health.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// `sqlite::close` leaves the database as one file by the time it returns,
/// even when a connection is still checked out as the close starts (sqlx's
/// own close can return while that one is still closing: a server exiting
/// right then kept its `-wal`), and every committed write is in that file.
#[tokio::test]
async fn closing_leaves_one_file_holding_every_write() {
    let (pool, stores, dir) = file_db().await;
    let user = stores
        .users
        .insert(new_user("closing@example.com", now()))
        .await
        .unwrap();
    let wal = dir.join("regstack.db-wal");
    assert!(wal.exists(), "no write-ahead log to begin with");
    let held = pool.acquire().await.unwrap();
    let returns_late = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        drop(held);
    });
    // A read whose connection is on its way back to the pool as the close
    // starts, as after a server's last request.
    stores.users.get(&user.id).await.unwrap();
    sqlite::close(&pool).await;
    // Checked the moment `close` returns: a process exits right then.
    for side in ["regstack.db-wal", "regstack.db-shm"] {
        assert!(!dir.join(side).exists(), "{side} left after close");
    }
    returns_late.await.unwrap();
    let url = format!("sqlite://{}", dir.join("regstack.db").display());
    let reopened = sqlite::stores(sqlite::connect(&url).await.unwrap());
    assert_eq!(reopened.users.get(&user.id).await.unwrap(), Some(user));
}

/// How many rows `table` holds.
async fn count_rows(pool: &SqlitePool, table: &'static str) -> i64 {
    let sql = match table {
        "oauth_identities" => "SELECT count(*) FROM oauth_identities",
        "oauth_states" => "SELECT count(*) FROM oauth_states",
        _ => panic!("unknown table {table}"),
    };
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn deleting_an_account_removes_every_row_keyed_by_it() {
    let (pool, stores, _) = file_db().await;
    // `_` is legal in an address and a LIKE wildcard: a neighbour whose
    // address differs only there must keep its counters.
    let user = stores
        .users
        .insert(new_user("a_b@example.com", now()))
        .await
        .unwrap();
    let neighbour = "axb@example.com";
    assert_eq!(
        stores
            .sessions
            .start(session_for(&user.id, now()))
            .await
            .unwrap(),
        regstack_ports::SessionStart::Started
    );
    stores
        .tokens
        .issue(OneTimeToken {
            hash: hash_of(1),
            kind: TokenKind::EmailChange,
            user_id: user.id.clone(),
            new_email: Some(email("new@example.com")),
            created_at: now(),
            expires_at: now() + TimeDelta::hours(1),
        })
        .await
        .unwrap();
    for addr in ["a_b@example.com", neighbour] {
        stores
            .login_attempts
            .admit(
                &LockoutKey::address(email(addr)),
                now(),
                TimeDelta::seconds(900),
                5,
            )
            .await
            .unwrap();
        assert!(stores
            .rate_limits
            .hit(&format!("mail:{addr}"), now(), TimeDelta::hours(1), 5)
            .await
            .unwrap());
    }
    stores
        .rate_limits
        .hit("mail:xa_b@example.com", now(), TimeDelta::hours(1), 5)
        .await
        .unwrap();
    stores
        .pending
        .put(pending("a_b@example.com", 2))
        .await
        .unwrap();
    assert_eq!(
        stores
            .oauth
            .link_identity(&regstack_testkit::fixtures::oauth_identity(
                &user.id,
                "google",
                "https://accounts.google.com",
                "sub-a_b"
            ))
            .await
            .unwrap(),
        Linking::Linked
    );
    stores
        .oauth
        .begin(regstack_testkit::fixtures::oauth_flow(
            "google",
            FlowMode::Link(user.id.clone()),
            now() + TimeDelta::minutes(10),
        ))
        .await
        .unwrap();
    assert_eq!(count_rows(&pool, "oauth_identities").await, 1);
    assert_eq!(count_rows(&pool, "oauth_states").await, 1);

    let removed = stores.users.delete_account(&user.id).await.unwrap();
    assert_eq!(removed.map(|u| u.id), Some(user.id.clone()));

    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM users").await, 0);
    assert_eq!(count("SELECT count(*) FROM sessions").await, 0);
    assert_eq!(count("SELECT count(*) FROM one_time_tokens").await, 0);
    assert_eq!(count("SELECT count(*) FROM pending_registrations").await, 0);
    assert_eq!(count("SELECT count(*) FROM oauth_identities").await, 0);
    assert_eq!(count("SELECT count(*) FROM oauth_states").await, 0);
    assert_eq!(
        count("SELECT count(*) FROM login_attempts WHERE email = 'axb@example.com'").await,
        1
    );
    assert_eq!(count("SELECT count(*) FROM login_attempts").await, 1);
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM rate_limit_hits ORDER BY key")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(keys, ["mail:axb@example.com", "mail:xa_b@example.com"]);
    assert_eq!(stores.users.delete_account(&user.id).await.unwrap(), None);
}

#[tokio::test]
async fn pending_migrations_lists_what_a_fresh_file_lacks_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("fresh.db").display());
    let pool = sqlite::connect(&url).await.unwrap();
    let known: Vec<i64> = sqlite::MIGRATOR.iter().map(|m| m.version).collect();
    for _ in 0..2 {
        let pending = sqlite::pending_migrations(&pool).await.unwrap();
        let versions: Vec<i64> = pending.iter().map(|m| m.version).collect();
        assert_eq!(versions, known, "listing applies nothing");
        assert!(pending.iter().all(|m| !m.description.is_empty()));
    }
    sqlite::migrate(&pool).await.unwrap();
    assert!(sqlite::pending_migrations(&pool).await.unwrap().is_empty());
}
