#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The operator commands, through the real `regstack` binary as a script
//! would run them: files written and their modes, exit codes (0 done, 1
//! failed, 2 usage or configuration), what each prints, and the effect on
//! a server started from the same configuration — the administrator
//! signs in and is one, a flagged account must change its password, and
//! `validate` passes against a zero-config instance and fails against a
//! port where nothing listens.
//!
//! Every server is killed when its guard drops; each test works in its
//! own temporary directory with no `REGSTACK_*` variable inherited.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// `regstack invite …`: its own file, sharing these helpers.
#[path = "cli/invite.rs"]
mod invite;

const BIN: &str = env!("CARGO_BIN_EXE_regstack");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const START_TIMEOUT: Duration = Duration::from_secs(30);

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGSTACK_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs `regstack <args>` in `dir` with `stdin` as its standard input.
fn regstack(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = command(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn regstack");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_code(out: &Output, want: i32) {
    assert_eq!(
        code(out),
        want,
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// A directory with a `regstack.toml` (written by `init`) on a SQLite file
/// in it.
fn initialised() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = regstack(
        dir.path(),
        &[
            "init",
            "--non-interactive",
            "--database-url",
            "sqlite:./app.db",
            "--base-url",
            "http://127.0.0.1:9",
        ],
        "",
    );
    assert_code(&out, 0);
    dir
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_writes_the_config_and_a_private_secret_and_overwrites_only_with_force() {
    let dir = initialised();
    let toml_path = dir.path().join("regstack.toml");
    let secrets_path = dir.path().join("regstack.secrets.env");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    assert!(
        toml.contains("database_url = \"sqlite:./app.db\""),
        "{toml}"
    );
    assert!(toml.contains("base_url = \"http://127.0.0.1:9\""), "{toml}");
    assert!(
        toml.contains("[email]") && toml.contains("[sessions]"),
        "{toml}"
    );
    let secrets = std::fs::read_to_string(&secrets_path).unwrap();
    let secret = secrets
        .lines()
        .find_map(|l| l.strip_prefix("REGSTACK_JWT_SECRET="))
        .expect("a secret line");
    assert!(secret.len() >= 32, "{secret}");
    assert!(!toml.contains(secret), "the secret stays out of the TOML");
    #[cfg(unix)]
    assert_eq!(mode(&secrets_path), 0o600);

    // Again: refused, nothing touched.
    let again = regstack(dir.path(), &["init", "--non-interactive"], "");
    assert_code(&again, 1);
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(&toml_path).unwrap(), toml);
    assert_eq!(std::fs::read_to_string(&secrets_path).unwrap(), secrets);

    // With --force: both replaced, a new secret, still private.
    let forced = regstack(dir.path(), &["init", "--non-interactive", "--force"], "");
    assert_code(&forced, 0);
    assert_ne!(std::fs::read_to_string(&secrets_path).unwrap(), secrets);
    assert!(std::fs::read_to_string(&toml_path)
        .unwrap()
        .contains("database_url = \"sqlite:./regstack.db\""));
    #[cfg(unix)]
    assert_eq!(mode(&secrets_path), 0o600);

    // A usage error is exit 2.
    let bad = regstack(dir.path(), &["init", "--email-backend", "pigeon"], "");
    assert_code(&bad, 2);
}

#[test]
fn migrate_dry_run_lists_every_migration_of_a_fresh_sqlite_file_and_applies_none() {
    let dir = initialised();
    let known = regstack_adapters_sql::sqlite::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .count();
    let listed = |out: &Output| stdout(out).lines().filter(|l| l.starts_with("  ")).count();
    // No file yet: listed, and not created.
    let out = regstack(dir.path(), &["migrate", "--dry-run"], "");
    assert_code(&out, 0);
    assert_eq!(listed(&out), known, "{}", stdout(&out));
    assert!(stdout(&out).contains("  1 "), "{}", stdout(&out));
    assert!(
        !dir.path().join("app.db").exists(),
        "the dry run created the file"
    );
    // An empty file: the same, and still nothing applied afterwards.
    std::fs::write(dir.path().join("app.db"), b"").unwrap();
    for _ in 0..2 {
        let out = regstack(dir.path(), &["migrate", "--dry-run"], "");
        assert_code(&out, 0);
        assert_eq!(listed(&out), known, "{}", stdout(&out));
    }
    // Applied for real, nothing is pending.
    assert_code(&regstack(dir.path(), &["migrate"], ""), 0);
    let out = regstack(dir.path(), &["migrate", "--dry-run"], "");
    assert_code(&out, 0);
    assert_eq!(listed(&out), 0, "{}", stdout(&out));
    assert!(stdout(&out).contains("schema is current"));
}

#[test]
fn doctor_passes_a_good_sqlite_config_and_fails_an_unreachable_database() {
    let dir = initialised();
    assert_code(&regstack(dir.path(), &["migrate"], ""), 0);
    let out = regstack(dir.path(), &["doctor"], "");
    assert_code(&out, 0);
    let shown = stdout(&out);
    for line in [
        "OK    config",
        "OK    secret",
        "OK    database",
        "OK    schema",
    ] {
        assert!(shown.contains(line), "{line} missing:\n{shown}");
    }
    assert!(!shown.contains("FAIL"), "{shown}");
    assert!(
        shown.contains("WARN  mail"),
        "console mail is only a warning:\n{shown}"
    );

    // --send-test goes through the configured transport (here the console).
    let out = regstack(
        dir.path(),
        &["doctor", "--send-test", "ops@example.com"],
        "",
    );
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("OK    test mail   sent to ops@example.com"),
        "{}",
        stdout(&out)
    );
    assert_code(
        &regstack(dir.path(), &["doctor", "--send-test", "nope"], ""),
        2,
    );

    // Nothing listens on port 1.
    let out = command(dir.path(), &["doctor"])
        .env(
            "REGSTACK_DATABASE_URL",
            "postgres://regstack@127.0.0.1:1/regstack",
        )
        .output()
        .unwrap();
    assert_code(&out, 1);
    let shown = stdout(&out);
    assert!(shown.contains("FAIL  database"), "{shown}");
    assert!(shown.contains("fix:"), "{shown}");

    // A short secret fails too.
    let out = command(dir.path(), &["doctor"])
        .env("REGSTACK_JWT_SECRET", "short")
        .output()
        .unwrap();
    assert_code(&out, 1);
    assert!(stdout(&out).contains("FAIL  secret"), "{}", stdout(&out));
}

/// A server process; killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
    url: String,
}

