//! Security properties, each attacked: anti-enumeration, lockout (also
//! under a parallel burst), single-use tokens under 20 parallel uses,
//! expiry, purpose binding, secrets at rest and in logs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;
use futures::future::join_all;
use regstack_ports::{PasswordHash, StoreError, Stores, Timestamp, TokenHash, User, UserStore};
use regstack_testkit::forward::{forwarding, UserStoreForward};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn unknown_email_wrong_password_and_passwordless_account_look_the_same() {
    let app = spawn_app_with(|c| c.config.rate_limit_disabled = true, false).await;
    app.create_user("known@example.com", PW).await;
    // An account without a password (as OAuth-only accounts will be).
    app.stores
        .users
        .insert(regstack_ports::NewUser {
            id: regstack_ports::UserId::generate(),
            email: regstack_ports::Email::parse("nopass@example.com").unwrap(),
            password_hash: None,
            full_name: None,
            is_verified: true,
            is_superuser: false,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    app.hasher.reset();
    let mut replies = Vec::new();
    for email in [
        "ghost@example.com",
        "known@example.com",
        "nopass@example.com",
    ] {
        let before = app.hasher.total_verifications();
        let r = app.login(email, "wrong-password-1").await;
        // Each pays exactly one Argon2 verification (a dummy one when there
        // is no hash to check): no timing shortcut for unknown accounts.
        assert_eq!(app.hasher.total_verifications() - before, 1, "{email}");
        replies.push(r);
    }
    for r in &replies {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body, replies[0].body);
        assert_eq!(r.headers.get("www-authenticate"), None);
    }
    assert_eq!(replies[0].detail(), "Invalid email or password.");
    assert_eq!(app.hasher.dummy_verifies(), 2);
}

#[tokio::test]
async fn lockout_counts_down_then_refuses_before_hashing_even_the_right_password() {
    // A clock that stands still: the exact `Retry-After` below does not
    // depend on how long five sign-ins took on a loaded machine.
    let app = spawn_app_with(|_| {}, true).await;
    app.create_user("lock@example.com", PW).await;
    for (i, remaining) in [(1, "4"), (2, "3"), (3, "2"), (4, "1")] {
        let r = app
            .login(
                if i % 2 == 0 {
                    "LOCK@example.com"
                } else {
                    "lock@example.com"
                },
                "wrong-password-1",
            )
            .await;
        assert_eq!(
            r.detail(),
            format!("Invalid email or password. {remaining} attempt(s) remaining.")
        );
    }
    let r = app.login("lock@example.com", "wrong-password-1").await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Invalid email or password.")
    );
    let before = app.hasher.total_verifications();
    let r = app.login("lock@example.com", PW).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "900");
    assert_eq!(
        r.detail(),
        "Too many failed attempts. Try again in 900 seconds."
    );
    assert_eq!(
        app.hasher.total_verifications(),
        before,
        "a locked attempt must not hash"
    );
    // Unknown addresses lock exactly like real ones.
    for _ in 0..5 {
        app.login("nobody@example.com", "wrong-password-1").await;
    }
    assert_eq!(
        app.login("nobody@example.com", "wrong-password-1")
            .await
            .status,
        429
    );
}

/// LK-8: someone holding a stolen access token cannot use the
/// current-password checks as a password oracle. Each check counts against
/// the account's sign-in lockout: five wrong current passwords, and the
/// sixth request — even with the right one, on any of the three routes, or
/// at `/login` — is refused with 429 before any hashing. When the window
/// has slid, the right password works and clears the counter.
#[tokio::test]
async fn wrong_current_passwords_lock_like_wrong_sign_ins() {
    let app = spawn_app_with(|_| {}, true).await;
    let clock = app.clock.clone().unwrap();
    app.create_user("oracle@example.com", PW).await;
    let token = app.access_token("oracle@example.com", PW).await;
    let change = |current: &'static str| json!({ "current_password": current, "new_password": "another-password-1" });
    for _ in 0..5 {
        let r = app
            .post_auth("/change-password", &token, change("guess-guess-1"))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (400, "Current password is incorrect.")
        );
    }
    let before = app.hasher.total_verifications();
    let r = app.post_auth("/change-password", &token, change(PW)).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(r.headers["retry-after"], "900");
    let r = app
        .post_auth(
            "/change-email",
            &token,
            json!({ "new_email": "elsewhere@example.com", "current_password": PW }),
        )
        .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    let r = app
        .call(
            Method::DELETE,
            "/account",
            Some(&token),
            Some(json!({ "current_password": PW })),
        )
        .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(app.login("oracle@example.com", PW).await.status, 429);
    assert_eq!(
        app.hasher.total_verifications(),
        before,
        "a locked check must not hash"
    );

    clock.advance(TimeDelta::seconds(901));
    let r = app.post_auth("/change-password", &token, change(PW)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let fresh = app
        .access_token("oracle@example.com", "another-password-1")
        .await;
    for _ in 0..4 {
        app.post_auth("/change-password", &fresh, change("guess-guess-1"))
            .await;
    }
    assert_eq!(
        app.login("oracle@example.com", "another-password-1")
            .await
            .status,
        200,
        "the right password cleared the counter after the window"
    );
}

