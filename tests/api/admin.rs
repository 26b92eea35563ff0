//! The admin API (`enable_admin_router = true`): every route against an
//! anonymous caller, a plain user and an administrator; regstack's wire
//! answers; disabling ends every session; deletion leaves no row;
//! promotion, pagination and the refusals of self-lockout.

use std::sync::Arc;

use regstack::Settings;
use regstack_ports::{AdminChange, Clock, NewUser, PasswordHasher, UserId};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

fn with_admin(s: &mut Settings) {
    s.config.enable_admin_router = true;
}

pub(crate) async fn admin_app() -> TestApp {
    spawn_app_with(with_admin, false).await
}

/// A verified account made through the routes, turned administrator
/// through the store (the first administrator's way in until the CLI has
/// a command for it). Returns its id and a fresh access token.
pub(crate) async fn make_admin(app: &TestApp, email: &str) -> (String, String) {
    let (id, _) = make_user(app, email).await;
    let done = app
        .stores
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
    assert!(done.is_superuser);
    (id, app.access_token(email, PW).await)
}

/// A verified plain account: its id and an access token.
pub(crate) async fn make_user(app: &TestApp, email: &str) -> (String, String) {
    app.create_user(email, PW).await;
    let token = app.access_token(email, PW).await;
    let id = app.me(&token).await.body["id"].as_str().unwrap().to_owned();
    (id, token)
}

async fn admin_call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    app.call(method, path, Some(token), body).await
}

