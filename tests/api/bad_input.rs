//! Bad input: always JSON with the right status, never a stack trace, and
//! nothing written.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.base))
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{path}: {:?}",
        headers.get("content-type")
    );
    let body = res.json().await.unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn unknown_route_and_wrong_method_answer_in_json() {
    let app = spawn_app().await;
    let r = raw(&app, Method::GET, "/api/auth/nope", None, vec![]).await;
    assert_eq!(
        (r.status.as_u16(), &r.body),
        (404, &json!({ "detail": "Not Found" }))
    );
    let r = raw(&app, Method::GET, "/api/auth/login", None, vec![]).await;
    assert_eq!(
        (r.status.as_u16(), &r.body),
        (405, &json!({ "detail": "Method Not Allowed" }))
    );
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn malformed_json_missing_and_unknown_fields_are_422_in_regstacks_shape() {
    let app = spawn_app().await;
    let r = raw(
        &app,
        Method::POST,
        "/api/auth/login",
        Some("application/json"),
        br#"{"email": "#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["type"], "json_invalid");
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", 10]));
    assert_eq!(r.body["detail"][0]["msg"], "JSON decode error");

    let r = app.post("/login", json!({})).await;
    assert_eq!(
        r.body,
        json!({ "detail": [
            { "type": "missing", "loc": ["body", "email"], "msg": "Field required" },
            { "type": "missing", "loc": ["body", "password"], "msg": "Field required" },
        ]})
    );
    let r = app
        .post(
            "/login",
            json!({ "email": "not-an-email", "password": "tiny1" }),
        )
        .await;
    assert_eq!(
        r.body["detail"][0]["msg"],
        "value is not a valid email address: An email address must have an @-sign."
    );
    assert_eq!(r.body["detail"][1]["type"], "string_too_short");
    // Secrets are never echoed back.
    assert!(!r.body.to_string().contains("tiny1"), "{}", r.body);

    let r = app
        .post(
            "/login",
            json!({ "email": "a@example.com", "password": "long-enough", "remember_me": true }),
        )
        .await;
    assert_eq!(r.body["detail"][0]["type"], "extra_forbidden");
    let r = app
        .post(
            "/register",
            json!({ "email": "mass@example.com", "password": PW, "is_superuser": true }),
        )
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn operator_objects_where_strings_belong_are_refused_everywhere() {
    let app = spawn_app().await;
    for (path, body) in [
        (
            "/login",
            json!({ "email": { "$ne": null }, "password": { "$gt": "" } }),
        ),
        ("/forgot-password", json!({ "email": { "$ne": null } })),
        ("/verify", json!({ "token": { "$ne": null } })),
        (
            "/reset-password",
            json!({ "token": ["x"], "new_password": "long-enough-1" }),
        ),
        (
            "/register",
            json!({ "email": "x@example.com", "password": 12345678 }),
        ),
    ] {
        let r = app.post(path, body).await;
        assert_eq!(r.status, 422, "{path}: {:?}", r.body);
        assert_eq!(r.body["detail"][0]["type"], "string_type", "{path}");
    }
}

#[tokio::test]
async fn oversized_bodies_get_413_and_other_media_types_415() {
    let app = spawn_app().await;
    let big = format!(
        r#"{{"email":"a@example.com","password":"{}"}}"#,
        "x".repeat(1 << 20)
    );
    let r = raw(
        &app,
        Method::POST,
        "/api/auth/login",
        Some("application/json"),
        big.into_bytes(),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["detail"].as_str()),
        (413, Some("Request body too large."))
    );
    let form = b"email=a%40example.com&password=long-enough".to_vec();
    let r = raw(
        &app,
        Method::POST,
        "/api/auth/login",
        Some("application/x-www-form-urlencoded"),
        form,
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.body["detail"].as_str()),
        (415, Some("Content-Type must be application/json."))
    );
    let r = raw(
        &app,
        Method::POST,
        "/api/auth/login",
        Some("text/plain"),
        br#"{"email":"a@example.com","password":"long-enough"}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 415);
    // No Content-Type at all is parsed as JSON (regstack parity) when the
    // request is not cross-site (see the next test).
    let r = raw(
        &app,
        Method::POST,
        "/api/auth/login",
        None,
        br#"{"email":"a@example.com","password":"long-enough"}"#.to_vec(),
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn control_characters_in_a_name_are_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let r = app
        .post("/register", json!({ "email": "crlf@example.com", "password": PW, "full_name": "x\r\nBcc: evil@example.com" }))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", "full_name"]));
    let r = app
        .post(
            "/register",
            json!({ "email": "crlf@example.com", "password": PW, "full_name": "n".repeat(201) }),
        )
        .await;
    assert_eq!(r.body["detail"][0]["type"], "string_too_long");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.mailer.sent().is_empty());
    assert_eq!(app.hasher.hashes(), 0);
    let email = regstack_ports::Email::parse("crlf@example.com").unwrap();
    let pending = app
        .stores
        .pending
        .find_by_email(&email, chrono::Utc::now())
        .await
        .unwrap();
    assert!(pending.is_none());
}

/// A body without a `Content-Type` is what a page on another site can send
/// without a CORS preflight (`fetch(url, {mode: "no-cors", body})`). It is
/// read as JSON only from clients that are not cross-site: a foreign or
/// `null` `Origin`, or `Sec-Fetch-Site: cross-site`, gets 403 on every
/// route that takes a body, and nothing is written or mailed. Our own
/// origin, a configured CORS origin, and clients that send no `Origin` at
/// all (regstack parity) are served.
#[tokio::test]
async fn an_untyped_body_from_another_site_is_refused_and_writes_nothing() {
    let app = spawn_app_with(
        |c| c.http.cors_allowed_origins = vec!["https://spa.example".into()],
        false,
    )
    .await;
    let send = |path: &'static str, body: String, headers: Vec<(&'static str, &'static str)>| {
        let mut req = app.http.post(format!("{}{path}", app.api)).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let body: serde_json::Value = res.json().await.unwrap();
            (status, body)
        }
    };
    let register = |email: &str| json!({ "email": email, "password": PW }).to_string();
    for (i, headers) in [
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("xsite-{i}@example.com");
        let (status, body) = send("/register", register(&email), headers.clone()).await;
        assert_eq!(
            (status, body["detail"].as_str()),
            (403, Some("Cross-site request refused.")),
            "{headers:?}"
        );
        let (status, _) = send(
            "/forgot-password",
            json!({ "email": email }).to_string(),
            headers.clone(),
        )
        .await;
        assert_eq!(status, 403, "{headers:?}");
        let pending = app
            .stores
            .pending
            .find_by_email(
                &regstack_ports::Email::parse(&email).unwrap(),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        assert!(pending.is_none(), "a refused registration wrote a row");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.mailer.sent().is_empty(), "a refused request sent mail");

    // Served: no Origin (curl, servers), our own origin, a CORS origin,
    // and a typed body from anywhere (CORS decides what a page may read).
    for (i, headers) in [
        vec![],
        vec![
            ("origin", "http://app.test"),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![
            ("origin", "https://spa.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![
            ("origin", "https://evil.example"),
            ("content-type", "application/json"),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("served-{i}@example.com");
        let (status, body) = send("/register", register(&email), headers.clone()).await;
        assert_eq!(status, 201, "{headers:?}: {body}");
    }
}

/// Addresses whose lower-case form differs in length or syntax ("İ" becomes
/// "i" + U+0307) get a clean answer — 201 and an account that works, or
/// 422 — never a row that later fails to load (a 500 on every request); and
/// the precomposed and decomposed spellings of one address are one account.
#[tokio::test]
async fn unicode_addresses_are_canonical_before_they_are_checked() {
    let app = spawn_app().await;
    for raw in ["İnci@example.com", "\u{130}\u{130}\u{130}@example.com"] {
        let r = app.register(raw, PW).await;
        assert!(
            r.status == 201 || r.status == 422,
            "{raw}: {} {:?}",
            r.status,
            r.body
        );
        let r = app
            .post("/resend-verification", json!({ "email": raw }))
            .await;
        assert!(r.status == 202 || r.status == 422, "{raw}: {}", r.status);
    }
    app.create_user("Zo\u{e9}@example.com", PW).await;
    let r = app.register("ZOE\u{301}@example.com", PW).await;
    assert_eq!(r.status, 409, "the decomposed spelling is the same account");
    let r = app.login("zoe\u{301}@EXAMPLE.com", PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
