#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The "new user" acceptance test: the real `regstack` binary, started with
//! no configuration at all in an empty directory, driven over HTTP the way
//! someone trying it for the first time would — reading the links that the
//! console mailer writes to the log.
//!
//! Every wait polls with a deadline and prints the whole captured log when
//! it fails; every child is killed when its guard drops, so a failing test
//! leaves no server behind.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_regstack");
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Start-up: migrations, first-run secret, bind.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A mail appearing in the log after the request that sent it.
const MAIL_TIMEOUT: Duration = Duration::from_secs(15);
/// SIGTERM to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// A process refusing its configuration.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

const BODY_MARKER: &str = "[regstack/console-email] text body:";

/// Everything the child wrote, stdout and stderr, one whole line at a time.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn text(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
    fn push_line(&self, line: &str) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buf.push_str(line);
        buf.push('\n');
    }
}

/// Copies a pipe into the log on a background thread until EOF.
fn pump(stream: impl Read + Send + 'static, log: Log) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    log.push_line(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']))
                }
            }
        }
    })
}

/// A running `regstack serve --port 0`; killed on drop.
struct Proc {
    child: Child,
    log: Log,
    pumps: Vec<JoinHandle<()>>,
}

impl Proc {
    /// Starts `regstack serve --port 0` in `dir` with no `REGSTACK_*`
    /// variable and no `RUST_LOG` inherited, plus `env`.
    fn spawn(dir: &Path, env: &[(&str, &str)]) -> Proc {
        Proc::spawn_args(dir, &["serve", "--port", "0"], env)
    }

    /// [`Proc::spawn`] with other arguments.
    fn spawn_args(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGSTACK_") {
                cmd.env_remove(&key);
            }
        }
        // A new user's shell: default log filter, errors without backtraces.
        for var in ["RUST_LOG", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE"] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the regstack binary");
        let log = Log::default();
        let pumps = vec![
            pump(child.stdout.take().expect("stdout piped"), log.clone()),
            pump(child.stderr.take().expect("stderr piped"), log.clone()),
        ];
        Proc { child, log, pumps }
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "{why}\n----- captured regstack output -----\n{}-----",
            self.log.text()
        )
    }

    /// Polls the log until `find` yields, the deadline passes, or the
    /// process exits without having printed it.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut find: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = find(&self.log.text()) {
                return found;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Whatever it printed is in once both pipes reached EOF.
                if self.pumps.iter().all(JoinHandle::is_finished) {
                    if let Some(found) = find(&self.log.text()) {
                        return found;
                    }
                    self.fail(&format!(
                        "regstack exited ({status}) before printing {what}"
                    ));
                }
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the banner; returns the base URL it names.
    async fn listening_url(&mut self) -> String {
        let port = self.listening_port("127.0.0.1").await;
        format!("http://127.0.0.1:{port}")
    }

    /// Waits for the banner naming `host`; returns its port.
    async fn listening_port(&mut self, host: &str) -> u16 {
        let prefix = format!("regstack {VERSION} listening on http://{host}:");
        let port = self
            .wait_for("the `listening on` banner", START_TIMEOUT, |log| {
                log.lines()
                    .find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_owned))
            })
            .await;
        match port.trim().parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => self.fail(&format!("banner names no usable port: {port:?}")),
        }
    }

    /// Waits for the first mail written after byte `since` of the log whose
    /// text body holds a link containing `path` (`/verify?token=`); returns
    /// the link and its token.
    async fn mailed_link(&mut self, since: usize, path: &str) -> (String, String) {
        self.wait_for(
            &format!("a mail with a `{path}` link"),
            MAIL_TIMEOUT,
            |log| {
                let tail = log.get(since..)?;
                let body = &tail[tail.find(BODY_MARKER)? + BODY_MARKER.len()..];
                let line = body.lines().find(|l| l.contains(path))?;
                let start = line.find("http").unwrap_or(0);
                let link = line[start..].split_whitespace().next()?.to_owned();
                let token = link.split_once(path)?.1.to_owned();
                Some((link, token))
            },
        )
        .await
    }

    /// Waits for the exit; then for both pipes to drain into the log.
    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                Ok(None) => self.fail(&format!("regstack still running {timeout:?} later")),
                Err(e) => self.fail(&format!("waiting for regstack: {e}")),
            }
        };
        let drained = Instant::now() + Duration::from_secs(5);
        while !self.pumps.iter().all(JoinHandle::is_finished) {
            if Instant::now() >= drained {
                self.fail("output pipes still open after exit");
            }
            tokio::time::sleep(POLL).await;
        }
        for p in self.pumps.drain(..) {
            p.join().expect("log pump");
        }
        status
    }

    /// SIGTERM, as a service manager would stop it; must exit 0 promptly.
    async fn terminate(&mut self) {
        #[cfg(unix)]
        {
            let sent = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status()
                .expect("run kill(1)");
            assert!(sent.success(), "kill -TERM failed: {sent}");
            let started = Instant::now();
            let status = self.wait_exit(STOP_TIMEOUT).await;
            if !status.success() {
                self.fail(&format!("SIGTERM: exited with {status}, expected 0"));
            }
            eprintln!("stopped by SIGTERM in {:?}", started.elapsed());
        }
        #[cfg(not(unix))]
        {
            let _ = self.child.kill();
            let _ = self.wait_exit(STOP_TIMEOUT).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Api {
            http,
            base: base.to_owned(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.expect("response body");
        let json = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!("{method} {path} → {status}: body is not JSON ({e}): {text:?}")
        });
        (status, json)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, None, Some(body)).await
    }

    async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/api/auth/login",
            json!({ "email": email, "password": password }),
        )
        .await
    }
}