#[tokio::test]
async fn the_admin_routes_exist_only_when_enabled() {
    let app = spawn_app().await;
    let (_, token) = make_user(&app, "plain@example.com").await;
    for (method, path) in [
        (Method::GET, "/admin/stats"),
        (Method::GET, "/admin/users"),
        (Method::POST, "/admin/pending/x@example.com/promote"),
    ] {
        let r = admin_call(&app, method, path, &token, None).await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (404, "Not Found"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_admin_route_refuses_anonymous_and_plain_users_and_answers_an_admin() {
    let app = admin_app().await;
    let (admin_id, admin) = make_admin(&app, "admin@example.com").await;
    // The plain user the refusals are asked with is never a target.
    let (_, user) = make_user(&app, "plain@example.com").await;
    let (user_id, _) = make_user(&app, "alice@example.com").await;
    let (victim_id, _) = make_user(&app, "victim@example.com").await;
    assert_eq!(app.register("pending@example.com", PW).await.status, 201);
    let _ = admin_id;

    let routes: Vec<(Method, String, Option<Value>, u16)> = vec![
        (Method::GET, "/admin/stats".into(), None, 200),
        (Method::GET, "/admin/users?skip=0&limit=2".into(), None, 200),
        (Method::GET, format!("/admin/users/{user_id}"), None, 200),
        (
            Method::PATCH,
            format!("/admin/users/{user_id}"),
            Some(json!({ "full_name": "Set By Admin" })),
            200,
        ),
        (
            Method::POST,
            format!("/admin/users/{user_id}/resend-verification"),
            None,
            400,
        ),
        (
            Method::POST,
            "/admin/pending/pending@example.com/promote".into(),
            None,
            201,
        ),
        (
            Method::POST,
            format!("/admin/users/{user_id}/require-password-change"),
            None,
            200,
        ),
        (
            Method::GET,
            format!("/admin/users/{user_id}/sessions"),
            None,
            200,
        ),
        (
            Method::DELETE,
            format!("/admin/users/{user_id}/sessions"),
            None,
            200,
        ),
        (
            Method::DELETE,
            format!("/admin/users/{user_id}/mfa"),
            None,
            200,
        ),
        (
            Method::DELETE,
            format!("/admin/users/{victim_id}"),
            None,
            200,
        ),
    ];
    for (method, path, body, admin_status) in routes {
        let r = app.call(method.clone(), &path, None, body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (401, "Authentication required."),
            "anonymous {method} {path}"
        );
        assert_eq!(
            r.headers.get("www-authenticate").unwrap(),
            "Bearer",
            "{path}"
        );
        // A plain user is refused before the body is read: even a body
        // the route would reject is a 403, not a 422.
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
}

#[tokio::test]
async fn stats_list_and_get_follow_regstack() {
    let app = admin_app().await;
    let (admin_id, admin) = make_admin(&app, "admin@example.com").await;
    let (alice_id, _) = make_user(&app, "alice@example.com").await;
    assert_eq!(app.register("bob@example.com", PW).await.status, 201);

    let r = admin_call(&app, Method::GET, "/admin/stats", &admin, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({
            "total_users": 2,
            "active_users": 2,
            "verified_users": 2,
            "superusers": 1,
            "pending_registrations": 1,
        })
    );

    let r = admin_call(
        &app,
        Method::GET,
        "/admin/users?skip=0&limit=2",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["total"].clone(),
            r.body["skip"].clone(),
            r.body["limit"].clone()
        ),
        (json!(2), json!(0), json!(2))
    );
    let ids: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alice_id.as_str(), admin_id.as_str()], "newest first");
    let item = &r.body["items"][0];
    for key in [
        "id",
        "email",
        "is_active",
        "is_verified",
        "is_superuser",
        "full_name",
        "phone_number",
        "is_mfa_enabled",
        "created_at",
        "updated_at",
        "last_login",
        "tokens_invalidated_after",
        // Beyond regstack, for administrators only: the disabling.
        "disabled_reason",
        "disabled_until",
    ] {
        assert!(item.get(key).is_some(), "UserPublic has {key}");
    }
    assert_eq!(
        item.as_object().unwrap().len(),
        14,
        "and nothing else: {item}"
    );

    let r = admin_call(&app, Method::GET, "/admin/users", &admin, None).await;
    assert_eq!(
        (r.body["skip"].clone(), r.body["limit"].clone()),
        (json!(0), json!(50))
    );
    let r = admin_call(
        &app,
        Method::GET,
        "/admin/users?skip=1&limit=1",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.body["items"][0]["id"], admin_id.as_str());
    let r = admin_call(&app, Method::GET, "/admin/users?skip=5", &admin, None).await;
    assert_eq!(r.body["items"], json!([]));
    assert_eq!(r.body["total"], 2);

    for (query, entry) in [
        (
            "limit=201",
            json!({ "type": "less_than_equal", "loc": ["query", "limit"],
                    "msg": "Input should be less than or equal to 200", "ctx": { "le": 200 } }),
        ),
        (
            "limit=0",
            json!({ "type": "greater_than_equal", "loc": ["query", "limit"],
                    "msg": "Input should be greater than or equal to 1", "ctx": { "ge": 1 } }),
        ),
        (
            "skip=-1",
            json!({ "type": "greater_than_equal", "loc": ["query", "skip"],
                    "msg": "Input should be greater than or equal to 0", "ctx": { "ge": 0 } }),
        ),
        (
            "limit=ten",
            json!({ "type": "int_parsing", "loc": ["query", "limit"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer" }),
        ),
    ] {
        let r = admin_call(
            &app,
            Method::GET,
            &format!("/admin/users?{query}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(r.status, 422, "{query}");
        assert_eq!(r.body["detail"], json!([entry]), "{query}");
    }

    let r = admin_call(
        &app,
        Method::GET,
        &format!("/admin/users/{alice_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["email"].as_str()),
        (200, Some("alice@example.com"))
    );
    for unknown in [
        "does-not-exist",
        "zzz",
        "0123456789abcdef0123456789abcdef",
        "a%27--",
    ] {
        let r = admin_call(
            &app,
            Method::GET,
            &format!("/admin/users/{unknown}"),
            &admin,
            None,
        )
        .await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (404, "User not found."),
            "{unknown}"
        );
    }
}

#[tokio::test]
async fn patch_changes_flags_and_disabling_ends_every_session_at_once() {
    let app = admin_app().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let (alice_id, alice) = make_user(&app, "alice@example.com").await;
    let login = app.login("alice@example.com", PW).await;
    let refresh = login.body["refresh_token"].as_str().unwrap().to_owned();
    let path = format!("/admin/users/{alice_id}");

    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "full_name": "Set By Admin" })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["full_name"], "Set By Admin");
    assert_eq!(r.body["is_active"], true);
    assert_eq!(
        app.me(&alice).await.status,
        200,
        "a name change ends nothing"
    );

    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "full_name": null })),
    )
    .await;
    assert_eq!(
        r.body["full_name"], "Set By Admin",
        "null changes nothing (regstack)"
    );

    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_admin": true })),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["type"], "extra_forbidden");
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_active": "no" })),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["detail"][0],
        json!({ "type": "bool_type", "loc": ["body", "is_active"], "msg": "Input should be a valid boolean" })
    );
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "full_name": "x".repeat(201) })),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["type"], "string_too_long");

    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_active": false })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["is_active"], false);
    assert!(r.body["tokens_invalidated_after"].is_string());
    let r = app.me(&alice).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "User no longer active.")
    );
    let r = app
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Invalid or expired refresh token.")
    );
    let r = app.login("alice@example.com", PW).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (403, "Account is disabled.")
    );
    let r = app.login("alice@example.com", "wrong-password").await;
    assert_eq!(r.status, 401, "a wrong password learns nothing");
    let r = admin_call(&app, Method::GET, &format!("{path}/sessions"), &admin, None).await;
    assert_eq!(r.body["sessions"], json!([]), "no live session is left");

    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_active": true })),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["is_active"].clone()),
        (200, json!(true))
    );
    assert_eq!(app.me(&alice).await.status, 401, "the old token stays dead");
    let fresh = app.access_token("alice@example.com", PW).await;
    assert_eq!(app.me(&fresh).await.status, 200);

    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_superuser": true })),
    )
    .await;
    assert_eq!(r.body["is_superuser"], true);
    let r = admin_call(&app, Method::GET, "/admin/stats", &fresh, None).await;
    assert_eq!(r.status, 200, "the right is read for every request");
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_superuser": false })),
    )
    .await;
    assert_eq!(r.body["is_superuser"], false);
    let r = admin_call(&app, Method::GET, "/admin/stats", &fresh, None).await;
    assert_eq!(r.status, 403, "and withdrawn at once");

    let names = app.event_names();
    assert!(names.contains(&"admin_user_updated"), "{names:?}");
    let events = app.events.lock().unwrap().clone();
    let updated = events
        .iter()
        .find(|e| e.kind.name() == "admin_user_updated")
        .unwrap();
    assert!(
        updated.actor_id.is_some(),
        "the event names the administrator"
    );
}

