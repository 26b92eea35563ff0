//! The password policy of every route that sets a password (register,
//! change, reset, the forced change at sign-in): common passwords and
//! context words refused (PW-6's list, PW-7), breached passwords refused
//! through a k-anonymity range API the test runs on 127.0.0.1 or a range
//! directory (PW-6), and an unavailable screen failing open or closed as
//! configured — never a 500.

use std::time::{Duration, Instant};

use regstack::Settings;
use regstack_core::config::BreachCheck;
use regstack_ports::Email;
use regstack_testkit::range_server::{closed_url, sha1_hex, RangeMode, RangeServer};
use serde_json::{json, Value};

use crate::support::{spawn_app, spawn_app_with, TestApp, PW};

/// Neither common nor made of any test address: only a breach corpus
/// knows it.
const BREACHED: &str = "tr0ub4dor&3-was-leaked";
/// Listed by the stand-in only as padding (count 0): not breached.
const PADDED: &str = "padding-only-horse-77";

const COMMON_MSG: &str = "Value error, This password is too common. Choose a different one.";
const CONTEXT_MSG: &str =
    "Value error, The password must not contain your email address or the site name.";
const BREACHED_MSG: &str =
    "Value error, This password has appeared in a data breach. Choose a different one.";

/// Asserts a 422 at `field` with `msg`, and that the body does not echo
/// the password.
fn assert_refused(r: &crate::support::Reply, field: &str, msg: &str, password: &str) {
    assert_eq!(r.status, 422, "{:?}", r.body);
    let entry = &r.body["detail"][0];
    assert_eq!(entry["loc"], json!(["body", field]), "{:?}", r.body);
    assert_eq!(entry["type"], "value_error");
    assert_eq!(entry["msg"], msg);
    assert!(
        !r.body.to_string().contains(password),
        "password echoed: {:?}",
        r.body
    );
}

async fn user_id(app: &TestApp, email: &str) -> regstack_ports::UserId {
    app.stores
        .users
        .find_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
}

/// A password-change token from `/login` for a flagged account.
async fn forced_change_token(app: &TestApp, email: &str, password: &str) -> String {
    let id = user_id(app, email).await;
    assert!(app
        .rs
        .engine()
        .require_password_change(&id, true)
        .await
        .unwrap());
    let r = app.login(email, password).await;
    assert_eq!(r.body["status"], "password_change_required", "{:?}", r.body);
    r.body["password_change_token"].as_str().unwrap().to_owned()
}

/// Tries each `(password, message)` on every route that sets a password,
/// for an account `email` that has password [`PW`]: each is refused with
/// that message at the route's field, and nothing changes — `PW` still
/// signs in, the reset link and the change token stay usable.
async fn every_route_refuses(app: &TestApp, email: &str, refused: &[(&str, &str)]) {
    let mail_before = app.mailer.sent_to(email).len();
    for &(pw, msg) in refused {
        let r = app.register(email, pw).await;
        assert_refused(&r, "password", msg, pw);
    }
    assert_eq!(
        app.mailer.sent_to(email).len(),
        mail_before,
        "a refused registration mails nothing"
    );
    app.create_user(email, PW).await;

    let access = app.access_token(email, PW).await;
    for &(pw, msg) in refused {
        let body = json!({ "current_password": PW, "new_password": pw });
        let r = app.post_auth("/change-password", &access, body).await;
        assert_refused(&r, "new_password", msg, pw);
    }
    assert_eq!(app.me(&access).await.status, 200, "no session ended");

    let mails = app.mailer.sent_to(email).len();
    app.post("/forgot-password", json!({ "email": email }))
        .await;
    let token = app.mailed_token(email, mails + 1, "/reset-password").await;
    for &(pw, msg) in refused {
        let body = json!({ "token": token, "new_password": pw });
        let r = app.post("/reset-password", body).await;
        assert_refused(&r, "new_password", msg, pw);
    }
    let r = app
        .post(
            "/reset-password",
            json!({ "token": token, "new_password": "reset-horse-battery-2" }),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "the link survived the refusals: {:?}",
        r.body
    );

    // Each try counts against the change token's attempts (five, like a
    // second-factor challenge's), so the forced route tries the first three.
    let token = forced_change_token(app, email, "reset-horse-battery-2").await;
    for &(pw, msg) in refused.iter().take(3) {
        let body = json!({ "password_change_token": token, "new_password": pw });
        let r = app.post("/login/change-password", body).await;
        assert_refused(&r, "new_password", msg, pw);
    }
    let body = json!({ "password_change_token": token, "new_password": "forced-horse-battery-3" });
    let r = app.post("/login/change-password", body).await;
    assert_eq!(
        r.status, 200,
        "the token survived the refusals: {:?}",
        r.body
    );
    assert!(r.body["access_token"].is_string(), "{:?}", r.body);
    // (Two wrong passwords: well under the lockout threshold.)
    for &(pw, _) in refused.iter().take(2) {
        assert_eq!(app.login(email, pw).await.status, 401, "{pw} was never set");
    }
}

/// PW-6 (the bundled list) and PW-7 (context words), on every route.
#[tokio::test]
async fn common_passwords_and_context_words_are_refused_on_every_route() {
    let app = spawn_app().await;
    let email = "maxwell.doe@example.com";
    every_route_refuses(
        &app,
        email,
        &[
            ("password123", COMMON_MSG),
            // PW-7: the local part plus "1".
            ("maxwell.doe1", CONTEXT_MSG),
            // The site's name (`app_name`, RegStack by default).
            ("regstack2024", CONTEXT_MSG),
            ("QWERTYUIOP", COMMON_MSG),
            ("Maxwell2024!", CONTEXT_MSG),
            // A label of the address's domain.
            ("example2024!", CONTEXT_MSG),
        ],
    )
    .await;
}

