//! Per-route limits (security.md LK-5, LK-7): N requests a window per
//! client IP — and per address on the routes whose body names one — then
//! 429 with `Retry-After` and regstack's `detail`, before the handler runs.
//! The client IP comes from `X-Forwarded-For` only behind a trusted proxy,
//! counted from the right; a client's own header never buys it a new
//! counter. Counters live in the shared store (the database, or Redis),
//! so two servers enforce one limit.

use std::time::Duration;

use chrono::TimeDelta;
use regstack::{ProviderConfig, ProviderKind, RouteLimits, Settings};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

/// Every limited route, with a body of the right shape (its answer below
/// the limit does not matter, only that the limit is counted and kept).
fn limited_routes() -> Vec<(Method, &'static str, Option<Value>)> {
    let email = json!({ "email": "someone@example.com" });
    let token = json!({ "token": "x".repeat(43) });
    vec![
        (
            Method::POST,
            "/login",
            Some(json!({ "email": "someone@example.com", "password": "wrong-password" })),
        ),
        (
            Method::POST,
            "/register",
            Some(json!({ "email": "someone@example.com", "password": PW })),
        ),
        (Method::POST, "/resend-verification", Some(email.clone())),
        (Method::POST, "/forgot-password", Some(email)),
        (
            Method::POST,
            "/reset-password",
            Some(json!({ "token": "x".repeat(43), "new_password": PW })),
        ),
        (Method::POST, "/verify", Some(token.clone())),
        (Method::POST, "/confirm-email-change", Some(token)),
        (
            Method::POST,
            "/login/mfa-confirm",
            Some(json!({ "mfa_pending_token": "x".repeat(43), "code": "123456" })),
        ),
        (
            Method::POST,
            "/login/change-password",
            Some(json!({ "password_change_token": "x".repeat(43), "new_password": PW })),
        ),
        (
            Method::POST,
            "/totp/confirm",
            Some(json!({ "code": "123456" })),
        ),
        (
            Method::POST,
            "/phone/start",
            Some(json!({ "phone_number": "+14155550100", "current_password": PW })),
        ),
        (
            Method::POST,
            "/phone/confirm",
            Some(json!({ "pending_token": "x".repeat(43), "code": "123456" })),
        ),
        (
            Method::DELETE,
            "/phone",
            Some(json!({ "current_password": PW })),
        ),
        (Method::GET, "/oauth/github/start", None),
        (Method::POST, "/oauth/github/link/start", None),
        (
            Method::POST,
            "/oauth/exchange",
            Some(json!({ "id": "x".repeat(43) })),
        ),
    ]
}

fn every_group(limit: &str) -> RouteLimits {
    let mut l = RouteLimits::none();
    l.login = limit.into();
    l.register = limit.into();
    l.forgot_password = limit.into();
    l.verify = limit.into();
    l.mfa = limit.into();
    l.sms = limit.into();
    l.oauth_start = limit.into();
    l
}

/// A server with route limits on, SMS and a GitHub provider configured
/// (so the phone and OAuth routes are all there), on a clock the test
/// moves.
async fn spawn_limited(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(
        |s| {
            s.http.route_limits = every_group("3/minute");
            s.config.mfa.enable_sms_2fa = true;
            s.oauth.enabled = true;
            s.oauth.providers = vec![ProviderConfig::new(
                "github",
                ProviderKind::Github,
                "client-id",
                "client-secret".to_owned().into(),
            )];
            tweak(s);
        },
        true,
    )
    .await
}

/// Follows no redirect (OAuth start answers 302 to the provider).
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn send(
    app: &TestApp,
    client: &reqwest::Client,
    method: &Method,
    path: &str,
    body: &Option<Value>,
    forwarded_for: Option<&str>,
) -> Reply {
    let mut req = client.request(method.clone(), format!("{}{path}", app.api));
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

#[track_caller]
fn assert_limited(r: &Reply, window_seconds: u64, what: &str) {
    assert_eq!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: {:?}",
        r.body
    );
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some(window_seconds.to_string().as_str()),
        "{what}: Retry-After"
    );
    assert_eq!(
        r.detail(),
        format!("Too many requests. Try again in {window_seconds} seconds."),
        "{what}"
    );
}