#[tokio::test]
async fn an_admin_cannot_lock_themselves_out() {
    let app = admin_app().await;
    let (admin_id, admin) = make_admin(&app, "admin@example.com").await;
    let path = format!("/admin/users/{admin_id}");
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_superuser": false })),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "You cannot remove your own administrator privileges.")
    );
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_active": false, "full_name": "x" })),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "You cannot disable your own account.")
    );
    let r = admin_call(&app, Method::DELETE, &path, &admin, None).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (
            400,
            "You cannot delete your own account here; use DELETE /account instead."
        )
    );
    let r = admin_call(&app, Method::GET, &path, &admin, None).await;
    assert_eq!(
        (
            r.body["is_superuser"].clone(),
            r.body["is_active"].clone(),
            r.body["full_name"].clone()
        ),
        (json!(true), json!(true), json!("Test User")),
        "nothing of the refused changes was written"
    );
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "full_name": "Root", "is_superuser": true })),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["full_name"].clone()),
        (200, json!("Root"))
    );
}

#[tokio::test]
async fn admin_deletion_removes_every_row_of_the_user() {
    let app = admin_app().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let (id, token) = make_user(&app, "jack@example.com").await;
    app.post("/forgot-password", json!({ "email": "jack@example.com" }))
        .await;
    app.mailed_token("jack@example.com", 2, "/reset-password")
        .await;
    app.login("jack@example.com", "wrong-password").await;
    if !matches!(app.backend, Backend::Memory) {
        let before = app.rows_keyed_by(&id, "jack@example.com").await;
        assert!(before.iter().any(|(_, n)| *n > 0), "{before:?}");
    }

    let path = format!("/admin/users/{id}");
    let r = admin_call(&app, Method::DELETE, &path, &admin, None).await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (200, json!({ "message": "User jack@example.com deleted." }))
    );
    if !matches!(app.backend, Backend::Memory) {
        assert_eq!(
            app.rows_keyed_by(&id, "jack@example.com").await,
            USER_TABLES.map(|table| (table, 0)),
            "no row keyed by Jack's id or address is left"
        );
    }
    let r = app.me(&token).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "User no longer active.")
    );
    let r = admin_call(&app, Method::DELETE, &path, &admin, None).await;
    assert_eq!((r.status.as_u16(), r.detail()), (404, "User not found."));
    let deleted = app
        .events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.kind.name() == "user_deleted")
        .cloned()
        .unwrap();
    assert!(deleted.actor_id.is_some());
    app.create_user("jack@example.com", "brand-new-password")
        .await;
    assert_eq!(
        app.login("jack@example.com", "brand-new-password")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn promote_turns_a_pending_registration_into_a_verified_account() {
    let app = admin_app().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    assert_eq!(app.register("bob@example.com", PW).await.status, 201);
    let r = admin_call(
        &app,
        Method::POST,
        "/admin/pending/bob@example.com/promote",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["email"], "bob@example.com");
    assert_eq!(
        (r.body["is_verified"].clone(), r.body["is_active"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(r.body["full_name"], "Test User");
    assert_eq!(r.body["last_login"], Value::Null);
    assert_eq!(
        app.login("bob@example.com", PW).await.status,
        200,
        "with the password registered"
    );
    assert!(app.event_names().contains(&"user_verified"));

    let r = admin_call(
        &app,
        Method::POST,
        "/admin/pending/bob@example.com/promote",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (404, "No pending registration for bob@example.com.")
    );
    let r = admin_call(
        &app,
        Method::POST,
        "/admin/pending/not-an-address/promote",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (404, "No pending registration for not-an-address.")
    );

    // A pending row for an address that is an account by now.
    app.stores
        .pending
        .put(regstack_ports::PendingRegistration {
            email: regstack_ports::Email::parse("bob@example.com").unwrap(),
            password_hash: regstack_testkit::fixtures::password_hash(),
            full_name: None,
            token_hash: regstack_testkit::fixtures::token_hash(),
            created_at: chrono::Utc::now(),
            expires_at: chrono::Utc::now() + chrono::TimeDelta::hours(1),
        })
        .await
        .unwrap();
    let r = admin_call(
        &app,
        Method::POST,
        "/admin/pending/Bob@Example.com/promote",
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (409, "A user with email Bob@Example.com already exists.")
    );
}

#[tokio::test]
async fn resend_verification_follows_regstack() {
    let app = admin_app().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let (alice_id, _) = make_user(&app, "alice@example.com").await;
    let r = admin_call(
        &app,
        Method::POST,
        &format!("/admin/users/{alice_id}/resend-verification"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "User is already verified.")
    );
    let r = admin_call(
        &app,
        Method::POST,
        "/admin/users/does-not-exist/resend-verification",
        &admin,
        None,
    )
    .await;
    assert_eq!((r.status.as_u16(), r.detail()), (404, "User not found."));

    let oauth_only = app
        .stores
        .users
        .insert(NewUser {
            password_hash: None,
            is_verified: false,
            ..regstack_testkit::fixtures::new_user("oauth@example.com")
        })
        .await
        .unwrap();
    let r = admin_call(
        &app,
        Method::POST,
        &format!("/admin/users/{}/resend-verification", oauth_only.id),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "User has no password (OAuth-only). Verify them directly via the user record instead of resending verification email.")
    );

    let unproven = app
        .stores
        .users
        .insert(NewUser {
            is_verified: false,
            password_hash: Some(
                app.hasher
                    .hash(&secrecy::SecretString::from(PW))
                    .await
                    .unwrap(),
            ),
            ..regstack_testkit::fixtures::new_user("carol@example.com")
        })
        .await
        .unwrap();
    let r = admin_call(
        &app,
        Method::POST,
        &format!("/admin/users/{}/resend-verification", unproven.id),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (
            202,
            json!({ "message": "Verification email sent to carol@example.com." })
        )
    );
    let r = app.login("carol@example.com", PW).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (403, "Email address has not been verified.")
    );
    let token = app.mailed_token("carol@example.com", 1, "/verify").await;
    let r = app.post("/verify", json!({ "token": token })).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["id"].as_str(), r.body["is_verified"].clone()),
        (Some(unproven.id.as_str()), json!(true)),
        "the link verifies that same account"
    );
    assert_eq!(app.login("carol@example.com", PW).await.status, 200);
}