/// After a graceful stop the database is one file: the server checkpointed
/// SQLite's write-ahead log into it and closed the pool, so no `-wal` (or
/// `-shm`) is left holding the last writes apart from `name`.
fn assert_one_database_file(dir: &Path, name: &str) {
    assert!(dir.join(name).is_file(), "{name} is missing");
    for suffix in ["-wal", "-shm"] {
        let side = dir.join(format!("{name}{suffix}"));
        if let Ok(meta) = std::fs::metadata(&side) {
            panic!(
                "{} left behind after a graceful stop ({} bytes)",
                side.display(),
                meta.len()
            );
        }
    }
}

/// Asserts a status, showing the body and the server log when it differs.
fn expect(proc: &Proc, what: &str, got: &(StatusCode, Value), want: u16) {
    if got.0.as_u16() != want {
        proc.fail(&format!("{what}: expected {want}, got {} {}", got.0, got.1));
    }
}

#[tokio::test]
async fn a_new_user_runs_the_whole_account_lifecycle_against_the_zero_config_binary() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Proc::spawn(dir.path(), &[]);
    let url = server.listening_url().await;
    eprintln!("first start: listening after {:?}", t0.elapsed());
    server
        .wait_for("the development-mode notice", START_TIMEOUT, |log| {
            log.lines()
                .any(|l| l.contains("development mode"))
                .then_some(())
        })
        .await;

    // The generated secret sits beside the database, private to the user.
    let secret_file = dir.path().join(".regstack-secret");
    assert!(
        dir.path().join("regstack.db").is_file(),
        "regstack.db not created in the working directory"
    );
    assert!(
        secret_file.is_file(),
        ".regstack-secret not created beside regstack.db"
    );
    let secret = std::fs::read(&secret_file).expect("read secret");
    assert!(
        secret.len() >= 32,
        "development secret is only {} bytes",
        secret.len()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .expect("stat secret")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "secret file mode is {mode:o}");
    }

    let api = Api::new(&url);
    let health = api.call(Method::GET, "/healthz", None, None).await;
    expect(&server, "GET /healthz", &health, 200);
    let ready = api.call(Method::GET, "/readyz", None, None).await;
    expect(&server, "GET /readyz", &ready, 200);

    // Register (mixed case: the account is the lower-cased address).
    let typed = "New.User@Example.COM";
    let email = "new.user@example.com";
    let first_password = "correct-horse-battery";
    let since = server.log.len();
    let reg = api
        .post(
            "/api/auth/register",
            json!({ "email": typed, "password": first_password, "full_name": "New User" }),
        )
        .await;
    expect(&server, "register", &reg, 201);
    assert_eq!(reg.1["status"], "pending_verification", "{}", reg.1);

    // The verification mail, in the log, links back to this server.
    let (link, token) = server.mailed_link(since, "/verify?token=").await;
    assert!(
        link.starts_with(&url),
        "verification link {link} does not point at {url}"
    );
    assert_eq!(token.len(), 43, "verification token {token:?}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "verification token is not url-safe base64: {token:?}"
    );
    assert!(
        server.log.text()[since..].contains(&format!("[regstack/console-email] To: {email} |")),
        "the mail header line does not name {email}"
    );

    let verified = api
        .post("/api/auth/verify", json!({ "token": token }))
        .await;
    expect(&server, "verify", &verified, 200);
    assert_eq!(verified.1["is_verified"], true, "{}", verified.1);
    assert_eq!(verified.1["email"], email, "{}", verified.1);

    // Sign in; /me.
    let login = api.login(typed, first_password).await;
    expect(&server, "login", &login, 200);
    assert_eq!(login.1["token_type"], "bearer", "{}", login.1);
    let first_token = login.1["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let me = api
        .call(Method::GET, "/api/auth/me", Some(&first_token), None)
        .await;
    expect(&server, "GET /me", &me, 200);
    assert_eq!(me.1["email"], email, "{}", me.1);

    // Change the password: every earlier session is signed out.
    let second_password = "another-password-1";
    let changed = api
        .call(
            Method::POST,
            "/api/auth/change-password",
            Some(&first_token),
            Some(json!({ "current_password": first_password, "new_password": second_password })),
        )
        .await;
    expect(&server, "change-password", &changed, 200);
    let stale = api
        .call(Method::GET, "/api/auth/me", Some(&first_token), None)
        .await;
    expect(&server, "GET /me with a pre-change token", &stale, 401);
    assert_eq!(
        stale.1["detail"], "Session was invalidated; please sign in again.",
        "{}",
        stale.1
    );

    // Forgot → reset through the mailed link.
    let since = server.log.len();
    let forgot = api
        .post("/api/auth/forgot-password", json!({ "email": email }))
        .await;
    expect(&server, "forgot-password", &forgot, 202);
    let (link, reset_token) = server.mailed_link(since, "/reset-password?token=").await;
    assert!(
        link.starts_with(&url),
        "reset link {link} does not point at {url}"
    );
    let third_password = "reset-password-123";
    let reset = api
        .post(
            "/api/auth/reset-password",
            json!({ "token": reset_token, "new_password": third_password }),
        )
        .await;
    expect(&server, "reset-password", &reset, 200);

    let new_login = api.login(email, third_password).await;
    expect(&server, "login with the reset password", &new_login, 200);
    let kept_token = new_login.1["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let old_login = api.login(email, second_password).await;
    expect(
        &server,
        "login with the password before the reset",
        &old_login,
        401,
    );

    server.terminate().await;
    drop(server);
    assert_one_database_file(dir.path(), "regstack.db");
    eprintln!("first run done after {:?}", t0.elapsed());

    // Second start, same directory: the secret is reused, so a token the
    // first run signed still opens /me.
    let t1 = Instant::now();
    let mut again = Proc::spawn(dir.path(), &[]);
    let url = again.listening_url().await;
    eprintln!("second start: listening after {:?}", t1.elapsed());
    assert_eq!(
        std::fs::read(&secret_file).expect("read secret"),
        secret,
        "the secret was regenerated"
    );
    let api = Api::new(&url);
    let me = api
        .call(Method::GET, "/api/auth/me", Some(&kept_token), None)
        .await;
    expect(
        &again,
        "GET /me after a restart with the first run's token",
        &me,
        200,
    );
    assert_eq!(me.1["email"], email, "{}", me.1);
    again.terminate().await;
    assert_one_database_file(dir.path(), "regstack.db");
    eprintln!("whole lifecycle: {:?}", t0.elapsed());
}

#[tokio::test]
async fn a_short_jwt_secret_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Not digits: figment would read "0123456789" as a number and fail on
    // its type, never reaching the length rule this test is about.
    let mut proc = Proc::spawn(dir.path(), &[("REGSTACK_JWT_SECRET", "abcdefghij")]);
    let status = proc.wait_exit(REFUSE_TIMEOUT).await;
    if status.success() {
        proc.fail("a 10-byte jwt_secret was accepted");
    }
    let out = proc.log.text();
    if !out.contains("jwt_secret") || !out.contains("32") {
        proc.fail("the refusal does not name `jwt_secret` and its 32-byte minimum");
    }
}

