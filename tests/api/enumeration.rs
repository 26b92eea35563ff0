//! What an attacker can learn, and what an operator gets to see.
//!
//! - Opt-in uniform registration (checklist row EN-5): with
//!   `uniform_registration = true` a taken address is answered exactly like
//!   a new one and its owner gets a notice; nothing about the account
//!   changes and no link is issued. (The default stays regstack's 409:
//!   `lifecycle::a_registered_email_is_409_in_any_spelling`.)
//! - Failed sign-ins, lockouts and refresh-token reuse fire events and
//!   INFO log lines with a reason class — never the password — so a
//!   credential-stuffing run is visible.

use std::time::Duration;

use chrono::{DateTime, TimeDelta};
use regstack_core::events::EventKind;
use serde_json::json;

use crate::support::*;

const OTHER_PW: &str = "somebody-elses-password-9";

#[tokio::test]
async fn uniform_registration_answers_a_taken_address_like_a_new_one() {
    let app = spawn_app_with(|s| s.config.uniform_registration = true, false).await;
    app.create_user("owner@example.com", PW).await;
    let hashes_before = app.hasher.hashes();

    let taken = app.register("  Owner@EXAMPLE.com", OTHER_PW).await;
    let paid_by_taken = app.hasher.hashes() - hashes_before;
    let new = app.register("newcomer@example.com", OTHER_PW).await;
    let paid_by_new = app.hasher.hashes() - hashes_before - paid_by_taken;

    // The same answer: status, fields, headers; only the address differs,
    // and the expiry by the time between the two requests.
    assert_eq!(
        (taken.status.as_u16(), new.status.as_u16()),
        (201, 201),
        "{:?}",
        taken.body
    );
    let fields = |r: &Reply| {
        let mut k: Vec<String> = r.body.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(fields(&taken), fields(&new));
    assert_eq!(taken.body["status"], "pending_verification");
    assert_eq!(taken.body["status"], new.body["status"]);
    assert_eq!(taken.body["email"], "owner@example.com");
    let expiry =
        |r: &Reply| DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().unwrap()).unwrap();
    assert!((expiry(&new) - expiry(&taken)).abs() < TimeDelta::seconds(5));
    let header_names = |r: &Reply| {
        let mut h: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
        h.sort();
        h
    };
    assert_eq!(header_names(&taken), header_names(&new));
    // The same work before the answer: one password hash each.
    assert_eq!((paid_by_taken, paid_by_new), (1, 1));

    // The owner is told, with a way back in and no link that does anything.
    let mails = app
        .mailer
        .wait_for("owner@example.com", 2, Duration::from_secs(10))
        .await;
    assert_eq!(mails.len(), 2, "the verification mail, then the notice");
    let notice = &mails[1];
    assert_eq!(
        notice.subject,
        "Someone tried to register with your RegStack address"
    );
    assert!(notice.text.contains("http://app.test/forgot-password"));
    assert!(!notice.text.contains("token="), "{}", notice.text);
    assert!(!notice.html.contains("token="));

    // Nothing about the account changed, nothing is pending for it, and
    // the other password signs nobody in.
    assert_eq!(app.login("owner@example.com", OTHER_PW).await.status, 401);
    assert_eq!(app.login("owner@example.com", PW).await.status, 200);
    let email = regstack_ports::Email::parse("owner@example.com").unwrap();
    let now = chrono::Utc::now();
    assert!(app
        .stores
        .pending
        .find_by_email(&email, now)
        .await
        .unwrap()
        .is_none());
    // The newcomer's registration is a real one.
    app.mailed_token("newcomer@example.com", 1, "/verify").await;
}

#[tokio::test]
async fn uniform_registration_notices_count_against_the_mail_quota() {
    let app = spawn_app_with(
        |s| {
            s.config.uniform_registration = true;
            s.config.email.max_per_address_per_hour = 3;
        },
        false,
    )
    .await;
    app.create_user("quota@example.com", PW).await;
    for _ in 0..5 {
        assert_eq!(
            app.register("quota@example.com", OTHER_PW).await.status,
            201
        );
    }
    // One verification mail and two notices fill the quota of three; the
    // rest are answered the same and send nothing.
    app.mailer
        .wait_for("quota@example.com", 3, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.mailer.sent_to("quota@example.com").len(), 3);
}

#[tokio::test]
async fn failed_sign_ins_lockouts_and_refresh_reuse_fire_events() {
    let capture = Capture::default();
    let writer = capture.clone();
    // This thread's subscriber: the test's single-threaded runtime runs
    // the server and the event fan-out here too.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = spawn_app_with(|_| {}, true).await;
    let clock = app.clock.clone().unwrap();
    app.create_user("target@example.com", PW).await;

    let wrong = "wrong-password-31337";
    assert_eq!(app.login("target@example.com", wrong).await.status, 401);
    assert_eq!(app.login("nobody@example.com", wrong).await.status, 401);
    // Four more failures reach the threshold of five; the next attempt is
    // refused before any check.
    for _ in 0..4 {
        app.login("target@example.com", wrong).await;
    }
    assert_eq!(app.login("target@example.com", PW).await.status, 429);

    // A refresh token presented again after its rotation (outside the
    // grace window) revokes its family.
    let other = spawn_app_with(|_| {}, true).await;
    let other_clock = other.clock.clone().unwrap();
    other.create_user("victim@example.com", PW).await;
    let r = other.login("victim@example.com", PW).await;
    let first = r.body["refresh_token"].as_str().unwrap().to_owned();
    let rotated = other
        .post("/refresh", json!({ "refresh_token": first }))
        .await;
    assert_eq!(rotated.status, 200);
    other_clock.advance(TimeDelta::seconds(6));
    let replay = other
        .post("/refresh", json!({ "refresh_token": first }))
        .await;
    assert_eq!(replay.status, 401);
    clock.advance(TimeDelta::seconds(1));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let events = app.events.lock().unwrap().clone();
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::LoginFailed)
        .collect();
    let reasons: Vec<_> = failed.iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [Some("wrong_password"), Some("no_account")]
            .into_iter()
            .chain([Some("wrong_password"); 4])
            .collect::<Vec<_>>(),
        "one login_failed per refused check, none for the locked attempt"
    );
    assert_eq!(
        failed[1].email.as_ref().map(|e| e.as_str()),
        Some("nobody@example.com")
    );
    assert!(failed.iter().all(|e| e.ip.is_some()), "{failed:?}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::LoginLocked)
            .count(),
        1
    );
    assert!(other
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.kind == EventKind::RefreshTokenReused && e.session_id.is_some()));

    let logs = capture.text();
    let lines = |event: &str| -> Vec<&str> {
        logs.lines()
            .filter(|l| l.contains(&format!("event=\"{event}\"")))
            .collect()
    };
    let failed_lines = lines("login_failed");
    assert_eq!(failed_lines.len(), 6, "{logs}");
    assert!(failed_lines.iter().all(|l| l.contains(" INFO ")));
    assert!(failed_lines[1].contains("reason=\"no_account\""), "{logs}");
    assert!(failed_lines[0].contains("reason=\"wrong_password\""));
    assert_eq!(lines("login_locked").len(), 1, "{logs}");
    assert_eq!(lines("refresh_token_reused").len(), 1, "{logs}");
    assert!(!logs.contains(wrong), "a password reached the logs");
    assert!(!logs.contains(PW), "a password reached the logs");
}