/// LK-8 under a burst: 20 simultaneous wrong current passwords reach the
/// hasher at most the lockout threshold times; the rest are 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_current_password_guesses_is_held_to_the_threshold() {
    let app = Arc::new(spawn_app().await);
    app.create_user("burst-oracle@example.com", PW).await;
    let token = app.access_token("burst-oracle@example.com", PW).await;
    let tasks = (0..20).map(|_| {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move {
            app.post_auth(
                "/change-password",
                &token,
                json!({ "current_password": "guess-guess-1", "new_password": "another-password-1" }),
            )
            .await
            .status
            .as_u16()
        })
    });
    let mut statuses: Vec<u16> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    statuses.sort_unstable();
    let wrong = statuses.iter().filter(|&&s| s == 400).count();
    let locked = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((wrong, locked), (5, 15), "{statuses:?}");
}

#[tokio::test]
async fn the_lock_lifts_when_the_window_slides_and_a_reset_clears_it() {
    let app = spawn_app_with(|_| {}, true).await;
    let clock = app.clock.clone().unwrap();
    app.create_user("slide@example.com", PW).await;
    for _ in 0..5 {
        app.login("slide@example.com", "wrong-password-1").await;
    }
    assert_eq!(app.login("slide@example.com", PW).await.status, 429);
    clock.advance(TimeDelta::seconds(901));
    assert_eq!(app.login("slide@example.com", PW).await.status, 200);

    for _ in 0..5 {
        app.login("slide@example.com", "wrong-password-1").await;
    }
    assert_eq!(app.login("slide@example.com", PW).await.status, 429);
    app.post("/forgot-password", json!({ "email": "slide@example.com" }))
        .await;
    let token = app
        .mailed_token("slide@example.com", 2, "/reset-password")
        .await;
    let r = app
        .post(
            "/reset-password",
            json!({ "token": token, "new_password": "a-new-password-9" }),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.login("slide@example.com", "a-new-password-9")
            .await
            .status,
        200
    );
}

