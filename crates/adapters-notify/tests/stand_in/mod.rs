//! A stand-in for Twilio, SNS and SES: an axum server on 127.0.0.1:0 that
//! records every request as received and answers with one scripted reply
//! (the services' real error shapes, in the tests). Plus a listener that
//! accepts and never answers, and an independent SigV4 check: the
//! signature is recomputed here with `hmac`/`sha2` from the request as it
//! arrived, so a pass proves that what was signed is what was sent.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as `application/x-www-form-urlencoded` pairs, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// What the stand-in answers every request with.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, content_type: &str, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body: body.to_owned(),
        }
    }

    pub fn json(status: u16, body: &str) -> Self {
        Self::new(status, "application/json", body)
    }

    pub fn xml(status: u16, body: &str) -> Self {
        Self::new(status, "text/xml", body)
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

#[derive(Clone)]
struct Shared {
    reply: Reply,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

/// A running stand-in; stops when dropped.
pub struct StandIn {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub base: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    pub async fn start(reply: Reply) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(record).with_state(Shared {
            reply,
            seen: seen.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            seen,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// The one request a test expects.
    pub fn only_request(&self) -> Recorded {
        let seen = self.requests();
        assert_eq!(seen.len(), 1, "{seen:#?}");
        seen.into_iter().next().unwrap()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.seen.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: body.to_vec(),
    });
    let reply = shared.reply;
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

/// A listener that accepts connections and never says a word: the
/// black-holed API. Returns its base URL and the task holding the sockets.
pub async fn never_answers() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            held.push(socket);
        }
    });
    (format!("http://{addr}"), task)
}

/// A port nothing listens on.
pub fn closed_port_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// The parts of a SigV4 `Authorization` header.
#[derive(Debug)]
pub struct SigV4 {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/<date>/<region>/<service>/aws4_request,
/// SignedHeaders=a;b;c, Signature=<64 hex>`, failing on any other shape.
pub fn parse_authorization(value: &str) -> SigV4 {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .unwrap_or_else(|| panic!("not a SigV4 header: {value}"));
    let (credential, rest) = rest.split_once(", SignedHeaders=").unwrap();
    let (signed_headers, signature) = rest.split_once(", Signature=").unwrap();
    let scope: Vec<&str> = credential.split('/').collect();
    assert_eq!(scope.len(), 5, "{credential}");
    assert_eq!(scope[4], "aws4_request", "{credential}");
    assert_eq!(scope[1].len(), 8, "{credential}");
    assert!(scope[1].bytes().all(|b| b.is_ascii_digit()), "{credential}");
    assert_eq!(signature.len(), 64, "{signature}");
    assert!(
        signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{signature}"
    );
    let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    let mut sorted = signed_headers.clone();
    sorted.sort();
    assert_eq!(signed_headers, sorted, "signed headers must be sorted");
    SigV4 {
        access_key_id: scope[0].to_owned(),
        date: scope[1].to_owned(),
        region: scope[2].to_owned(),
        service: scope[3].to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Recomputes the SigV4 signature of `req` as received, with `secret`, and
/// asserts it equals the one sent. Returns the parsed header for further
/// checks. Only what our transports send is handled: no query string, a
/// path that needs no further encoding.
pub fn verify_sigv4(req: &Recorded, secret: &str) -> SigV4 {
    let auth = parse_authorization(
        req.header("authorization")
            .expect("no authorization header"),
    );
    let amz_date = req.header("x-amz-date").expect("no x-amz-date header");
    assert_eq!(amz_date.len(), 16, "{amz_date}");
    assert!(
        amz_date.ends_with('Z') && &amz_date[8..9] == "T",
        "{amz_date}"
    );
    assert_eq!(
        &amz_date[..8],
        auth.date,
        "date in scope and x-amz-date differ"
    );
    for required in ["content-type", "host", "x-amz-date"] {
        assert!(
            auth.signed_headers.iter().any(|h| h == required),
            "{required} is not signed: {:?}",
            auth.signed_headers
        );
    }
    assert!(req.query.is_none(), "unexpected query {:?}", req.query);

    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                v.to_str()
                    .unwrap()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert!(!values.is_empty(), "signed header {name} was not sent");
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_request = format!(
        "{}\n{}\n\n{}\n{}\n{}",
        req.method,
        req.path,
        canonical_headers,
        auth.signed_headers.join(";"),
        hex::encode(Sha256::digest(&req.body)),
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
    let k_region = hmac(&k_date, auth.region.as_bytes());
    let k_service = hmac(&k_region, auth.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    assert_eq!(
        expected, auth.signature,
        "signature does not match the request as received;\ncanonical request:\n{canonical_request}"
    );
    auth
}
