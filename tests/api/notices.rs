//! Security notices (`[notices]`): each delivered through a real SMTP
//! server (the aiosmtpd sink of the notify adapter's tests), parsed as MIME
//! and read like a mail client would; none when its switch is off; none
//! carrying a secret. Then the "this wasn't me" link of an email change,
//! end to end, and the attacks on it: reuse, expiry, 20 racing
//! redemptions, an intruder's later change trying to outrun it.

#[path = "../../crates/adapters-notify/tests/sink/mod.rs"]
#[allow(dead_code)]
mod sink;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use futures::future::join_all;
use mailparse::MailHeaderMap;
use regstack_core::config::NoticesPolicy;
use regstack_ports::Email;
use regstack_testkit::totp::{base32_decode, code_at as totp_at};
use serde_json::{json, Value};
use sink::{start_or_skip, SinkOptions, SmtpSink};

use crate::support::*;

const DEVICE_COOKIE: &str = "__Host-regstack_device";
const PW2: &str = "second-horse-battery-9";

const NEW_DEVICE: &str = "New sign-in to your RegStack account";
const PASSWORD_CHANGED: &str = "Your RegStack password was changed";
const EMAIL_CHANGE_NOTICE: &str = "A change of your RegStack email address was requested";
const MFA_DISABLED: &str = "A second factor was removed from your RegStack account";
const REFRESH_REUSE: &str = "A session of your RegStack account was ended as stolen";

/// One mail as the sink received it, decoded.
#[derive(Debug)]
struct Mail {
    subject: String,
    text: String,
    html: String,
    /// The message as it went over the wire.
    raw: String,
}

fn every_notice_on() -> NoticesPolicy {
    NoticesPolicy::default()
}

fn every_notice_off() -> NoticesPolicy {
    NoticesPolicy {
        new_device: false,
        password_changed: false,
        email_changed: false,
        mfa_disabled: false,
        refresh_reuse: false,
        ..NoticesPolicy::default()
    }
}

/// A server on a clock that moves only when told, mailing through `sink`.
async fn smtp_app(sink: &SmtpSink, notices: NoticesPolicy) -> TestApp {
    let port = sink.port;
    spawn_app_with(
        move |s| {
            s.config.notices = notices;
            // As the ready-made server: the mailed links open the pages.
            s.config.enable_ui_router = true;
            s.mail = regstack::MailTransport::Smtp(regstack::SmtpSettings {
                port,
                security: regstack::SmtpSecurity::Plain,
                timeout: Duration::from_secs(10),
                ..regstack::SmtpSettings::new("127.0.0.1")
            });
        },
        true,
    )
    .await
}

/// The mails the sink holds for `to`, oldest first.
fn mails_to(sink: &SmtpSink, to: &str) -> Vec<Mail> {
    sink.messages()
        .into_iter()
        .filter(|m| m.rcpt_tos.iter().any(|r| r == to))
        .map(|m| {
            let parsed = mailparse::parse_mail(m.data.as_bytes()).unwrap();
            let subject = parsed.headers.get_first_value("Subject").unwrap();
            assert_eq!(parsed.subparts.len(), 2, "text and HTML: {}", m.data);
            let body = |i: usize| parsed.subparts[i].get_body().unwrap().replace("\r\n", "\n");
            Mail {
                subject,
                text: body(0),
                html: body(1),
                raw: m.data.clone(),
            }
        })
        .collect()
}