#[tokio::test]
async fn operators_levers_beyond_regstack() {
    let app = admin_app().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let (id, token) = make_user(&app, "dora@example.com").await;
    let _second = app.access_token("dora@example.com", PW).await;

    let r = admin_call(
        &app,
        Method::GET,
        &format!("/admin/users/{id}/sessions"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["sessions"][0]["current"], false);
    let r = admin_call(
        &app,
        Method::DELETE,
        &format!("/admin/users/{id}/sessions"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (
            200,
            json!({ "message": "Signed out of 2 session(s).", "revoked": 2 })
        )
    );
    assert_eq!(app.me(&token).await.status, 401);

    let token = app.access_token("dora@example.com", PW).await;
    let r = admin_call(
        &app,
        Method::POST,
        &format!("/admin/users/{id}/require-password-change"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["message"].as_str()),
        (
            200,
            Some("User dora@example.com must set a new password at the next sign-in.")
        )
    );
    assert_eq!(app.me(&token).await.status, 401, "its sessions ended");
    let r = app.login("dora@example.com", PW).await;
    assert_eq!(r.body["status"], "password_change_required", "{:?}", r.body);

    // Second factors written through the store, removed by the admin.
    let user_id = UserId::parse(&id).unwrap();
    assert!(app
        .stores
        .mfa
        .enable_totp(
            &user_id,
            "sealed",
            &[regstack_testkit::fixtures::token_hash()],
            None,
            chrono::Utc::now()
        )
        .await
        .unwrap());
    let r = admin_call(
        &app,
        Method::GET,
        &format!("/admin/users/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(r.body["is_mfa_enabled"], true);
    let r = admin_call(
        &app,
        Method::DELETE,
        &format!("/admin/users/{id}/mfa"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["is_mfa_enabled"].clone()),
        (200, json!(false))
    );
    let factors = app.stores.mfa.factors(&user_id).await.unwrap();
    assert!(
        factors.totp.is_none() && factors.backup_codes_left == 0,
        "{factors:?}"
    );

    // A locked-out address, unlocked.
    for _ in 0..5 {
        app.login("dora@example.com", "wrong-password").await;
    }
    let r = app.login("dora@example.com", PW).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    let r = admin_call(
        &app,
        Method::POST,
        "/admin/unlock",
        &admin,
        Some(json!({ "email": "Dora@Example.com" })),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (
            200,
            json!({ "message": "Sign-in lockout cleared for dora@example.com." })
        )
    );
    let r = app.login("dora@example.com", PW).await;
    assert_eq!(r.body["status"], "password_change_required", "{:?}", r.body);
    assert!(app.event_names().contains(&"admin_lockout_cleared"));
    let r = admin_call(
        &app,
        Method::POST,
        "/admin/unlock",
        &admin,
        Some(json!({ "email": "nope" })),
    )
    .await;
    assert_eq!(r.status, 422);

    for path in ["/admin/users/nobody/sessions", "/admin/users/nobody/mfa"] {
        let r = admin_call(&app, Method::DELETE, path, &admin, None).await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (404, "User not found."),
            "{path}"
        );
    }
}

#[tokio::test]
async fn search_filters_and_a_cursor_that_survives_sign_ups() {
    let app = admin_app().await;
    let (admin_id, admin) = make_admin(&app, "admin@example.com").await;
    let mut ids = vec![admin_id.clone()];
    for name in ["ann_a", "annxa", "bob", "cid"] {
        let (id, _) = make_user(&app, &format!("{name}@example.com")).await;
        ids.push(id);
    }
    ids.reverse(); // newest first
    let list = |query: String| {
        let app = &app;
        let admin = admin.clone();
        async move {
            admin_call(
                app,
                Method::GET,
                &format!("/admin/users?{query}"),
                &admin,
                None,
            )
            .await
        }
    };
    let ids_of = |r: &Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let r = list("q=N_A".into()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["total"], 1, "`_` is no wildcard: {:?}", r.body);
    assert_eq!(r.body["items"][0]["email"], "ann_a@example.com");
    assert_eq!(r.body["next_cursor"], Value::Null);
    let r = list("q=%25".into()).await;
    assert_eq!(r.body["total"], 0, "`%` is no wildcard");
    let r = list("is_superuser=true".into()).await;
    assert_eq!(ids_of(&r), vec![admin_id.clone()]);
    let r = list("is_superuser=false&has_mfa=false&is_active=1&is_verified=yes".into()).await;
    assert_eq!(r.body["total"], 4);
    let r = list("is_active=maybe".into()).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["detail"][0],
        json!({ "type": "bool_parsing", "loc": ["query", "is_active"],
                "msg": "Input should be a valid boolean, unable to interpret input" })
    );
    let r = list("cursor=garbage".into()).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["loc"], json!(["query", "cursor"]));
    let r = list("skip=0&limit=2".into()).await;
    assert!(
        r.body.get("next_cursor").is_none(),
        "regstack's list is unchanged"
    );

    // Walk two at a time; someone signs up between pages.
    let mut walked = Vec::new();
    let mut cursor = String::new();
    for page in 0..10 {
        let r = list(format!("limit=2&cursor={cursor}")).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["total"].as_u64().unwrap(), 5 + page);
        walked.extend(ids_of(&r));
        make_user(&app, &format!("late{page}@example.com")).await;
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        walked, ids,
        "every account once, in order, none of the late ones"
    );
}