#[track_caller]
fn assert_admitted(r: &Reply, what: &str) {
    assert_ne!(
        r.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{what}: {:?}",
        r.body
    );
}

/// LK-5: on every listed route, 3 requests a minute from one address are
/// answered by the route, the 4th gets 429 with `Retry-After: 60` and the
/// detail — and each route counts on its own. A minute later the route
/// answers again (a refused request was not counted).
#[tokio::test]
async fn every_limited_route_answers_429_after_its_limit_until_the_window_slides() {
    let app = spawn_limited(|_| {}).await;
    let client = raw_client();
    for (method, path, body) in limited_routes() {
        for n in 1..=3 {
            let r = send(&app, &client, &method, path, &body, None).await;
            assert_admitted(&r, &format!("{method} {path} #{n}"));
        }
        let r = send(&app, &client, &method, path, &body, None).await;
        assert_limited(&r, 60, &format!("{method} {path} #4"));
    }
    // Knocking on while refused does not extend the wait.
    let (method, path, body) = &limited_routes()[0];
    for _ in 0..5 {
        let r = send(&app, &client, method, path, body, None).await;
        assert_limited(&r, 60, "still refused");
    }
    app.clock.as_ref().unwrap().advance(TimeDelta::seconds(60));
    for (method, path, body) in limited_routes() {
        let r = send(&app, &client, &method, path, &body, None).await;
        assert_admitted(&r, &format!("{method} {path} after the window"));
    }
}

/// A refused sign-in costs nothing: no password hash, no lockout count.
#[tokio::test]
async fn a_refused_request_never_reaches_the_handler() {
    let app = spawn_limited(|s| s.http.route_limits.login = "2/minute".into()).await;
    app.create_user("hashed@example.com", PW).await;
    for _ in 0..2 {
        assert_eq!(app.login("hashed@example.com", PW).await.status, 200);
    }
    let verifications = app.hasher.total_verifications();
    let r = app.login("hashed@example.com", PW).await;
    assert_limited(&r, 60, "third login");
    assert_eq!(
        app.hasher.total_verifications(),
        verifications,
        "no hash for a refused request"
    );
    let events = app.event_names().len();
    let r = app.login("hashed@example.com", "wrong-password").await;
    assert_limited(&r, 60, "a wrong password is refused before it is checked");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.event_names().len(),
        events,
        "no event, no lockout count"
    );
}

/// Behind a trusted proxy each client counts on its own; a client that
/// writes its own `X-Forwarded-For` only adds entries left of the one our
/// proxy appended, which is the one read: it keeps its counter.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_ip_has_its_own_limit_and_spoofing_does_not_help() {
    let app = spawn_limited(|s| s.http.behind_proxy = true).await;
    let client = raw_client();
    let body = Some(json!({ "token": "x".repeat(43) }));
    let verify =
        |xff: &'static str| send(&app, &client, &Method::POST, "/verify", &body, Some(xff));
    for _ in 0..3 {
        assert_admitted(&verify("198.51.100.1").await, "client 1");
    }
    assert_limited(&verify("198.51.100.1").await, 60, "client 1, 4th");
    // The client's own claims, to the left of what our proxy appended.
    assert_limited(
        &verify("203.0.113.77, 198.51.100.1").await,
        60,
        "client 1 claiming another origin",
    );
    assert_limited(
        &verify("10.0.0.1, 10.0.0.2, 198.51.100.1").await,
        60,
        "client 1 claiming a chain",
    );
    // Another client behind the same proxy is unaffected.
    for _ in 0..3 {
        assert_admitted(&verify("198.51.100.2").await, "client 2");
    }
    assert_limited(&verify("198.51.100.2").await, 60, "client 2, 4th");
    // IPv6 clients count by their /64.
    for n in 0..3 {
        let xff = ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:ffff::3"][n];
        assert_admitted(&verify(xff).await, "v6 /64");
    }
    assert_limited(&verify("2001:db8:7:7::99").await, 60, "same /64");
    assert_admitted(&verify("2001:db8:7:8::1").await, "next /64");
}

