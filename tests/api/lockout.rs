//! Malicious lockout (checklist row LK-4): a stranger who fails against an
//! address locks it for clients without a device cookie (429, as in
//! `security.rs`), but a browser that signed in to the address before
//! carries a device cookie and counts in a bucket of its own — until its
//! own failures lock it, and only it. Cookies for another address, forged
//! or malformed ones count as no cookie at all.

use serde_json::{json, Value};

use crate::support::*;

const DEVICE_COOKIE: &str = "__Host-regstack_device";
const WRONG: &str = "wrong-password-1";

/// `POST /login`, presenting `device` as the device cookie when given.
async fn login_from(app: &TestApp, device: Option<&str>, email: &str, password: &str) -> Reply {
    let mut req = app
        .http
        .post(format!("{}/login", app.api))
        .json(&json!({ "email": email, "password": password }));
    if let Some(d) = device {
        req = req.header("cookie", format!("theme=dark; {DEVICE_COOKIE}={d}"));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

/// A 429 whose lock lifts about a window (900 s) from now. The oldest
/// attempt counted is already a little old by then, by more than a second
/// on a slow backend, so `Retry-After` may be a few seconds short of 900.
fn assert_locked(r: &Reply) {
    assert_eq!(r.status, 429, "{:?}", r.body);
    let secs: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((880..=900).contains(&secs), "Retry-After: {secs}");
    assert_eq!(
        r.detail(),
        format!("Too many failed attempts. Try again in {secs} seconds.")
    );
    assert!(device_set_cookie(r).is_none(), "a refusal sets no cookie");
}

/// The whole `Set-Cookie` line of the device cookie, if the reply sets one.
fn device_set_cookie(r: &Reply) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{DEVICE_COOKIE}=")))
}

/// The device cookie's value from a reply that must set one.
fn device_cookie(r: &Reply) -> String {
    let line = device_set_cookie(r)
        .unwrap_or_else(|| panic!("no device cookie in {:?} {:?}", r.status, r.headers));
    let pair = line.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

/// Signs `email` in from a fresh browser and returns its device cookie.
async fn owner_device(app: &TestApp, email: &str) -> String {
    let r = login_from(app, None, email, PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    device_cookie(&r)
}

/// A stranger, presenting nothing, fails five times: the address is locked
/// for every client without a device cookie.
async fn stranger_locks(app: &TestApp, email: &str) {
    for _ in 0..5 {
        let r = login_from(app, None, email, WRONG).await;
        assert_eq!(r.status, 401, "{:?}", r.body);
    }
    // The address is locked for cookieless clients.
    assert_locked(&login_from(app, None, email, PW).await);
}

#[tokio::test]
async fn a_strangers_failures_lock_the_address_but_not_the_owners_device() {
    let app = spawn_app().await;
    app.create_user("owner@example.com", PW).await;
    let device = owner_device(&app, "owner@example.com").await;
    stranger_locks(&app, "owner@example.com").await;

    // The owner's device counts in its own bucket: a typo costs one of its
    // own five attempts, not a 429.
    let r = login_from(&app, Some(&device), "owner@example.com", WRONG).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Invalid email or password. 4 attempt(s) remaining.")
    );
    let before = app.hasher.total_verifications();
    let r = login_from(&app, Some(&device), "OWNER@example.com", PW).await;
    assert_eq!(r.status, 200, "the owner's device signs in: {:?}", r.body);
    assert_eq!(app.hasher.total_verifications() - before, 1);
    assert!(r.body["access_token"].is_string());
    let renewed = device_cookie(&r);
    assert_ne!(renewed, device, "every sign-in hands out a new device id");

    // As before device cookies, the owner's success clears the address's
    // bucket too: cookieless clients start over.
    let r = login_from(&app, None, "owner@example.com", WRONG).await;
    assert_eq!(
        r.detail(),
        "Invalid email or password. 4 attempt(s) remaining."
    );
}

#[tokio::test]
async fn the_owners_device_failing_locks_only_that_device() {
    let app = spawn_app().await;
    app.create_user("typo@example.com", PW).await;
    let device = owner_device(&app, "typo@example.com").await;

    for remaining in ["4", "3", "2", "1"] {
        let r = login_from(&app, Some(&device), "typo@example.com", WRONG).await;
        assert_eq!(
            r.detail(),
            format!("Invalid email or password. {remaining} attempt(s) remaining.")
        );
    }
    let r = login_from(&app, Some(&device), "typo@example.com", WRONG).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Invalid email or password.")
    );
    // The device is locked: even the right password is refused, before
    // any hashing — a stolen device cookie cannot guess for ever.
    let before = app.hasher.total_verifications();
    assert_locked(&login_from(&app, Some(&device), "typo@example.com", PW).await);
    assert_eq!(app.hasher.total_verifications(), before, "no hashing");

    // The address is not locked: a client without the cookie still has
    // its five attempts, and the right password signs in there.
    let r = login_from(&app, None, "typo@example.com", WRONG).await;
    assert_eq!(
        r.detail(),
        "Invalid email or password. 4 attempt(s) remaining."
    );
    let r = login_from(&app, None, "typo@example.com", PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let other_device = device_cookie(&r);

    // That success cleared the address's bucket, not the locked device's;
    // the browser it came from is a new device with a bucket of its own.
    // The locked device stays locked.
    assert_locked(&login_from(&app, Some(&device), "typo@example.com", PW).await);
    let r = login_from(&app, Some(&other_device), "typo@example.com", PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_forged_or_another_addresss_cookie_counts_as_no_cookie() {
    let app = spawn_app().await;
    app.create_user("victim@example.com", PW).await;
    app.create_user("attacker@example.com", PW).await;
    let victims = owner_device(&app, "victim@example.com").await;
    let attackers = owner_device(&app, "attacker@example.com").await;
    let flipped = if victims.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{flipped}", &victims[..victims.len() - 1]);
    let (id, _) = victims.split_once('.').unwrap();
    let untagged = format!("{id}.{}", "A".repeat(22));

    // Each of them counts in the address's bucket, with the cookieless
    // stranger's attempts.
    let untrusted = [
        None,
        Some(attackers.as_str()),
        Some(forged.as_str()),
        Some(untagged.as_str()),
        Some("not-a-device-cookie"),
    ];
    for (presented, remaining) in untrusted.iter().zip(["4", "3", "2", "1"]) {
        let r = login_from(&app, *presented, "victim@example.com", WRONG).await;
        assert_eq!(
            r.detail(),
            format!("Invalid email or password. {remaining} attempt(s) remaining."),
            "{presented:?}"
        );
    }
    let r = login_from(&app, untrusted[4], "victim@example.com", WRONG).await;
    assert_eq!(r.status, 401);
    // Each is refused by the address's lock.
    for presented in untrusted {
        assert_locked(&login_from(&app, presented, "victim@example.com", PW).await);
    }

    // The attacker's own address is unaffected, and its cookie still works
    // there.
    let r = login_from(&app, Some(&attackers), "attacker@example.com", PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The victim's real cookie gets in.
    let r = login_from(&app, Some(&victims), "victim@example.com", PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn the_device_cookie_is_host_only_http_only_same_site_and_long_lived() {
    let app = spawn_app().await;
    app.create_user("cookie-attrs@example.com", PW).await;

    let r = login_from(&app, None, "cookie-attrs@example.com", PW).await;
    assert_eq!(r.status, 200);
    let line = device_set_cookie(&r).expect("a device cookie");
    let attrs: Vec<&str> = line.split(';').map(str::trim).skip(1).collect();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=31536000",
    ] {
        assert!(attrs.contains(&attr), "{line} lacks {attr}");
    }
    assert!(!line.to_lowercase().contains("domain="), "{line}");
    let value = device_cookie(&r);
    let (id, tag) = value.split_once('.').expect("<device id>.<tag>");
    assert_eq!((id.len(), tag.len()), (32, 22), "{value}");

    // The JSON answer is regstack's, unchanged.
    let mut keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "refresh_token",
            "token_type"
        ]
    );

    // Refusals set no cookie, whatever was presented.
    for presented in [None, Some(value.as_str())] {
        let r = login_from(&app, presented, "cookie-attrs@example.com", WRONG).await;
        assert_eq!(r.status, 401);
        assert!(r.headers.get("set-cookie").is_none(), "{presented:?}");
    }
    let r = login_from(&app, None, "nobody@example.com", PW).await;
    assert_eq!(r.status, 401);
    assert!(r.headers.get("set-cookie").is_none());
}