#[tokio::test]
async fn an_unknown_key_in_regstack_toml_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("regstack.toml"), "app_nam = \"x\"\n")
        .expect("write regstack.toml");
    let mut proc = Proc::spawn(dir.path(), &[]);
    let status = proc.wait_exit(REFUSE_TIMEOUT).await;
    if status.success() {
        proc.fail("an unknown key was accepted");
    }
    if !proc.log.text().contains("app_nam") {
        proc.fail("the refusal does not name `app_nam`");
    }
}

/// regstack's per-route limit keys are enforced, so a limit that cannot be
/// read (or a Redis backend without its URL) stops start-up naming the key
/// rather than serving the route unlimited.
#[tokio::test]
async fn an_unreadable_route_limit_stops_start_up_naming_it() {
    // From a variable…
    let dir = tempfile::tempdir().expect("temp dir");
    let mut proc = Proc::spawn(
        dir.path(),
        &[
            ("REGSTACK_JWT_SECRET", &"k".repeat(40)),
            ("REGSTACK_REGISTER_RATE_LIMIT", "5/fortnight"),
        ],
    );
    let status = proc.wait_exit(REFUSE_TIMEOUT).await;
    if status.success() || !proc.log.text().contains("register_rate_limit") {
        proc.fail("register_rate_limit = 5/fortnight did not stop start-up naming the key");
    }
    // …and from the file.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("regstack.toml"),
        format!(
            "jwt_secret = \"{}\"\n[rate_limits]\nbackend = \"redis\"\n",
            "k".repeat(40)
        ),
    )
    .expect("write regstack.toml");
    let mut proc = Proc::spawn(dir.path(), &[]);
    let status = proc.wait_exit(REFUSE_TIMEOUT).await;
    if status.success() || !proc.log.text().contains("rate_limits.redis_url") {
        proc.fail("a Redis backend without redis_url did not stop start-up naming the key");
    }
}