/// The checks can be switched off (`password.blocklist`,
/// `password.context_words`).
#[tokio::test]
async fn the_list_and_context_checks_can_be_switched_off() {
    let app = spawn_app_with(
        |s| {
            s.config.password.blocklist = false;
            s.config.password.context_words = false;
        },
        false,
    )
    .await;
    assert_eq!(
        app.register("a@example.com", "password123").await.status,
        201
    );
    assert_eq!(
        app.register("lucinda.k@example.com", "lucinda.k1")
            .await
            .status,
        201
    );
}

fn range(s: &mut Settings, url: &str) {
    s.config.password.breach_check = BreachCheck::Range;
    s.config.password.breach_range_url = url.to_owned();
}

/// PW-6: a breached password is refused on every route; the range server
/// received `/range/` and the five-digit prefix — never the password, its
/// full hash or even the suffix — and was asked to pad.
#[tokio::test]
async fn breached_passwords_are_refused_and_only_a_five_digit_prefix_leaves() {
    let server = RangeServer::start(&[BREACHED], &[PADDED]).await.unwrap();
    let url = server.url().to_owned();
    let app = spawn_app_with(|s| range(s, &url), false).await;
    every_route_refuses(&app, "nora@example.com", &[(BREACHED, BREACHED_MSG)]).await;

    let requests = server.requests();
    assert!(requests.len() >= 4, "{} range queries", requests.len());
    let breached = sha1_hex(BREACHED);
    for r in &requests {
        let prefix = r.path.strip_prefix("/range/").unwrap_or_else(|| {
            panic!("not a range query: {}", r.path);
        });
        assert_eq!(prefix.len(), 5, "{}", r.path);
        assert!(
            prefix
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()),
            "{}",
            r.path
        );
        assert_eq!(r.add_padding.as_deref(), Some("true"));
        let raw = r.raw.to_ascii_uppercase();
        assert!(!raw.contains(&breached[5..]), "suffix sent:\n{}", r.raw);
        for pw in [
            BREACHED,
            PW,
            "reset-horse-battery-2",
            "forced-horse-battery-3",
        ] {
            assert!(!raw.contains(&pw.to_ascii_uppercase()), "password sent");
            assert!(!raw.contains(&sha1_hex(pw)[5..]), "a suffix was sent");
        }
    }
    assert!(requests
        .iter()
        .any(|r| r.path == format!("/range/{}", &breached[..5])));

    // A suffix that is only padding (count 0) is no breach.
    assert_eq!(app.register("olga@example.com", PADDED).await.status, 201);
}

async fn register_status(app: &TestApp, email: &str) -> (u16, Value, Option<String>) {
    let r = app.register(email, PW).await;
    let retry = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (r.status.as_u16(), r.body, retry)
}

/// PW-6: a screen that is down, erring or stalled lets passwords through
/// by default (fail open, logged) and answers 503 — never 500 — with
/// `password.breach_fail_closed = true`, having changed nothing.
#[tokio::test]
async fn an_unavailable_screen_fails_open_by_default_and_closed_when_configured() {
    let down = closed_url().await.unwrap();
    let erring = RangeServer::start(&[BREACHED], &[]).await.unwrap();
    erring.set_mode(RangeMode::Status(500));
    let stalled = RangeServer::start(&[BREACHED], &[]).await.unwrap();
    stalled.set_mode(RangeMode::Stall);
    for (n, url) in [down.as_str(), erring.url(), stalled.url()]
        .into_iter()
        .enumerate()
    {
        let tweak = |closed: bool| {
            let url = url.to_owned();
            move |s: &mut Settings| {
                range(s, &url);
                s.config.password.breach_timeout_ms = 300;
                s.config.password.breach_fail_closed = closed;
            }
        };
        let open = spawn_app_with(tweak(false), false).await;
        let (status, body, _) = register_status(&open, &format!("open{n}@example.com")).await;
        assert_eq!(status, 201, "fail open, {url}: {body:?}");

        let closed = spawn_app_with(tweak(true), false).await;
        let email = format!("closed{n}@example.com");
        let start = Instant::now();
        let (status, body, retry) = register_status(&closed, &email).await;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(status, 503, "fail closed, {url}: {body:?}");
        assert_eq!(
            body["detail"],
            "The password could not be checked right now. Try again shortly."
        );
        assert_eq!(retry.as_deref(), Some("5"));
        assert!(closed.mailer.sent_to(&email).is_empty(), "nothing was made");
        let r = closed.login(&email, PW).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
    }
}

/// PW-6 offline: a range directory (`<PREFIX>.txt` files of the range
/// API's `SUFFIX:COUNT` lines) instead of the API; a prefix it lacks is
/// unavailable, which fails open by default.
#[tokio::test]
async fn a_range_directory_screens_offline() {
    let dir = tempfile::tempdir().unwrap();
    let h = sha1_hex(BREACHED);
    std::fs::write(
        dir.path().join(format!("{}.txt", &h[..5])),
        format!("{}:3\r\n", &h[5..]),
    )
    .unwrap();
    let path = dir.path().to_owned();
    let app = spawn_app_with(
        move |s| {
            s.config.password.breach_check = BreachCheck::File;
            s.config.password.breach_file = Some(path);
        },
        false,
    )
    .await;
    let r = app.register("pia@example.com", BREACHED).await;
    assert_refused(&r, "password", BREACHED_MSG, BREACHED);
    assert_eq!(app.register("pia@example.com", PW).await.status, 201);
}
