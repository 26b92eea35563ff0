//! The audit log: what a scripted session leaves in it, read back through
//! `GET /admin/audit` (filters, keyset pages), that it holds no secret,
//! who may read it, and retention.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::admin::{admin_app, make_admin, make_user};
use crate::support::*;

/// Waits until every entry queued so far is written.
async fn flushed(app: &TestApp) {
    app.rs
        .engine()
        .audit_log()
        .expect("the audit log is on by default")
        .flush(Duration::from_secs(10))
        .await;
}

async fn audit(app: &TestApp, token: &str, query: &str) -> Reply {
    flushed(app).await;
    app.call(
        Method::GET,
        &format!("/admin/audit{query}"),
        Some(token),
        None,
    )
    .await
}

fn entries(r: &Reply) -> Vec<Value> {
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["entries"].as_array().expect("entries").clone()
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_scripted_session_leaves_its_trail_with_reasons_actors_and_changes() {
    let app = admin_app().await;
    let (admin_id, admin) = make_admin(&app, "admin@example.com").await;
    let (user_id, _) = make_user(&app, "alice@example.com").await;
    assert_eq!(
        app.login("alice@example.com", "wrong-password-1")
            .await
            .status,
        401
    );
    assert_eq!(
        app.login("nobody@example.com", "wrong-password-1")
            .await
            .status,
        401
    );
    let r = app
        .call(
            Method::PATCH,
            &format!("/admin/users/{user_id}"),
            Some(&admin),
            Some(json!({ "is_active": false })),
        )
        .await;
    assert_eq!(r.status, 200);

    let of_alice = entries(&audit(&app, &admin, &format!("?user_id={user_id}")).await);
    assert_eq!(
        kinds(&of_alice)[..2],
        ["admin_user_updated", "user_logged_in"],
        "newest first"
    );
    let update = &of_alice[0];
    assert_eq!(update["kind"], "admin_user_updated");
    assert_eq!(update["actor_id"], admin_id.as_str());
    assert_eq!(update["user_id"], user_id.as_str());
    assert_eq!(update["detail"]["changes"], json!({ "is_active": false }));
    // A failed sign-in names the address it tried.
    let at_alice = entries(&audit(&app, &admin, "?email=Alice@Example.com").await);
    let failure = at_alice
        .iter()
        .find(|e| e["kind"] == "login_failed")
        .unwrap();
    assert_eq!(failure["detail"]["reason"], "wrong_password");
    assert_eq!(failure["email"], "alice@example.com");
    assert_eq!(failure["ip"], "127.0.0.1");
    assert!(of_alice.iter().any(|e| e["kind"] == "user_logged_in"));

    // The attempt on an address with no account is there too, by kind.
    let failures = entries(&audit(&app, &admin, "?kind=login_failed").await);
    assert_eq!(kinds(&failures), ["login_failed", "login_failed"]);
    assert_eq!(failures[0]["email"], "nobody@example.com");
    assert_eq!(failures[0]["detail"]["reason"], "no_account");
    assert_eq!(failures[0]["user_id"], Value::Null);

    // The administrator's own actions are found by their id.
    let by_admin = entries(&audit(&app, &admin, &format!("?user_id={admin_id}")).await);
    assert!(by_admin.iter().any(|e| e["kind"] == "admin_user_updated"));

    // A time range: nothing before the test began, everything until now.
    let future = entries(&audit(&app, &admin, "?since=2999-01-01T00:00:00Z").await);
    assert!(future.is_empty());
    let ids = |v: &[Value]| -> Vec<String> {
        v.iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest = ids(&entries(
        &audit(&app, &admin, "?until=2999-01-01T00:00:00Z&limit=500").await,
    ));
    let mut oldest = ids(&entries(
        &audit(&app, &admin, "?order=oldest&limit=500").await,
    ));
    oldest.reverse();
    assert_eq!(newest, oldest, "the two orders list the same entries");
    assert!(newest.len() > 8);
}

#[tokio::test]
async fn the_audit_log_holds_no_password_token_or_code() {
    let app = admin_app().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let email = "secretive@example.com";
    assert_eq!(app.register(email, PW).await.status, 201);
    let verify = app.mailed_token(email, 1, "/verify").await;
    assert_eq!(
        app.post("/verify", json!({ "token": verify })).await.status,
        200
    );
    let login = app.login(email, PW).await;
    let access = login.body["access_token"].as_str().unwrap().to_owned();
    let refresh = login.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        app.post("/refresh", json!({ "refresh_token": refresh }))
            .await
            .status,
        200
    );
    let new_pw = "another-long-passphrase-2";
    let r = app
        .post_auth(
            "/change-password",
            &access,
            json!({ "current_password": PW, "new_password": new_pw }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        app.post("/forgot-password", json!({ "email": email }))
            .await
            .status,
        202
    );
    let reset = app.mailed_token(email, 2, "/reset-password").await;
    assert_eq!(app.login(email, "wrong-password-1").await.status, 401);

    let page = audit(&app, &admin, "?limit=500").await;
    let all = entries(&page);
    for kind in [
        "user_registered",
        "user_logged_in",
        "password_changed",
        "login_failed",
    ] {
        assert!(
            kinds(&all).contains(&kind),
            "{kind} missing: {:?}",
            kinds(&all)
        );
    }
    let text = page.body.to_string();
    for secret in [
        PW,
        new_pw,
        "wrong-password-1",
        &verify,
        &access,
        &refresh,
        &reset,
    ] {
        assert!(!text.contains(secret), "the audit log holds a secret");
    }
    // The JWT's signature part alone is not there either.
    let signature = access.rsplit('.').next().unwrap();
    assert!(!text.contains(signature));
}

#[tokio::test]
async fn audit_pages_neither_repeat_nor_skip_while_entries_are_written() {
    let app = admin_app().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    for i in 0..7 {
        let r = app
            .login(&format!("probe{i}@example.com"), "wrong-password-1")
            .await;
        assert_eq!(r.status, 401);
    }
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = String::new();
    for round in 0.. {
        let r = audit(
            &app,
            &admin,
            &format!("?kind=login_failed&limit=3&cursor={cursor}"),
        )
        .await;
        let page = entries(&r);
        seen.extend(page.iter().map(|e| e["email"].as_str().unwrap().to_owned()));
        if round == 0 {
            // Newer entries arrive while the operator pages back.
            for i in 7..9 {
                app.login(&format!("probe{i}@example.com"), "wrong-password-1")
                    .await;
            }
        }
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7)
        .rev()
        .map(|i| format!("probe{i}@example.com"))
        .collect();
    assert_eq!(seen, expected, "each older entry once, in order");
}

#[tokio::test]
async fn only_administrators_read_the_audit_log_and_bad_queries_are_named() {
    let app = admin_app().await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let (_, user) = make_user(&app, "plain@example.com").await;
    let anonymous = app.call(Method::GET, "/admin/audit", None, None).await;
    assert_eq!(anonymous.status, 401);
    let plain = app
        .call(Method::GET, "/admin/audit", Some(&user), None)
        .await;
    assert_eq!(
        (plain.status.as_u16(), plain.detail()),
        (403, "Administrator privileges required.")
    );
    for (query, field) in [
        ("?kind=no_such_event", "kind"),
        ("?since=yesterday", "since"),
        ("?user_id=not%20an%20id%21", "user_id"),
        ("?email=not-an-address", "email"),
        ("?cursor=garbage", "cursor"),
        ("?order=sideways", "order"),
        ("?limit=501", "limit"),
    ] {
        let r = audit(&app, &admin, query).await;
        assert_eq!(r.status, 422, "{query}: {:?}", r.body);
        assert_eq!(
            r.body["detail"][0]["loc"],
            json!(["query", field]),
            "{query}"
        );
    }
    let plain_app = spawn_app().await;
    let (_, token) = make_user(&plain_app, "plain@example.com").await;
    let r = plain_app
        .call(Method::GET, "/admin/audit", Some(&token), None)
        .await;
    assert_eq!(r.status, 404, "mounted only with the admin router");
}

#[tokio::test]
async fn housekeeping_purges_entries_past_the_retention_only() {
    let app = spawn_app_with(
        |s| {
            s.config.enable_admin_router = true;
            s.config.audit.retention_days = 30;
        },
        false,
    )
    .await;
    let (_, admin) = make_admin(&app, "admin@example.com").await;
    let now = chrono::Utc::now();
    let old =
        regstack_testkit::fixtures::audit_entry("login_failed", now - chrono::TimeDelta::days(31));
    let kept =
        regstack_testkit::fixtures::audit_entry("login_failed", now - chrono::TimeDelta::days(29));
    app.stores
        .audit
        .append(&[old.clone(), kept.clone()])
        .await
        .unwrap();
    flushed(&app).await;
    let report = app.rs.engine().purge_expired().await.unwrap();
    assert_eq!(report.audit_entries, 1);
    let left = entries(&audit(&app, &admin, "?kind=login_failed&limit=500").await);
    let ids: Vec<&str> = left.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&kept.id.as_str()) && !ids.contains(&old.id.as_str()));
}
