//! `spawn_app`: a real regstack server on 127.0.0.1:0 over a fresh SQLite
//! file, with a recording mailer and a counting hasher, driven by reqwest.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regstack::{Config, Event, EventKind, RegStack, Settings};
use regstack_core::password::Argon2Hasher;
use regstack_ports::{Clock, Stores};
use regstack_testkit::{CountingHasher, FixedClock, RecordingMailer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const PW: &str = "correct-horse-battery";

pub struct TestApp {
    pub base: String,
    pub api: String,
    pub http: reqwest::Client,
    pub mailer: RecordingMailer,
    pub sms: regstack_testkit::RecordingSms,
    pub hasher: Arc<CountingHasher>,
    pub stores: Stores,
    pub clock: Option<Arc<FixedClock>>,
    pub events: Arc<Mutex<Vec<Event>>>,
    pub backend: Backend,
    pub rs: RegStack,
}

/// The storage behind one test's server: chosen by `TEST_BACKEND`
/// (`sqlite`, the default; `postgres` with `TEST_PG_URL`; `mongo` with
/// `TEST_MONGO_URL`), always a fresh, empty database.
pub enum Backend {
    /// In-memory fakes (fault tests on the SQLite run, where no server can
    /// be stopped).
    Memory,
    Sqlite(tempfile::TempDir),
    Postgres(sqlx::PgPool),
    Mongo(mongodb::Database),
}

fn service_url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("TEST_BACKEND asks for a service but {var} is not set: run `cargo xtask services up` (CI=true never skips)")
    })
}

fn fresh_name() -> String {
    format!("t_{}", uuid_like())
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn backend_name() -> String {
    std::env::var("TEST_BACKEND").unwrap_or_else(|_| "sqlite".into())
}

/// A fresh, empty database on the server of `TEST_BACKEND` reachable at
/// `host_port` (a proxy in front of the real server), with its stores.
pub async fn fresh_backend_via(host_port: &str) -> (Stores, Backend) {
    let swap = |url: &str| {
        let after = url.find("://").unwrap() + 3;
        let rest = &url[after..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        let host_start = rest[..host_end].rfind('@').map_or(0, |i| i + 1);
        format!(
            "{}{}{}{}",
            &url[..after],
            &rest[..host_start],
            host_port,
            &rest[host_end..]
        )
    };
    match backend_name().as_str() {
        "postgres" => {
            let admin_url = service_url("TEST_PG_URL");
            let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
            let name = fresh_name();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            let url = swap(&format!("{base}/{name}"));
            let stores = regstack::open_stores(&url, "unused").await.unwrap();
            (
                stores,
                Backend::Postgres(sqlx::PgPool::connect(&url).await.unwrap()),
            )
        }
        "mongo" => {
            // SecantusDB (like a replica set) advertises its own address;
            // a direct connection keeps the client on the proxy.
            let url = format!(
                "{}/?directConnection=true",
                swap(&service_url("TEST_MONGO_URL")).trim_end_matches('/')
            );
            let name = fresh_name();
            let stores = regstack::open_stores(&url, &name).await.unwrap();
            let db = regstack_adapters_mongo::connect(&url, &name).await.unwrap();
            (stores, Backend::Mongo(db))
        }
        other => panic!("no database server to proxy for backend {other}"),
    }
}

/// A fresh, empty database of the backend under test (`TEST_BACKEND`):
/// its URL, the MongoDB database name (`mongodb_database`), and for SQLite
/// the directory holding the file (removed when dropped). Nothing is
/// migrated yet: what opens it first does that.
pub async fn fresh_database() -> (String, String, Option<tempfile::TempDir>) {
    match std::env::var("TEST_BACKEND").as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite:{}", dir.path().join("regstack.db").display());
            (url, "unused".into(), Some(dir))
        }
        "postgres" => {
            let admin_url = service_url("TEST_PG_URL");
            let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
            let name = fresh_name();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            let (base, _) = admin_url.rsplit_once('/').unwrap();
            (format!("{base}/{name}"), "unused".into(), None)
        }
        "mongo" => (service_url("TEST_MONGO_URL"), fresh_name(), None),
        other => panic!("unknown TEST_BACKEND {other}: use sqlite, postgres or mongo"),
    }
}

