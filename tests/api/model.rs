//! Model-based store tests: random operation sequences run against the
//! stores of `TEST_BACKEND` (and the in-memory fakes), with `core`'s flow
//! machines as the oracle. The contract suite pins chosen cases; these
//! look for any sequence of presentations, clock moves and revocations
//! after which a store and the machine it implements disagree.
//!
//! - refresh families: the runner's path (`rotate`, then `judge` on a
//!   miss, then `revoke` on reuse) against [`Family`];
//! - reset links: `issue` and `complete_password_reset` against
//!   [`TokenState`], one machine per link.
//!
//! One database serves every case of a run; each case works on a user and
//! session of its own.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use regstack_core::flows::one_time::{Effect, TokenEvent, TokenState};
use regstack_core::flows::refresh::{
    judge, Family, FamilyEvent, Outcome, RefreshPolicy, Token, Verdict,
};
use regstack_core::flows::Machine;
use regstack_ports::{
    NewSession, OneTimeToken, RevokeReason, Rotation, SessionId, SessionStart, Stores, Timestamp,
    TokenHash, TokenKind, UserId,
};
use regstack_testkit::fixtures;

use crate::support::*;

const POLICY: RefreshPolicy = RefreshPolicy {
    grace: TimeDelta::seconds(5),
    idle: TimeDelta::seconds(600),
};
const ABSOLUTE: TimeDelta = TimeDelta::seconds(3600);

/// Cases per run: SecantusDB is a slow test server.
fn cases() -> u32 {
    if backend_name() == "mongo" {
        12
    } else {
        32
    }
}

/// A start instant a day ahead of the wall clock, so that no server-side
/// expiry (MongoDB's TTL monitor) reaps a row while a case's own clock
/// moves forward by hours.
fn base() -> Timestamp {
    (Utc::now() + TimeDelta::days(1)).trunc_subsecs(6)
}

/// The hash standing for token `i` of a case (`salt` keeps cases apart).
fn hash(salt: u64, i: usize) -> TokenHash {
    TokenHash::from_hex(format!("{salt:032x}{i:032x}")).expect("64 hex digits")
}

/// Runs `check` on `TEST_BACKEND`'s stores and on the in-memory fakes,
/// `cases()` random sequences each.
fn run_model<S>(strategy: S, check: fn(Stores, u64, S::Value) -> CaseFuture)
where
    S: Strategy,
    S::Value: Clone,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (backend, _keep) = rt.block_on(fresh_backend());
    for (name, stores) in [
        (backend_name(), backend),
        ("memory".to_owned(), regstack_testkit::memory_stores()),
    ] {
        let salt = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let mut runner = TestRunner::new(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let result = runner.run(&strategy, |ops| {
            let salt = salt.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            rt.block_on(check(stores.clone(), salt, ops))
        });
        if let Err(e) = result {
            panic!("{name}: the store disagrees with its machine: {e}");
        }
    }
}

type CaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TestCaseError>>>>;

#[derive(Debug, Clone)]
enum FamilyOp {
    Present(usize),
    Advance(i64),
    Logout,
}

fn family_ops() -> impl Strategy<Value = Vec<FamilyOp>> {
    prop::collection::vec(
        prop_oneof![
            6 => (0usize..6).prop_map(FamilyOp::Present),
            3 => prop_oneof![0i64..8, 0i64..900].prop_map(FamilyOp::Advance),
            1 => Just(FamilyOp::Logout),
        ],
        0..24,
    )
}

/// One refresh family, driven as the runner drives it, against the
/// [`Family`] machine: every presentation gets the machine's answer, and
/// the stored session is live exactly when the machine's family is.
fn refresh_case(stores: Stores, salt: u64, ops: Vec<FamilyOp>) -> CaseFuture {
    Box::pin(async move {
        let t0 = base();
        let user = stores
            .users
            .insert(fixtures::new_user(&format!("family{salt}@example.com")))
            .await
            .expect("insert");
        let sid = SessionId::generate();
        let mut model = Family::start(t0, POLICY.idle, ABSOLUTE);
        let started = stores
            .sessions
            .start(NewSession {
                id: sid.clone(),
                user_id: user.id.clone(),
                created_at: t0,
                expires_at: model.expires_at,
                idle_expires_at: model.idle_expires_at,
                refresh_hash: hash(salt, 0),
                user_agent: None,
                ip: None,
                credential_epoch: None,
            })
            .await
            .expect("start");
        prop_assert_eq!(started, SessionStart::Started);
        let mut now = t0;
        for op in ops {
            match op {
                FamilyOp::Advance(s) => now += TimeDelta::seconds(s),
                FamilyOp::Logout => {
                    let revoked = stores
                        .sessions
                        .revoke(&sid, RevokeReason::Logout, now)
                        .await
                        .expect("revoke");
                    prop_assert_eq!(revoked, model.is_live(now), "logout at {}", now);
                    model = model
                        .step(FamilyEvent::Revoke(RevokeReason::Logout), now, &POLICY)
                        .0;
                }
                FamilyOp::Present(i) if i < model.tokens.len() => {
                    let got = present(&stores, &sid, salt, i, now).await;
                    let before = model.clone();
                    let (next, expected) = model.step(FamilyEvent::Present(i), now, &POLICY);
                    let expected = match expected.first() {
                        Some(Outcome::Rotated(_)) => Got::Rotated,
                        Some(Outcome::Replayed(_)) => Got::Replayed,
                        Some(Outcome::Reused) => Got::Reused,
                        Some(Outcome::Invalid) | None => Got::Refused,
                    };
                    prop_assert_eq!(got, expected, "token {} at {} of {:?}", i, now, before);
                    model = next;
                }
                // Never minted: the MAC keeps such a token from the store.
                FamilyOp::Present(_) => {}
            }
            let (stored, _) = stores
                .sessions
                .authenticate(&sid)
                .await
                .expect("authenticate")
                .expect("the session row stays");
            prop_assert_eq!(
                stored.is_live(now),
                model.is_live(now),
                "liveness at {}",
                now
            );
            prop_assert_eq!(stored.expires_at, model.expires_at);
            prop_assert_eq!(stored.idle_expires_at, model.idle_expires_at);
            let live = model.tokens.iter().filter(|t| **t == Token::Live).count();
            prop_assert!(live <= 1);
        }
        Ok(())
    })
}

