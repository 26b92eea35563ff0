//! Architecture and logging properties of the whole workspace.

use std::process::Command;

use serde_json::json;

use crate::support::*;

const IO_CRATES: &[&str] = &[
    "sqlx",
    "mongodb",
    "axum",
    "hyper",
    "reqwest",
    "lettre",
    "openidconnect",
    "redis",
    "tokio-postgres",
];

#[test]
fn ports_and_core_depend_on_no_io_crate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for krate in ["regstack-ports", "regstack-core"] {
        let out = Command::new(&cargo)
            .current_dir(root)
            .args([
                "tree",
                "--offline",
                "-e",
                "normal",
                "--prefix",
                "none",
                "-p",
                krate,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        assert!(
            tree.contains("regstack-ports"),
            "cargo tree printed nothing useful:\n{tree}"
        );
        for line in tree.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            for io in IO_CRATES {
                let hit = name == *io || name.starts_with(&format!("{io}-"));
                assert!(!hit, "{krate} depends on I/O crate {name}");
            }
        }
    }
}

/// Which of our crates each crate may depend on (normal dependencies):
/// the hexagon's edges point inward only. Adapters know the ports and
/// nothing else of ours — not `core`, not each other; the HTTP ring knows
/// `core` and the ports but no adapter; only `server` knows them all.
const ALLOWED: &[(&str, &[&str])] = &[
    ("regstack-ports", &[]),
    ("regstack-core", &["regstack-ports"]),
    ("regstack-adapters-sql", &["regstack-ports"]),
    ("regstack-adapters-mongo", &["regstack-ports"]),
    ("regstack-adapters-notify", &["regstack-ports"]),
    ("regstack-adapters-redis", &["regstack-ports"]),
    ("regstack-oauth", &["regstack-ports"]),
    ("regstack-http-axum", &["regstack-ports", "regstack-core"]),
    (
        "regstack",
        &[
            "regstack-ports",
            "regstack-core",
            "regstack-adapters-sql",
            "regstack-adapters-mongo",
            "regstack-adapters-notify",
            "regstack-adapters-redis",
            "regstack-oauth",
            "regstack-http-axum",
        ],
    ),
];

#[test]
fn every_edge_of_the_hexagon_points_inward() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(root)
        .args([
            "metadata",
            "--offline",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let mut checked = 0;
    for package in packages {
        let name = package["name"].as_str().unwrap();
        let ours: Vec<&str> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| *d == "regstack" || d.starts_with("regstack-"))
            .collect();
        let Some((_, allowed)) = ALLOWED.iter().find(|(n, _)| *n == name) else {
            // Tests, benches, xtask and testkit may use anything, but no
            // published crate may depend on them.
            continue;
        };
        checked += 1;
        for dep in ours {
            assert!(
                allowed.contains(&dep),
                "{name} depends on {dep}: that edge points outward (allowed: {allowed:?})"
            );
        }
    }
    assert_eq!(
        checked,
        ALLOWED.len(),
        "a crate of the hexagon is missing from the workspace"
    );
    for package in packages {
        let name = package["name"].as_str().unwrap();
        if ALLOWED.iter().any(|(n, _)| *n == name) {
            for d in package["dependencies"].as_array().unwrap() {
                let dep = d["name"].as_str().unwrap();
                assert!(
                    !(d["kind"].is_null() && dep == "regstack-testkit"),
                    "{name} depends on the test kit outside [dev-dependencies]"
                );
            }
        }
    }
}

#[tokio::test]
async fn logs_never_contain_a_password_or_token() {
    let capture = Capture::default();
    let writer = capture.clone();
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .try_init();
    let app = spawn_app().await;
    app.create_user("logs@example.com", PW).await;
    let t = app.access_token("logs@example.com", PW).await;
    app.login("logs@example.com", "wrong-password-77").await;
    app.post("/forgot-password", json!({ "email": "logs@example.com" }))
        .await;
    let reset = app
        .mailed_token("logs@example.com", 2, "/reset-password")
        .await;
    app.post(
        "/reset-password",
        json!({ "token": reset, "new_password": "fresh-password-88" }),
    )
    .await;
    let verify_tokens: Vec<String> = app
        .mailer
        .sent()
        .iter()
        .filter_map(|m| token_in(&m.text, "/verify"))
        .collect();
    let logs = capture.text();
    assert!(
        logs.contains("/api/auth/login"),
        "the capture must see the request logs"
    );
    let mut secrets = vec![
        PW.to_owned(),
        "wrong-password-77".into(),
        "fresh-password-88".into(),
        t,
        reset,
    ];
    secrets.extend(verify_tokens);
    for s in secrets {
        assert!(!logs.contains(&s), "secret found in logs: {s}");
    }
}

/// `rate_limit_disabled = true` is valid (the benchmark runs with it) but
/// leaves sign-ins unthrottled: start-up says so, once, at WARN.
#[tokio::test]
async fn turning_the_lockout_off_logs_a_start_up_warning_saying_what_is_off() {
    async fn start_up_log(rate_limit_disabled: bool) -> String {
        let capture = Capture::default();
        let writer = capture.clone();
        // This thread's subscriber only: the test's runtime runs the
        // start-up on this thread, and no other test's logs mix in.
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        let _app = spawn_app_with(
            |s| s.config.rate_limit_disabled = rate_limit_disabled,
            false,
        )
        .await;
        drop(guard);
        capture.text()
    }
    let off = start_up_log(true).await;
    let warnings: Vec<&str> = off
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("rate_limit_disabled"))
        .collect();
    assert_eq!(warnings.len(), 1, "{off}");
    assert!(warnings[0].contains("lockout is OFF"), "{off}");
    let on = start_up_log(false).await;
    assert!(!on.contains("rate_limit_disabled"), "{on}");
}