/// Two trusted hops: the client IP is the second entry from the right.
#[tokio::test]
async fn with_two_trusted_hops_the_outer_proxys_entry_is_the_client() {
    let app = spawn_limited(|s| {
        s.http.behind_proxy = true;
        s.http.trusted_proxy_hops = 2;
    })
    .await;
    let client = raw_client();
    let body = Some(json!({ "token": "x".repeat(43) }));
    let verify =
        |xff: &'static str| send(&app, &client, &Method::POST, "/verify", &body, Some(xff));
    assert_admitted(&verify("6.6.6.1, 198.51.100.9, 10.1.1.1").await, "1");
    assert_admitted(&verify("6.6.6.2, 198.51.100.9, 10.1.1.2").await, "2");
    assert_admitted(&verify("198.51.100.9, 10.1.1.3").await, "3");
    assert_limited(
        &verify("6.6.6.4, 198.51.100.9, 10.1.1.1").await,
        60,
        "same client through another inner proxy",
    );
    assert_admitted(
        &verify("6.6.6.4, 198.51.100.10, 10.1.1.1").await,
        "another client",
    );
}

/// Not behind a proxy, `X-Forwarded-For` is never read: a forged one
/// changes nothing (the socket's address is counted).
#[tokio::test]
async fn without_behind_proxy_a_forged_forwarded_for_changes_nothing() {
    let app = spawn_limited(|_| {}).await;
    let client = raw_client();
    let body = Some(json!({ "token": "x".repeat(43) }));
    for n in 0..3 {
        let xff = ["1.1.1.1", "2.2.2.2", "3.3.3.3"][n];
        let r = send(&app, &client, &Method::POST, "/verify", &body, Some(xff)).await;
        assert_admitted(&r, xff);
    }
    for xff in ["4.4.4.4", "5.5.5.5, 6.6.6.6"] {
        let r = send(&app, &client, &Method::POST, "/verify", &body, Some(xff)).await;
        assert_limited(&r, 60, xff);
    }
    let r = app
        .call(
            Method::POST,
            "/verify",
            None,
            Some(json!({ "token": "x".repeat(43) })),
        )
        .await;
    assert_limited(&r, 60, "no header");
}

/// Sign-in, registration, resend and forgot count the body's address too,
/// normalized: changing IPs does not reset an address's counter, and
/// another address from the refused IP is still counted only by its IP.
#[tokio::test]
async fn an_address_is_limited_whatever_ip_it_comes_from() {
    let app = spawn_limited(|s| s.http.behind_proxy = true).await;
    let client = raw_client();
    for path in [
        "/login",
        "/forgot-password",
        "/resend-verification",
        "/register",
    ] {
        let spellings = [
            "victim@example.com",
            "Victim@Example.COM",
            " victim@EXAMPLE.com ",
        ];
        for (n, email) in spellings.iter().enumerate() {
            let body = Some(json!({ "email": email, "password": "wrong-password" }));
            let ip = format!("198.51.100.{}", n + 1);
            let r = send(&app, &client, &Method::POST, path, &body, Some(&ip)).await;
            assert_admitted(&r, &format!("{path} {email} from {ip}"));
        }
        let body = Some(json!({ "email": "VICTIM@example.com", "password": "wrong-password" }));
        let r = send(
            &app,
            &client,
            &Method::POST,
            path,
            &body,
            Some("198.51.100.200"),
        )
        .await;
        assert_limited(&r, 60, &format!("{path}: the address from a fresh IP"));
        let body = Some(json!({ "email": "other@example.com", "password": "wrong-password" }));
        let r = send(
            &app,
            &client,
            &Method::POST,
            path,
            &body,
            Some("198.51.100.200"),
        )
        .await;
        assert_admitted(&r, &format!("{path}: another address"));
    }
}