#[tokio::test]
async fn development_mode_on_a_non_loopback_host_needs_dev() {
    let args = ["serve", "--host", "0.0.0.0", "--port", "0"];
    let dir = tempfile::tempdir().expect("temp dir");
    let mut proc = Proc::spawn_args(dir.path(), &args, &[]);
    let status = proc.wait_exit(REFUSE_TIMEOUT).await;
    if status.success() {
        proc.fail("development mode served on 0.0.0.0 without --dev");
    }
    let out = proc.log.text();
    for needed in [
        "0.0.0.0",
        "development mode",
        "--dev",
        "jwt_secret",
        "127.0.0.1",
    ] {
        if !out.contains(needed) {
            proc.fail(&format!("the refusal does not mention {needed}"));
        }
    }
    assert!(
        !dir.path().join(".regstack-secret").exists(),
        "a secret was generated for a server that refused to start"
    );

    // With --dev it serves, on every interface.
    let mut proc = Proc::spawn_args(dir.path(), &[&args[..], &["--dev"]].concat(), &[]);
    let port = proc.listening_port("0.0.0.0").await;
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    let health = api.call(Method::GET, "/healthz", None, None).await;
    expect(&proc, "GET /healthz with --dev", &health, 200);
    proc.terminate().await;

    // Configured, it is no development mode: no --dev needed. (With
    // `http.hsts` from a variable, the health routes carry the header too.)
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite:{}", dir.path().join("configured.db").display());
    let mut proc = Proc::spawn_args(
        dir.path(),
        &args,
        &[
            ("REGSTACK_JWT_SECRET", &"k".repeat(40)),
            ("REGSTACK_DATABASE_URL", &db),
            ("REGSTACK_HTTP__HSTS", "true"),
        ],
    );
    let port = proc.listening_port("0.0.0.0").await;
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    for path in ["/healthz", "/api/auth/me"] {
        let resp = api
            .http
            .get(format!("{}{path}", api.base))
            .send()
            .await
            .expect("GET");
        let hsts = resp.headers().get("strict-transport-security").cloned();
        if hsts.as_ref().map(|v| v.as_bytes()) != Some(&b"max-age=31536000"[..]) {
            proc.fail(&format!("{path}: Strict-Transport-Security is {hsts:?}"));
        }
    }
    proc.terminate().await;
}