#[tokio::test]
async fn a_disabled_or_demoted_admin_is_refused_at_once() {
    let app = admin_app().await;
    let (_, root) = make_admin(&app, "root@example.com").await;
    let (other_id, other) = make_admin(&app, "other@example.com").await;
    assert_eq!(
        admin_call(&app, Method::GET, "/admin/stats", &other, None)
            .await
            .status,
        200
    );
    let path = format!("/admin/users/{other_id}");
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &root,
        Some(json!({ "is_active": false })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = admin_call(&app, Method::GET, "/admin/stats", &other, None).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "User no longer active.")
    );
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &root,
        Some(json!({ "is_active": true, "is_superuser": false })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let fresh = app.access_token("other@example.com", PW).await;
    let r = admin_call(&app, Method::GET, "/admin/stats", &fresh, None).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (403, "Administrator privileges required.")
    );
}

/// An admin app whose clock moves only when told, and that clock.
async fn admin_app_at_fixed_time() -> (TestApp, Arc<regstack_testkit::FixedClock>) {
    let app = spawn_app_with(with_admin, true).await;
    let clock = app.clock.clone().unwrap();
    (app, clock)
}

fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The reason is for administrators: no answer, mail or event the owner
/// can see carries it.
fn assert_reason_unseen(app: &TestApp, replies: &[&Reply], reason: &str) {
    for r in replies {
        assert!(
            !r.body.to_string().contains(reason),
            "the owner was shown the reason: {:?}",
            r.body
        );
        assert!(r.body.get("disabled_reason").is_none(), "{:?}", r.body);
        assert!(r.body.get("disabled_until").is_none(), "{:?}", r.body);
    }
    for mail in app.mailer.sent() {
        assert!(
            !format!("{mail:?}").contains(reason),
            "a mail carries the reason"
        );
    }
    let events = app.events.lock().unwrap().clone();
    assert!(
        !format!("{events:?}").contains(reason),
        "an event carries the reason"
    );
}

