//! The account pages in a real browser: headless Debian `chromium` driven
//! by `playwright-core` (tests/support/browser/drive.mjs) through the
//! whole path — register, the mailed link, verify, sign in, TOTP enrolment
//! (codes computed by the driver), sign out and in with TOTP, a second
//! session seen and ended, password change, forgot/reset through the
//! mailed link, deletion, and sign-in with the test OpenID Provider —
//! with axe-core on every page in light and dark (no serious or critical
//! violation) and screenshots under `target/screenshots/`.
//!
//! Needs `TEST_BROWSER_URL` (`scripts/services/chromium.sh up`) and
//! `TEST_OIDC_URL` (`scripts/services/oidc.sh up`); without them it skips,
//! except under `CI=true`, where it fails.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use regstack::{ProviderConfig, ProviderKind};
use regstack_testkit::oidc::OidcProvider;

use crate::support::{fresh_backend, spawn_app_listening, token_in};

fn browser_dir() -> Option<String> {
    if let Some(url) = std::env::var("TEST_BROWSER_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return Some(url.trim_start_matches("file://").to_owned());
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "browser suite: TEST_BROWSER_URL is not set, and CI=true forbids skipping \
         (scripts/services/chromium.sh up)"
    );
    eprintln!(
        "SKIPPED browser suite: TEST_BROWSER_URL is not set (scripts/services/chromium.sh up)"
    );
    None
}

/// `target/screenshots`: under `CARGO_TARGET_DIR` when set.
fn screenshots_dir() -> std::path::PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    );
    target.join("screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_account_path_in_chromium_passes_the_accessibility_check() {
    let Some(dir) = browser_dir() else { return };
    let op = OidcProvider::from_env("browser suite");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = match &op {
        Some(op) => Some(
            op.register_client(&format!("{base}/api/auth/oauth/op/callback"))
                .await,
        ),
        None => None,
    };
    let issuer = op.as_ref().map(|o| o.issuer().to_owned());
    let (stores, backend) = fresh_backend().await;
    let app_base = base.clone();
    let app = spawn_app_listening(
        listener,
        stores,
        backend,
        move |s| {
            s.config.base_url = app_base;
            s.config.enable_ui_router = true;
            s.config.app_name = "Acme Accounts".into();
            s.http.pages.brand_tagline = Some("One account for every Acme service".into());
            if let (Some(client), Some(issuer)) = (client, issuer) {
                s.oauth.enabled = true;
                let mut p = ProviderConfig::new(
                    "op",
                    ProviderKind::Oidc,
                    client.client_id,
                    client.client_secret.into(),
                );
                p.issuer = Some(issuer);
                s.oauth.providers = vec![p];
            }
        },
        false,
    )
    .await;

    // The mails, for the driver: the n-th mail to an address, its link's
    // path and query.
    let mailer = app.mailer.clone();
    let mail_app = axum::Router::new().route(
        "/mail",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let mailer = mailer.clone();
            async move {
                let n: usize = q["n"].parse().unwrap();
                let mails = mailer.wait_for(&q["to"], n, Duration::from_secs(20)).await;
                match mails.get(n - 1).and_then(|m| token_in(&m.text, &q["path"])) {
                    Some(token) => (
                        axum::http::StatusCode::OK,
                        format!("{}?token={token}", q["path"]),
                    ),
                    None => (axum::http::StatusCode::NOT_FOUND, String::new()),
                }
            }
        }),
    );
    let mail_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mail = format!("http://{}", mail_listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(mail_listener, mail_app).await.unwrap() });

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/browser/drive.mjs");
    let shots = screenshots_dir();
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(&dir)
        .env("BASE", &base)
        .env("MAIL", &mail)
        .env(
            "OIDC",
            op.as_ref()
                .map(|o| o.issuer().to_owned())
                .unwrap_or_default(),
        )
        .env("SHOTS", &shots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), child)
        .await
        .expect("the browser suite finished within 5 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "the browser suite failed:\n{stdout}\n{stderr}"
    );
    for page in [
        "login",
        "register",
        "verify",
        "me",
        "totp-enrol",
        "backup-codes",
        "mfa-confirm",
        "sessions",
        "forgot",
        "reset",
        "methods",
    ] {
        assert!(
            shots.join(format!("{page}-dark.png")).exists(),
            "no screenshot of {page}"
        );
    }
}
