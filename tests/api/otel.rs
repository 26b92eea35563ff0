//! OpenTelemetry export (server feature `otel`, on for this package): the
//! real `regstack` binary, pointed by `[tracing] otlp_endpoint` at a tiny
//! OTLP/HTTP receiver run here, exports a `flow` span (`flow = "login"`)
//! inside the `request` span carrying the client's `X-Request-Id` — and
//! nothing of the password or the tokens it handled.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::json;

const PASSWORD: &str = "otel-password-never-exported-42";

fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(format!("regstack{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build the workspace's binaries first (cargo nextest run --workspace does)",
        bin.display()
    );
    bin
}

/// One POST to `/v1/traces`: its content type and body.
type Export = (String, Vec<u8>);

/// Every export received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Export>>>);

async fn otlp_receiver() -> (String, Received) {
    let received = Received::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let kind = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    sink.0.lock().unwrap().push((kind, body.to_vec()));
                    // An empty ExportTraceServiceResponse.
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attr(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(AnyValue::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn the_binary_exports_a_flow_span_with_its_request_id_and_no_secret() {
    let (endpoint, received) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(binary());
    cmd.args(["serve", "--port", "0"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("REGSTACK_") || key.starts_with("OTEL_") || key == "RUST_LOG" {
            cmd.env_remove(&key);
        }
    }
    let db = format!("sqlite:{}", dir.path().join("regstack.db").display());
    cmd.env(
        "REGSTACK_JWT_SECRET",
        "otel-test-secret-0123456789abcdef-0123",
    )
    .env("REGSTACK_DATABASE_URL", db)
    .env("REGSTACK_REQUIRE_VERIFICATION", "false")
    .env("REGSTACK_PASSWORD__ARGON2_MEMORY_KIB", "19456")
    .env("REGSTACK_PASSWORD__ARGON2_ITERATIONS", "2")
    .env("REGSTACK_PASSWORD__ARGON2_PARALLELISM", "1")
    .env("REGSTACK_TRACING__OTLP_ENDPOINT", &endpoint)
    .env("REGSTACK_TRACING__SERVICE_NAME", "regstack-otel-test");
    let mut child = cmd.spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut child = Kill(child);
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    for stream in [
        Box::new(stdout) as Box<dyn std::io::Read + Send>,
        Box::new(stderr),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
    }
    let output = || lines.lock().unwrap().join("\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let base = loop {
        let found = lines.lock().unwrap().iter().find_map(|l| {
            l.split_once(" listening on ")
                .map(|(_, u)| u.trim().to_owned())
        });
        if let Some(url) = found {
            break url;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("regstack exited ({status}):\n{}", output());
        }
        assert!(Instant::now() < deadline, "no banner:\n{}", output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let api = format!("{base}/api/auth");
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{api}/register"))
        .header("x-request-id", "otel-register-1")
        .json(&json!({ "email": "otel@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{api}/login"))
        .header("x-request-id", "otel-login-2")
        .json(&json!({ "email": "otel@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();

    // SIGTERM: the server drains, then the export is flushed before exit.
    let pid = child.0.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit {status}:\n{}", output());

    let bodies = received.0.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "nothing exported:\n{}", output());
    let mut spans = Vec::new();
    for (kind, body) in &bodies {
        assert_eq!(kind, "application/x-protobuf");
        for secret in [PASSWORD, access.as_str(), refresh.as_str()] {
            assert!(
                !body.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret was exported"
            );
        }
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.clone());
            assert_eq!(
                service,
                Some(AnyValue::StringValue("regstack-otel-test".into()))
            );
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let login_request = spans
        .iter()
        .find(|s| {
            s.name == "request" && string_attr(s, "request_id").as_deref() == Some("otel-login-2")
        })
        .unwrap_or_else(|| panic!("no request span with the login's request id: {names:?}"));
    assert_eq!(
        string_attr(login_request, "path").as_deref(),
        Some("/api/auth/login")
    );
    let flow = spans
        .iter()
        .find(|s| s.name == "flow" && string_attr(s, "flow").as_deref() == Some("login"))
        .unwrap_or_else(|| panic!("no login flow span: {names:?}"));
    assert_eq!(
        flow.trace_id, login_request.trace_id,
        "one trace per request"
    );
    assert_eq!(
        flow.parent_span_id, login_request.span_id,
        "the flow runs inside its request"
    );
    // The account's ids, once known, and never its address.
    assert!(string_attr(flow, "user_id").is_some_and(|id| !id.is_empty()));
    assert!(string_attr(flow, "session_id").is_some_and(|id| !id.is_empty()));
    for (_, body) in &bodies {
        let needle = b"otel@example.com";
        assert!(
            !body.windows(needle.len()).any(|w| w == needle),
            "an address was exported"
        );
    }
    assert!(spans
        .iter()
        .any(|s| string_attr(s, "request_id").as_deref() == Some("otel-register-1")));
}
