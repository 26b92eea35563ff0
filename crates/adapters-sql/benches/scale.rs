//! Scale benchmark (issue 3): per-request cost must not grow with the
//! number of users. Seeds users straight through the stores (one
//! precomputed hash, as hashing 100,000 passwords through the API would
//! take hours), each with a session and a reset token, then times the
//! three per-request lookups — user by email (login), session with its
//! user (every authenticated request), token by hash (links) — at 1,000
//! and at 100,000 users, on SQLite and (with `TEST_PG_URL`) PostgreSQL.
//! MongoDB's index use is shown by `explain` in
//! `crates/adapters-mongo/tests/mongo_specific.rs` instead (SecantusDB is
//! too slow a server to time).
//!
//! `cargo bench -p regstack-adapters-sql --bench scale` (add `-- --quick`
//! for 100 → 2,000 users).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use regstack_ports::{
    Email, NewSession, NewUser, OneTimeToken, PasswordHash, SessionId, Stores, TokenHash,
    TokenKind, UserId,
};

struct Sample {
    email: Email,
    session: SessionId,
    token: TokenHash,
}

fn hash_hex(i: u64, salt: &str) -> TokenHash {
    // Distinct 64-hex-digit values; their content does not matter here.
    let s = format!("{salt}{i:0>20}");
    let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    TokenHash::from_hex(format!("{hex:0<64}")[..64].to_owned()).unwrap()
}

async fn seed(stores: &Stores, from: u64, to: u64, hash: &PasswordHash) -> Vec<Sample> {
    let now = regstack_testkit::fixtures::t0();
    let stores = Arc::new(stores.clone());
    let chunk = ((to - from) / 8).max(1);
    let mut tasks = Vec::new();
    let mut start = from;
    while start < to {
        let end = (start + chunk).min(to);
        let (stores, hash) = (stores.clone(), hash.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in start..end {
                let id = UserId::generate();
                let email = Email::parse(&format!("user{i}@scale.example")).unwrap();
                stores
                    .users
                    .insert(NewUser {
                        id: id.clone(),
                        email: email.clone(),
                        password_hash: Some(hash.clone()),
                        full_name: None,
                        is_verified: true,
                        is_superuser: false,
                        created_at: now,
                    })
                    .await
                    .unwrap();
                let session = SessionId::generate();
                assert_eq!(
                    stores
                        .sessions
                        .start(NewSession {
                            id: session.clone(),
                            user_id: id.clone(),
                            created_at: now,
                            expires_at: now + TimeDelta::days(30),
                            idle_expires_at: now + TimeDelta::days(14),
                            refresh_hash: hash_hex(i, "r"),
                            user_agent: None,
                            ip: None,
                            credential_epoch: None,
                        })
                        .await
                        .unwrap(),
                    regstack_ports::SessionStart::Started
                );
                let token = hash_hex(i, "t");
                stores
                    .tokens
                    .issue(OneTimeToken {
                        hash: token.clone(),
                        kind: TokenKind::PasswordReset,
                        user_id: id,
                        new_email: None,
                        created_at: now,
                        expires_at: now + TimeDelta::hours(1),
                    })
                    .await
                    .unwrap();
                out.push(Sample {
                    email,
                    session,
                    token,
                });
            }
            out
        }));
        start = end;
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Median over 7 passes of the mean microseconds per call, for each
/// lookup, over `rounds` samples spread across every seeded user.
async fn measure(stores: &Stores, samples: &[Sample], rounds: usize) -> [f64; 3] {
    let now = regstack_testkit::fixtures::t0();
    let pick = |k: usize| &samples[(k * 7919) % samples.len()];
    let mut out = [0.0; 3];
    for (slot, which) in out.iter_mut().zip(0..3) {
        let mut passes = Vec::new();
        for pass in 0..8 {
            let started = Instant::now();
            for k in 0..rounds {
                let s = pick(k + pass * rounds);
                match which {
                    0 => assert!(stores
                        .users
                        .find_by_email(&s.email)
                        .await
                        .unwrap()
                        .is_some()),
                    1 => assert!(stores
                        .sessions
                        .authenticate(&s.session)
                        .await
                        .unwrap()
                        .is_some()),
                    _ => assert!(stores
                        .tokens
                        .peek(TokenKind::PasswordReset, &s.token, now)
                        .await
                        .unwrap()
                        .is_some()),
                }
            }
            // The first pass only warms connections and caches.
            if pass > 0 {
                passes.push(started.elapsed().as_secs_f64() * 1e6 / rounds as f64);
            }
        }
        passes.sort_by(f64::total_cmp);
        *slot = passes[passes.len() / 2];
    }
    out
}

/// Brings the database to its steady state after a bulk load, as a
/// running server would be: SQLite folds its write-ahead log into the main
/// file; PostgreSQL refreshes planner statistics (autovacuum's job).
enum Settle {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Settle {
    async fn run(&self) {
        match self {
            Settle::Sqlite(p) => {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(p)
                    .await
                    .unwrap();
            }
            Settle::Postgres(p) => {
                sqlx::query("ANALYZE").execute(p).await.unwrap();
            }
        }
    }
}

async fn run(name: &str, stores: Stores, settle: Settle, small: u64, large: u64) {
    let hash = PasswordHash::new("$argon2id$v=19$m=65536,t=3,p=4$c2NhbGVzY2FsZXNjYWxl$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let rounds = 1000;
    let t = Instant::now();
    let mut samples = seed(&stores, 0, small, &hash).await;
    settle.run().await;
    let at_small = measure(&stores, &samples, rounds).await;
    samples.extend(seed(&stores, small, large, &hash).await);
    let seeded = t.elapsed();
    settle.run().await;
    let at_large = measure(&stores, &samples, rounds).await;
    println!(
        "\n{name}: seeded {large} users (with a session and a reset token each) in {:.0?}",
        seeded
    );
    println!("| lookup | µs/call at {small} users | µs/call at {large} users | ratio |");
    println!("|---|---|---|---|");
    for (i, label) in [
        "user by email (login)",
        "session + user (every request)",
        "token by hash (links)",
    ]
    .iter()
    .enumerate()
    {
        println!(
            "| {label} | {:.1} | {:.1} | {:.2} |",
            at_small[i],
            at_large[i],
            at_large[i] / at_small[i]
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (small, large) = if quick {
        (100, 2_000)
    } else {
        (1_000, 100_000)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("scale.db").display());
        let pool = regstack_adapters_sql::sqlite::connect(&url).await.unwrap();
        regstack_adapters_sql::sqlite::migrate(&pool).await.unwrap();
        run(
            "SQLite",
            regstack_adapters_sql::sqlite::stores(pool.clone()),
            Settle::Sqlite(pool),
            small,
            large,
        )
        .await;

        match std::env::var("TEST_PG_URL") {
            Ok(admin_url) => {
                let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
                let name = format!("scale_{}", std::process::id());
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                let (base, _) = admin_url.rsplit_once('/').unwrap();
                let pool = regstack_adapters_sql::postgres::connect(&format!("{base}/{name}"))
                    .await
                    .unwrap();
                regstack_adapters_sql::postgres::migrate(&pool)
                    .await
                    .unwrap();
                run(
                    "PostgreSQL",
                    regstack_adapters_sql::postgres::stores(pool.clone()),
                    Settle::Postgres(pool.clone()),
                    small,
                    large,
                )
                .await;
                pool.close().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&admin)
                    .await;
            }
            Err(_) => {
                println!("\nPostgreSQL: skipped (TEST_PG_URL not set; `cargo xtask services up`)")
            }
        }
    });
}
