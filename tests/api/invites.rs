//! Invite-only registration (`registration_mode = "invite"`): the admin
//! routes (anonymous 401, plain user 403, administrator), one 403 for every
//! way a code can fail, single use under 20 parallel registrations, the
//! address binding, expiry to the second on a frozen clock, uniform
//! answers kept uniform, and a failed registration giving its code back.

use std::sync::Arc;

use regstack::Settings;
use regstack_core::engine::InviteSpec;
use regstack_core::RegistrationMode;
use regstack_ports::{AdminChange, Email, UserId};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::support::*;

const REFUSED: &str = "Registration requires a valid invitation code.";

fn invite_mode(s: &mut Settings) {
    s.config.registration_mode = RegistrationMode::Invite;
    s.config.enable_admin_router = true;
}

/// An invitation made as `regstack invite create` makes it: its code.
async fn code_for(app: &TestApp, bound: Option<&str>) -> String {
    let made = app
        .rs
        .engine()
        .create_invite(
            InviteSpec {
                email: bound.map(|e| Email::parse(e).unwrap()),
                ..InviteSpec::default()
            },
            None,
        )
        .await
        .unwrap();
    made.code.expose_secret().to_owned()
}

async fn register_with(app: &TestApp, email: &str, code: Option<&str>) -> Reply {
    let mut body = json!({ "email": email, "password": PW });
    if let Some(code) = code {
        body["invite_code"] = json!(code);
    }
    app.post("/register", body).await
}

