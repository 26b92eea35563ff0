//! Many writers at once, across aggregates: what took regstack down (16
//! concurrent sign-ins answered "database is locked"), many independent
//! single-use steps, and every credential change of one user at once (the
//! lock order: they must queue, never deadlock or fail). Every call must
//! answer; none may surface the engine's concurrency as an error.

use chrono::TimeDelta;
use regstack_ports::{
    Admission, EmailChangeOutcome, LockoutKey, Promotion, RevokeReason, SessionStart, StoreError,
    Stores, Timestamp, UserId,
};

use crate::fixtures::{self, at, t0};

use super::support::*;
use super::RACERS;

/// `RACERS` users sign in at once, each the whole store side of a sign-in:
/// an admit, a session start, a clear, a mail-quota hit and a lookup. All
/// answer, each as if alone.
pub async fn parallel_sign_ins_of_many_users_never_error(stores: Stores) {
    let mut users = Vec::new();
    for i in 0..RACERS {
        users.push(add_user(&stores, &format!("crowd{i}@example.com")).await);
    }
    let now = at(minutes(5));
    let results = race(|i| {
        let (stores, user) = (stores.clone(), users[i].clone());
        async move {
            let bucket = LockoutKey::address(user.email.clone());
            let admitted = stores
                .login_attempts
                .admit(&bucket, now, minutes(15), 5)
                .await?;
            let started = stores
                .sessions
                .start(fixtures::new_session(&user.id, now, at(days(1))))
                .await?;
            stores.login_attempts.clear(&bucket).await?;
            let hit = stores
                .rate_limits
                .hit(&format!("mail:{}", user.email), now, hours(1), 5)
                .await?;
            let found = stores.users.find_by_email(&user.email).await?;
            Ok::<_, StoreError>((admitted, started, hit, found.map(|u| u.id)))
        }
    })
    .await;
    for (i, (admitted, started, hit, found)) in all_ok("sign-in", results).into_iter().enumerate() {
        assert_eq!(admitted, Admission::Admitted { failures: 1 }, "user {i}");
        assert_eq!(started, SessionStart::Started, "user {i}");
        assert!(hit, "user {i}: a first mail is within the quota");
        assert_eq!(found, Some(users[i].id.clone()), "user {i}");
    }
}

/// `RACERS` different pending registrations promoted at once: every one
/// becomes its user (single-use steps of different rows never block each
/// other into failure).
pub async fn parallel_promotes_of_many_tokens_all_succeed(stores: Stores) {
    let expires = at(hours(1));
    let mut tokens = Vec::new();
    for i in 0..RACERS {
        let token = fixtures::token_hash();
        let pending = fixtures::pending(&format!("joiner{i}@example.com"), &token, expires);
        assert!(stores.pending.put(pending).await.expect("put"));
        tokens.push(token);
    }
    let now = at(minutes(1));
    let results = race(|i| {
        let (stores, token) = (stores.clone(), tokens[i].clone());
        async move {
            stores
                .pending
                .promote(&token, &UserId::generate(), now)
                .await
        }
    })
    .await;
    for (i, outcome) in all_ok("promote", results).into_iter().enumerate() {
        match outcome {
            Promotion::Promoted(user) => {
                assert_eq!(user.email.as_str(), format!("joiner{i}@example.com"));
                assert!(user.is_verified);
            }
            other => panic!("promote {i}: expected Promoted, got {other:?}"),
        }
    }
}

/// `RACERS` sessions of one user started at once: all start (each stamps
/// the same user row), and all are live afterwards.
pub async fn parallel_session_starts_for_one_user_all_succeed(stores: Stores) {
    let user = add_user(&stores, "many-devices@example.com").await;
    let results = race(|i| {
        let stores = stores.clone();
        let id = user.id.clone();
        let when = at(seconds(i64::try_from(i).unwrap_or(0)));
        async move {
            stores
                .sessions
                .start(fixtures::new_session(&id, when, at(days(1))))
                .await
        }
    })
    .await;
    for outcome in all_ok("start", results) {
        assert_eq!(outcome, SessionStart::Started);
    }
    assert_eq!(
        listed(&stores, &user.id, at(minutes(1))).await.len(),
        RACERS,
        "every session is live"
    );
}