#[tokio::test]
async fn a_timed_disabling_with_a_reason_ends_every_session_and_ends_by_itself() {
    let (app, clock) = admin_app_at_fixed_time().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let (alice_id, alice) = make_user(&app, "alice@example.com").await;
    let login = app.login("alice@example.com", PW).await;
    let refresh = login.body["refresh_token"].as_str().unwrap().to_owned();
    let path = format!("/admin/users/{alice_id}");
    let reason = "Chargeback fraud, ticket 4711";
    let until = Clock::now(&*clock) + chrono::TimeDelta::hours(1);

    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({
            "is_active": false,
            "disabled_reason": reason,
            "disabled_until": instant(until),
        })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["is_active"], false);
    assert_eq!(r.body["disabled_reason"], reason);
    assert_eq!(r.body["disabled_until"], instant(until));

    // Every session ended at once, and no way in is left.
    let me = app.me(&alice).await;
    assert_eq!(
        (me.status.as_u16(), me.detail()),
        (401, "User no longer active.")
    );
    let refreshed = app
        .post("/refresh", json!({ "refresh_token": refresh.clone() }))
        .await;
    assert_eq!(
        (refreshed.status.as_u16(), refreshed.detail()),
        (401, "Invalid or expired refresh token.")
    );
    let refused = app.login("alice@example.com", PW).await;
    assert_eq!(
        (refused.status.as_u16(), refused.detail()),
        (403, "Account is disabled."),
        "the generic answer, as for a disabling without end"
    );
    let forgot = app
        .post("/forgot-password", json!({ "email": "alice@example.com" }))
        .await;
    assert_eq!(forgot.status, 202);
    let r = admin_call(&app, Method::GET, &format!("{path}/sessions"), &admin, None).await;
    assert_eq!(r.body["sessions"], json!([]), "no live session is left");

    // Administrators see why and until when, in every answer about her.
    let r = admin_call(&app, Method::GET, &path, &admin, None).await;
    assert_eq!(
        (
            r.body["disabled_reason"].clone(),
            r.body["disabled_until"].clone()
        ),
        (json!(reason), json!(instant(until)))
    );
    let r = admin_call(
        &app,
        Method::GET,
        "/admin/users?is_active=false",
        &admin,
        None,
    )
    .await;
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{:?}", r.body);
    assert_eq!(items[0]["id"], alice_id.as_str());
    assert_eq!(items[0]["disabled_reason"], reason);
    let r = admin_call(&app, Method::GET, "/admin/users", &admin, None).await;
    let listed = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == alice_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["disabled_until"], instant(until));

    // One microsecond before its end it still holds.
    clock.set(until - chrono::TimeDelta::microseconds(1));
    let early = app.login("alice@example.com", PW).await;
    assert_eq!(
        (early.status.as_u16(), early.detail()),
        (403, "Account is disabled.")
    );
    assert_reason_unseen(&app, &[&me, &refreshed, &refused, &forgot, &early], reason);

    // From its end on she signs in, before any housekeeping ran, and her
    // own view shows an active account and nothing of the disabling.
    clock.set(until);
    let back = app.login("alice@example.com", PW).await;
    assert_eq!(back.status, 200, "{:?}", back.body);
    let token = back.body["access_token"].as_str().unwrap().to_owned();
    let mine = app.me(&token).await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["is_active"], true);
    assert_reason_unseen(&app, &[&back, &mine], reason);
    let again = app
        .post(
            "/refresh",
            json!({ "refresh_token": back.body["refresh_token"].clone() }),
        )
        .await;
    assert_eq!(
        again.status, 200,
        "her new session refreshes: {:?}",
        again.body
    );
    let old = app
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(
        old.status, 401,
        "the sessions the disabling ended stay ended"
    );

    // The admin views and filters agree with the clock.
    let r = admin_call(&app, Method::GET, &path, &admin, None).await;
    assert_eq!(r.body["is_active"], true);
    assert_eq!(r.body["disabled_reason"], Value::Null);
    assert_eq!(r.body["disabled_until"], Value::Null);
    let r = admin_call(
        &app,
        Method::GET,
        "/admin/users?is_active=false",
        &admin,
        None,
    )
    .await;
    assert_eq!(r.body["total"], 0, "{:?}", r.body);
    let r = admin_call(&app, Method::GET, "/admin/stats", &admin, None).await;
    assert_eq!(r.body["active_users"], r.body["total_users"]);
}