/// 20 logins for one address at once: the store's atomic admission lets
/// exactly the lockout threshold reach the hasher.
async fn login_burst(
    app: &Arc<TestApp>,
    email: &'static str,
    right_one: Option<usize>,
) -> Vec<u16> {
    let attempts = (0..20).map(|i| {
        let app = app.clone();
        let pw = if Some(i) == right_one {
            PW.to_owned()
        } else {
            format!("wrong-password-{i}")
        };
        async move { app.login(email, &pw).await.status.as_u16() }
    });
    join_all(attempts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parallel_burst_cannot_check_more_passwords_than_the_threshold() {
    let app = Arc::new(spawn_app().await);
    app.create_user("burst@example.com", PW).await;
    app.create_user("burst2@example.com", PW).await;

    // 20 wrong passwords at once: exactly the threshold is checked.
    app.hasher.reset();
    let statuses = login_burst(&app, "burst@example.com", None).await;
    let count = |code: u16| statuses.iter().filter(|&&s| s == code).count();
    assert_eq!((count(401), count(429)), (5, 15), "{statuses:?}");
    assert_eq!(app.hasher.total_verifications(), 5);

    // The right password among 19 wrong ones: if it is admitted it clears
    // the counter (as any sign-in does), after which at most another
    // threshold of guesses is checked — never more than five per success.
    app.hasher.reset();
    let statuses = login_burst(&app, "burst2@example.com", Some(19)).await;
    let count = |code: u16| statuses.iter().filter(|&&s| s == code).count();
    assert!(
        statuses.iter().all(|s| [200, 401, 429].contains(s)),
        "{statuses:?}"
    );
    let successes = count(200);
    assert!(successes <= 1, "{statuses:?}");
    let bound = 5 * (1 + successes);
    assert!(
        app.hasher.total_verifications() <= bound,
        "{} verifications for {successes} success(es): {statuses:?}",
        app.hasher.total_verifications()
    );
    assert!(count(429) >= 20 - bound, "{statuses:?}");
}

async fn twenty_in_parallel(
    app: &Arc<TestApp>,
    path: &'static str,
    body: serde_json::Value,
) -> Vec<StatusCode> {
    let tasks = (0..20).map(|_| {
        let (app, body) = (app.clone(), body.clone());
        tokio::spawn(async move { app.post(path, body).await.status })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

fn exactly_one_success(statuses: &[StatusCode], expect_fail: u16) {
    let ok = statuses.iter().filter(|s| s.is_success()).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| s.is_success() || s.as_u16() == expect_fail),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verification_token_used_20_times_in_parallel_succeeds_once() {
    let app = Arc::new(spawn_app().await);
    app.register("par@example.com", PW).await;
    let token = app.mailed_token("par@example.com", 1, "/verify").await;
    exactly_one_success(
        &twenty_in_parallel(&app, "/verify", json!({ "token": token })).await,
        400,
    );
}

/// The real user store, with the first 20 `complete_password_reset`
/// calls held at a [`Gate`] until all have come, and its successes counted.
struct GatheredResets {
    inner: Stores,
    gate: Gate,
    spent: AtomicUsize,
}

#[async_trait]
impl UserStoreForward for GatheredResets {
    fn users(&self) -> &dyn UserStore {
        &*self.inner.users
    }
    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        new: &PasswordHash,
        now: Timestamp,
    ) -> Result<Option<User>, StoreError> {
        self.gate.pass().await;
        let done = self
            .users()
            .complete_password_reset(token, new, now)
            .await?;
        if done.is_some() {
            self.spent.fetch_add(1, Ordering::SeqCst);
        }
        Ok(done)
    }
}

/// 20 presentations of one reset link at once, each with a new password
/// of its own, all past the engine's check of the link and arriving at the
/// store's atomic spend together (a gate holds them until all 20 are
/// there, so even behind SQLite's single writer the store — not an early
/// winner's commit before the others looked — refuses 19): exactly one
/// request succeeds, the store spent the link once, and the account's
/// password is that winner's — not the old one, not any other racer's.
/// The contract case `complete_password_reset_is_single_use_under_20_parallel_attempts`
/// holds every store to the same; `contract_has_teeth.rs` shows it fails a
/// read-then-write reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_token_used_20_times_in_parallel_succeeds_once() {
    let (inner, backend) = fresh_backend().await;
    let gathered = forwarding(GatheredResets {
        inner: inner.clone(),
        gate: Gate::new(20),
        spent: AtomicUsize::new(0),
    });
    let stores = Stores {
        users: gathered.clone(),
        ..inner
    };
    // No lockout: the losers' passwords are tried below.
    let app = Arc::new(
        spawn_app_on(
            stores,
            backend,
            |s| s.config.rate_limit_disabled = true,
            false,
        )
        .await,
    );
    app.create_user("rpar@example.com", PW).await;
    app.post("/forgot-password", json!({ "email": "rpar@example.com" }))
        .await;
    let token = app
        .mailed_token("rpar@example.com", 2, "/reset-password")
        .await;
    let password = |i: usize| format!("parallel-password-{i}");
    let tasks = (0..20).map(|i| {
        let app = app.clone();
        let body = json!({ "token": token, "new_password": password(i) });
        tokio::spawn(async move { app.post("/reset-password", body).await.status })
    });
    let statuses: Vec<StatusCode> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    exactly_one_success(&statuses, 400);
    assert_eq!(
        gathered.0.gate.arrived(),
        20,
        "all 20 passed the link check and reached the store's spend"
    );
    assert_eq!(gathered.0.spent.load(Ordering::SeqCst), 1, "spent once");

    let winner = statuses.iter().position(StatusCode::is_success).unwrap();
    assert_eq!(
        app.login("rpar@example.com", &password(winner))
            .await
            .status,
        200,
        "the winner's password is the account's"
    );
    for candidate in (0..20)
        .filter(|&i| i != winner)
        .map(password)
        .chain([PW.to_owned()])
    {
        assert_eq!(
            app.login("rpar@example.com", &candidate).await.status,
            401,
            "{candidate} is not the account's password"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_email_change_token_used_20_times_in_parallel_succeeds_once() {
    let app = Arc::new(spawn_app().await);
    app.create_user("epar@example.com", PW).await;
    let t = app.access_token("epar@example.com", PW).await;
    app.post_auth(
        "/change-email",
        &t,
        json!({ "new_email": "epar2@example.com", "current_password": PW }),
    )
    .await;
    let token = app
        .mailed_token("epar2@example.com", 1, "/confirm-email-change")
        .await;
    exactly_one_success(
        &twenty_in_parallel(&app, "/confirm-email-change", json!({ "token": token })).await,
        400,
    );
}

#[tokio::test]
async fn a_newer_reset_link_supersedes_the_older_one() {
    let app = spawn_app().await;
    app.create_user("sup@example.com", PW).await;
    app.post("/forgot-password", json!({ "email": "sup@example.com" }))
        .await;
    let first = app
        .mailed_token("sup@example.com", 2, "/reset-password")
        .await;
    app.post("/forgot-password", json!({ "email": "sup@example.com" }))
        .await;
    let second = app
        .mailed_token("sup@example.com", 3, "/reset-password")
        .await;
    assert_eq!(
        app.post(
            "/reset-password",
            json!({ "token": first, "new_password": "new-password-1" })
        )
        .await
        .status,
        400
    );
    assert_eq!(
        app.post(
            "/reset-password",
            json!({ "token": second, "new_password": "new-password-1" })
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn tokens_die_at_their_expiry() {
    let app = spawn_app_with(|_| {}, true).await;
    let clock = app.clock.clone().unwrap();
    app.create_user("exp@example.com", PW).await;
    let access = app.access_token("exp@example.com", PW).await;
    app.post("/forgot-password", json!({ "email": "exp@example.com" }))
        .await;
    let reset = app
        .mailed_token("exp@example.com", 2, "/reset-password")
        .await;
    app.register("late@example.com", PW).await;
    let verify = app.mailed_token("late@example.com", 1, "/verify").await;

    clock.advance(TimeDelta::seconds(1799));
    assert_eq!(app.me(&access).await.status, 200);
    clock.advance(TimeDelta::seconds(1));
    // 30 minutes: the reset link is dead, exactly at its expiry.
    let r = app
        .post(
            "/reset-password",
            json!({ "token": reset, "new_password": "new-password-1" }),
        )
        .await;
    assert_eq!(r.status, 400);
    clock.advance(TimeDelta::seconds(7200 - 1800));
    let r = app.me(&access).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Invalid or expired token.")
    );
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    clock.advance(TimeDelta::hours(22));
    assert_eq!(
        app.post("/verify", json!({ "token": verify })).await.status,
        400
    );
}

/// The five kinds of token the server hands out, each taken in one place.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Purpose {
    VerifyLink,
    ResetLink,
    EmailChangeLink,
    AccessToken,
    RefreshToken,
}

impl Purpose {
    const ALL: [Self; 5] = [
        Self::VerifyLink,
        Self::ResetLink,
        Self::EmailChangeLink,
        Self::AccessToken,
        Self::RefreshToken,
    ];

    /// Presents `token` where a token of this purpose is taken: status and
    /// detail of the answer.
    async fn present(self, app: &TestApp, token: &str) -> (u16, String) {
        let r = match self {
            Self::VerifyLink => app.post("/verify", json!({ "token": token })).await,
            Self::ResetLink => {
                app.post(
                    "/reset-password",
                    json!({ "token": token, "new_password": "purpose-password-2" }),
                )
                .await
            }
            Self::EmailChangeLink => {
                app.post("/confirm-email-change", json!({ "token": token }))
                    .await
            }
            Self::AccessToken => app.me(token).await,
            Self::RefreshToken => {
                app.post("/refresh", json!({ "refresh_token": token }))
                    .await
            }
        };
        (r.status.as_u16(), r.detail().to_owned())
    }

    /// What this place answers a token that is not one of its own.
    fn refusal(self) -> (u16, String) {
        let (status, detail) = match self {
            Self::VerifyLink => (
                400,
                "Verification link is invalid or has expired. Request a new one.",
            ),
            Self::ResetLink => (
                400,
                "Reset link is invalid or has expired. Request a new one.",
            ),
            Self::EmailChangeLink => (
                400,
                "Email-change link is invalid or has expired. Request a new one.",
            ),
            Self::AccessToken => (401, "Invalid or expired token."),
            Self::RefreshToken => (401, "Invalid or expired refresh token."),
        };
        (status, detail.to_owned())
    }
}

/// Every pair of purposes: each of the five tokens (verify, reset and
/// email-change links, access and refresh tokens) presented where each of
/// the other four is taken is refused exactly as a token never issued
/// would be, and changes nothing — afterwards each still works where it
/// belongs, so the refusals were for the purpose alone. Each link comes
/// from an account of its own, so using one at the end touches no other.
#[tokio::test]
async fn a_token_of_one_purpose_is_useless_for_another() {
    use Purpose::*;
    let app = spawn_app().await;
    app.register("purpose-verify@example.com", PW).await;
    let verify = app
        .mailed_token("purpose-verify@example.com", 1, "/verify")
        .await;
    app.create_user("purpose-reset@example.com", PW).await;
    app.post(
        "/forgot-password",
        json!({ "email": "purpose-reset@example.com" }),
    )
    .await;
    let reset = app
        .mailed_token("purpose-reset@example.com", 2, "/reset-password")
        .await;
    app.create_user("purpose-change@example.com", PW).await;
    let r = app
        .post_auth(
            "/change-email",
            &app.access_token("purpose-change@example.com", PW).await,
            json!({ "new_email": "purpose-changed@example.com", "current_password": PW }),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let change = app
        .mailed_token("purpose-changed@example.com", 1, "/confirm-email-change")
        .await;
    app.create_user("purpose-session@example.com", PW).await;
    let r = app.login("purpose-session@example.com", PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();

    let tokens = [
        (VerifyLink, verify),
        (ResetLink, reset),
        (EmailChangeLink, change),
        (AccessToken, access),
        (RefreshToken, refresh),
    ];
    let mut wrong = Vec::new();
    for (made_for, token) in &tokens {
        for taken_as in Purpose::ALL {
            if taken_as == *made_for {
                continue;
            }
            let got = taken_as.present(&app, token).await;
            if got != taken_as.refusal() {
                wrong.push(format!("{made_for:?} taken as {taken_as:?}: {got:?}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "tokens accepted (or answered unlike an unknown token) for another purpose: {wrong:#?}"
    );
    for (made_for, token) in &tokens {
        let (status, detail) = made_for.present(&app, token).await;
        assert_eq!(
            status, 200,
            "the {made_for:?} still works where it belongs: {detail}"
        );
    }

    let r = app.me("garbage").await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Invalid or expired token.")
    );
    let r = app.call(Method::GET, "/me", None, None).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Authentication required.")
    );
    assert_eq!(r.headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn passwords_are_8_to_128_code_points_checked_before_hashing() {
    let app = spawn_app().await;
    let r = app.register("len1@example.com", &"漢".repeat(7)).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        app.register("len2@example.com", &"😀".repeat(8))
            .await
            .status,
        201
    );
    assert_eq!(
        app.register("len3@example.com", &"a".repeat(128))
            .await
            .status,
        201
    );
    let hashes = app.hasher.hashes();
    let r = app.register("len4@example.com", &"a".repeat(129)).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["type"], "string_too_long");
    assert_eq!(
        app.hasher.hashes(),
        hashes,
        "a refused password must not be hashed"
    );
}

#[tokio::test]
async fn the_database_holds_no_raw_token_or_password() {
    let app = spawn_app().await;
    app.create_user("rest@example.com", PW).await;
    let t = app.access_token("rest@example.com", PW).await;
    app.post("/forgot-password", json!({ "email": "rest@example.com" }))
        .await;
    let reset = app
        .mailed_token("rest@example.com", 2, "/reset-password")
        .await;
    app.post_auth(
        "/change-email",
        &t,
        json!({ "new_email": "rest2@example.com", "current_password": PW }),
    )
    .await;
    let change = app
        .mailed_token("rest2@example.com", 1, "/confirm-email-change")
        .await;
    app.register("pend@example.com", PW).await;
    let verify = app.mailed_token("pend@example.com", 1, "/verify").await;
    let bytes = app.database_bytes().await;
    assert!(!bytes.is_empty());
    for secret in [
        reset.as_str(),
        change.as_str(),
        verify.as_str(),
        PW,
        t.as_str(),
    ] {
        assert!(
            !contains(&bytes, secret),
            "found a raw secret at rest: {secret}"
        );
    }
    assert!(
        contains(&bytes, "rest@example.com"),
        "the scan must see the data"
    );
}

#[tokio::test]
async fn a_regstack_made_hash_signs_in_and_is_kept() {
    let app = spawn_app().await;
    let phc = include_str!("../../crates/core/tests/fixtures/regstack_argon2.phc")
        .trim()
        .to_owned();
    app.stores
        .users
        .insert(regstack_ports::NewUser {
            id: regstack_ports::UserId::generate(),
            email: regstack_ports::Email::parse("legacy@example.com").unwrap(),
            password_hash: Some(regstack_ports::PasswordHash::new(phc)),
            full_name: None,
            is_verified: true,
            is_superuser: false,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    assert_eq!(
        app.login("legacy@example.com", "correct-horse-battery")
            .await
            .status,
        200
    );
    assert_eq!(
        app.login("legacy@example.com", "correct-horse-batterY")
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn a_slow_or_failing_mailer_never_delays_or_fails_the_request() {
    let app = spawn_app().await;
    app.mailer
        .set_delay(Some(std::time::Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let r = app.register("slow@example.com", PW).await;
    assert_eq!(r.status, 201);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The mail was only deferred, not lost.
    app.mailer
        .wait_for("slow@example.com", 1, std::time::Duration::from_secs(10))
        .await;
    app.mailer.set_delay(None);

    app.mailer.fail_always();
    assert_eq!(app.register("fail@example.com", PW).await.status, 201);
    for _ in 0..250 {
        if app.mailer.failed() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.mailer.failed(), 1);
    app.mailer.heal();
    // The registration was kept: a resend works once mail is back.
    let r = app
        .post(
            "/resend-verification",
            json!({ "email": "fail@example.com" }),
        )
        .await;
    assert_eq!(r.status, 202);
    let token = app.mailed_token("fail@example.com", 1, "/verify").await;
    let r = app.post("/verify", json!({ "token": token })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn mail_to_one_address_is_capped_per_hour() {
    let app = spawn_app_with(|c| c.config.email.max_per_address_per_hour = 3, false).await;
    app.register("flood@example.com", PW).await;
    for _ in 0..6 {
        let r = app
            .post(
                "/resend-verification",
                json!({ "email": "flood@example.com" }),
            )
            .await;
        assert_eq!(r.status, 202);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.mailer.sent_to("flood@example.com").len(), 3);
}

/// The mail quota must not turn into a lock-out: once an address's hourly
/// quota is spent, further resends and reset requests — which anyone can
/// send — change nothing, so the link the owner received last keeps
/// working (before, each of them superseded that link and mailed nothing).
#[tokio::test]
async fn over_the_mail_quota_the_last_mailed_link_stays_valid() {
    let app = spawn_app_with(|c| c.config.email.max_per_address_per_hour = 3, false).await;
    app.register("quota@example.com", PW).await;
    for _ in 0..2 {
        app.post(
            "/resend-verification",
            json!({ "email": "quota@example.com" }),
        )
        .await;
    }
    let last = app.mailed_token("quota@example.com", 3, "/verify").await;
    for _ in 0..5 {
        let r = app
            .post(
                "/resend-verification",
                json!({ "email": "quota@example.com" }),
            )
            .await;
        assert_eq!(r.status, 202);
        let r = app
            .register("quota@example.com", "another-password-1")
            .await;
        assert_eq!(r.status, 201);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.mailer.sent_to("quota@example.com").len(), 3);
    let r = app.post("/verify", json!({ "token": last })).await;
    assert_eq!(
        r.status, 200,
        "the last mailed verification link still works: {:?}",
        r.body
    );

    // The same for reset links (the quota is per address and hour).
    app.create_user("reset-quota@example.com", PW).await;
    for _ in 0..2 {
        app.post(
            "/forgot-password",
            json!({ "email": "reset-quota@example.com" }),
        )
        .await;
    }
    let last = app
        .mailed_token("reset-quota@example.com", 3, "/reset-password")
        .await;
    for _ in 0..5 {
        let r = app
            .post(
                "/forgot-password",
                json!({ "email": "reset-quota@example.com" }),
            )
            .await;
        assert_eq!(r.status, 202);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.mailer.sent_to("reset-quota@example.com").len(), 3);
    let r = app
        .post(
            "/reset-password",
            json!({ "token": last, "new_password": "after-the-flood-1" }),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "the last mailed reset link still works: {:?}",
        r.body
    );
}

/// Instances that share a secret disagree a little about the time: a token
/// one of them signed "in the future" of another's clock is accepted within
/// `jwt_iat_leeway_seconds` (default 5) and not a microsecond beyond.
#[tokio::test]
async fn a_token_from_a_clock_slightly_ahead_is_accepted_within_the_iat_leeway() {
    let app = spawn_app_with(|_| {}, true).await;
    let clock = app.clock.clone().unwrap();
    app.create_user("skew@example.com", PW).await;
    let access = app.access_token("skew@example.com", PW).await;
    clock.advance(-TimeDelta::seconds(5));
    assert_eq!(app.me(&access).await.status, 200);
    clock.advance(-TimeDelta::microseconds(1));
    let r = app.me(&access).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Invalid or expired token.")
    );

    let strict = spawn_app_with(|s| s.config.jwt_iat_leeway_seconds = 0, true).await;
    let clock = strict.clock.clone().unwrap();
    strict.create_user("strict@example.com", PW).await;
    let access = strict.access_token("strict@example.com", PW).await;
    assert_eq!(strict.me(&access).await.status, 200);
    clock.advance(-TimeDelta::microseconds(1));
    assert_eq!(strict.me(&access).await.status, 401);
}

/// HSTS is the operator's call (only they know the host is HTTPS-only): no
/// header by default; with `http.hsts` every response carries it, errors
/// and unknown routes included.
#[tokio::test]
async fn strict_transport_security_is_sent_only_when_configured() {
    let app = spawn_app().await;
    for r in [
        app.call(Method::GET, "/me", None, None).await,
        app.call(Method::GET, "/no-such-route", None, None).await,
    ] {
        assert_eq!(r.headers.get("strict-transport-security"), None);
    }

    let app = spawn_app_with(
        |s| {
            s.http.hsts = true;
            s.http.hsts_max_age_seconds = 600;
        },
        false,
    )
    .await;
    app.create_user("hsts@example.com", PW).await;
    let ok = app.login("hsts@example.com", PW).await;
    assert_eq!(ok.status, 200);
    for r in [
        ok,
        app.call(Method::GET, "/me", None, None).await,
        app.login("hsts@example.com", "wrong-password-9").await,
        app.call(Method::GET, "/no-such-route", None, None).await,
        app.call(Method::PUT, "/login", None, None).await,
    ] {
        assert_eq!(
            r.headers
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=600"),
            "{} {:?}",
            r.status,
            r.body
        );
    }
}

/// JW-5: rotating `jwt_secret` through `jwt_previous_secrets` keeps every
/// session — access and refresh tokens minted under the old secret work on
/// an instance that signs with the new one — until the old secret is
/// dropped, and then only tokens of the new secret work.
#[tokio::test]
async fn rotating_the_jwt_secret_keeps_sessions_until_the_old_secret_is_dropped() {
    let old_secret = test_config().jwt_secret;
    let new_secret: secrecy::SecretString = "the-next-secret-the-next-secret-0123456789".into();
    let before = spawn_app().await;
    before.create_user("rotate@example.com", PW).await;
    let r = before.login("rotate@example.com", PW).await;
    let old_access = r.body["access_token"].as_str().unwrap().to_owned();
    let old_refresh = r.body["refresh_token"].as_str().unwrap().to_owned();

    let on = |secret: secrecy::SecretString, previous: Vec<secrecy::SecretString>| {
        spawn_app_on(
            before.stores.clone(),
            Backend::Memory,
            move |s| {
                s.config.jwt_secret = secret;
                s.config.jwt_previous_secrets = previous;
            },
            false,
        )
    };
    let rotated = on(new_secret.clone(), vec![old_secret.clone()]).await;
    assert_eq!(rotated.me(&old_access).await.status, 200);
    let r = rotated
        .post("/refresh", json!({ "refresh_token": old_refresh }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let new_access = r.body["access_token"].as_str().unwrap().to_owned();
    let new_refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    // An instance not rotated yet that already accepts the new secret.
    let rolling = on(old_secret, vec![new_secret.clone()]).await;
    assert_eq!(rolling.me(&new_access).await.status, 200);

    let dropped = on(new_secret, vec![]).await;
    assert_eq!(dropped.me(&old_access).await.status, 401);
    assert_eq!(dropped.me(&new_access).await.status, 200);
    let r = dropped
        .post("/refresh", json!({ "refresh_token": new_refresh }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// PW-5: a password typed with combining accents (NFD, as some platforms
/// and password managers produce it) and the same password with
/// precomposed letters (NFC) are one password, both ways round.
#[tokio::test]
async fn a_password_signs_in_in_any_unicode_normal_form() {
    let app = spawn_app().await;
    let (nfc, nfd) = (
        "Cr\u{e8}me br\u{fb}l\u{e9}e 42",
        "Cre\u{300}me bru\u{302}le\u{301}e 42",
    );
    app.create_user("nfd@example.com", nfd).await;
    app.create_user("nfc@example.com", nfc).await;
    for (email, typed) in [("nfd@example.com", nfc), ("nfc@example.com", nfd)] {
        assert_eq!(app.login(email, typed).await.status, 200, "{email}");
    }
    assert_eq!(
        app.login("nfc@example.com", "Creme brulee 42").await.status,
        401
    );
}

/// SE-11 (the JSON API's part; the page headers come with the pages): every
/// class of answer — success, client error, refusal, lockout, unknown route
/// — carries `nosniff`, `Referrer-Policy: no-referrer` and
/// `Cache-Control: no-store`, and says it is JSON.
#[tokio::test]
async fn every_class_of_answer_carries_the_security_headers() {
    let app = spawn_app_with(|s| s.config.login_lockout_threshold = 1, false).await;
    app.create_user("headers@example.com", PW).await;
    let token = app.access_token("headers@example.com", PW).await;
    let mut answers = vec![
        (
            "register 201",
            app.register("new-headers@example.com", PW).await,
        ),
        ("me 200", app.me(&token).await),
        ("me 401", app.me("not-a-token").await),
        (
            "login 401",
            app.login("headers@example.com", "wrong-password-1").await,
        ),
        ("login 429", app.login("headers@example.com", PW).await),
        ("login 422", app.post("/login", json!({ "email": 7 })).await),
        (
            "unknown 404",
            app.call(Method::GET, "/nope", None, None).await,
        ),
        (
            "method 405",
            app.call(Method::GET, "/login", None, None).await,
        ),
    ];
    let r = app
        .http
        .post(format!("{}/login", app.api))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    answers.push((
        "login 415",
        Reply {
            status: r.status(),
            headers: r.headers().clone(),
            body: serde_json::Value::Null,
        },
    ));
    for (what, r) in &answers {
        let expected = what.rsplit(' ').next().unwrap();
        assert_eq!(r.status.as_str(), expected, "{what}: {:?}", r.body);
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-store"),
        ] {
            assert_eq!(
                r.headers.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{what}: {name}"
            );
        }
        let content_type = r.headers["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("application/json"),
            "{what}: {content_type}"
        );
    }
}

/// PW-10 and PW-5 end to end: regstack hashed a non-ASCII password as
/// typed. Signing in with that spelling works, and the sign-in renews the
/// stored hash in normal form, after which every spelling works.
#[tokio::test]
async fn a_sign_in_renews_a_regstack_hash_of_a_non_ascii_password_in_normal_form() {
    let app = spawn_app().await;
    let (nfc, nfd) = (
        "Cr\u{e8}me br\u{fb}l\u{e9}e 42",
        "Cre\u{300}me bru\u{302}le\u{301}e 42",
    );
    let phc = include_str!("../../crates/core/tests/fixtures/regstack_argon2_nfd.phc")
        .trim()
        .to_owned();
    let email = regstack_ports::Email::parse("renew@example.com").unwrap();
    let id = regstack_ports::UserId::generate();
    app.stores
        .users
        .insert(regstack_ports::NewUser {
            id: id.clone(),
            email: email.clone(),
            password_hash: Some(regstack_ports::PasswordHash::new(phc.clone())),
            full_name: None,
            is_verified: true,
            is_superuser: false,
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    // regstack's hash knows only the spelling it was given.
    assert_eq!(app.login("renew@example.com", nfc).await.status, 401);
    assert_eq!(app.login("renew@example.com", nfd).await.status, 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let renewed = loop {
        let stored = app.stores.users.get(&id).await.unwrap().unwrap();
        let hash = stored.password_hash.unwrap();
        if hash.as_str() != phc {
            break hash;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hash was never renewed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // With the server's parameters, and in normal form: both spellings work.
    assert!(renewed
        .as_str()
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert_eq!(app.login("renew@example.com", nfc).await.status, 200);
    assert_eq!(app.login("renew@example.com", nfd).await.status, 200);
}