/// What the runner made of a presentation.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Rotated,
    Replayed,
    Reused,
    Refused,
}

/// `Engine::refresh`'s path over the stores: rotate; on a miss, judge the
/// stored family; on reuse, revoke it.
async fn present(stores: &Stores, sid: &SessionId, salt: u64, i: usize, now: Timestamp) -> Got {
    let (presented, successor) = (hash(salt, i), hash(salt, i + 1));
    match stores
        .sessions
        .rotate(sid, &presented, &successor, now, POLICY.idle)
        .await
        .expect("rotate")
    {
        Rotation::Rotated { .. } => Got::Rotated,
        Rotation::Unknown => Got::Refused,
        Rotation::NotLive(family) => {
            match judge(&family, &presented, &successor, now, POLICY.grace) {
                Verdict::Replay => Got::Replayed,
                Verdict::Dead => Got::Refused,
                Verdict::Reuse => {
                    let revoked = stores
                        .sessions
                        .revoke(sid, RevokeReason::RefreshReuse, now)
                        .await
                        .expect("revoke");
                    assert!(revoked, "a live family is revoked by its first reuse");
                    Got::Reused
                }
            }
        }
    }
}

#[test]
fn refresh_families_in_every_store_follow_the_family_machine() {
    run_model(family_ops(), refresh_case);
}

#[derive(Debug, Clone)]
enum LinkOp {
    /// A reset link is mailed (supersedes the previous ones).
    Issue,
    /// Link `i` (of those issued so far) is used.
    Use(usize),
    Advance(i64),
}

fn link_ops() -> impl Strategy<Value = Vec<LinkOp>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(LinkOp::Issue),
            4 => (0usize..5).prop_map(LinkOp::Use),
            2 => (0i64..400).prop_map(LinkOp::Advance),
        ],
        0..20,
    )
}

const LINK_TTL: TimeDelta = TimeDelta::seconds(600);

/// Reset links of one user against one [`TokenState`] each: a link works
/// exactly when its machine accepts it (at most once, never at or after
/// its expiry, never once a newer link was mailed).
fn reset_link_case(stores: Stores, salt: u64, ops: Vec<LinkOp>) -> CaseFuture {
    Box::pin(async move {
        let t0 = base();
        let user = stores
            .users
            .insert(fixtures::new_user(&format!("links{salt}@example.com")))
            .await
            .expect("insert");
        let mut links: Vec<TokenState> = Vec::new();
        let mut now = t0;
        for op in ops {
            match op {
                LinkOp::Advance(s) => now += TimeDelta::seconds(s),
                LinkOp::Issue => {
                    issue(&stores, &user.id, hash(salt, links.len()), now).await;
                    for link in &mut links {
                        *link = link.step(TokenEvent::Superseded, now, &()).0;
                    }
                    links.push(TokenState::Issued {
                        expires_at: now + LINK_TTL,
                    });
                }
                LinkOp::Use(i) if i < links.len() => {
                    let used = stores
                        .users
                        .complete_password_reset(&hash(salt, i), &fixtures::hash_of("new"), now)
                        .await
                        .expect("complete_password_reset");
                    let (next, effects) = links[i].step(TokenEvent::Presented, now, &());
                    prop_assert_eq!(
                        used.is_some(),
                        effects.first() == Some(&Effect::Accept),
                        "link {} at {} in {:?}",
                        i,
                        now,
                        links
                    );
                    links[i] = next;
                }
                LinkOp::Use(_) => {}
            }
        }
        Ok(())
    })
}

async fn issue(stores: &Stores, user: &UserId, hash: TokenHash, now: DateTime<Utc>) {
    stores
        .tokens
        .issue(OneTimeToken {
            hash,
            kind: TokenKind::PasswordReset,
            user_id: user.clone(),
            new_email: None,
            created_at: now,
            expires_at: now + LINK_TTL,
        })
        .await
        .expect("issue");
}

#[test]
fn reset_links_in_every_store_follow_the_one_time_machine() {
    run_model(link_ops(), reset_link_case);
}