/// The body read for the address is handed on unchanged, and one over the
/// body limit still gets the body limit's 413.
#[tokio::test]
async fn the_buffered_body_reaches_the_handler_and_the_body_limit_still_holds() {
    let app = spawn_limited(|_| {}).await;
    app.create_user("intact@example.com", PW).await;
    let r = app.login("intact@example.com", PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .post(
            "/login",
            json!({ "email": "x@example.com", "password": "y".repeat(100_000) }),
        )
        .await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    let r = app
        .post(
            "/login",
            json!({ "email": "not-an-address", "password": PW }),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
}

/// `rate_limit_disabled = true` turns route limits off (as regstack); an
/// empty group turns that group off alone.
#[tokio::test]
async fn rate_limit_disabled_and_an_empty_group_turn_limits_off() {
    let app = spawn_limited(|s| {
        s.http.route_limits = every_group("1/minute");
        s.config.rate_limit_disabled = true;
    })
    .await;
    for _ in 0..5 {
        let r = app
            .post("/verify", json!({ "token": "x".repeat(43) }))
            .await;
        assert_admitted(&r, "disabled");
    }
    let app = spawn_limited(|s| {
        s.http.route_limits = every_group("1/minute");
        s.http.route_limits.verify = String::new();
    })
    .await;
    for _ in 0..5 {
        let r = app
            .post("/verify", json!({ "token": "x".repeat(43) }))
            .await;
        assert_admitted(&r, "verify group off");
    }
    app.post("/forgot-password", json!({ "email": "a@example.com" }))
        .await;
    let r = app
        .post(
            "/reset-password",
            json!({ "token": "x".repeat(43), "new_password": PW }),
        )
        .await;
    assert_admitted(&r, "its own counter");
    let r = app
        .post(
            "/reset-password",
            json!({ "token": "x".repeat(43), "new_password": PW }),
        )
        .await;
    assert_limited(&r, 60, "another group stays on");
}

/// regstack's per-route keys set one route's limit, over its group's, and
/// limit the bearer routes that are in no group.
#[tokio::test]
async fn regstack_route_keys_limit_their_route() {
    let app = spawn_limited(|s| {
        let r = &mut s.http.route_limits.regstack_routes;
        r.insert("change_password_rate_limit".into(), "1/hour".into());
        r.insert("verify_rate_limit".into(), "1/10 seconds".into());
    })
    .await;
    app.create_user("keys@example.com", PW).await;
    let token = app.access_token("keys@example.com", PW).await;
    let body =
        json!({ "current_password": "wrong-password", "new_password": "another-password-1" });
    let r = app
        .post_auth("/change-password", &token, body.clone())
        .await;
    assert_admitted(&r, "first change");
    let r = app.post_auth("/change-password", &token, body).await;
    assert_limited(&r, 3600, "second change within the hour");
    // `create_user` spent `/verify`'s one request: let it slide out.
    app.clock.as_ref().unwrap().advance(TimeDelta::seconds(10));
    let verify = json!({ "token": "x".repeat(43) });
    assert_admitted(&app.post("/verify", verify.clone()).await, "verify");
    assert_limited(&app.post("/verify", verify.clone()).await, 10, "verify");
    app.clock.as_ref().unwrap().advance(TimeDelta::seconds(10));
    assert_admitted(&app.post("/verify", verify).await, "10 s later");
    // `/confirm-email-change`, the other route of `verify`, keeps the
    // group's limit.
    for _ in 0..3 {
        let r = app
            .post("/confirm-email-change", json!({ "token": "x".repeat(43) }))
            .await;
        assert_admitted(&r, "group");
    }
}

/// The Redis URL the Redis-backed tests use; `None` (SKIPPED) without it,
/// a failure under `CI=true`.
fn redis_url() -> Option<String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !in_ci,
                "TEST_REDIS_URL is not set and CI=true forbids skipping: \
                 run `cargo xtask services up`"
            );
            eprintln!("SKIPPED: TEST_REDIS_URL not set (scripts/services/redis.sh up)");
            None
        }
    }
}