impl Server {
    /// `regstack <args>` in `dir`, its output going to `dir/server.log`;
    /// waits for the banner.
    fn start(dir: &Path, args: &[&str]) -> Server {
        let log = dir.join("server.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = command(dir, args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("spawn regstack serve");
        let mut server = Server {
            child,
            log,
            url: String::new(),
        };
        let prefix = format!("regstack {VERSION} listening on ");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(url) = text.lines().find_map(|l| l.strip_prefix(prefix.as_str())) {
                server.url = url.trim().to_owned();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("regstack exited ({status}) before listening:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no banner within {START_TIMEOUT:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(url: &str, body: Value, bearer: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(url).json(&body);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn create_admin_makes_a_verified_superuser_and_set_password_change_flags_it() {
    let dir = initialised();
    let password = "admin-password-1";
    let out = regstack(
        dir.path(),
        &["create-admin", "Root@Example.com", "--password-stdin"],
        &format!("{password}\n"),
    );
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("root@example.com"),
        "{}",
        stdout(&out)
    );
    // Taken: exit 1, a clear message.
    let again = regstack(
        dir.path(),
        &["create-admin", "root@example.com"],
        "other-password-2\n",
    );
    assert_code(&again, 1);
    assert!(
        stderr(&again).contains("already has an account"),
        "{}",
        stderr(&again)
    );
    // Too short a password, a bad address: usage errors.
    assert_code(
        &regstack(dir.path(), &["create-admin", "x@example.com"], "short\n"),
        2,
    );
    // The password policy holds here too: common, or made of the address.
    for (pw, why) in [
        ("password123\n", "too common"),
        ("maxwell.root2024\n", "email address"),
    ] {
        let out = regstack(
            dir.path(),
            &["create-admin", "maxwell.root@example.com"],
            pw,
        );
        assert_code(&out, 2);
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
    }
    assert_code(
        &regstack(
            dir.path(),
            &["create-admin", "not-an-address"],
            "long-enough-1\n",
        ),
        2,
    );

    let server = Server::start(dir.path(), &["serve", "--port", "0"]);
    let api = format!("{}/api/auth", server.url);
    let login = json!({ "email": "root@example.com", "password": password });
    let (status, tokens) = post(&format!("{api}/login"), login.clone(), None).await;
    assert_eq!(status, 200, "{tokens}\n{}", server.log_text());
    let access = tokens["access_token"].as_str().unwrap();
    let me: Value = reqwest::Client::new()
        .get(format!("{api}/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["is_superuser"], json!(true), "{me}");
    assert_eq!(me["is_verified"], json!(true), "{me}");

    // Flag it while the server runs: its session ends, and the next
    // sign-in asks for a new password.
    let out = regstack(dir.path(), &["set-password-change", "root@example.com"], "");
    assert_code(&out, 0);
    let me = reqwest::Client::new()
        .get(format!("{api}/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status().as_u16(), 401, "the session outlived the flag");
    let (_, answer) = post(&format!("{api}/login"), login, None).await;
    assert_eq!(
        answer["status"],
        json!("password_change_required"),
        "{answer}"
    );
    // An unknown account: exit 1.
    let out = regstack(
        dir.path(),
        &["set-password-change", "nobody@example.com"],
        "",
    );
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("nobody@example.com"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn promote_grants_and_revokes_administrator_rights() {
    let dir = initialised();
    let out = regstack(
        dir.path(),
        &["create-admin", "first@example.com", "--password-stdin"],
        "admin-password-1\n",
    );
    assert_code(&out, 0);
    // An ordinary account, registered through the API.
    let server = Server::start(dir.path(), &["serve", "--port", "0"]);
    let api = format!("{}/api/auth", server.url);
    let is_superuser = |access: String| {
        let api = api.clone();
        async move {
            let me: Value = reqwest::Client::new()
                .get(format!("{api}/me"))
                .bearer_auth(access)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            me["is_superuser"].clone()
        }
    };
    let out = regstack(
        dir.path(),
        &["create-admin", "second@example.com", "--password-stdin"],
        "admin-password-2\n",
    );
    assert_code(&out, 0);
    let login = json!({ "email": "second@example.com", "password": "admin-password-2" });
    let (_, tokens) = post(&format!("{api}/login"), login.clone(), None).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(is_superuser(access.clone()).await, json!(true));
    let out = regstack(
        dir.path(),
        &["promote", "second@example.com", "--revoke"],
        "",
    );
    assert_code(&out, 0);
    assert_eq!(is_superuser(access.clone()).await, json!(false));
    let out = regstack(dir.path(), &["promote", "Second@Example.com"], "");
    assert_code(&out, 0);
    assert_eq!(is_superuser(access).await, json!(true));
    let out = regstack(dir.path(), &["promote", "nobody@example.com"], "");
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("nobody@example.com"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_configuration_error_is_exit_2() {
    let dir = initialised();
    let toml = dir.path().join("regstack.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("no_such_key = 1\n{text}")).unwrap();
    let out = regstack(dir.path(), &["set-password-change", "a@example.com"], "");
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no_such_key"), "{}", stderr(&out));
}

#[test]
fn validate_passes_against_a_zero_config_instance_reading_links_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["serve", "--port", "0"]);
    let log = server.log.to_string_lossy().into_owned();
    let probe = tempfile::tempdir().unwrap();
    let out = regstack(
        probe.path(),
        &["validate", &server.url, "--token-from-log", &log],
        "",
    );
    assert_eq!(
        code(&out),
        0,
        "{}\n{}\n----- server log -----\n{}",
        stdout(&out),
        stderr(&out),
        server.log_text()
    );
    let shown = stdout(&out);
    for check in [
        "register",
        "verify",
        "login",
        "me",
        "refresh rotation",
        "refresh reuse refused",
        "logout-all",
        "totp setup",
        "totp confirm",
        "totp sign out",
        "totp challenge",
        "totp sign-in",
        "totp disable",
        "totp gone",
        "change password",
        "reset password",
        "delete account",
    ] {
        assert!(
            shown
                .lines()
                .any(|l| l.starts_with("PASS") && l[6..].starts_with(check)),
            "no PASS line for {check}:\n{shown}"
        );
    }
    assert!(
        !shown.contains("FAIL") && !shown.contains("SKIP"),
        "{shown}"
    );
    assert!(shown.contains(" 0 failed"), "{shown}");
}

#[test]
fn validate_fails_against_a_port_where_nothing_listens() {
    // Bind, learn the port, close: nothing listens there now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let out = regstack(
        dir.path(),
        &["validate", &format!("http://127.0.0.1:{port}")],
        "",
    );
    assert_code(&out, 1);
    assert!(stdout(&out).contains("FAIL  reachable"), "{}", stdout(&out));
    assert_code(&regstack(dir.path(), &["validate", "not a url"], ""), 2);
}

#[test]
fn every_command_documents_its_exit_codes_in_its_help() {
    let dir = tempfile::tempdir().unwrap();
    for command in [
        "init",
        "migrate",
        "create-admin",
        "set-password-change",
        "promote",
        "invite",
        "doctor",
        "validate",
        "audit tail",
        "audit export",
    ] {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        let out = regstack(dir.path(), &args, "");
        assert_code(&out, 0);
        assert!(
            stdout(&out).contains("Exit codes: 0"),
            "{command}:\n{}",
            stdout(&out)
        );
    }
    // clap's own usage error is exit 2 as well.
    assert_code(&regstack(dir.path(), &["create-admin"], ""), 2);
}

/// The OpenID Provider `TEST_OIDC_URL` names; `None` (after saying so)
/// without it, except under `CI=true`.
fn oidc_url(test: &str) -> Option<String> {
    if let Some(url) = std::env::var("TEST_OIDC_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        return Some(url.trim_end_matches('/').to_owned());
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !in_ci,
        "{test}: TEST_OIDC_URL is not set, and CI=true forbids skipping"
    );
    eprintln!("SKIPPED {test}: TEST_OIDC_URL is not set");
    None
}

#[test]
fn doctor_reads_each_oidc_providers_discovery_document() {
    let Some(issuer) = oidc_url("doctor_reads_each_oidc_providers_discovery_document") else {
        return;
    };
    let dir = initialised();
    assert_code(&regstack(dir.path(), &["migrate"], ""), 0);
    let toml = dir.path().join("regstack.toml");
    let base = std::fs::read_to_string(&toml).unwrap();
    let with_provider = |issuer: &str| {
        format!(
            "enable_oauth = true\n{base}\n[oauth.providers.corp]\nkind = \"oidc\"\n\
             issuer = \"{issuer}\"\nclient_id = \"regstack\"\nclient_secret = \"not-checked-here\"\n"
        )
    };
    std::fs::write(&toml, with_provider(&issuer)).unwrap();
    let out = regstack(dir.path(), &["doctor"], "");
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("OK    oauth       corp: discovery document"),
        "{}",
        stdout(&out)
    );
    // An issuer with no discovery document there: FAIL, exit 1.
    std::fs::write(&toml, with_provider(&format!("{issuer}/no-such-issuer"))).unwrap();
    let out = regstack(dir.path(), &["doctor"], "");
    assert_code(&out, 1);
    assert!(
        stdout(&out).contains("FAIL  oauth       corp:"),
        "{}",
        stdout(&out)
    );
}

/// `regstack audit export` / `tail`: the entries a running server wrote,
/// read from the same database — filtered, oldest first as JSON lines, the
/// newest as text, and `--follow` printing one that arrives later; bad
/// flags are exit 2.
#[tokio::test]
async fn audit_export_and_tail_read_what_the_server_recorded() {
    let dir = initialised();
    let out = regstack(
        dir.path(),
        &["create-admin", "root@example.com", "--password-stdin"],
        "admin-password-1\n",
    );
    assert_code(&out, 0);
    let server = Server::start(dir.path(), &["serve", "--port", "0"]);
    let login = format!("{}/api/auth/login", server.url);
    for email in ["root@example.com", "ghost@example.com"] {
        let body = json!({ "email": email, "password": "wrong-password-1" });
        assert_eq!(post(&login, body, None).await.0, 401);
    }
    let export = |args: &[&str]| {
        let mut all = vec!["audit", "export", "--format", "jsonl"];
        all.extend_from_slice(args);
        regstack(dir.path(), &all, "")
    };
    // The server writes its entries off the request path: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let out = export(&["--kind", "login_failed"]);
        assert_code(&out, 0);
        let lines: Vec<Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        if lines.len() == 2 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["email"], "root@example.com", "oldest first");
    assert_eq!(lines[0]["detail"]["reason"], "wrong_password");
    assert_eq!(lines[1]["email"], "ghost@example.com");
    assert_eq!(lines[1]["detail"]["reason"], "no_account");
    assert!(lines[0]["at"].as_str() < lines[1]["at"].as_str());

    let everything = stdout(&export(&[]));
    let created: Value = serde_json::from_str(
        everything
            .lines()
            .find(|l| l.contains("\"user_registered\""))
            .expect("create-admin is in the log"),
    )
    .unwrap();
    assert_eq!(created["email"], "root@example.com");
    assert_eq!(created["detail"]["via"], "cli");
    assert_eq!(created["detail"]["changes"]["is_superuser"], true);
    assert!(!everything.contains("admin-password-1"));
    assert!(!everything.contains("wrong-password-1"));
    let ghost = export(&["--email", "Ghost@Example.com"]);
    assert_eq!(stdout(&ghost).lines().count(), 1, "{}", stdout(&ghost));
    let future = export(&["--since", "2999-01-01T00:00:00Z"]);
    assert_code(&future, 0);
    assert_eq!(stdout(&future), "");

    let tail = regstack(dir.path(), &["audit", "tail", "-n", "2"], "");
    assert_code(&tail, 0);
    let text = stdout(&tail);
    let shown: Vec<&str> = text.lines().collect();
    assert_eq!(shown.len(), 2, "{text}");
    assert!(
        shown[1].contains("login_failed email=ghost@example.com"),
        "the newest last: {text}"
    );

    for bad in [
        &["audit", "tail", "--kind", "no_such_event"][..],
        &["audit", "export", "--since", "yesterday"],
        &["audit", "export", "--format", "csv"],
        &["audit", "tail", "--user-id", "not an id"],
    ] {
        assert_code(&regstack(dir.path(), bad, ""), 2);
    }

    // --follow prints an entry written after it started.
    let mut follow = command(
        dir.path(),
        &["audit", "tail", "-n", "0", "--follow", "--interval", "1"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let reader = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(reader)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let body = json!({ "email": "late@example.com", "password": "wrong-password-1" });
    assert_eq!(post(&login, body, None).await.0, 401);
    let line = rx.recv_timeout(Duration::from_secs(15));
    let _ = follow.kill();
    let _ = follow.wait();
    let line = line.expect("--follow printed the new entry");
    assert!(
        line.contains("login_failed email=late@example.com"),
        "{line}"
    );
    drop(server);
}