#[tokio::test]
async fn a_disabling_reason_and_end_are_checked_and_enabling_clears_them() {
    let (app, clock) = admin_app_at_fixed_time().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let (_, plain) = make_user(&app, "plain@example.com").await;
    let (bob_id, bob) = make_user(&app, "bob@example.com").await;
    let path = format!("/admin/users/{bob_id}");
    let now = Clock::now(&*clock);
    let later = instant(now + chrono::TimeDelta::days(7));
    let body = json!({ "is_active": false, "disabled_reason": "spam", "disabled_until": later });

    // Anonymous 401, a plain user 403 — the new fields change nothing.
    let r = app
        .call(Method::PATCH, &path, None, Some(body.clone()))
        .await;
    assert_eq!(r.status, 401);
    let r = app
        .call(Method::PATCH, &path, Some(&plain), Some(body.clone()))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (403, "Administrator privileges required.")
    );
    assert_eq!(app.me(&bob).await.status, 200, "nothing was disabled");

    let refused = |body: Value, field: &'static str, kind: &'static str| {
        let app = &app;
        let path = path.clone();
        let admin = admin.clone();
        async move {
            let r = admin_call(app, Method::PATCH, &path, &admin, Some(body.clone())).await;
            assert_eq!(r.status, 422, "{body}: {:?}", r.body);
            let entry = &r.body["detail"][0];
            assert_eq!(entry["loc"], json!(["body", field]), "{body}: {:?}", r.body);
            assert_eq!(entry["type"], kind, "{body}: {:?}", r.body);
            assert!(!entry["msg"].as_str().unwrap().is_empty());
        }
    };
    refused(
        json!({ "disabled_reason": "spam" }),
        "disabled_reason",
        "value_error",
    )
    .await;
    refused(
        json!({ "is_active": true, "disabled_reason": "spam" }),
        "disabled_reason",
        "value_error",
    )
    .await;
    refused(
        json!({ "disabled_until": later }),
        "disabled_until",
        "value_error",
    )
    .await;
    refused(
        json!({ "is_active": false, "disabled_until": instant(now) }),
        "disabled_until",
        "value_error",
    )
    .await;
    refused(
        json!({ "is_active": false, "disabled_until": instant(now - chrono::TimeDelta::days(1)) }),
        "disabled_until",
        "value_error",
    )
    .await;
    for bad in [
        "tomorrow",
        "2030-01-01T00:00:00",
        "2030-13-01T00:00:00Z",
        "",
    ] {
        refused(
            json!({ "is_active": false, "disabled_until": bad }),
            "disabled_until",
            "datetime_from_date_parsing",
        )
        .await;
    }
    refused(
        json!({ "is_active": false, "disabled_reason": "x".repeat(501) }),
        "disabled_reason",
        "string_too_long",
    )
    .await;
    refused(
        json!({ "is_active": false, "disabled_reason": "spam\r\nX-Admin: yes" }),
        "disabled_reason",
        "value_error",
    )
    .await;
    refused(
        json!({ "is_active": false, "disabled_reason": 5 }),
        "disabled_reason",
        "string_type",
    )
    .await;
    assert_eq!(app.me(&bob).await.status, 200, "no refused change disabled");

    // 500 characters, and an end in another offset naming the same instant.
    let reason = "é".repeat(500);
    let plus_two = (now + chrono::TimeDelta::days(7))
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339();
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_active": false, "disabled_reason": reason, "disabled_until": plus_two })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["disabled_reason"], reason.as_str());
    assert_eq!(r.body["disabled_until"], later);

    // Without an end (null is "until enabled by hand").
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_active": false, "disabled_reason": "for good", "disabled_until": null })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["disabled_until"], Value::Null);
    clock.advance(chrono::TimeDelta::days(365));
    assert_eq!(
        app.login("bob@example.com", PW).await.detail(),
        "Account is disabled."
    );
    let admin = app.access_token("admin@example.com", PW).await;

    // Enabling clears both; bob signs in and sees nothing of it.
    let r = admin_call(
        &app,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({ "is_active": true })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["disabled_reason"].clone(),
            r.body["disabled_until"].clone()
        ),
        (Value::Null, Value::Null)
    );
    let token = app.access_token("bob@example.com", PW).await;
    let mine = app.me(&token).await;
    assert_eq!(mine.body["is_active"], true);
    assert_reason_unseen(&app, &[&mine], "for good");
}