/// LK-7 with `rate_limits.backend = "redis"`: two servers, each with its
/// own database, counting in one Redis: requests alternating between them
/// meet one limit. (Behind a proxy, with a client IP unique to this run,
/// so runs sharing the Redis do not meet each other's counters.)
#[tokio::test]
async fn two_servers_counting_in_redis_enforce_one_limit() {
    let Some(url) = redis_url() else { return };
    let tweak = |s: &mut Settings| {
        s.rate_limit_store = regstack::RateLimitStore::Redis {
            url: url.clone().into(),
        };
        s.http.behind_proxy = true;
    };
    let a = spawn_limited(tweak).await;
    let b = spawn_limited(tweak).await;
    let client = raw_client();
    let n = uuid_like();
    let seed: u32 = n
        .bytes()
        .fold(7u32, |h, c| h.wrapping_mul(31).wrapping_add(u32::from(c)));
    let ip = format!(
        "10.{}.{}.{}",
        seed % 250,
        (seed / 250) % 250,
        (seed / 62_500) % 250 + 1
    );
    let body = Some(json!({ "token": "x".repeat(43) }));
    for (n, app) in [&a, &b, &a].into_iter().enumerate() {
        let r = send(app, &client, &Method::POST, "/verify", &body, Some(&ip)).await;
        assert_admitted(&r, &format!("request {n}"));
    }
    let r = send(&b, &client, &Method::POST, "/verify", &body, Some(&ip)).await;
    assert_limited(&r, 60, "the 4th, on the other server");
    let r = send(&a, &client, &Method::POST, "/verify", &body, Some(&ip)).await;
    assert_limited(&r, 60, "the 5th");
    // The counters are in Redis, not in either database.
    let hits = a
        .stores
        .rate_limits
        .hit(
            &format!("route:/verify:ip:{ip}:60"),
            a.rs.engine().now(),
            TimeDelta::seconds(60),
            3,
        )
        .await
        .unwrap();
    assert!(hits, "the database's counter for this client is untouched");
}

/// The same scenario with the counters in the database (LK-7): two servers
/// over one database.
#[tokio::test]
async fn two_servers_over_one_database_enforce_one_limit() {
    let a = spawn_limited(|_| {}).await;
    let b = spawn_app_on(
        a.stores.clone(),
        Backend::Memory,
        |s| s.http.route_limits = every_group("3/minute"),
        true,
    )
    .await;
    let verify = json!({ "token": "x".repeat(43) });
    for app in [&a, &b, &a] {
        assert_admitted(
            &app.post("/verify", verify.clone()).await,
            "below the limit",
        );
    }
    assert_limited(
        &b.post("/verify", verify).await,
        60,
        "the 4th, on the other server",
    );
}

/// A host that mounts our router under its own prefix keeps the limits.
#[tokio::test]
async fn limits_hold_when_a_host_nests_the_router_under_its_own_prefix() {
    let app = spawn_limited(|_| {}).await;
    let host = axum::Router::new().nest("/v1", app.rs.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            host.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let client = raw_client();
    let url = format!("http://{addr}/v1/api/auth/verify");
    let body = json!({ "token": "x".repeat(43) });
    for n in 1..=3 {
        let r = client.post(&url).json(&body).send().await.unwrap();
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "#{n}");
    }
    let r = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
