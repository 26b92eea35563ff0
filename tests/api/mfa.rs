//! Second factors over HTTP, on every backend: TOTP enrolment, the
//! sign-in challenge, one-step login, backup codes, removal — and the
//! attacks on them (replayed steps and codes, exhausted challenges, racing
//! confirmations, a challenge outliving a password change).
//!
//! TOTP codes are computed by the test kit's own RFC 6238 implementation
//! (`regstack_testkit::totp`, checked against the RFC's Appendix B), from
//! the base32 secret `/totp/setup` shows — independently of the server's
//! code — and the server runs on a clock that only moves when told, so
//! every code is for a known step.

use std::sync::Arc;

use chrono::TimeDelta;
use futures::future::join_all;
use regstack_ports::Timestamp;
use serde_json::{json, Value};

use regstack_testkit::totp::{base32_decode, code_at as totp_at};

use crate::support::*;

/// A user with TOTP enabled, on an app whose clock stands still.
struct Enrolled {
    app: Arc<TestApp>,
    email: &'static str,
    secret: Vec<u8>,
    backup_codes: Vec<String>,
    /// The access token of the session that enrolled.
    access: String,
}

impl Enrolled {
    fn now(&self) -> Timestamp {
        regstack_ports::Clock::now(&**self.app.clock.as_ref().unwrap())
    }
    fn advance(&self, seconds: i64) {
        self.app
            .clock
            .as_ref()
            .unwrap()
            .advance(TimeDelta::seconds(seconds));
    }
    fn code(&self) -> String {
        totp_at(&self.secret, self.now())
    }
    /// `/login` with the password: the pending token of the challenge.
    async fn challenge(&self) -> String {
        let r = self.app.login(self.email, PW).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["status"], "mfa_required", "{:?}", r.body);
        r.body["mfa_pending_token"].as_str().unwrap().to_owned()
    }
    async fn confirm(&self, pending: &str, code: &str) -> Reply {
        self.app
            .post(
                "/login/mfa-confirm",
                json!({ "mfa_pending_token": pending, "code": code }),
            )
            .await
    }
}

