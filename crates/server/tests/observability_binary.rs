#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The `regstack` binary's observability settings: `log_format = "json"`
//! (every stdout line a JSON object, the request id on the lines a request
//! causes, no password anywhere) and `[metrics]` (on a listener of its own,
//! on the main port, or refused when half-configured).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_regstack");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const SECRET: &str = "observability-test-secret-0123456789abcdef";
const PASSWORD: &str = "not-the-password-9876";

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn pump(stream: impl Read + Send + 'static, into: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.0.lock().unwrap().push(line);
        }
    });
}

/// `regstack serve --port 0`, configured only by `env`; killed on drop.
struct Server {
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--port", "0"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGSTACK_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env_remove("RUST_LOG");
        let db = format!("sqlite:{}", dir.join("regstack.db").display());
        cmd.env("REGSTACK_JWT_SECRET", SECRET)
            .env("REGSTACK_DATABASE_URL", db)
            // The OWASP floor: the default 64 MiB makes each login slow.
            .env("REGSTACK_PASSWORD__ARGON2_MEMORY_KIB", "19456")
            .env("REGSTACK_PASSWORD__ARGON2_ITERATIONS", "2")
            .env("REGSTACK_PASSWORD__ARGON2_PARALLELISM", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let (stdout, stderr) = (Lines::default(), Lines::default());
        pump(child.stdout.take().unwrap(), stdout.clone());
        pump(child.stderr.take().unwrap(), stderr.clone());
        Server {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "----- stdout -----\n{}\n----- stderr -----\n{}",
            self.stdout.all().join("\n"),
            self.stderr.all().join("\n")
        )
    }

    /// The banner line starting with `prefix` (stdout or stderr): the rest.
    async fn banner(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut lines = self.stderr.all();
            lines.extend(self.stdout.all());
            if let Some(rest) = lines.iter().find_map(|l| l.trim().strip_prefix(prefix)) {
                return rest.trim().to_owned();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "regstack exited ({status}) before `{prefix}`\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no `{prefix}` banner\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn post(url: &str, request_id: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_metrics_get_a_port_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            ("REGSTACK_LOG_FORMAT", "json"),
            ("REGSTACK_METRICS__ENABLED", "true"),
            ("REGSTACK_METRICS__LISTEN", "127.0.0.1:0"),
        ],
    );
    let base = server
        .banner(&format!("regstack {VERSION} listening on"))
        .await;
    let metrics = server.banner("metrics:").await;
    assert!(!metrics.starts_with(&base), "{metrics} is on the main port");
    let api = format!("{base}/api/auth");

    let r = post(
        &format!("{api}/register"),
        "bin-register-1",
        json!({ "email": "json.logs@example.com", "password": PASSWORD }),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], "bin-register-1");
    let r = post(
        &format!("{api}/login"),
        "bin-login-2",
        json!({ "email": "json.logs@example.com", "password": "wrong-password-1" }),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "bin-login-2");

    // Not on the main port; on its own, with the failure counted.
    let main = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(main.status(), 404);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        if text.contains(r#"regstack_logins_total{outcome="failure",reason="no_account"} 1"#) {
            assert!(
                text.contains("regstack_password_hash_queue_depth 0"),
                "{text}"
            );
            assert!(!text.contains("json.logs"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "never counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every stdout line is one JSON object; the failed login's event line
    // names its request; the password is nowhere.
    let deadline = Instant::now() + Duration::from_secs(10);
    let failed = loop {
        let lines: Vec<Value> = server
            .stdout
            .all()
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{}", server.output()))
            })
            .collect();
        let found = lines
            .into_iter()
            .find(|l| l["fields"]["event"] == "login_failed");
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no login_failed line\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let spans = failed["spans"].as_array().unwrap();
    assert!(
        spans.iter().any(|s| s["request_id"] == "bin-login-2"),
        "{failed:#}"
    );
    assert!(spans.iter().any(|s| s["flow"] == "login"), "{failed:#}");
    let all = server.output();
    for secret in [PASSWORD, "wrong-password-1", SECRET] {
        assert!(!all.contains(secret), "{secret} in the output");
    }
}

#[tokio::test]
async fn metrics_enabled_without_listen_are_served_on_the_main_port() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[("REGSTACK_METRICS__ENABLED", "true")]);
    let base = server
        .banner(&format!("regstack {VERSION} listening on"))
        .await;
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("# TYPE regstack_logins_total counter"));
}

#[tokio::test]
async fn metrics_are_off_by_default_and_listen_without_enabled_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let base = server
        .banner(&format!("regstack {VERSION} listening on"))
        .await;
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 404);
    drop(server);

    let mut server = Server::start(dir.path(), &[("REGSTACK_METRICS__LISTEN", "127.0.0.1:0")]);
    let status = server.exit_status().await;
    assert!(!status.success());
    let out = server.output();
    assert!(
        out.contains("metrics.listen") && out.contains("metrics.enabled"),
        "{out}"
    );
}
