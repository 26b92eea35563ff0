//! Many instances, one truth: three real `regstack serve` processes on one
//! fresh database of the backend under test (`TEST_BACKEND`: SQLite — one
//! file the three open, as SQLite allows between processes — PostgreSQL or
//! MongoDB), one `jwt_secret`, each scenario's requests spread round-robin
//! across them. Nothing that decides a security question may live in one
//! process: a lockout, a rotated or revoked session, an accepted TOTP step,
//! a spent reset link, an OAuth flow and its exchange id are the
//! database's, so every instance sees them. One
//! instance killed with SIGKILL in the middle of a burst leaves nothing
//! half-written while the others keep answering.
//!
//! Tokens come from the console mailer's logged bodies (`email.log_bodies`)
//! of whichever instance sent the mail. Route limits are off (they are
//! `rate_limits.rs`'s subject; here one loopback address does everything);
//! the per-address lockout stays on. Every process is killed when its
//! cluster drops.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{fresh_database, regstack_binary, token_in, Reply, PW};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const MAIL_TIMEOUT: Duration = Duration::from_secs(15);
const NODES: usize = 3;

/// Everything one process wrote, stdout and stderr, whole lines.
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
    fn pump(&self, stream: impl Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => log
                        .0
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push_str(&String::from_utf8_lossy(&buf)),
                }
            }
        });
    }
}

/// One `regstack serve` process; its port survives a restart.
struct Node {
    child: Option<Child>,
    port: u16,
    log: Log,
}