/// Registers with a fresh invitation and verifies.
async fn invited_user(app: &TestApp, email: &str) -> String {
    let code = code_for(app, None).await;
    let r = register_with(app, email, Some(&code)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let token = app.mailed_token(email, 1, "/verify").await;
    let r = app.post("/verify", json!({ "token": token })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.access_token(email, PW).await
}

async fn invited_admin(app: &TestApp, email: &str) -> String {
    let token = invited_user(app, email).await;
    let id = app.me(&token).await.body["id"].as_str().unwrap().to_owned();
    app.stores
        .users
        .admin_update(
            &UserId::parse(&id).unwrap(),
            &AdminChange {
                is_superuser: Some(true),
                ..AdminChange::default()
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .unwrap();
    app.access_token(email, PW).await
}

async fn pending_exists(app: &TestApp, email: &str) -> bool {
    app.stores
        .pending
        .find_by_email(&Email::parse(email).unwrap(), app.rs.engine().now())
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn invite_routes_refuse_anonymous_and_plain_users_and_answer_an_admin() {
    let app = spawn_app_with(invite_mode, false).await;
    let admin = invited_admin(&app, "admin@example.com").await;
    let user = invited_user(&app, "plain@example.com").await;
    // The one open invitation, which the admin revokes below.
    code_for(&app, None).await;
    let listed = app
        .call(Method::GET, "/admin/invites", Some(&admin), None)
        .await;
    let some_id = listed.body["items"][0]["id"].as_str().unwrap().to_owned();

    let routes: Vec<(Method, String, Option<Value>, u16)> = vec![
        (
            Method::POST,
            "/admin/invites".into(),
            Some(json!({ "email": "Guest@Example.com", "note": "for the guest" })),
            201,
        ),
        (
            Method::GET,
            "/admin/invites?all=true&limit=5".into(),
            None,
            200,
        ),
        (
            Method::DELETE,
            format!("/admin/invites/{some_id}"),
            None,
            204,
        ),
    ];
    for (method, path, body, admin_status) in routes {
        let r = app.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (401, "Authentication required."),
            "anonymous {method} {path}"
        );
        let bad = body.as_ref().map(|_| json!({ "nope": 1 }));
        let r = app.call(method.clone(), &path, Some(&user), bad).await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (403, "Administrator privileges required."),
            "plain user {method} {path}"
        );
        let r = app.call(method.clone(), &path, Some(&admin), body).await;
        assert_eq!(
            r.status.as_u16(),
            admin_status,
            "admin {method} {path}: {:?}",
            r.body
        );
    }
    // Revoked once; an unknown or malformed id is a 404 too.
    for path in [
        format!("/admin/invites/{some_id}"),
        "/admin/invites/0123456789abcdef0123456789abcdef".into(),
        "/admin/invites/not%20an%20id".into(),
    ] {
        let r = app.call(Method::DELETE, &path, Some(&admin), None).await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (404, "Invite not found."),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_admin_made_code_registers_once_and_is_never_shown_again() {
    let app = spawn_app_with(invite_mode, false).await;
    let admin = invited_admin(&app, "admin@example.com").await;
    let r = app
        .post_auth(
            "/admin/invites",
            &admin,
            json!({ "email": " Guest@Example.COM ", "expires_in_seconds": 3600, "note": "for the guest" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let code = r.body["code"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["email"], "guest@example.com");
    assert_eq!(r.body["note"], "for the guest");
    assert_eq!(r.body["status"], "open");
    assert!(code.len() >= 43, "a 256-bit code: {code}");

    // The list never holds the code, and neither does the database.
    let list = app
        .call(Method::GET, "/admin/invites", Some(&admin), None)
        .await;
    assert_eq!(list.status, 200);
    assert!(!list.body.to_string().contains(&code));
    assert!(list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == id.as_str() && i.get("code").is_none()));
    assert!(!contains(&app.database_bytes().await, &code));

    // Another address is refused; the bound one registers (any spelling).
    let r = register_with(&app, "intruder@example.com", Some(&code)).await;
    assert_eq!((r.status.as_u16(), r.detail()), (403, REFUSED));
    assert!(!pending_exists(&app, "intruder@example.com").await);
    let r = register_with(&app, "GUEST@example.com", Some(&code)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending_verification");
    let token = app.mailed_token("guest@example.com", 1, "/verify").await;
    assert_eq!(
        app.post("/verify", json!({ "token": token })).await.status,
        200
    );
    app.access_token("guest@example.com", PW).await;
    assert!(app.event_names().contains(&"invite_redeemed"));
    assert!(app.event_names().contains(&"admin_invite_created"));

    // Spent: refused with the same answer; listed as used with --all only.
    let r = register_with(&app, "guest@example.com", Some(&code)).await;
    assert_eq!((r.status.as_u16(), r.detail()), (403, REFUSED));
    let open = app
        .call(Method::GET, "/admin/invites", Some(&admin), None)
        .await;
    assert!(!open.body.to_string().contains(&id));
    let all = app
        .call(Method::GET, "/admin/invites?all=true", Some(&admin), None)
        .await;
    let listed = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(listed["status"], "used");
    assert_eq!(listed["used_by"], "guest@example.com");
    // A spent invitation cannot be revoked.
    let r = app
        .call(
            Method::DELETE,
            &format!("/admin/invites/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn every_failing_code_gets_one_answer_and_writes_nothing() {
    let app = spawn_app_with(invite_mode, true).await;
    let admin = invited_admin(&app, "admin@example.com").await;
    let make = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = app.post_auth("/admin/invites", &admin, body).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            (
                r.body["code"].as_str().unwrap().to_owned(),
                r.body["id"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (expiring, _) = make(json!({ "expires_in_seconds": 60 })).await;
    let (revoked, revoked_id) = make(json!({})).await;
    let (bound, _) = make(json!({ "email": "someone@example.com" })).await;
    let r = app
        .call(
            Method::DELETE,
            &format!("/admin/invites/{revoked_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(app.event_names().contains(&"admin_invite_revoked"));

    // The expiring code is dead at its end, exactly 60 s after it was
    // made (the clock is frozen; `an_invite_expires_at_its_exact_second`
    // shows it admits a second before).
    app.clock
        .as_ref()
        .unwrap()
        .advance(chrono::TimeDelta::seconds(60));
    let long = "x".repeat(5000);
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("no code", None),
        ("empty", Some("")),
        (
            "unknown",
            Some("d2hhdGV2ZXIgdGhpcyBpcyBpdCBpcyBub3QgYSBjb2Rl"),
        ),
        ("expired", Some(&expiring)),
        ("revoked", Some(&revoked)),
        ("wrong address", Some(&bound)),
        ("too long", Some(&long)),
    ];
    for (what, code) in cases {
        let r = register_with(&app, "newcomer@example.com", code).await;
        if what == "too long" {
            assert_eq!(r.status, 422, "{what}: {:?}", r.body);
            continue;
        }
        assert_eq!((r.status.as_u16(), r.detail()), (403, REFUSED), "{what}");
        assert!(
            !pending_exists(&app, "newcomer@example.com").await,
            "{what}"
        );
    }
    // A taken address with a bad code gets the same 403: nothing about
    // the account.
    let r = register_with(&app, "admin@example.com", Some("nope")).await;
    assert_eq!((r.status.as_u16(), r.detail()), (403, REFUSED));
    assert!(app.mailer.sent_to("newcomer@example.com").is_empty());
}

#[tokio::test]
async fn an_invite_expires_at_its_exact_second() {
    let app = spawn_app_with(invite_mode, true).await;
    let admin = invited_admin(&app, "admin@example.com").await;
    let r = app
        .post_auth(
            "/admin/invites",
            &admin,
            json!({ "expires_in_seconds": 60 }),
        )
        .await;
    let code = r.body["code"].as_str().unwrap().to_owned();
    let clock = app.clock.as_ref().unwrap();
    clock.advance(chrono::TimeDelta::seconds(59));
    let r = register_with(&app, "just-in-time@example.com", Some(&code)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn twenty_parallel_registrations_with_one_code_admit_exactly_one() {
    let app = Arc::new(spawn_app_with(invite_mode, false).await);
    let code = code_for(&app, None).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = app.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            register_with(&app, &format!("racer{i}@example.com"), Some(&code))
                .await
                .status
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        19,
        "{statuses:?}"
    );
    let mut pending = 0;
    for i in 0..20 {
        pending += usize::from(pending_exists(&app, &format!("racer{i}@example.com")).await);
    }
    assert_eq!(pending, 1, "exactly one pending registration");
}

#[tokio::test]
async fn a_failed_registration_gives_its_code_back() {
    // Without uniform answers a taken address is a 409 — which tells
    // anyway — and the code is not spent by it.
    let app = spawn_app_with(invite_mode, false).await;
    invited_user(&app, "taken@example.com").await;
    let code = code_for(&app, None).await;
    let r = register_with(&app, "taken@example.com", Some(&code)).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    let r = register_with(&app, "fresh@example.com", Some(&code)).await;
    assert_eq!(r.status, 201, "the code still works: {:?}", r.body);
}

#[tokio::test]
async fn uniform_registration_stays_uniform_in_invite_mode() {
    let app = spawn_app_with(
        |s| {
            invite_mode(s);
            s.config.uniform_registration = true;
        },
        false,
    )
    .await;
    invited_user(&app, "taken@example.com").await;
    let (taken_code, new_code) = (code_for(&app, None).await, code_for(&app, None).await);
    let taken = register_with(&app, "taken@example.com", Some(&taken_code)).await;
    let new = register_with(&app, "new@example.com", Some(&new_code)).await;
    assert_eq!(taken.status, 201, "{:?}", taken.body);
    assert_eq!(new.status, 201);
    let shape = |v: &Value| {
        let mut v = v.clone();
        v["email"] = json!("x");
        v["expires_at"] = json!("x");
        v
    };
    assert_eq!(shape(&taken.body), shape(&new.body));
    // Both codes are spent alike: a retry tells nothing either.
    for (code, who) in [
        (&taken_code, "taken2@example.com"),
        (&new_code, "new2@example.com"),
    ] {
        let r = register_with(&app, who, Some(code)).await;
        assert_eq!((r.status.as_u16(), r.detail()), (403, REFUSED));
    }
}

#[tokio::test]
async fn open_mode_ignores_an_invite_code_and_keeps_refusing_unknown_fields() {
    let app = spawn_app_with(|s| s.config.enable_admin_router = true, false).await;
    let code = code_for(&app, None).await;
    let r = register_with(&app, "open@example.com", Some(&code)).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = register_with(&app, "open2@example.com", Some("not a code at all")).await;
    assert_eq!(r.status, 201, "ignored, not checked: {:?}", r.body);
    // Not spent by open registrations.
    let open = app.rs.engine().list_invites(false, 10).await.unwrap();
    assert_eq!(open.len(), 1);
    let r = app
        .post(
            "/register",
            json!({ "email": "x@example.com", "password": PW, "invitation": code }),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["type"], "extra_forbidden");
    let r = app
        .post(
            "/register",
            json!({ "email": "x@example.com", "password": PW, "invite_code": 5 }),
        )
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn closed_mode_refuses_even_with_a_code() {
    let app = spawn_app_with(
        |s| s.config.registration_mode = RegistrationMode::Closed,
        false,
    )
    .await;
    let code = code_for(&app, None).await;
    let r = register_with(&app, "closed@example.com", Some(&code)).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (403, "Registration is disabled.")
    );
}

#[tokio::test]
async fn invite_bodies_are_checked() {
    let app = spawn_app_with(invite_mode, false).await;
    let admin = invited_admin(&app, "admin@example.com").await;
    for (body, field) in [
        (json!({ "expires_in_seconds": 59 }), "expires_in_seconds"),
        (
            json!({ "expires_in_seconds": 7_776_001 }),
            "expires_in_seconds",
        ),
        (json!({ "expires_in_seconds": "60" }), "expires_in_seconds"),
        (json!({ "email": "not an address" }), "email"),
        (json!({ "note": "x".repeat(501) }), "note"),
        (json!({ "note": "bell\u{7}" }), "note"),
        (json!({ "code": "mine" }), "code"),
    ] {
        let r = app.post_auth("/admin/invites", &admin, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["detail"][0]["loc"][1], field, "{body}: {:?}", r.body);
    }
    let r = app
        .call(Method::GET, "/admin/invites?limit=0", Some(&admin), None)
        .await;
    assert_eq!(r.status, 422);
    assert!(app
        .rs
        .engine()
        .list_invites(true, 10)
        .await
        .unwrap()
        .iter()
        .all(|i| i.used_at.is_some()));
}
