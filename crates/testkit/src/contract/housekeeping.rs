//! Housekeeping: purge and health.

use regstack_ports::{Claim, FlowMode, RevokeReason, Stores};

use crate::fixtures::{self, at, email, micro};

use super::support::*;

/// Each `purge_expired` deletes exactly the dead rows, reports how many,
/// and leaves live rows working: pending rows and tokens at or past
/// `expires_at`, sessions that expired or were revoked before `before`,
/// attempts and hits older than `before`, OAuth flows at or past
/// `expires_at`.
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

    // OAuth flows: dead from expires_at on.
    for expires_at in [now - hours(1), now] {
        stores
            .oauth
            .begin(fixtures::oauth_flow("google", FlowMode::SignIn, expires_at))
            .await
            .expect("begin");
    }
    let live_flow = fixtures::oauth_flow("google", FlowMode::SignIn, now + micro());
    stores.oauth.begin(live_flow.clone()).await.expect("begin");
    assert_eq!(
        stores.oauth.purge_expired(now).await.expect("purge"),
        2,
        "OAuth flows purged"
    );
    assert_eq!(
        stores
            .oauth
            .claim(&live_flow.id, "google", now)
            .await
            .expect("claim"),
        Claim::Claimed(Box::new(live_flow))
    );
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