impl Node {
    /// Starts `regstack serve` on `port` (0: any) and waits for its banner.
    async fn start(config: &Path, port: u16) -> Node {
        let mut cmd = Command::new(regstack_binary());
        cmd.args(["serve", "--port", &port.to_string(), "--config"])
            .arg(config)
            .current_dir(config.parent().unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGSTACK_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
        let mut child = cmd.spawn().expect("spawn the regstack binary");
        let log = Log::default();
        log.pump(child.stdout.take().unwrap());
        log.pump(child.stderr.take().unwrap());
        let marker = " listening on http://127.0.0.1:";
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            let text = log.text();
            if let Some(p) = text.lines().find_map(|l| {
                let rest = &l[l.find(marker)? + marker.len()..];
                rest.trim().parse::<u16>().ok()
            }) {
                break p;
            }
            if let Ok(Some(status)) = child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "regstack exited ({status}) before listening:\n{}",
                    log.text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no banner in {START_TIMEOUT:?}:\n{}",
                log.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Node {
            child: Some(child),
            port,
            log,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/auth", self.port)
    }

    /// SIGKILL: no shutdown, no drain, no flush.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three instances on one database.
struct Cluster {
    _dir: tempfile::TempDir,
    _db: Option<tempfile::TempDir>,
    config: PathBuf,
    database_url: String,
    mongodb_database: String,
    nodes: Vec<Node>,
    http: reqwest::Client,
    next: AtomicUsize,
}

impl Cluster {
    /// `extra`: top-level TOML keys for this scenario; `tables`: more
    /// tables after the common ones.
    async fn start(extra: &str, tables: &str) -> Cluster {
        Self::start_at("http://app.test", extra, tables).await
    }

    /// [`Cluster::start`] with the public origin (`base_url`) they share.
    async fn start_at(base_url: &str, extra: &str, tables: &str) -> Cluster {
        let (database_url, mongodb_database, db) = fresh_database().await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("regstack.toml");
        std::fs::write(
            &config,
            format!(
                "base_url = \"{base_url}\"\n\
                 database_url = \"{database_url}\"\n\
                 mongodb_database = \"{mongodb_database}\"\n\
                 jwt_secret = \"multi-instance-secret-multi-instance-0123\"\n\
                 {extra}\n\
                 [password]\n\
                 argon2_memory_kib = 19456\n\
                 argon2_iterations = 2\n\
                 argon2_parallelism = 1\n\
                 [email]\n\
                 log_bodies = true\n\
                 max_per_address_per_hour = 1000\n\
                 [rate_limits]\n\
                 login = \"\"\n\
                 register = \"\"\n\
                 forgot_password = \"\"\n\
                 verify = \"\"\n\
                 mfa = \"\"\n\
                 sms = \"\"\n\
                 oauth_start = \"\"\n\
                 {tables}\n"
            ),
        )
        .unwrap();
        // The first one migrates the empty database; the other two start
        // together on the migrated one.
        let first = Node::start(&config, 0).await;
        let (second, third) = tokio::join!(Node::start(&config, 0), Node::start(&config, 0));
        Cluster {
            _dir: dir,
            _db: db,
            config,
            database_url,
            mongodb_database,
            nodes: vec![first, second, third],
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            next: AtomicUsize::new(0),
        }
    }

    /// The next instance, round-robin.
    fn rr(&self) -> usize {
        self.next.fetch_add(1, Ordering::SeqCst) % NODES
    }

    async fn call_on(
        &self,
        node: usize,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Reply, reqwest::Error> {
        call(
            &self.http,
            &self.nodes[node].url(),
            method,
            path,
            token,
            body,
        )
        .await
    }

    async fn post_on(&self, node: usize, path: &str, body: Value) -> Reply {
        self.call_on(node, Method::POST, path, None, Some(body))
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.post_on(self.rr(), path, body).await
    }

    async fn me_on(&self, node: usize, token: &str) -> Reply {
        self.call_on(node, Method::GET, "/me", Some(token), None)
            .await
            .unwrap()
    }

    async fn login_on(&self, node: usize, email: &str, password: &str) -> Reply {
        self.post_on(
            node,
            "/login",
            json!({ "email": email, "password": password }),
        )
        .await
    }

    /// Where every instance's log stands now: a later [`Cluster::mailed`]
    /// reads only past it.
    fn mark(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.log.len()).collect()
    }

    /// The token of the first `path` link mailed (by any instance) since
    /// `mark`.
    async fn mailed(&self, mark: &[usize], path: &str) -> String {
        let deadline = Instant::now() + MAIL_TIMEOUT;
        loop {
            for (node, since) in self.nodes.iter().zip(mark) {
                let text = node.log.text();
                if let Some(t) = text.get(*since..).and_then(|t| token_in(t, path)) {
                    return t;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {path} link mailed in {MAIL_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Registers (on one instance) and verifies (on the next).
    async fn create_user(&self, email: &str) {
        let mark = self.mark();
        let r = self
            .post(
                "/register",
                json!({ "email": email, "password": PW, "full_name": "Multi User" }),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let token = self.mailed(&mark, "/verify").await;
        let r = self.post("/verify", json!({ "token": token })).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    /// Signs in on the next instance: (access, refresh).
    async fn sign_in(&self, email: &str) -> (String, String) {
        let r = self.login_on(self.rr(), email, PW).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        (
            r.body["access_token"].as_str().unwrap().to_owned(),
            r.body["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// `/me` with `access` answers `status` on every instance.
    async fn me_everywhere(&self, access: &str, status: u16, why: &str) {
        for node in 0..NODES {
            let r = self.me_on(node, access).await;
            assert_eq!(r.status, status, "{why} (instance {node}): {:?}", r.body);
        }
    }
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Reply, reqwest::Error> {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await?;
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply {
        status,
        headers,
        body,
    })
}

#[tokio::test]
async fn multi_instance_lockout_counts_failures_from_every_instance() {
    let c = Cluster::start("", "").await;
    c.create_user("locked@example.com").await;
    // Five failures, spread over the three (no device cookie: a stranger).
    for i in 0..5 {
        let r = c
            .login_on(i % NODES, "locked@example.com", "not-the-password-1")
            .await;
        assert_eq!(r.status, 401, "failure {i}: {:?}", r.body);
    }
    // No instance saw five on its own, yet every one refuses the right
    // password now.
    for node in 0..NODES {
        let r = c.login_on(node, "locked@example.com", PW).await;
        assert_eq!(r.status, 429, "instance {node}: {:?}", r.body);
        assert!(r.headers.contains_key("retry-after"), "{:?}", r.headers);
    }
}

/// The retry grace (here 1 s) is shared: a retry on another instance gets
/// the same successor. Past it, the replay — on yet another instance —
/// is theft, and the whole family dies on all three.
#[tokio::test]
async fn multi_instance_a_refresh_replayed_on_another_instance_revokes_the_family() {
    let c = Cluster::start("", "[sessions]\nreuse_grace_seconds = 1").await;
    c.create_user("family@example.com").await;
    let (access, refresh) = c.sign_in("family@example.com").await;
    // Rotated on instance 1…
    let r = c
        .post_on(1, "/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let new_access = r.body["access_token"].as_str().unwrap().to_owned();
    let new_refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh);
    // …retried at once on instance 0: the same successor, not a fork.
    let r = c
        .post_on(0, "/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["refresh_token"], new_refresh.as_str());
    c.me_everywhere(&new_access, 200, "the rotated session works everywhere")
        .await;
    // …replayed past the grace on instance 2: the theft is seen, the
    // family dies.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = c
        .post_on(2, "/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    for node in 0..NODES {
        let r = c
            .post_on(node, "/refresh", json!({ "refresh_token": new_refresh }))
            .await;
        assert_eq!(r.status, 401, "the live refresh died (instance {node})");
    }
    c.me_everywhere(&access, 401, "the old access token is dead")
        .await;
    c.me_everywhere(&new_access, 401, "the new access token is dead")
        .await;
}

#[tokio::test]
async fn multi_instance_logout_and_logout_all_on_one_instance_end_sessions_on_all() {
    let c = Cluster::start("", "").await;
    c.create_user("leave@example.com").await;
    let (a1, r1) = c.sign_in("leave@example.com").await;
    let (a2, _) = c.sign_in("leave@example.com").await;
    let (a3, r3) = c.sign_in("leave@example.com").await;
    c.me_everywhere(&a1, 200, "signed in").await;

    let r = c
        .call_on(0, Method::POST, "/logout", Some(&a1), None)
        .await
        .unwrap();
    assert!(r.status.is_success(), "{:?}", r.body);
    c.me_everywhere(&a1, 401, "logged out on instance 0").await;
    let r = c
        .post_on(1, "/refresh", json!({ "refresh_token": r1 }))
        .await;
    assert_eq!(r.status, 401, "its refresh token died too: {:?}", r.body);
    c.me_everywhere(&a2, 200, "the other sessions stay").await;

    let r = c
        .call_on(2, Method::POST, "/logout-all", Some(&a2), None)
        .await
        .unwrap();
    assert!(r.status.is_success(), "{:?}", r.body);
    c.me_everywhere(&a2, 401, "logout-all on instance 2").await;
    c.me_everywhere(&a3, 401, "logout-all ends every session")
        .await;
    let r = c
        .post_on(0, "/refresh", json!({ "refresh_token": r3 }))
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
}

#[tokio::test]
async fn multi_instance_a_totp_step_accepted_on_one_instance_is_refused_on_another() {
    use regstack_testkit::totp::{base32_decode, code_at};
    let c = Cluster::start("", "").await;
    let email = "totp@example.com";
    c.create_user(email).await;
    let (access, _) = c.sign_in(email).await;
    let r = c
        .call_on(
            0,
            Method::POST,
            "/totp/setup",
            Some(&access),
            Some(json!({ "current_password": PW })),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let secret = base32_decode(r.body["secret"].as_str().unwrap());
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now();
    let r = c
        .call_on(
            1,
            Method::POST,
            "/totp/confirm",
            Some(&access),
            Some(json!({ "pending_token": pending, "code": code_at(&secret, now) })),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The next step's code: within the ±1 window, later than the step the
    // enrolment spent.
    let code = code_at(&secret, chrono::Utc::now() + chrono::TimeDelta::seconds(30));
    let cr = &c;
    let challenge = |node: usize| async move {
        let r = cr.login_on(node, email, PW).await;
        assert_eq!(r.body["status"], "mfa_required", "{:?}", r.body);
        r.body["mfa_pending_token"].as_str().unwrap().to_owned()
    };
    let pending = challenge(2).await;
    let r = c
        .post_on(
            0,
            "/login/mfa-confirm",
            json!({ "mfa_pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "accepted once: {:?}", r.body);
    assert!(r.body["access_token"].is_string(), "{:?}", r.body);
    for node in 1..NODES {
        let pending = challenge(node).await;
        let r = c
            .post_on(
                node,
                "/login/mfa-confirm",
                json!({ "mfa_pending_token": pending, "code": code }),
            )
            .await;
        assert_eq!(
            r.status, 400,
            "the spent step is refused on instance {node}: {:?}",
            r.body
        );
    }
}

/// A reset link asked for on one instance is spent on another and refused
/// by all three afterwards; twenty parallel redemptions of a second link,
/// spread over the three, succeed exactly once.
#[tokio::test]
async fn multi_instance_a_reset_link_is_redeemed_once_across_all_even_twenty_at_once() {
    let c = Arc::new(Cluster::start("", "").await);
    let email = "reset@example.com";
    c.create_user(email).await;

    let mark = c.mark();
    let r = c
        .post_on(0, "/forgot-password", json!({ "email": email }))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let token = c.mailed(&mark, "/reset-password").await;
    let body =
        |n: usize| json!({ "token": token, "new_password": format!("the-new-password-{n}") });
    assert_eq!(c.post_on(1, "/reset-password", body(1)).await.status, 200);
    for node in 0..NODES {
        let r = c.post_on(node, "/reset-password", body(2)).await;
        assert_eq!(r.status, 400, "spent link, instance {node}: {:?}", r.body);
    }
    assert_eq!(c.login_on(2, email, "the-new-password-1").await.status, 200);

    let mark = c.mark();
    let r = c
        .post_on(2, "/forgot-password", json!({ "email": email }))
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let token = c.mailed(&mark, "/reset-password").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let c = c.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let body =
                    json!({ "token": token, "new_password": format!("raced-password-{i:02}") });
                (i, c.post_on(i % NODES, "/reset-password", body).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (i, r) = t.await.unwrap();
        match r.status.as_u16() {
            200 => winners.push(i),
            400 => {}
            other => panic!("attempt {i}: {other} {:?}", r.body),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one redemption: {winners:?}");
    let won = format!("raced-password-{:02}", winners[0]);
    for node in 0..NODES {
        assert_eq!(c.login_on(node, email, &won).await.status, 200);
    }
    let loser = format!("raced-password-{:02}", (winners[0] + 1) % 20);
    assert_eq!(c.login_on(0, email, &loser).await.status, 401);
}

/// A burst of registrations over the three; one instance is SIGKILLed in
/// the middle of it and started again on its port. Every registration that
/// got its 201 is there and signs in; every account there signs in (none
/// without its credentials); the two others answered throughout.
#[tokio::test]
async fn multi_instance_an_instance_killed_mid_burst_loses_and_half_writes_nothing() {
    const WORKERS: usize = 6;
    const PER_WORKER: usize = 10;
    let mut c = Cluster::start("require_verification = false", "").await;
    let http = c.http.clone();
    let urls: Vec<String> = c.nodes.iter().map(Node::url).collect();
    let done = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (http, urls, done, killed) =
                (http.clone(), urls.clone(), done.clone(), killed.clone());
            tokio::spawn(async move {
                // (email, instance, status or None for a dropped connection,
                //  sent after the kill)
                let mut out = Vec::new();
                for k in 0..PER_WORKER {
                    let node = (w + k) % NODES;
                    let email = format!("burst-{w}-{k}@example.com");
                    let after_kill = killed.load(Ordering::SeqCst);
                    let body = json!({ "email": email, "password": PW, "full_name": "Burst" });
                    let r = call(
                        &http,
                        &urls[node],
                        Method::POST,
                        "/register",
                        None,
                        Some(body),
                    )
                    .await;
                    out.push((email, node, r.ok().map(|r| r.status.as_u16()), after_kill));
                    done.fetch_add(1, Ordering::SeqCst);
                }
                out
            })
        })
        .collect();
    // Kill instance 1 once the burst is under way: requests are in flight
    // on it (six workers, each a third of the time on it).
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::SeqCst) < WORKERS * PER_WORKER / 4 {
        assert!(Instant::now() < deadline, "the burst does not progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.store(true, Ordering::SeqCst);
    c.nodes[1].kill();
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    let port = c.nodes[1].port;
    c.nodes[1] = Node::start(&c.config, port).await;
    assert_eq!(c.nodes[1].port, port, "restarted on its port");

    // The others kept answering while instance 1 was down.
    let served_after_kill = results
        .iter()
        .filter(|(_, node, status, after)| *after && *node != 1 && *status == Some(201))
        .count();
    assert!(
        served_after_kill > 0,
        "instances 0 and 2 served registrations after the kill: {results:?}"
    );
    assert!(
        results
            .iter()
            .any(|(_, node, status, _)| *node == 1 && status.is_none()),
        "instance 1 really went down mid-burst: {results:?}"
    );
    for (email, node, status, _) in &results {
        if *node != 1 {
            assert_eq!(*status, Some(201), "{email} on live instance {node}");
        }
    }
    // Every 201 is an account that signs in, on every instance (the
    // restarted one too).
    let created: Vec<&String> = results
        .iter()
        .filter(|(_, _, s, _)| *s == Some(201))
        .map(|(e, ..)| e)
        .collect();
    for (i, email) in created.iter().enumerate() {
        let r = c.login_on(i % NODES, email, PW).await;
        assert_eq!(r.status, 200, "{email}: {:?}", r.body);
    }
    // And every account the database holds — including any whose request
    // died with the instance — is whole: it signs in.
    let stores = regstack::open_stores(&c.database_url, &c.mongodb_database)
        .await
        .unwrap();
    let mut present = 0;
    for (i, (email, ..)) in results.iter().enumerate() {
        let parsed = regstack_ports::Email::parse(email).unwrap();
        if stores.users.find_by_email(&parsed).await.unwrap().is_some() {
            present += 1;
            let r = c.login_on(i % NODES, email, PW).await;
            assert_eq!(
                r.status, 200,
                "{email} exists, so it must sign in: {:?}",
                r.body
            );
        } else {
            assert!(
                !created.contains(&email),
                "{email} got its 201 but is not in the database"
            );
        }
    }
    assert!(present > 0);
    // The restarted instance serves like the others.
    let r = c.login_on(1, created[0], PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// An OAuth flow started on one instance comes back (through the provider)
/// to another, and its exchange id — posted twenty times at once, spread
/// over the three — gives one session. The test plays the load balancer:
/// the public origin is an address nothing listens on, and each hop goes
/// to the instance the test picks.
#[tokio::test]
async fn multi_instance_an_oauth_exchange_id_is_redeemed_once_across_all() {
    use regstack_testkit::oidc::{OidcProvider, OidcUser};
    use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
    let Some(op) = OidcProvider::from_env("multi_instance_oauth") else {
        return;
    };
    let lb = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let client = op
        .register_client(&format!("{lb}/api/auth/oauth/op/callback"))
        .await;
    let tables = format!(
        "[oauth.providers.op]\nkind = \"oidc\"\nissuer = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n",
        op.issuer(),
        client.client_id,
        client.client_secret
    );
    let c = Arc::new(Cluster::start_at(&lb, "enable_oauth = true", &tables).await);
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let origin = |node: usize| format!("http://127.0.0.1:{}", c.nodes[node].port);

    // Start on instance 0: the provider's URL and the flow's browser binding.
    let res = raw
        .get(format!("{}/api/auth/oauth/op/start", origin(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let binding = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("__Host-regstack_oauth="))
        .map(|v| format!("__Host-regstack_oauth={}", v.split(';').next().unwrap()))
        .expect("the flow's binding cookie");
    let auth = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let back = op.authorize(&auth, &OidcUser::fresh()).await.unwrap();
    let back = back.to_string();
    assert!(back.starts_with(&lb), "{back}");
    // The provider sends the browser back; the balancer picks instance 1.
    let res = raw
        .get(back.replacen(&lb, &origin(1), 1))
        .header(COOKIE, &binding)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let to = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let id = to
        .strip_prefix("/account/oauth-complete?id=")
        .unwrap_or_else(|| panic!("the callback sent the browser to {to}"))
        .to_owned();

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (c, raw, binding, id) = (c.clone(), raw.clone(), binding.clone(), id.clone());
            tokio::spawn(async move {
                let res = raw
                    .post(format!("{}/oauth/exchange", c.nodes[i % NODES].url()))
                    .header(COOKIE, binding)
                    .json(&json!({ "id": id }))
                    .send()
                    .await
                    .unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                (status, body)
            })
        })
        .collect();
    let mut sessions = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => sessions.push(body["access_token"].as_str().unwrap().to_owned()),
            404 => {}
            other => panic!("exchange answered {other}: {body}"),
        }
    }
    assert_eq!(sessions.len(), 1, "one exchange, one session");
    c.me_everywhere(&sessions[0], 200, "the session works everywhere")
        .await;
}
