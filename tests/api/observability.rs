//! Observability, on every backend: the Prometheus scrape after a scripted
//! account life (each counter moved by exactly what the client saw, and
//! nothing in it that names a person), request ids (echoed, made, or
//! replaced when not sane) on every answer and in every log line of their
//! request, and no secret in the logs of that whole life.

use std::time::Duration;

use chrono::TimeDelta;
use regstack_testkit::totp::{base32_decode, code_at as totp_at};
use serde_json::{json, Value};

use crate::support::*;

/// `GET /metrics` of `app`, served the way a host mounts
/// `RegStack::metrics_router` (a listener of its own).
async fn metrics_url(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.rs.metrics_router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/metrics")
}

async fn scrape(url: &str) -> String {
    let res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    res.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as
/// rendered), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Polls the scrape until every `(series, value)` holds: event handlers
/// count in their own tasks, a moment after the answer.
async fn await_samples(url: &str, want: &[(String, f64)]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(url).await;
        let wrong: Vec<String> = want
            .iter()
            .filter(|(s, v)| sample(&text, s) != *v)
            .map(|(s, v)| format!("{s}: want {v}, got {}", sample(&text, s)))
            .collect();
        if wrong.is_empty() {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never reached their values:\n{}\n----- scrape -----\n{text}",
            wrong.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn s(series: &str, v: f64) -> (String, f64) {
    (series.to_owned(), v)
}

/// The acceptance script of issue 17: register, verify, a failed and a
/// good login, refresh, refresh reuse, a second factor with a wrong code, a
/// lockout — then the scrape, and the logs.
#[tokio::test]
async fn a_scripted_account_life_moves_each_counter_by_what_the_client_saw_and_names_nobody() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app_with(|s| s.config.login_lockout_threshold = 3, true).await;
    let url = metrics_url(&app).await;
    let before = scrape(&url).await;
    assert_eq!(
        sample(
            &before,
            r#"regstack_logins_total{outcome="failure",reason="wrong_password"}"#
        ),
        0.0,
        "every series exists at zero from the start:\n{before}"
    );
    let clock = app.clock.clone().unwrap();
    let email = "watched.person@example.com";
    let mut secrets: Vec<String> = vec![PW.to_owned(), "wrong-password-1".to_owned()];

    // Register and verify: one mail.
    app.create_user(email, PW).await;
    let verify_token = app.mailed_token(email, 1, "/verify").await;
    secrets.push(verify_token);

    // A wrong password and an unknown address.
    let r = app.login(email, "wrong-password-1").await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = app.login("nobody.here@example.com", PW).await;
    assert_eq!(r.status, 401, "{:?}", r.body);

    // A good login, carrying the client's request id.
    let res = app
        .http
        .post(format!("{}/login", app.api))
        .header("x-request-id", "obs-login-0001")
        .json(&json!({ "email": email, "password": PW }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "obs-login-0001");
    let first: Value = res.json().await.unwrap();
    let spent = first["refresh_token"].as_str().unwrap().to_owned();
    secrets.push(first["access_token"].as_str().unwrap().to_owned());
    secrets.push(spent.clone());

    // One rotation; then, past the grace window, the spent token again:
    // reuse, and the family is gone.
    let r = app
        .post("/refresh", json!({ "refresh_token": spent }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    secrets.push(r.body["refresh_token"].as_str().unwrap().to_owned());
    secrets.push(r.body["access_token"].as_str().unwrap().to_owned());
    clock.advance(TimeDelta::seconds(60));
    let r = app
        .post("/refresh", json!({ "refresh_token": spent }))
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);

    // A second factor: enrol, then a challenge with one wrong code and the
    // right one.
    let access = app.access_token(email, PW).await;
    secrets.push(access.clone());
    let r = app
        .post_auth("/totp/setup", &access, json!({ "current_password": PW }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let secret = base32_decode(r.body["secret"].as_str().unwrap());
    secrets.push(r.body["secret"].as_str().unwrap().to_owned());
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    secrets.push(pending.clone());
    let code = totp_at(&secret, regstack_ports::Clock::now(&*clock));
    let r = app
        .post_auth(
            "/totp/confirm",
            &access,
            json!({ "pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for c in r.body["backup_codes"].as_array().unwrap() {
        secrets.push(c.as_str().unwrap().to_owned());
    }
    clock.advance(TimeDelta::seconds(30));
    let r = app.login(email, PW).await;
    assert_eq!(r.body["status"], "mfa_required", "{:?}", r.body);
    let pending = r.body["mfa_pending_token"].as_str().unwrap().to_owned();
    secrets.push(pending.clone());
    let wrong = if totp_at(&secret, regstack_ports::Clock::now(&*clock)) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = app
        .post(
            "/login/mfa-confirm",
            json!({ "mfa_pending_token": pending, "code": wrong }),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let code = totp_at(&secret, regstack_ports::Clock::now(&*clock));
    secrets.push(code.clone());
    let r = app
        .post(
            "/login/mfa-confirm",
            json!({ "mfa_pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    secrets.push(r.body["access_token"].as_str().unwrap().to_owned());
    secrets.push(r.body["refresh_token"].as_str().unwrap().to_owned());

    // A lockout: wrong passwords at another address until it is refused.
    let target = "stuffed@example.com";
    let (mut refused, mut locked) = (0.0, 0.0);
    for _ in 0..6 {
        match app.login(target, "wrong-password-1").await.status.as_u16() {
            401 => refused += 1.0,
            429 => locked += 1.0,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused >= 1.0 && locked >= 1.0,
        "{refused} refused, {locked} locked"
    );

    // An unknown route, inside and outside the API prefix.
    assert_eq!(
        app.call(reqwest::Method::GET, "/no/such/route", None, None)
            .await
            .status,
        404
    );

    // A mail the transport refuses (a reset link: the background job).
    app.mailer.fail_next(1);
    let r = app
        .post("/forgot-password", json!({ "email": email }))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.mailer.failed() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the reset mail was never tried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mails = app.mailer.sent().len() as f64;
    let logins = r#"regstack_logins_total{outcome="#;
    let http = "regstack_http_request_duration_seconds_count";
    let text = await_samples(
        &url,
        &[
            s(&format!(r#"{logins}"success",reason=""}}"#), 3.0),
            s(
                &format!(r#"{logins}"failure",reason="wrong_password"}}"#),
                1.0,
            ),
            s(
                &format!(r#"{logins}"failure",reason="no_account"}}"#),
                1.0 + refused,
            ),
            s(&format!(r#"{logins}"locked",reason=""}}"#), locked),
            s("regstack_login_lockouts_total", locked),
            s("regstack_mfa_challenges_total", 1.0),
            s(r#"regstack_mfa_failures_total{kind="wrong_code"}"#, 1.0),
            s(r#"regstack_mfa_failures_total{kind="exhausted"}"#, 0.0),
            s("regstack_refresh_rotations_total", 1.0),
            s("regstack_refresh_reuse_detected_total", 1.0),
            s(
                r#"regstack_notifications_total{channel="mail",outcome="sent"}"#,
                mails,
            ),
            s(
                r#"regstack_notifications_total{channel="mail",outcome="failed"}"#,
                1.0,
            ),
            s(r#"regstack_notifications_queued{channel="mail"}"#, 0.0),
            s(
                r#"regstack_notifications_total{channel="sms",outcome="sent"}"#,
                0.0,
            ),
            s("regstack_password_hash_in_flight", 0.0),
            // Logins: 2 + 1 + 1 (for the second factor) + 1 (the
            // challenge) + the lockout's, answered 2xx or 4xx.
            s(
                &format!(r#"{http}{{method="POST",route="/api/auth/login",status="2xx"}}"#),
                3.0,
            ),
            s(
                &format!(r#"{http}{{method="POST",route="/api/auth/login",status="4xx"}}"#),
                2.0 + refused + locked,
            ),
            s(
                &format!(r#"{http}{{method="POST",route="/api/auth/refresh",status="2xx"}}"#),
                1.0,
            ),
            s(
                &format!(r#"{http}{{method="POST",route="/api/auth/refresh",status="4xx"}}"#),
                1.0,
            ),
            s(
                &format!(r#"{http}{{method="GET",route="unmatched",status="4xx"}}"#),
                1.0,
            ),
        ],
    )
    .await;
    assert!(mails >= 1.0);
    assert!(
        sample(
            &text,
            r#"regstack_password_hash_duration_seconds_count{op="verify"}"#
        ) >= 7.0,
        "every password check is timed:\n{text}"
    );

    // Nothing in the scrape names a person, a session or a path.
    let user_id = app
        .stores
        .users
        .find_by_email(&regstack_ports::Email::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id;
    for needle in [
        email,
        "watched.person",
        "example.com",
        "stuffed",
        user_id.as_str(),
        "/no/such/route",
    ] {
        assert!(!text.contains(needle), "{needle} in the scrape:\n{text}");
    }
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret in the scrape");
    }

    // The logs: no secret at any level; the client's request id on the
    // lines its login caused, with the account's id once it was known.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = capture.text();
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret in the logs: {secret}"
        );
    }
    let login_lines: Vec<Value> = logs
        .lines()
        .filter(|l| l.contains("obs-login-0001"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        login_lines
            .iter()
            .any(|l| l["fields"]["event"] == "user_logged_in"),
        "the login's event line carries its request id:\n{login_lines:#?}"
    );
    assert!(
        login_lines.iter().any(|l| {
            l["spans"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["flow"] == "login" && s["user_id"] == user_id.as_str())
        }),
        "the login's flow span names the account:\n{login_lines:#?}"
    );
}

/// A request id is echoed when sane, made when absent, replaced when it is
/// too long or holds what could break a log line — on every answer,
/// errors included.
#[tokio::test]
async fn request_ids_are_echoed_made_or_replaced() {
    let app = spawn_app().await;
    let id_of = |id: Option<&str>, path: &'static str| {
        let mut req = app.http.get(format!("{}{path}", app.api));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        async move {
            let res = req.send().await.unwrap();
            res.headers()["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    let fresh = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());

    assert_eq!(id_of(Some("abc-123:x/y"), "/me").await, "abc-123:x/y");
    assert_eq!(id_of(Some("trace-404"), "/no-such").await, "trace-404");
    let made = id_of(None, "/me").await;
    assert!(fresh(&made), "{made}");
    assert_ne!(made, id_of(None, "/me").await, "each request its own");
    let long = "a".repeat(129);
    for bad in [long.as_str(), "two words", "tab\there", ""] {
        let got = id_of(Some(bad), "/me").await;
        assert!(fresh(&got), "{bad:?} became {got:?}");
    }
    assert_eq!(id_of(Some(&"b".repeat(128)), "/me").await, "b".repeat(128));
}

/// Texts are counted like mail, and the number never reaches the scrape.
#[tokio::test]
async fn texts_are_counted_and_the_number_stays_out_of_the_scrape() {
    const PHONE: &str = "+442079460958";
    let app = spawn_app_with(|s| s.config.mfa.enable_sms_2fa = true, false).await;
    let url = metrics_url(&app).await;
    app.create_user("texted@example.com", PW).await;
    let access = app.access_token("texted@example.com", PW).await;
    let r = app
        .post_auth(
            "/phone/start",
            &access,
            json!({ "phone_number": PHONE, "current_password": PW }),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let texts = app.sms.wait_for(PHONE, 1, Duration::from_secs(10)).await;
    let text = await_samples(
        &url,
        &[
            s(
                r#"regstack_notifications_total{channel="sms",outcome="sent"}"#,
                texts.len() as f64,
            ),
            s(
                r#"regstack_notifications_total{channel="sms",outcome="failed"}"#,
                0.0,
            ),
            s(r#"regstack_notifications_queued{channel="sms"}"#, 0.0),
        ],
    )
    .await;
    for needle in [PHONE, "2079460958", "texted"] {
        assert!(!text.contains(needle), "{needle} in the scrape");
    }
}

/// A client cannot grow the scrape: random paths, ids in paths and odd
/// methods all land in the same few series.
#[tokio::test]
async fn random_paths_and_methods_cannot_add_series() {
    let app = spawn_app().await;
    let url = metrics_url(&app).await;
    let brew = reqwest::Method::from_bytes(b"BREW").unwrap();
    for i in 0..20 {
        let path = format!("{}/users/u{i}x/probe-{i}", app.api);
        let method = if i % 2 == 0 {
            brew.clone()
        } else {
            reqwest::Method::GET
        };
        let res = app.http.request(method, &path).send().await.unwrap();
        assert_eq!(res.status(), 404);
        let outside = format!("{}/elsewhere-{i}", app.base);
        app.http.get(&outside).send().await.unwrap();
    }
    // 10 GETs and 10 BREWs inside the prefix, 20 GETs outside it.
    let text = scrape(&url).await;
    let http: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("regstack_http_request_duration_seconds_count"))
        .collect();
    assert_eq!(
        http,
        [
            r#"regstack_http_request_duration_seconds_count{method="GET",route="unmatched",status="4xx"} 30"#,
            r#"regstack_http_request_duration_seconds_count{method="other",route="unmatched",status="4xx"} 10"#,
        ],
        "{text}"
    );
    assert!(!text.contains("probe-") && !text.contains("elsewhere-") && !text.contains("BREW"));
}