pub async fn fresh_backend() -> (Stores, Backend) {
    let (url, name, dir) = fresh_database().await;
    let stores = regstack::open_stores(&url, &name).await.unwrap();
    let backend = match dir {
        Some(dir) => Backend::Sqlite(dir),
        None if backend_name() == "postgres" => {
            Backend::Postgres(sqlx::PgPool::connect(&url).await.unwrap())
        }
        None => {
            let db = regstack_adapters_mongo::connect(&url, &name).await.unwrap();
            // Tests with a frozen clock write expiries in the past of the
            // server's wall clock; hold the TTL monitor off so it cannot
            // reap rows mid-test (reads check expiry against `now` anyway).
            for (collection, index) in regstack_adapters_mongo::index_names() {
                if index == "expire_at_ttl" {
                    db.run_command(mongodb::bson::doc! {
                        "collMod": collection,
                        "index": { "name": index, "expireAfterSeconds": 2_000_000_000_i64 },
                    })
                    .await
                    .unwrap();
                }
            }
            Backend::Mongo(db)
        }
    };
    (stores, backend)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
}

/// Test configuration: OWASP-floor Argon2 (regstack's 64 MiB would make
/// every sign-in in the suite slow), a fixed secret.
pub fn test_config() -> Config {
    let mut c = Config {
        jwt_secret: "test-secret-test-secret-test-secret-0123".into(),
        base_url: "http://app.test".into(),
        ..Config::default()
    };
    c.password.argon2_memory_kib = 19456;
    c.password.argon2_iterations = 2;
    c.password.argon2_parallelism = 1;
    c.password.max_concurrent_hashes = Some(2);
    // Security notices are off: the suite counts the mails each address
    // gets, and those counts predate them. `notices.rs` turns them on.
    c.notices = regstack_core::config::NoticesPolicy {
        new_device: false,
        password_changed: false,
        email_changed: false,
        mfa_disabled: false,
        refresh_reuse: false,
        ..Default::default()
    };
    c
}

/// The test configuration with every other part at its default; tests
/// tweak the policy (`s.config`) or the HTTP layer (`s.http`).
///
/// Route limits are off: the suite signs in, registers and resends from
/// 127.0.0.1 far more often than a person would (the per-address lockout
/// and mail quota stay on). `rate_limits.rs` turns them on.
pub fn test_settings() -> Settings {
    let mut s = Settings::from(test_config());
    s.http.route_limits = regstack::RouteLimits::none();
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, false).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings), fixed_clock: bool) -> TestApp {
    let (stores, backend) = fresh_backend().await;
    spawn_app_on(stores, backend, tweak, fixed_clock).await
}

/// A server over stores the test built itself (fault tests put a proxy or
/// a failing fake between server and database).
pub async fn spawn_app_on(
    stores: Stores,
    backend: Backend,
    tweak: impl FnOnce(&mut Settings),
    fixed_clock: bool,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_app_listening(listener, stores, backend, tweak, fixed_clock).await
}