/// Waits until `to` has at least `n` mails; returns them all.
async fn wait_for(sink: &SmtpSink, to: &str, n: usize) -> Vec<Mail> {
    for _ in 0..200 {
        let mails = mails_to(sink, to);
        if mails.len() >= n {
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = mails_to(sink, to);
    panic!(
        "expected {n} mails to {to}, got {}: {:?}\nsink stderr:\n{}",
        mails.len(),
        mails.iter().map(|m| &m.subject).collect::<Vec<_>>(),
        sink.stderr()
    );
}

/// The subjects of `to`'s mails once a marker mail (a reset link, always
/// sent) has arrived after everything before it, plus a moment for any
/// straggler: what the actions before it sent.
async fn subjects_settled(app: &TestApp, sink: &SmtpSink, to: &str) -> Vec<String> {
    let before = mails_to(sink, to).len();
    let r = app.post("/forgot-password", json!({ "email": to })).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    wait_for(sink, to, before + 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mails = mails_to(sink, to);
    assert!(mails
        .last()
        .is_some_and(|m| m.subject.contains("Reset") || m.subject.contains("reset")));
    mails.into_iter().map(|m| m.subject).collect()
}

/// Registers and verifies through mail delivered to the sink.
async fn create_user_via_smtp(app: &TestApp, sink: &SmtpSink, email: &str) {
    let r = app.register(email, PW).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mails = wait_for(sink, email, 1).await;
    let token = token_in(&mails[0].text, "/verify").expect("a verification link");
    let r = app.post("/verify", json!({ "token": token })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// `/login` from a client with this user agent, presenting `device` (a
/// device cookie) if given.
async fn login_as(
    app: &TestApp,
    email: &str,
    password: &str,
    user_agent: &str,
    device: Option<&str>,
) -> Reply {
    let mut req = app
        .http
        .post(format!("{}/login", app.api))
        .header("user-agent", user_agent)
        .json(&json!({ "email": email, "password": password }));
    if let Some(d) = device {
        req = req.header("cookie", format!("{DEVICE_COOKIE}={d}"));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body:?}");
    Reply {
        status,
        headers,
        body,
    }
}

fn device_cookie(r: &Reply) -> String {
    let line = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{DEVICE_COOKIE}=")))
        .expect("a device cookie");
    line.split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

fn access(r: &Reply) -> String {
    r.body["access_token"].as_str().unwrap().to_owned()
}

fn advance(app: &TestApp, seconds: i64) {
    app.clock
        .as_ref()
        .unwrap()
        .advance(TimeDelta::seconds(seconds));
}

/// Enrols TOTP for the session `access` and removes it again. Returns the
/// base32 secret (a secret no mail may carry).
async fn totp_on_and_off(app: &TestApp, access: &str, password: &str) -> String {
    let r = app
        .post_auth(
            "/totp/setup",
            access,
            json!({ "current_password": password }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let secret_b32 = r.body["secret"].as_str().unwrap().to_owned();
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let now = regstack_ports::Clock::now(&**app.clock.as_ref().unwrap());
    let code = totp_at(&base32_decode(&secret_b32), now);
    let r = app
        .post_auth(
            "/totp/confirm",
            access,
            json!({ "pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .call(
            reqwest::Method::DELETE,
            "/totp",
            Some(access),
            Some(json!({ "current_password": password })),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    secret_b32
}

/// Presents `refresh` once, then (past the grace window) again: theft.
async fn reuse_a_refresh_token(app: &TestApp, refresh: &str) {
    let r = app
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    advance(app, 60);
    let r = app
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

#[tokio::test]
async fn every_notice_reaches_the_smtp_sink_once_and_carries_no_secret() {
    let Some(sink) = start_or_skip("notices_arrive", SinkOptions::plain()) else {
        return;
    };
    let app = smtp_app(&sink, every_notice_on()).await;
    const A: &str = "owner@example.com";
    create_user_via_smtp(&app, &sink, A).await;

    // The first sign-in ever: no notice. Again from the same browser (a
    // live session with its user agent, same network): none.
    let first = login_as(&app, A, PW, "Browser/1.0", None).await;
    let cookie = device_cookie(&first);
    let again = login_as(&app, A, PW, "Browser/1.0", None).await;
    // Another browser, no device cookie: the one new-device notice.
    let stranger = login_as(&app, A, PW, "Stranger/6.6", None).await;
    // Yet another user agent, but with the device cookie this address
    // handed out: a known device.
    login_as(&app, A, PW, "Browser/2.0", Some(&cookie)).await;
    let mails = wait_for(&sink, A, 2).await;
    assert_eq!(mails[1].subject, NEW_DEVICE);
    assert!(mails[1].text.contains("Stranger/6.6"), "{}", mails[1].text);
    assert!(mails[1].text.contains("127.0.0.1"), "{}", mails[1].text);
    assert!(mails[1].text.contains("http://app.test/account/me"));

    // The password changes: a notice (every session ends).
    let r = app
        .post_auth(
            "/change-password",
            &access(&first),
            json!({ "current_password": PW, "new_password": PW2 }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mails = wait_for(&sink, A, 3).await;
    assert_eq!(mails[2].subject, PASSWORD_CHANGED);
    assert!(mails[2]
        .text
        .contains("http://app.test/account/forgot-password"));

    // A second factor on and off: a notice for the removal only.
    let signed_in = login_as(&app, A, PW2, "Browser/1.0", Some(&cookie)).await;
    let totp_secret = totp_on_and_off(&app, &access(&signed_in), PW2).await;
    let mails = wait_for(&sink, A, 4).await;
    assert_eq!(mails[3].subject, MFA_DISABLED);

    // A spent refresh token presented again.
    let victim = login_as(&app, A, PW2, "Browser/1.0", Some(&cookie)).await;
    let refresh = victim.body["refresh_token"].as_str().unwrap().to_owned();
    reuse_a_refresh_token(&app, &refresh).await;
    let mails = wait_for(&sink, A, 5).await;
    assert_eq!(mails[4].subject, REFRESH_REUSE);

    // An email change: the old address hears of it, with its link.
    let session = login_as(&app, A, PW2, "Browser/1.0", Some(&cookie)).await;
    let r = app
        .post_auth(
            "/change-email",
            &access(&session),
            json!({ "new_email": "next@example.com", "current_password": PW2 }),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let mails = wait_for(&sink, A, 6).await;
    let notice = &mails[5];
    assert_eq!(notice.subject, EMAIL_CHANGE_NOTICE);
    assert!(notice.text.contains("168 hours"), "{}", notice.text);
    let revert = token_in(&notice.text, "http://app.test/account/revert-email-change")
        .expect("the revert link points at the account pages");
    assert!(revert.len() >= 40, "{revert}");
    assert!(
        notice.html.contains(&revert),
        "the HTML part has the link too"
    );
    let confirm_mail = wait_for(&sink, "next@example.com", 1).await;
    let confirm = token_in(&confirm_mail[0].text, "/confirm-email-change").unwrap();

    // Each notice once, nothing else.
    let subjects = subjects_settled(&app, &sink, A).await;
    assert_eq!(
        &subjects[1..6],
        [
            NEW_DEVICE,
            PASSWORD_CHANGED,
            MFA_DISABLED,
            REFRESH_REUSE,
            EMAIL_CHANGE_NOTICE
        ],
        "{subjects:?}"
    );
    assert_eq!(subjects.len(), 7, "verification, 5 notices, the marker");

    // No notice carries a secret: no password, token, code or cookie.
    let mut secrets: Vec<String> = vec![
        PW.into(),
        PW2.into(),
        confirm.clone(),
        totp_secret,
        cookie.clone(),
        refresh,
    ];
    for r in [&first, &again, &stranger, &signed_in, &victim, &session] {
        secrets.push(access(r));
        secrets.push(r.body["refresh_token"].as_str().unwrap().to_owned());
    }
    let notices = mails_to(&sink, A);
    for mail in &notices[1..6] {
        for s in &secrets {
            assert!(
                !mail.raw.contains(s.as_str()),
                "`{}` carries a secret",
                mail.subject
            );
        }
        if mail.subject != EMAIL_CHANGE_NOTICE {
            assert!(
                !mail.raw.contains(&revert),
                "only its own mail has the link"
            );
        }
    }

    // The link works, end to end: every session ends and the pending
    // change is cancelled.
    let r = app
        .post("/revert-email-change", json!({ "token": revert }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.me(&access(&session)).await.status, 401);
    let r = app
        .post("/confirm-email-change", json!({ "token": confirm }))
        .await;
    assert_eq!(r.status, 400, "the change was blocked: {:?}", r.body);
    assert!(app.event_names().contains(&"email_change_reverted"));
}

#[tokio::test]
async fn a_notice_whose_switch_is_off_is_not_sent() {
    let Some(sink) = start_or_skip("notices_off", SinkOptions::plain()) else {
        return;
    };
    let app = smtp_app(&sink, every_notice_off()).await;
    const A: &str = "quiet@example.com";
    create_user_via_smtp(&app, &sink, A).await;
    let first = login_as(&app, A, PW, "Browser/1.0", None).await;
    login_as(&app, A, PW, "Stranger/6.6", None).await;
    let r = app
        .post_auth(
            "/change-password",
            &access(&first),
            json!({ "current_password": PW, "new_password": PW2 }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let s = login_as(&app, A, PW2, "Stranger/7.7", None).await;
    totp_on_and_off(&app, &access(&s), PW2).await;
    let s = login_as(&app, A, PW2, "Browser/1.0", None).await;
    reuse_a_refresh_token(&app, s.body["refresh_token"].as_str().unwrap()).await;
    let s = login_as(&app, A, PW2, "Browser/1.0", None).await;
    let r = app
        .post_auth(
            "/change-email",
            &access(&s),
            json!({ "new_email": "quiet.next@example.com", "current_password": PW2 }),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    // The new address still gets its confirmation link.
    wait_for(&sink, "quiet.next@example.com", 1).await;
    let subjects = subjects_settled(&app, &sink, A).await;
    assert_eq!(
        subjects.len(),
        2,
        "verification and the marker: {subjects:?}"
    );
}

/// An owner, and an intruder who knows the password and asked to move the
/// account to `evil`: the owner's revert token, the intruder's session.
async fn intruder_requests_change(app: &TestApp, owner: &str, evil: &str) -> (String, String) {
    let before = app.mailer.sent_to(owner).len();
    let intruder = app.access_token(owner, PW).await;
    let r = app
        .post_auth(
            "/change-email",
            &intruder,
            json!({ "new_email": evil, "current_password": PW }),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let revert = link_token(app, owner, before, "/revert-email-change").await;
    (revert, intruder)
}

/// The token of the first link to `path` in a mail to `to` after its
/// first `before` mails. Notices (a new device's, say) may arrive in any
/// order around it, so mails are searched, not counted.
async fn link_token(app: &TestApp, to: &str, before: usize, path: &str) -> String {
    for _ in 0..200 {
        let found = app
            .mailer
            .sent_to(to)
            .iter()
            .skip(before)
            .find_map(|m| token_in(&m.text, path));
        if let Some(token) = found {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {path} link mailed to {to}");
}

/// Everything on, mail recorded (the SMTP path is proven above).
async fn notices_app(fixed_clock: bool) -> TestApp {
    spawn_app_with(|s| s.config.notices = every_notice_on(), fixed_clock).await
}

async fn email_of(app: &TestApp, email: &str) -> bool {
    app.stores
        .users
        .find_by_email(&Email::parse(email).unwrap())
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn the_revert_link_undoes_a_confirmed_change_and_shuts_the_intruder_out() {
    let app = notices_app(false).await;
    const A: &str = "victim@example.com";
    const EVIL: &str = "thief@example.net";
    app.create_user(A, PW).await;
    let (revert, _) = intruder_requests_change(&app, A, EVIL).await;
    let confirm = link_token(&app, EVIL, 0, "/confirm-email-change").await;
    let r = app
        .post("/confirm-email-change", json!({ "token": confirm }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The intruder now holds the address: signs in, and asks for a reset
    // link to it, to keep a way in.
    let intruder = app.access_token(EVIL, PW).await;
    app.post("/forgot-password", json!({ "email": EVIL })).await;
    let reset = link_token(&app, EVIL, 0, "/reset-password").await;

    let r = app
        .post("/revert-email-change", json!({ "token": revert }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(email_of(&app, A).await, "the old address is back");
    assert!(!email_of(&app, EVIL).await);
    // Every way the intruder had is closed: the session, the password it
    // knew (under either address), the reset link it asked for.
    assert_eq!(app.me(&intruder).await.status, 401);
    assert_eq!(app.login(EVIL, PW).await.status, 401);
    assert_eq!(app.login(A, PW).await.status, 401);
    let r = app
        .post(
            "/reset-password",
            json!({ "token": reset, "new_password": "intruder-keeps-it-1" }),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // The link worked once.
    let r = app
        .post("/revert-email-change", json!({ "token": revert }))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (
            400,
            "This link is invalid, was already used, or has expired."
        )
    );
    // The owner's way back: a reset mailed to the restored address.
    let before = app.mailer.sent_to(A).len();
    app.post("/forgot-password", json!({ "email": A })).await;
    let reset = link_token(&app, A, before, "/reset-password").await;
    let r = app
        .post(
            "/reset-password",
            json!({ "token": reset, "new_password": PW2 }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t = app.access_token(A, PW2).await;
    assert_eq!(app.me(&t).await.body["email"], A);
    let reverted = app
        .events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.kind.name() == "email_change_reverted")
        .cloned()
        .expect("an email_change_reverted event");
    assert_eq!(reverted.email.as_ref().map(Email::as_str), Some(A));
    assert_eq!(reverted.old_email.as_ref().map(Email::as_str), Some(EVIL));
}

#[tokio::test]
async fn the_revert_link_cancels_a_pending_change() {
    let app = notices_app(false).await;
    const A: &str = "pending@example.com";
    app.create_user(A, PW).await;
    let (revert, intruder) = intruder_requests_change(&app, A, "away@example.net").await;
    let confirm = link_token(&app, "away@example.net", 0, "/confirm-email-change").await;
    let r = app
        .post("/revert-email-change", json!({ "token": revert }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.me(&intruder).await.status, 401);
    let r = app
        .post("/confirm-email-change", json!({ "token": confirm }))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(email_of(&app, A).await);
    assert!(!email_of(&app, "away@example.net").await);
    assert_eq!(app.login(A, PW).await.status, 401, "the password is void");
}

#[tokio::test]
async fn an_intruders_later_change_cannot_outrun_the_owners_link() {
    for owner_first in [false, true] {
        let app = notices_app(false).await;
        const A: &str = "first@example.com";
        const EVIL: &str = "evil@example.net";
        app.create_user(A, PW).await;
        let (owners, _) = intruder_requests_change(&app, A, EVIL).await;
        let confirm = link_token(&app, EVIL, 0, "/confirm-email-change").await;
        let r = app
            .post("/confirm-email-change", json!({ "token": confirm }))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        // A second change: its notice, and its link, go to the address the
        // intruder now holds.
        let (intruders, _) = intruder_requests_change(&app, EVIL, "evil2@example.net").await;
        let post = |t: String| {
            let app = &app;
            async move {
                app.post("/revert-email-change", json!({ "token": t }))
                    .await
                    .status
            }
        };
        if owner_first {
            assert_eq!(post(owners.clone()).await, 200);
            assert_eq!(post(intruders.clone()).await, 400, "a later link dies");
        } else {
            assert_eq!(post(intruders.clone()).await, 200);
            assert_eq!(post(owners.clone()).await, 200, "the earlier link lives");
        }
        assert!(email_of(&app, A).await, "owner_first={owner_first}");
        assert!(!email_of(&app, EVIL).await);
    }
}

#[tokio::test]
async fn a_revert_link_works_once_under_20_parallel_attempts() {
    let app = Arc::new(notices_app(false).await);
    const A: &str = "race@example.com";
    app.create_user(A, PW).await;
    let (revert, _) = intruder_requests_change(&app, A, "racer@example.net").await;
    let statuses = join_all((0..20).map(|_| {
        let app = app.clone();
        let revert = revert.clone();
        async move {
            app.post("/revert-email-change", json!({ "token": revert }))
                .await
                .status
                .as_u16()
        }
    }))
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(
        app.event_names()
            .iter()
            .filter(|n| **n == "email_change_reverted")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_revert_link_expires_after_its_own_lifetime_not_the_confirmations() {
    let app = notices_app(true).await;
    for (email, wait, status) in [
        // Past the confirmation link's hour: the revert link still works.
        ("late@example.com", 3601, 200),
        // At a week: dead, and nothing changed.
        ("later@example.com", 604_800, 400),
    ] {
        app.create_user(email, PW).await;
        let (revert, intruder) = intruder_requests_change(&app, email, "x@example.net").await;
        advance(&app, wait);
        let r = app
            .post("/revert-email-change", json!({ "token": revert }))
            .await;
        assert_eq!(r.status, status, "{email}: {:?}", r.body);
        if status == 400 {
            assert!(email_of(&app, email).await);
            assert_eq!(
                app.login(email, PW).await.status,
                200,
                "nothing was changed"
            );
        } else {
            assert_eq!(
                app.login(email, PW).await.status,
                401,
                "the password is void"
            );
        }
        drop(intruder);
    }
}

#[tokio::test]
async fn a_malformed_revert_token_is_refused_like_a_dead_one() {
    let app = notices_app(false).await;
    for token in ["", "x", &"a".repeat(5000)] {
        let r = app
            .post("/revert-email-change", json!({ "token": token }))
            .await;
        assert!(
            r.status == 400 || r.status == 422,
            "{token:.10}: {:?}",
            r.body
        );
    }
    let r = app.post("/revert-email-change", json!({})).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
}
