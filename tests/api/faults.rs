//! The database goes away: requests get 503 with a generic JSON body (no
//! driver text), the server stays up, and it recovers by itself when the
//! database returns. On PostgreSQL and MongoDB a TCP proxy between server
//! and database is cut and restored; on the SQLite run (no server to stop)
//! the in-memory stores fail every operation instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::support::*;
use regstack_ports::{Session, SessionId, SessionStore, StoreError, Stores, User};
use regstack_testkit::forward::{forwarding, SessionStoreForward};
use regstack_testkit::CutoffProxy;

fn host_port(url: &str) -> String {
    let rest = &url[url.find("://").unwrap() + 3..];
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let hp = &rest[..end];
    hp[hp.rfind('@').map_or(0, |i| i + 1)..].to_owned()
}

async fn assert_503_generic(app: &TestApp, token: &str) {
    let started = std::time::Instant::now();
    let r = app.me(token).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r.headers["retry-after"], "5");
    assert_eq!(
        r.body,
        json!({ "detail": "Service temporarily unavailable. Try again shortly." })
    );
    let r = app.login("down@example.com", PW).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    let text = r.body.to_string().to_lowercase();
    for leak in ["sqlx", "select", "mongo", "127.0.0.1", "connection", "pool"] {
        assert!(!text.contains(leak), "driver detail leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_database_gives_503_and_the_server_recovers_by_itself() {
    match backend_name().as_str() {
        "sqlite" => {
            let (stores, faults) = regstack_testkit::memory_stores_with_faults();
            let app = spawn_app_on(stores, Backend::Memory, |_| {}, false).await;
            app.create_user("down@example.com", PW).await;
            let token = app.access_token("down@example.com", PW).await;
            faults.fail_always("*");
            assert_503_generic(&app, &token).await;
            faults.heal();
            assert_eq!(app.me(&token).await.status, 200);
        }
        backend => {
            let var = if backend == "postgres" {
                "TEST_PG_URL"
            } else {
                "TEST_MONGO_URL"
            };
            let real = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
            let proxy = CutoffProxy::start(host_port(&real)).await;
            let (stores, handle) = fresh_backend_via(&proxy.addr().to_string()).await;
            let app = spawn_app_on(stores, handle, |_| {}, false).await;
            app.create_user("down@example.com", PW).await;
            let token = app.access_token("down@example.com", PW).await;

            proxy.cut().await;
            assert_503_generic(&app, &token).await;
            // The server itself stays up.
            assert_eq!(
                app.call(reqwest::Method::GET, "/nope", None, None)
                    .await
                    .status,
                404
            );

            proxy.restore().await;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let r = app.me(&token).await;
                if r.status == 200 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no recovery: {:?}",
                    r.body
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            assert_eq!(app.login("down@example.com", PW).await.status, 200);
        }
    }
}

/// Session lookups that never answer while `stalled` is set: a database
/// that accepts connections and then goes silent.
struct Stalling {
    inner: Stores,
    stalled: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl SessionStoreForward for Stalling {
    fn sessions(&self) -> &dyn SessionStore {
        &*self.inner.sessions
    }
    async fn authenticate(&self, id: &SessionId) -> Result<Option<(Session, User)>, StoreError> {
        if self.stalled.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.sessions().authenticate(id).await
    }
}

/// A database that stops answering (connections stay open, nothing comes
/// back) must not hold requests forever: after `http.request_timeout_seconds`
/// the client gets the same generic 503 with `Retry-After` as for a stopped
/// database, other routes keep answering meanwhile, and once the database
/// answers again so does the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_database_gives_503_after_the_request_timeout() {
    let inner = regstack_testkit::memory_stores();
    let stalled = Arc::new(AtomicBool::new(false));
    let stores = Stores {
        sessions: forwarding(Stalling {
            inner: inner.clone(),
            stalled: stalled.clone(),
        }),
        ..inner
    };
    let app = spawn_app_on(
        stores,
        Backend::Memory,
        |c| c.http.request_timeout_seconds = 1,
        false,
    )
    .await;
    app.create_user("silent@example.com", PW).await;
    let token = app.access_token("silent@example.com", PW).await;

    stalled.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let r = app.me(&token).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(5),
        "answered after {took:?}"
    );
    assert_eq!(r.headers["retry-after"], "5");
    assert_eq!(
        r.body,
        json!({ "detail": "Service temporarily unavailable. Try again shortly." })
    );
    assert_eq!(
        app.call(reqwest::Method::GET, "/nope", None, None)
            .await
            .status,
        404,
        "the server itself answers"
    );

    stalled.store(false, Ordering::SeqCst);
    assert_eq!(app.me(&token).await.status, 200);
}
