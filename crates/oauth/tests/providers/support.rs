//! What every provider test shares: a controllable clock, the test keys,
//! ID token signing (good and deliberately bad), and one stand-in server
//! on 127.0.0.1 that plays discovery, JWKS, token endpoint and GitHub's
//! user API, records what it receives and checks the client's credentials
//! and PKCE verifier as a real provider would.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use regstack_oauth::{HttpClient, ProviderConfig};
use regstack_ports::{
    AuthorizationRequest, Clock, CodeRedemption, ExternalIdentity, IdentityProvider, ProviderError,
    Timestamp,
};
use secrecy::SecretString;
use serde_json::{json, Value};

pub const CLIENT_ID: &str = "client-1.apps.example";
/// Characters that must be form-encoded inside HTTP Basic (RFC 6749 §2.3.1).
pub const CLIENT_SECRET: &str = "s3cret:with/odd&chars+~";
pub const CODE: &str = "code-4/0AeanS0b-xyz";
pub const VERIFIER: &str = "pkce-verifier-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const NONCE: &str = "nonce-n-0S6_WzA2Mj";
pub const STATE: &str = "state-af0ifjsldkj";
pub const REDIRECT: &str = "https://app.example.com/api/oauth/corp/callback";
pub const ACCESS_TOKEN: &str = "gho_access-token-16C7e42F292c6912E7710c8";

/// The instant the tests start at (2026-01-01T00:00:00Z).
pub const T0: i64 = 1_767_225_600;