/// A server on a listener the test bound itself: tests that must know the
/// server's address before it is built (an OAuth provider's registered
/// callback URL) bind first.
pub async fn spawn_app_listening(
    listener: tokio::net::TcpListener,
    stores: Stores,
    backend: Backend,
    tweak: impl FnOnce(&mut Settings),
    fixed_clock: bool,
) -> TestApp {
    let mut cfg = test_settings();
    tweak(&mut cfg);
    let mailer = RecordingMailer::new();
    let sms = regstack_testkit::RecordingSms::new();
    let hasher = Arc::new(CountingHasher::new(Arc::new(
        Argon2Hasher::new(&cfg.config.password).unwrap(),
    )));
    let clock = fixed_clock.then(|| Arc::new(FixedClock::new(regstack_testkit::fixtures::t0())));
    // A test that points mail at a real SMTP server (`s.mail`) gets it
    // delivered there; every other test records mail in memory.
    let record_mail = !matches!(cfg.mail, regstack::MailTransport::Smtp(_));
    let mut b = RegStack::builder(cfg)
        .stores(stores.clone())
        .sms(Arc::new(sms.clone()))
        .hasher(hasher.clone());
    if record_mail {
        b = b.mailer(Arc::new(mailer.clone()));
    }
    if let Some(c) = &clock {
        b = b.clock(c.clone() as Arc<dyn Clock>);
    }
    let rs = b.build().await.unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    for kind in EventKind::ALL {
        let seen = events.clone();
        rs.events().subscribe(kind, move |e| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(e);
                Ok(())
            }
        });
    }
    let app = rs.router();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum_serve(listener, app).await;
    });
    let base = format!("http://{addr}");
    TestApp {
        api: format!("{base}/api/auth"),
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
        mailer,
        sms,
        hasher,
        stores,
        clock,
        events,
        backend,
        rs,
    }
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .unwrap();
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.api));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, None, Some(body)).await
    }

    pub async fn post_auth(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn me(&self, token: &str) -> Reply {
        self.call(Method::GET, "/me", Some(token), None).await
    }

    /// The raw token from the newest mail to `to` whose link has `path`.
    pub async fn mailed_token(&self, to: &str, count: usize, path: &str) -> String {
        let mails = self
            .mailer
            .wait_for(to, count, Duration::from_secs(10))
            .await;
        assert!(
            mails.len() >= count,
            "expected {count} mails to {to}, got {}",
            mails.len()
        );
        let text = &mails[count - 1].text;
        token_in(text, path).unwrap_or_else(|| panic!("no {path} link in mail:\n{text}"))
    }

    pub async fn register(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/register",
            json!({ "email": email, "password": password, "full_name": "Test User" }),
        )
        .await
    }

    /// Registers and verifies; returns nothing (log in next).
    pub async fn create_user(&self, email: &str, password: &str) {
        let lower = email.trim().to_lowercase();
        let before = self.mailer.sent_to(&lower).len();
        let r = self.register(email, password).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let token = self.mailed_token(&lower, before + 1, "/verify").await;
        let r = self.post("/verify", json!({ "token": token })).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post("/login", json!({ "email": email, "password": password }))
            .await
    }

    pub async fn access_token(&self, email: &str, password: &str) -> String {
        let r = self.login(email, password).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["access_token"].as_str().unwrap().to_owned()
    }

    pub fn event_names(&self) -> Vec<&'static str> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind.name())
            .collect()
    }

    /// Everything the database holds: the SQLite files (main and WAL), or
    /// every row of every table / every document of every collection.
    pub async fn database_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.backend {
            Backend::Memory => {}
            Backend::Sqlite(dir) => {
                for entry in std::fs::read_dir(dir.path()).unwrap() {
                    out.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
                }
            }
            Backend::Postgres(pool) => {
                let tables: Vec<(String,)> = sqlx::query_as(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
                )
                .fetch_all(pool)
                .await
                .unwrap();
                for (t,) in tables {
                    let rows: Vec<(String,)> =
                        sqlx::query_as(&format!("SELECT t::text FROM \"{t}\" t"))
                            .fetch_all(pool)
                            .await
                            .unwrap();
                    for (r,) in rows {
                        out.extend(r.into_bytes());
                    }
                }
            }
            Backend::Mongo(db) => {
                use futures::TryStreamExt;
                for name in db.list_collection_names().await.unwrap() {
                    let docs: Vec<mongodb::bson::Document> = db
                        .collection::<mongodb::bson::Document>(&name)
                        .find(mongodb::bson::doc! {})
                        .await
                        .unwrap()
                        .try_collect()
                        .await
                        .unwrap();
                    for d in docs {
                        out.extend(d.to_string().into_bytes());
                    }
                }
            }
        }
        out
    }
}

/// Holds each of the first `n` calls that pass it until all `n` have
/// arrived, then lets them go at once; later calls pass straight through.
/// Put in front of a store method (a `regstack_testkit::forward` wrapper),
/// it makes the calls of a parallel burst reach the store together, so
/// that the store — not the order in which the requests happened to get
/// there — has to keep them apart. A held call gives up after 10 s;
/// [`Gate::arrived`] tells the test how many came.
pub struct Gate {
    n: usize,
    barrier: tokio::sync::Barrier,
    arrived: AtomicUsize,
}

impl Gate {
    pub fn new(n: usize) -> Self {
        Self {
            n,
            barrier: tokio::sync::Barrier::new(n),
            arrived: AtomicUsize::new(0),
        }
    }

    pub async fn pass(&self) {
        if self.arrived.fetch_add(1, Ordering::SeqCst) < self.n {
            let _ = tokio::time::timeout(Duration::from_secs(10), self.barrier.wait()).await;
        }
    }

    /// How many calls have passed (or are waiting).
    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }
}

/// The tables (MongoDB: collections) a row of a user can be in: every
/// one the schema has but the migration or schema-version record.
pub const USER_TABLES: [&str; 12] = [
    "invites",
    "login_attempts",
    "mfa_backup_codes",
    "mfa_codes",
    "mfa_totp",
    "oauth_identities",
    "oauth_states",
    "one_time_tokens",
    "pending_registrations",
    "rate_limit_hits",
    "sessions",
    "users",
];