async fn enrolled(email: &'static str) -> Enrolled {
    let app = Arc::new(spawn_app_with(|_| {}, true).await);
    app.create_user(email, PW).await;
    let access = app.access_token(email, PW).await;
    let r = app
        .post_auth("/totp/setup", &access, json!({ "current_password": PW }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let secret_b32 = r.body["secret"].as_str().unwrap().to_owned();
    let uri = r.body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret_b32}")), "{uri}");
    assert!(uri.contains("issuer=RegStack"), "{uri}");
    assert!(r.body["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(r.body["expires_in"], 600);
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let secret = base32_decode(&secret_b32);
    assert_eq!(secret.len(), 20, "160-bit secrets");
    let now = regstack_ports::Clock::now(&**app.clock.as_ref().unwrap());
    let r = app
        .post_auth(
            "/totp/confirm",
            &access,
            json!({ "pending_token": pending, "code": totp_at(&secret, now) }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let backup_codes: Vec<String> = r.body["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(backup_codes.len(), 10);
    let me = app.me(&access).await;
    assert_eq!(me.status, 200, "the enrolling session stays");
    assert_eq!(me.body["is_mfa_enabled"], true);
    Enrolled {
        app,
        email,
        secret,
        backup_codes,
        access,
    }
}

#[tokio::test]
async fn totp_enrolment_then_sign_in_with_a_code_computed_independently() {
    let u = enrolled("totp@example.com").await;
    // The password alone: no session, a challenge naming every method.
    let r = u.app.login(u.email, PW).await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("access_token").is_none(), "{:?}", r.body);
    assert_eq!(r.body["delivery"], "totp");
    assert_eq!(r.body["methods"], json!(["totp", "backup_code"]));
    assert_eq!(r.body["expires_in"], 600);
    let pending = r.body["mfa_pending_token"].as_str().unwrap().to_owned();
    // The enrolment's step was accepted already: the next step signs in.
    u.advance(30);
    let r = u.confirm(&pending, &u.code()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "bearer");
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(u.app.me(&access).await.status, 200);
    // A session like any other: its refresh token rotates, twice.
    let r = u
        .app
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let next = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r = u
        .app
        .post("/refresh", json!({ "refresh_token": next }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The pending token is spent.
    let r = u.confirm(&pending, &u.code()).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (
            400,
            "Sign-in session is invalid or has expired. Start over from sign-in."
        )
    );
}

#[tokio::test]
async fn a_totp_step_signs_in_once_even_within_its_window() {
    let u = enrolled("replay@example.com").await;
    // The enrolment's own code never signs in: its step was accepted.
    let zeroth = u.challenge().await;
    let r = u.confirm(&zeroth, &u.code()).await;
    assert_eq!(r.detail(), "Wrong code; 4 attempts remaining.");
    u.advance(30);
    let code = u.code();
    let first = u.challenge().await;
    assert_eq!(u.confirm(&first, &code).await.status, 200);
    // The same code, on a new challenge, still inside its ±1-step window.
    u.advance(10);
    let second = u.challenge().await;
    let r = u.confirm(&second, &code).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "Wrong code; 4 attempts remaining.")
    );
    // An earlier step after a later one is refused too.
    u.advance(30);
    let later = u.code();
    let third = u.challenge().await;
    assert_eq!(u.confirm(&third, &later).await.status, 200);
    let fourth = u.challenge().await;
    assert_eq!(u.confirm(&fourth, &code).await.status, 400);
}

#[tokio::test]
async fn wrong_codes_count_down_and_exhaust_the_challenge() {
    let u = enrolled("exhaust@example.com").await;
    u.advance(30);
    let pending = u.challenge().await;
    for remaining in [4, 3, 2, 1] {
        let r = u.confirm(&pending, "000000").await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (
                400,
                format!("Wrong code; {remaining} attempts remaining.").as_str()
            )
        );
    }
    let r = u.confirm(&pending, "000000").await;
    assert_eq!(r.status, 400);
    // Gone: even the right code cannot use it now.
    let r = u.confirm(&pending, &u.code()).await;
    assert_eq!(
        r.detail(),
        "Sign-in session is invalid or has expired. Start over from sign-in."
    );
    let events = u.app.event_names();
    assert!(events.contains(&"mfa_challenge_failed"));
    assert!(events.contains(&"mfa_challenge_exhausted"));
}

#[tokio::test]
async fn twenty_parallel_attempts_check_at_most_the_allowed_codes_and_sign_in_once() {
    let u = enrolled("race@example.com").await;
    u.advance(30);
    /// Posts `code` to the challenge `pending` from `n` tasks at once.
    async fn race(u: &Enrolled, pending: &str, code: &str, n: usize) -> Vec<Reply> {
        let tasks = (0..n).map(|_| {
            let (app, pending, code) = (u.app.clone(), pending.to_owned(), code.to_owned());
            tokio::spawn(async move {
                app.post(
                    "/login/mfa-confirm",
                    json!({ "mfa_pending_token": pending, "code": code }),
                )
                .await
            })
        });
        join_all(tasks)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect()
    }
    // As many right codes racing as the challenge has attempts: exactly
    // one session (the step is accepted once, the challenge spent once).
    let pending = u.challenge().await;
    let replies = race(&u, &pending, &u.code(), 5).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    // Twenty: never more than one. (Those past the fifth find the
    // challenge exhausted, which may take the winner's spend with it: no
    // session is a fair answer to a flood, two never.)
    u.advance(30);
    let pending = u.challenge().await;
    let replies = race(&u, &pending, &u.code(), 20).await;
    assert!(replies.iter().filter(|r| r.status == 200).count() <= 1);
    // Wrong codes racing: never more than five are checked.
    u.advance(30);
    let pending = u.challenge().await;
    let tasks = (0..20).map(|i| {
        let (app, pending) = (u.app.clone(), pending.clone());
        tokio::spawn(async move {
            app.post(
                "/login/mfa-confirm",
                json!({ "mfa_pending_token": pending, "code": format!("{:06}", i) }),
            )
            .await
        })
    });
    let replies: Vec<Reply> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let wrong: Vec<&str> = replies
        .iter()
        .map(Reply::detail)
        .filter(|d| d.starts_with("Wrong code"))
        .collect();
    assert!(wrong.len() <= 4, "{wrong:?}");
    let mut distinct = wrong.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        wrong.len(),
        "each count is a distinct remainder"
    );
    assert!(replies.iter().all(|r| r.status == 400));
}

#[tokio::test]
async fn backup_codes_sign_in_once_and_regenerating_kills_the_old_set() {
    let u = enrolled("backup@example.com").await;
    let code = u.backup_codes[0].clone();
    let pending = u.challenge().await;
    // Any spelling: upper case, no dash.
    let spelled = code.replace('-', "").to_uppercase();
    assert_eq!(u.confirm(&pending, &spelled).await.status, 200);
    let again = u.challenge().await;
    assert_eq!(u.confirm(&again, &code).await.status, 400);
    // New codes need the password, and the old ones die at once.
    let r = u
        .app
        .post_auth(
            "/mfa/backup-codes",
            &u.access,
            json!({ "current_password": "wrong-password-1" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = u
        .app
        .post_auth(
            "/mfa/backup-codes",
            &u.access,
            json!({ "current_password": PW }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let fresh: Vec<Value> = r.body["backup_codes"].as_array().unwrap().clone();
    assert_eq!(fresh.len(), 10);
    let old = u.challenge().await;
    assert_eq!(u.confirm(&old, &u.backup_codes[1]).await.status, 400);
    let new = u.challenge().await;
    assert_eq!(
        u.confirm(&new, fresh[0].as_str().unwrap()).await.status,
        200
    );
}

#[tokio::test]
async fn one_step_login_takes_the_code_in_the_login_body() {
    let u = enrolled("onestep@example.com").await;
    u.advance(30);
    let r = u
        .app
        .post(
            "/login",
            json!({ "email": u.email, "password": PW, "totp_code": u.code() }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["access_token"].is_string());
    // A wrong code: no session, and it counts in the address's lockout.
    let r = u
        .app
        .post(
            "/login",
            json!({ "email": u.email, "password": PW, "totp_code": "000000" }),
        )
        .await;
    assert_eq!(r.status, 400);
    // The password without the factor is no sign-in: each such attempt
    // stays counted, and the fifth locks the address like a guesser's.
    for _ in 0..4 {
        let r = u
            .app
            .post(
                "/login",
                json!({ "email": u.email, "password": PW, "backup_code": "aaaaa-aaaaa" }),
            )
            .await;
        assert_eq!(r.status, 400, "{:?}", r.body);
    }
    let r = u.app.login(u.email, PW).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
}

#[tokio::test]
async fn a_challenge_dies_with_a_password_change_and_removal_needs_the_password() {
    let u = enrolled("change@example.com").await;
    u.advance(30);
    let pending = u.challenge().await;
    let r = u
        .app
        .post_auth(
            "/change-password",
            &u.access,
            json!({ "current_password": PW, "new_password": "another-password-2" }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The password that opened the challenge is no longer the account's.
    assert_eq!(u.confirm(&pending, &u.code()).await.status, 400);

    u.advance(30);
    let access = {
        let r = u.app.login(u.email, "another-password-2").await;
        let pending = r.body["mfa_pending_token"].as_str().unwrap().to_owned();
        let r = u.confirm(&pending, &u.code()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["access_token"].as_str().unwrap().to_owned()
    };
    let r = u
        .app
        .call(
            reqwest::Method::DELETE,
            "/totp",
            Some(&access),
            Some(json!({ "current_password": PW })),
        )
        .await;
    assert_eq!(r.status, 400, "the old password removes nothing");
    let r = u
        .app
        .call(
            reqwest::Method::DELETE,
            "/totp",
            Some(&access),
            Some(json!({ "current_password": "another-password-2" })),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), &r.body["message"]),
        (200, &json!("TOTP disabled."))
    );
    // The password alone signs in again; the backup codes went with it.
    let r = u.app.login(u.email, "another-password-2").await;
    assert!(r.body["access_token"].is_string(), "{:?}", r.body);
    assert_eq!(u.app.me(&access).await.body["is_mfa_enabled"], false);
}

#[tokio::test]
async fn totp_setup_needs_the_password_and_a_dead_setup_is_refused() {
    let app = spawn_app_with(|_| {}, true).await;
    app.create_user("setup@example.com", PW).await;
    let access = app.access_token("setup@example.com", PW).await;
    let r = app
        .post_auth(
            "/totp/setup",
            &access,
            json!({ "current_password": "wrong-password-1" }),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .post_auth("/totp/setup", &access, json!({ "current_password": PW }))
        .await;
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let secret = base32_decode(r.body["secret"].as_str().unwrap());
    app.clock.as_ref().unwrap().advance(TimeDelta::seconds(601));
    let now = regstack_ports::Clock::now(&**app.clock.as_ref().unwrap());
    let r = app
        .post_auth(
            "/totp/confirm",
            &access,
            json!({ "pending_token": pending, "code": totp_at(&secret, now) }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "Setup session is invalid or has expired. Start again.")
    );
    // Without a factor there are no backup codes to make, and no TOTP to
    // remove.
    let r = app
        .post_auth(
            "/mfa/backup-codes",
            &access,
            json!({ "current_password": PW }),
        )
        .await;
    assert_eq!(r.detail(), "Enable a second factor first.");
    let r = app
        .call(
            reqwest::Method::DELETE,
            "/totp",
            Some(&access),
            Some(json!({ "current_password": PW })),
        )
        .await;
    assert_eq!(r.detail(), "TOTP is not enabled.");
    assert_eq!(app.login("setup@example.com", PW).await.status, 200);
}

/// The user id of `email`, read from the store.
async fn user_id(app: &TestApp, email: &str) -> regstack_ports::UserId {
    let email = regstack_ports::Email::parse(email).unwrap();
    app.stores
        .users
        .find_by_email(&email)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn a_forced_password_change_comes_before_the_session_and_the_second_factor() {
    let u = enrolled("forced@example.com").await;
    let id = user_id(&u.app, u.email).await;
    // A host (or the admin API) flags the account.
    assert!(u
        .app
        .rs
        .engine()
        .require_password_change(&id, true)
        .await
        .unwrap());
    let r = u.app.login(u.email, PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "password_change_required");
    assert!(r.body.get("access_token").is_none());
    assert_eq!(r.body["expires_in"], 600);
    let token = r.body["password_change_token"].as_str().unwrap().to_owned();
    // The token is no second-factor challenge, and no bearer token.
    assert_eq!(u.confirm(&token, &u.code()).await.status, 400);
    assert_eq!(u.app.me(&token).await.status, 401);
    // The current password again: refused, and the token lives on.
    let change = |password: &str| {
        let (app, token) = (u.app.clone(), token.clone());
        let body = json!({ "password_change_token": token, "new_password": password });
        async move { app.post("/login/change-password", body).await }
    };
    let r = change(PW).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "New password must differ from the current password.")
    );
    // A new one: set, and the second factor is still asked for.
    let r = change("a-brand-new-password-3").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "mfa_required", "{:?}", r.body);
    let pending = r.body["mfa_pending_token"].as_str().unwrap().to_owned();
    u.advance(30);
    let r = u.confirm(&pending, &u.code()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Single use; the old password is gone; the flag is cleared.
    let r = change("yet-another-password-4").await;
    assert_eq!(
        r.detail(),
        "Password-change session is invalid or has expired. Sign in again."
    );
    assert_eq!(u.app.login(u.email, PW).await.status, 401);
    let r = u.app.login(u.email, "a-brand-new-password-3").await;
    assert_eq!(r.body["status"], "mfa_required", "{:?}", r.body);
}

#[tokio::test]
async fn a_forced_change_without_a_second_factor_signs_in_and_a_reset_clears_the_flag() {
    let app = spawn_app().await;
    app.create_user("plain@example.com", PW).await;
    let before = app.access_token("plain@example.com", PW).await;
    let id = user_id(&app, "plain@example.com").await;
    app.rs
        .engine()
        .require_password_change(&id, true)
        .await
        .unwrap();
    // Flagging ends the sessions of the old password.
    let r = app.me(&before).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Session was invalidated; please sign in again.")
    );
    let r = app.login("plain@example.com", PW).await;
    let token = r.body["password_change_token"].as_str().unwrap().to_owned();
    let r = app
        .post(
            "/login/change-password",
            json!({ "password_change_token": token, "new_password": "fresh-password-5" }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    assert!(r.body["refresh_token"].is_string());
    assert_eq!(app.me(&access).await.status, 200);

    // Flagged again, then reset through a mailed link: the flag goes with
    // the old password.
    app.rs
        .engine()
        .require_password_change(&id, true)
        .await
        .unwrap();
    app.post("/forgot-password", json!({ "email": "plain@example.com" }))
        .await;
    let reset = app
        .mailed_token("plain@example.com", 2, "/reset-password")
        .await;
    let r = app
        .post(
            "/reset-password",
            json!({ "token": reset, "new_password": "after-reset-password-6" }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .login("plain@example.com", "after-reset-password-6")
        .await;
    assert!(r.body["access_token"].is_string(), "{:?}", r.body);
}

#[tokio::test]
async fn a_step_accepted_by_one_instance_is_refused_by_another_on_the_same_database() {
    let u = enrolled("two@example.com").await;
    // A second server over the same stores, its clock where the first's is.
    let other = spawn_app_on(u.app.stores.clone(), Backend::Memory, |_| {}, true).await;
    let clock = other.clock.as_ref().unwrap();
    clock.set(u.now());
    u.advance(30);
    clock.advance(TimeDelta::seconds(30));
    let code = u.code();
    let pending = u.challenge().await;
    assert_eq!(u.confirm(&pending, &code).await.status, 200);
    let r = other.login(u.email, PW).await;
    let pending = r.body["mfa_pending_token"].as_str().unwrap().to_owned();
    let r = other
        .post(
            "/login/mfa-confirm",
            json!({ "mfa_pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "Wrong code; 4 attempts remaining.")
    );
}

/// MF-5: no code — TOTP, backup or texted — and no pending token reaches
/// a log line or an event, at any level, through a whole second-factor
/// life: setup, confirm, sign-in, a wrong code, a backup code.
#[tokio::test]
async fn no_code_or_pending_token_reaches_a_log_line_or_an_event() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let u = enrolled("quiet@example.com").await;
    u.advance(30);
    let mut secrets = vec![u.code()];
    secrets.extend(u.backup_codes.iter().cloned());
    let pending = u.challenge().await;
    secrets.push(pending.clone());
    assert_eq!(u.confirm(&pending, "000000").await.status, 400);
    assert_eq!(u.confirm(&pending, &u.code()).await.status, 200);
    let pending = u.challenge().await;
    secrets.push(pending.clone());
    assert_eq!(u.confirm(&pending, &u.backup_codes[0]).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = capture.text();
    assert!(
        logs.contains("mfa-confirm"),
        "the capture must see the requests"
    );
    let events = format!("{:?}", u.app.events.lock().unwrap());
    assert!(events.contains("MfaChallengeStarted"), "{events}");
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret in the logs: {secret}"
        );
        assert!(
            !events.contains(secret.as_str()),
            "a secret in an event: {secret}"
        );
    }
}

#[tokio::test]
async fn factors_enrolled_before_a_jwt_secret_rotation_keep_working() {
    let u = enrolled("rotated@example.com").await;
    let old_secret = test_config().jwt_secret;
    let rotated = spawn_app_on(
        u.app.stores.clone(),
        Backend::Memory,
        move |s| {
            s.config.jwt_secret = "the-next-secret-the-next-secret-0123456789".into();
            s.config.jwt_previous_secrets = vec![old_secret];
        },
        true,
    )
    .await;
    let clock = rotated.clock.as_ref().unwrap();
    clock.set(u.now() + TimeDelta::seconds(30));
    let confirm = |code: String| {
        let app = &rotated;
        async move {
            let r = app.login(u.email, PW).await;
            let pending = r.body["mfa_pending_token"].as_str().unwrap().to_owned();
            app.post(
                "/login/mfa-confirm",
                json!({ "mfa_pending_token": pending, "code": code }),
            )
            .await
        }
    };
    let code = totp_at(&u.secret, regstack_ports::Clock::now(&**clock));
    let r = confirm(code).await;
    assert_eq!(r.status, 200, "the sealed secret opens: {:?}", r.body);
    let r = confirm(u.backup_codes[0].clone()).await;
    assert_eq!(
        r.status, 200,
        "the backup code's digest matches: {:?}",
        r.body
    );
}