/// A clock the test moves.
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn at(seconds: i64) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(seconds * 1_000_000)))
    }
    pub fn set_micros(&self, micros: i64) {
        self.0.store(micros, Ordering::SeqCst);
    }
    pub fn advance_seconds(&self, s: i64) {
        self.0.fetch_add(s * 1_000_000, Ordering::SeqCst);
    }
    pub fn seconds(&self) -> i64 {
        self.0.load(Ordering::SeqCst).div_euclid(1_000_000)
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        DateTime::<Utc>::from_timestamp_micros(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

/// One of the two RSA test keys.
#[derive(Clone, Copy)]
pub enum Key {
    A,
    B,
}

impl Key {
    fn pem(self) -> &'static str {
        match self {
            Key::A => include_str!("fixtures/test-key-a.pem"),
            Key::B => include_str!("fixtures/test-key-b.pem"),
        }
    }

    /// The public half as a JWK with `kid`, as issuers publish it.
    pub fn jwk(self, kid: &str) -> Value {
        let raw = match self {
            Key::A => include_str!("fixtures/test-key-a.jwk.json"),
            Key::B => include_str!("fixtures/test-key-b.jwk.json"),
        };
        let mut jwk: Value = serde_json::from_str(raw).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!("RS256");
        jwk
    }
}

/// A key set of `(key, kid)` pairs.
pub fn jwks(keys: &[(Key, &str)]) -> Value {
    json!({ "keys": keys.iter().map(|(k, kid)| k.jwk(kid)).collect::<Vec<_>>() })
}

/// `claims` signed with `key` in `alg`, header `kid`.
pub fn sign_alg(claims: &Value, alg: Algorithm, kid: Option<&str>, key: Key) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(key.pem().as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// `claims` signed RS256 with `key`, header `kid`.
pub fn sign(claims: &Value, kid: &str, key: Key) -> String {
    sign_alg(claims, Algorithm::RS256, Some(kid), key)
}

/// `claims` MACed with HS256 under `secret`.
pub fn sign_hs256(claims: &Value, secret: &str) -> String {
    let header = Header::new(Algorithm::HS256);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// An unsigned token: `alg: none`, empty signature.
pub fn unsigned(claims: &Value, kid: &str) -> String {
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// `token` with one bit of its signature flipped.
pub fn flip_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Claims of a valid ID token for `issuer`, issued at `now` (seconds),
/// valid five minutes.
pub fn claims(issuer: &str, now: i64) -> Value {
    json!({
        "iss": issuer,
        "sub": "248289761001",
        "aud": CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "nonce": NONCE,
        "email": "jane@example.com",
        "email_verified": true,
        "name": "Jane Doe",
    })
}

/// What the stand-in requires of a token request, as a provider would.
#[derive(Clone)]
pub enum ClientAuth {
    Basic,
    Post,
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub form: HashMap<String, String>,
}

/// The stand-in's mutable state; tests change it between calls.
pub struct State {
    /// Discovery (or any JSON) documents by path.
    pub documents: HashMap<String, Value>,
    /// Paths that answer `302 Location: <value>`.
    pub redirects: HashMap<String, String>,
    pub discovery_fetches: usize,
    pub jwks: Value,
    pub jwks_fetches: usize,
    /// How the token endpoint checks the client; `None`: it does not.
    pub client_auth: Option<ClientAuth>,
    /// Status and body of a token request that passed the checks.
    pub token_answer: (u16, Value),
    pub token_delay: Option<Duration>,
    pub requests: Vec<Recorded>,
    pub github_user: Value,
    pub github_emails: Value,
    pub github_user_status: u16,
}

/// The stand-in server.
#[derive(Clone)]
pub struct StandIn {
    pub base: String,
    pub state: Arc<Mutex<State>>,
}

impl StandIn {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            documents: HashMap::new(),
            redirects: HashMap::new(),
            discovery_fetches: 0,
            jwks: jwks(&[(Key::A, "a")]),
            jwks_fetches: 0,
            client_auth: Some(ClientAuth::Basic),
            token_answer: (200, json!({})),
            token_delay: None,
            requests: Vec::new(),
            github_user: json!({}),
            github_emails: json!([]),
            github_user_status: 200,
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// The token endpoint answers 200 with this ID token.
    pub fn answer_id_token(&self, token: &str) {
        self.with(|s| {
            s.token_answer = (
                200,
                json!({
                    "access_token": "ya29.access",
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "scope": "openid email profile",
                    "id_token": token,
                }),
            )
        });
    }

    pub fn jwks_fetches(&self) -> usize {
        self.with(|s| s.jwks_fetches)
    }

    pub fn token_requests(&self) -> Vec<Recorded> {
        self.with(|s| {
            s.requests
                .iter()
                .filter(|r| is_token_path(&r.path))
                .cloned()
                .collect()
        })
    }
}

fn is_token_path(path: &str) -> bool {
    path.ends_with("/token") || path == "/login/oauth/access_token"
}

fn json_answer(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

fn oauth_error(status: u16, code: &str) -> Response {
    json_answer(
        status,
        json!({"error": code, "error_description": "stand-in refused"}),
    )
}

/// `user:pass` from a Basic header, each half form-decoded.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let raw = headers.get("authorization")?.to_str().ok()?;
    let decoded = STANDARD.decode(raw.strip_prefix("Basic ")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    let decode = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((decode(user), decode(pass)))
}

async fn handle(
    Extract(state): Extract<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let delay = {
        let mut s = state.lock().unwrap();
        s.requests.push(Recorded {
            path: path.clone(),
            headers: headers.clone(),
            form: form.clone(),
        });
        s.token_delay
    };
    if let Some(location) = state.lock().unwrap().redirects.get(&path).cloned() {
        return (StatusCode::FOUND, [("location", location)]).into_response();
    }
    if method == Method::POST && is_token_path(&path) {
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let s = state.lock().unwrap();
        // What a real provider checks before it looks at the code.
        let client_ok = match &s.client_auth {
            Some(ClientAuth::Basic) => {
                basic(&headers) == Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()))
                    && !form.contains_key("client_secret")
            }
            Some(ClientAuth::Post) => {
                form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                    && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
                    && !headers.contains_key("authorization")
            }
            None => true,
        };
        if !client_ok {
            return oauth_error(401, "invalid_client");
        }
        if s.client_auth.is_some() {
            let grant_ok = path == "/login/oauth/access_token"
                || form.get("grant_type").map(String::as_str) == Some("authorization_code");
            if !grant_ok
                || form.get("code").map(String::as_str) != Some(CODE)
                || form.get("code_verifier").map(String::as_str) != Some(VERIFIER)
                || form.get("redirect_uri").map(String::as_str) != Some(REDIRECT)
            {
                return oauth_error(400, "invalid_grant");
            }
        }
        let (status, body) = s.token_answer.clone();
        return json_answer(status, body);
    }
    if method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let mut s = state.lock().unwrap();
    if let Some(doc) = s.documents.get(&path).cloned() {
        s.discovery_fetches += 1;
        return json_answer(200, doc);
    }
    if path.ends_with("/jwks") || path.ends_with("/keys") || path.ends_with("/certs") {
        s.jwks_fetches += 1;
        return json_answer(200, s.jwks.clone());
    }
    if path == "/user"
        || path == "/user/emails"
        || path == "/api/v3/user"
        || path == "/api/v3/user/emails"
    {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if bearer.as_deref() != Some(&format!("Bearer {ACCESS_TOKEN}")) {
            return json_answer(401, json!({"message": "Bad credentials"}));
        }
        if headers.get("user-agent").is_none() {
            return json_answer(403, json!({"message": "a User-Agent is required"}));
        }
        return if path.ends_with("/emails") {
            json_answer(200, s.github_emails.clone())
        } else {
            json_answer(s.github_user_status, s.github_user.clone())
        };
    }
    StatusCode::NOT_FOUND.into_response()
}

/// A client with a short timeout, as the tests use it.
pub fn http() -> HttpClient {
    HttpClient::new(Duration::from_secs(5)).unwrap()
}

/// A configuration of `kind` with the test client's credentials.
pub fn config(name: &str, kind: regstack_oauth::ProviderKind) -> ProviderConfig {
    ProviderConfig::new(name, kind, CLIENT_ID, SecretString::from(CLIENT_SECRET))
}

/// The authorization URL for the test flow's values.
pub async fn authorize(provider: &dyn IdentityProvider) -> Result<String, ProviderError> {
    provider
        .authorization_url(AuthorizationRequest {
            state: STATE,
            pkce_challenge: CHALLENGE,
            nonce: NONCE,
            redirect_uri: REDIRECT,
        })
        .await
}

/// Redeems the test flow's code.
pub async fn redeem(provider: &dyn IdentityProvider) -> Result<ExternalIdentity, ProviderError> {
    provider
        .redeem_code(CodeRedemption {
            code: CODE,
            pkce_verifier: VERIFIER,
            nonce: NONCE,
            redirect_uri: REDIRECT,
            response_issuer: None,
        })
        .await
}

/// Redeems the test flow's code with an `iss` on the redirect (RFC 9207).
pub async fn redeem_with_iss(
    provider: &dyn IdentityProvider,
    iss: &str,
) -> Result<ExternalIdentity, ProviderError> {
    provider
        .redeem_code(CodeRedemption {
            code: CODE,
            pkce_verifier: VERIFIER,
            nonce: NONCE,
            redirect_uri: REDIRECT,
            response_issuer: Some(iss),
        })
        .await
}

/// The query of `url` as pairs, in order.
pub fn query(url: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Asserts `e` is an ID token rejection whose text leaks nothing secret.
#[track_caller]
pub fn assert_id_token(e: ProviderError, case: &str) {
    let text = e.to_string();
    assert!(matches!(e, ProviderError::IdToken(_)), "{case}: {e:?}");
    assert_no_secrets(&text, case);
}

/// Error text never carries the secret, the code, the verifier or a token.
#[track_caller]
pub fn assert_no_secrets(text: &str, case: &str) {
    for secret in [CLIENT_SECRET, CODE, VERIFIER, ACCESS_TOKEN, "eyJ"] {
        assert!(
            !text.contains(secret),
            "{case}: error text leaks {secret:?}: {text}"
        );
    }
}