/// Counts the rows of each of [`USER_TABLES`] keyed by the user `$id` or
/// its address `$email`, on a sqlx pool of either engine, and returns them
/// with the names of the database's tables (`$tables`: a query listing
/// them). Counters are keyed `<purpose>:<address>`: their keys are read
/// and the suffix compared here, literally.
macro_rules! sql_rows_keyed_by {
    ($pool:expr, $tables:expr, $id:expr, $email:expr) => {{
        let pool = $pool;
        let tables: Vec<String> = sqlx::query_scalar($tables).fetch_all(pool).await.unwrap();
        let mut counts = Vec::new();
        for table in USER_TABLES {
            let n: i64 = match table {
                "users" => {
                    sqlx::query_scalar("SELECT count(*) FROM users WHERE id = $1 OR email = $2")
                        .bind($id)
                        .bind($email)
                        .fetch_one(pool)
                        .await
                        .unwrap()
                }
                "invites" => sqlx::query_scalar(
                    "SELECT count(*) FROM invites WHERE email = $2 OR used_by = $2 OR created_by = $1",
                )
                .bind($id)
                .bind($email)
                .fetch_one(pool)
                .await
                .unwrap(),
                "rate_limit_hits" => {
                    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM rate_limit_hits")
                        .fetch_all(pool)
                        .await
                        .unwrap();
                    let suffix = format!(":{}", $email);
                    keys.iter().filter(|k| k.ends_with(&suffix)).count() as i64
                }
                _ => {
                    let (column, value) = match table {
                        "pending_registrations" | "login_attempts" => ("email", $email),
                        // A flow belongs to the account it would link to.
                        "oauth_states" => ("linking_user_id", $id),
                        _ => ("user_id", $id),
                    };
                    let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1");
                    sqlx::query_scalar(&sql)
                        .bind(value)
                        .fetch_one(pool)
                        .await
                        .unwrap()
                }
            };
            counts.push((table, n));
        }
        (tables, counts)
    }};
}

impl TestApp {
    /// How many rows of each of [`USER_TABLES`] name a user — by its id
    /// or its address — counted in the database of the backend under test
    /// itself, not asked of the stores. Fails if the database has a table
    /// (collection) that is not in the list, so a new one cannot escape
    /// the scan. The audit log is left out on purpose: it names the
    /// account and outlives it until retention purges it.
    pub async fn rows_keyed_by(&self, id: &str, email: &str) -> Vec<(&'static str, i64)> {
        let (mut tables, counts) = match &self.backend {
            Backend::Memory => panic!("the in-memory fakes have no tables to count"),
            Backend::Sqlite(dir) => {
                let url = format!(
                    "sqlite:{}?mode=ro",
                    dir.path().join("regstack.db").display()
                );
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                let found = sql_rows_keyed_by!(
                    &pool,
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' \
                     AND name <> 'audit_log'",
                    id,
                    email
                );
                pool.close().await;
                found
            }
            Backend::Postgres(pool) => sql_rows_keyed_by!(
                pool,
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' \
                 AND table_name <> 'audit_log'",
                id,
                email
            ),
            Backend::Mongo(db) => {
                use futures::TryStreamExt;
                use mongodb::bson::{doc, Document};
                let mut tables = db.list_collection_names().await.unwrap();
                tables.retain(|c| c != "regstack_meta" && c != "audit_log");
                let mut counts = Vec::new();
                for name in USER_TABLES {
                    let coll = db.collection::<Document>(name);
                    let filter = match name {
                        "users" => doc! { "$or": [{ "_id": id }, { "email": email }] },
                        "pending_registrations" => doc! { "email": email },
                        "login_attempts" => doc! { "_id": email },
                        "mfa_totp" | "mfa_backup_codes" => doc! { "_id": id },
                        "oauth_states" => doc! { "link_user_id": id },
                        "invites" => doc! {
                            "$or": [{ "email": email }, { "used_by": email }, { "created_by": id }]
                        },
                        "rate_limit_hits" => {
                            let suffix = format!(":{email}");
                            let all: Vec<Document> = coll
                                .find(doc! {})
                                .await
                                .unwrap()
                                .try_collect()
                                .await
                                .unwrap();
                            let n = all
                                .iter()
                                .filter(|d| d.get_str("_id").is_ok_and(|k| k.ends_with(&suffix)))
                                .count();
                            counts.push((name, n as i64));
                            continue;
                        }
                        _ => doc! { "user_id": id },
                    };
                    let n = coll.count_documents(filter).await.unwrap();
                    counts.push((name, i64::try_from(n).unwrap()));
                }
                (tables, counts)
            }
        };
        tables.sort_unstable();
        assert_eq!(
            tables, USER_TABLES,
            "the database has exactly the tables the scan reads"
        );
        counts
    }
}

pub fn token_in(text: &str, path: &str) -> Option<String> {
    let marker = format!("{path}?token=");
    let start = text.find(&marker)? + marker.len();
    Some(
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect(),
    )
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Collects what a `tracing` subscriber writes, for tests that read the
/// logs a request leaves.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The `regstack` binary the workspace build put beside this test binary
/// (`target/<profile>/regstack`, this one being in `…/deps/`): the
/// process-level tests run the real server and commands.
pub fn regstack_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    let bin = dir.join(format!("regstack{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build the workspace's binaries first (cargo nextest run --workspace does)",
        bin.display()
    );
    bin
}