#[tokio::test]
async fn a_second_factor_does_not_outlast_a_timed_disabling_nor_is_stopped_after_it() {
    let (app, clock) = admin_app_at_fixed_time().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let (carol_id, carol) = make_user(&app, "carol@example.com").await;
    let r = app
        .post_auth("/totp/setup", &carol, json!({ "current_password": PW }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let secret = regstack_testkit::totp::base32_decode(r.body["secret"].as_str().unwrap());
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let code = |clock: &regstack_testkit::FixedClock| {
        regstack_testkit::totp::code_at(&secret, Clock::now(clock))
    };
    let r = app
        .post_auth(
            "/totp/confirm",
            &carol,
            json!({ "pending_token": pending, "code": code(&clock) }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let challenge = |r: Reply| {
        assert_eq!(r.body["status"], "mfa_required", "{:?}", r.body);
        r.body["mfa_pending_token"].as_str().unwrap().to_owned()
    };
    let pending = challenge(app.login("carol@example.com", PW).await);

    let until = Clock::now(&*clock) + chrono::TimeDelta::minutes(10);
    let r = admin_call(
        &app,
        Method::PATCH,
        &format!("/admin/users/{carol_id}"),
        &admin,
        Some(json!({ "is_active": false, "disabled_reason": "lost laptop", "disabled_until": instant(until) })),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    clock.advance(chrono::TimeDelta::seconds(30));
    let r = app
        .post(
            "/login/mfa-confirm",
            json!({ "mfa_pending_token": pending, "code": code(&clock) }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (
            400,
            "Sign-in session is invalid or has expired. Start over from sign-in."
        ),
        "a challenge opened before the disabling dies with it"
    );
    assert_eq!(
        app.login("carol@example.com", PW).await.detail(),
        "Account is disabled."
    );

    clock.set(until);
    let pending = challenge(app.login("carol@example.com", PW).await);
    let r = app
        .post(
            "/login/mfa-confirm",
            json!({ "mfa_pending_token": pending, "code": code(&clock) }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&token).await.body["is_active"], true);
}