/// `RACERS` users each confirm a live email change to the same address at
/// once: exactly one moves there, the others are told it is taken (a
/// database whose transactions cannot see each other coming still has the
/// unique index), and the address has exactly that owner.
pub async fn parallel_email_changes_to_one_address_leave_exactly_one_owner(stores: Stores) {
    let mut tokens = Vec::new();
    for i in 0..RACERS {
        let user = add_user(&stores, &format!("mover{i}@example.com")).await;
        let token = fixtures::email_change_token(&user.id, "wanted@example.com", at(hours(1)));
        tokens.push(issue(&stores, token).await.hash);
    }
    let now = at(minutes(1));
    let results = race(|i| {
        let (stores, hash) = (stores.clone(), tokens[i].clone());
        async move { stores.users.confirm_email_change(&hash, now).await }
    })
    .await;
    let mut owners = Vec::new();
    let mut taken = 0;
    for outcome in all_ok("confirm_email_change", results) {
        match outcome {
            EmailChangeOutcome::Changed(user) => owners.push(user.id),
            EmailChangeOutcome::EmailTaken => taken += 1,
            EmailChangeOutcome::InvalidToken => panic!("every token was live"),
        }
    }
    assert_eq!((owners.len(), taken), (1, RACERS - 1));
    let owner = stores
        .users
        .find_by_email(&fixtures::email("wanted@example.com"))
        .await
        .expect("find_by_email")
        .map(|u| u.id);
    assert_eq!(
        owner.as_ref(),
        owners.first(),
        "the winner owns the address"
    );
}

/// Every credential-changing operation on one user at once — reset,
/// email change, password change, a new reset link, a rotation, a new
/// session, deletion — round after round: each answers (they queue on the
/// user, never deadlock), and the account ends deleted with nothing left
/// that signs in.
pub async fn parallel_account_changes_of_one_user_never_fail(stores: Stores) {
    for round in 0..4 {
        let user = add_user(&stores, &format!("busy{round}@example.com")).await;
        let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
        let change = issue(
            &stores,
            fixtures::email_change_token(
                &user.id,
                &format!("busy{round}.new@example.com"),
                at(hours(1)),
            ),
        )
        .await;
        let session = fixtures::new_session(&user.id, t0(), at(days(1)));
        assert_eq!(
            stores.sessions.start(session.clone()).await.expect("start"),
            SessionStart::Started
        );
        let now = at(minutes(1));
        let results = race(|i| {
            let (stores, id) = (stores.clone(), user.id.clone());
            let (reset, change) = (reset.hash.clone(), change.hash.clone());
            let (sid, refresh) = (session.id.clone(), session.refresh_hash.clone());
            async move {
                match i % 7 {
                    0 => stores
                        .users
                        .complete_password_reset(&reset, &fixtures::hash_of("a"), now)
                        .await
                        .map(drop),
                    1 => stores
                        .users
                        .confirm_email_change(&change, now)
                        .await
                        .map(drop),
                    2 => stores
                        .users
                        .change_password(
                            &id,
                            &fixtures::hash_of("b"),
                            RevokeReason::PasswordChanged,
                            now,
                        )
                        .await
                        .map(drop),
                    // The account may be gone already: the issue stores
                    // nothing and answers Ok, never a foreign-key error.
                    3 => {
                        stores
                            .tokens
                            .issue(fixtures::reset_token(&id, at(hours(1))))
                            .await
                    }
                    4 => stores
                        .sessions
                        .rotate(&sid, &refresh, &fixtures::token_hash(), now, hours(1))
                        .await
                        .map(drop),
                    // The account may be gone already: `Stale`, never an
                    // error.
                    5 => stores
                        .sessions
                        .start(fixtures::new_session(&id, now, at(days(1))))
                        .await
                        .map(drop),
                    _ => stores.users.delete_account(&id).await.map(drop),
                }
            }
        })
        .await;
        all_ok(&format!("round {round}"), results);
        assert_eq!(
            stores.users.get(&user.id).await.expect("get"),
            None,
            "round {round}: the account is deleted"
        );
        assert!(
            stores
                .sessions
                .list(&user.id, now)
                .await
                .expect("list")
                .is_empty(),
            "round {round}: no session of the deleted account is live"
        );
    }
}

/// Instants far from today — before the epoch, at the end of year 9999 —
/// round-trip exactly through a user and a session, as stored and as the
/// per-request lookup returns them.
pub async fn extreme_instants_round_trip_through_users_and_sessions(stores: Stores) {
    let instants: [Timestamp; 3] = [
        instant("1969-12-30T23:59:59.999999Z"),
        instant("1970-01-01T00:00:00.000001Z"),
        instant("9999-12-01T23:59:59.999999Z"),
    ];
    for (i, when) in instants.into_iter().enumerate() {
        let mut new = fixtures::new_user(&format!("era{i}@example.com"));
        new.created_at = when;
        let user = stores.users.insert(new).await.expect("insert");
        assert_eq!(user.created_at, when, "instant {i}: as inserted");
        assert_eq!(get_user(&stores, &user.id).await.created_at, when);
        let session = fixtures::new_session(&user.id, when, when + TimeDelta::days(1));
        assert_eq!(
            stores.sessions.start(session.clone()).await.expect("start"),
            SessionStart::Started
        );
        let (s, u) = stores
            .sessions
            .authenticate(&session.id)
            .await
            .expect("authenticate")
            .expect("the session exists");
        assert_eq!(
            (s.created_at, s.expires_at),
            (when, when + TimeDelta::days(1))
        );
        assert_eq!(u.last_login, Some(when), "instant {i}: last_login");
    }
}
