//! `spawn_app`: a real regstack server on 127.0.0.1:0 over a fresh SQLite
//! file, with a recording mailer and a counting hasher, driven by reqwest.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regstack::{Config, Event, EventKind, RegStack};
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
    pub hasher: Arc<CountingHasher>,
    pub stores: Stores,
    pub clock: Option<Arc<FixedClock>>,
    pub events: Arc<Mutex<Vec<Event>>>,
    pub db_dir: tempfile::TempDir,
    pub rs: RegStack,
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

/// Test configuration: OWASP-floor Argon2 (DECISIONS.md §12), a fixed secret.
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
    c
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, false).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config), fixed_clock: bool) -> TestApp {
    let mut cfg = test_config();
    tweak(&mut cfg);
    let db_dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", db_dir.path().join("regstack.db").display());
    let stores = regstack::open_stores(&url).await.unwrap();
    let mailer = RecordingMailer::new();
    let hasher = Arc::new(CountingHasher::new(Arc::new(
        Argon2Hasher::new(&cfg.password).unwrap(),
    )));
    let clock = fixed_clock.then(|| Arc::new(FixedClock::new(regstack_testkit::fixtures::t0())));
    let mut b = RegStack::builder(cfg)
        .stores(stores.clone())
        .mailer(Arc::new(mailer.clone()))
        .hasher(hasher.clone());
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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
        hasher,
        stores,
        clock,
        events,
        db_dir,
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

    /// Every byte the SQLite database holds on disk (main file and WAL).
    pub fn database_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.db_dir.path()).unwrap() {
            out.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
        }
        out
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
