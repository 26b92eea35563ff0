//! A client for the test OpenID Provider, so end-to-end tests can sign in
//! through a real provider we did not write (npm `oidc-provider` behind
//! `tests/support/oidc/provider.mjs`, started by `scripts/services/oidc.sh
//! up`, which prints `TEST_OIDC_URL`).
//!
//! A test:
//! 1. gets the provider with [`OidcProvider::from_env`] (`None` after a loud
//!    SKIPPED line when `TEST_OIDC_URL` is unset; a panic under `CI=true`);
//! 2. registers its app's callback URL with
//!    [`register_client`](OidcProvider::register_client) (each app listens
//!    on a random port, so each test registers its own client) and gives
//!    the app [`issuer`](OidcProvider::issuer), the client id and secret;
//! 3. asks the app for an authorization URL and hands it to
//!    [`authorize`](OidcProvider::authorize) with an [`OidcUser`]: the
//!    provider logs that user in and consents headlessly, and the helper
//!    follows the provider's redirects (keeping its cookies) until the one
//!    to the app's `redirect_uri`, whose URL it returns — `code`, `state`
//!    and `iss`, or `error=access_denied` — for the test to deliver to the
//!    app.
//!
//! The user, and a failure for negative tests ([`Tamper`]), travel in the
//! authorization request's `login_hint`, which [`authorize`] sets; the
//! provider rewrites that flow's ID token at its token endpoint.
//!
//! [`authorize`]: OidcProvider::authorize

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};

/// The variable `scripts/services/oidc.sh up` prints: the issuer URL.
pub const ENV_VAR: &str = "TEST_OIDC_URL";

/// The most redirects [`OidcProvider::authorize`] follows inside the
/// provider (a normal flow takes three).
const MAX_HOPS: usize = 10;

/// The running test OpenID Provider.
#[derive(Clone, Debug)]
pub struct OidcProvider {
    issuer: String,
    http: reqwest::Client,
}

/// How a registered client authenticates at the token endpoint. The
/// provider accepts only the registered method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with id and secret.
    #[default]
    Basic,
    /// `client_secret_post`: id and secret in the form body.
    Post,
}

impl ClientAuth {
    /// The `token_endpoint_auth_method` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "client_secret_basic",
            Self::Post => "client_secret_post",
        }
    }
}

/// A confidential client registered with the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub auth: ClientAuth,
}

/// The `email_verified` claim a user gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmailVerified {
    /// JSON `true`.
    #[default]
    True,
    /// JSON `false`.
    False,
    /// The string `"true"`, as some providers send it.
    StringTrue,
    /// The string `"false"`.
    StringFalse,
    /// No `email_verified` claim at all.
    Absent,
}

/// What goes wrong in a flow, for negative tests. Every mode but
/// [`AccessDenied`](Tamper::AccessDenied) changes the ID token the token
/// endpoint returns for that flow's code; the rest of the response (access
/// token, status) is untouched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tamper {
    /// Nothing: a normal flow.
    #[default]
    None,
    /// The provider answers the redirect_uri with `error=access_denied`
    /// (and `state`, `iss`) instead of a code.
    AccessDenied,
    /// One bit of the signature flipped.
    BadSignature,
    /// `nonce` changed, re-signed with the provider's real key.
    WrongNonce,
    /// `nonce` removed, re-signed with the real key.
    NoNonce,
    /// `aud` names another client, re-signed with the real key.
    WrongAud,
    /// `iss` names another issuer, re-signed with the real key.
    WrongIss,
    /// `exp` an hour ago (`iat` two), re-signed with the real key.
    Expired,
    /// Signed by a different RSA key under the real key's `kid`.
    ForeignKey,
    /// Signed by a key whose `kid` the JWKS never lists.
    UnknownKid,
    /// Signed by a new key whose `kid` the JWKS lists from the moment the
    /// token is issued: an app that cached the JWKS earlier must refetch it
    /// to verify (run a normal flow first to make it cache).
    UnknownKidPublished,
    /// Header `alg: none`, empty signature.
    AlgNone,
    /// HS256 with the client's secret as the key.
    Hs256ClientSecret,
}

impl Tamper {
    /// The mode's name in the login hint.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::AccessDenied => "access-denied",
            Self::BadSignature => "bad-signature",
            Self::WrongNonce => "wrong-nonce",
            Self::NoNonce => "no-nonce",
            Self::WrongAud => "wrong-aud",
            Self::WrongIss => "wrong-iss",
            Self::Expired => "expired",
            Self::ForeignKey => "foreign-key",
            Self::UnknownKid => "unknown-kid",
            Self::UnknownKidPublished => "unknown-kid-published",
            Self::AlgNone => "alg-none",
            Self::Hs256ClientSecret => "hs256-client-secret",
        }
    }
}

/// The user the provider signs in for one flow, and how the flow fails.
/// The provider keeps the latest claims per `sub`, so a test that needs its
/// own user picks its own `sub` ([`OidcUser::fresh`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcUser {
    pub sub: String,
    /// `None`: no `email` claim.
    pub email: Option<String>,
    pub email_verified: EmailVerified,
    /// `None`: no `name` claim.
    pub name: Option<String>,
    pub tamper: Tamper,
}

impl OidcUser {
    /// A user with a verified address and no name; a normal flow.
    pub fn new(sub: impl Into<String>, email: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            email: Some(email.into()),
            email_verified: EmailVerified::True,
            name: None,
            tamper: Tamper::None,
        }
    }

    /// A user no other test uses: a random `sub` and
    /// `<sub>@oidc.example.test`, verified.
    pub fn fresh() -> Self {
        let sub = format!("u-{}", uuid::Uuid::new_v4().simple());
        let email = format!("{sub}@oidc.example.test");
        Self::new(sub, email)
    }

    pub fn email_verified(mut self, verified: EmailVerified) -> Self {
        self.email_verified = verified;
        self
    }

    pub fn without_email(mut self) -> Self {
        self.email = None;
        self
    }

    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn tamper(mut self, tamper: Tamper) -> Self {
        self.tamper = tamper;
        self
    }

    /// The `login_hint` that selects this user and failure (a JSON object).
    pub fn login_hint(&self) -> String {
        let mut hint = json!({ "sub": self.sub, "tamper": self.tamper.as_str() });
        if let Some(email) = &self.email {
            hint["email"] = json!(email);
        }
        match self.email_verified {
            EmailVerified::True => hint["email_verified"] = json!(true),
            EmailVerified::False => hint["email_verified"] = json!(false),
            EmailVerified::StringTrue => hint["email_verified"] = json!("true"),
            EmailVerified::StringFalse => hint["email_verified"] = json!("false"),
            EmailVerified::Absent => {}
        }
        if let Some(name) = &self.name {
            hint["name"] = json!(name);
        }
        hint.to_string()
    }
}

/// Why [`OidcProvider::authorize`] did not reach the redirect_uri.
#[derive(Clone, Debug)]
pub struct FlowError {
    /// What went wrong, in words.
    pub reason: String,
    /// The URL last requested.
    pub url: String,
    /// Its answer's status, when there was one.
    pub status: Option<StatusCode>,
    /// Its answer's body (the start of it), when it was not a redirect.
    pub body: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at {}", self.reason, self.url)?;
        if let Some(status) = self.status {
            write!(f, ", status {status}")?;
        }
        if !self.body.is_empty() {
            write!(f, ", body: {}", self.body)?;
        }
        write!(f, ")")
    }
}

impl std::error::Error for FlowError {}

impl OidcProvider {
    /// The provider `TEST_OIDC_URL` names, or `None` after saying loudly
    /// that `test` was skipped. Under `CI=true` a missing variable panics:
    /// in CI a missing service is a failure, never a skip.
    pub fn from_env(test: &str) -> Option<Self> {
        if let Some(url) = std::env::var(ENV_VAR).ok().filter(|u| !u.is_empty()) {
            return Some(Self::new(url));
        }
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !in_ci,
            "{test}: {ENV_VAR} is not set, and CI=true forbids skipping \
             (scripts/services/oidc.sh up)"
        );
        eprintln!("SKIPPED {test}: {ENV_VAR} is not set (scripts/services/oidc.sh up)");
        None
    }

    /// The provider whose issuer is `issuer` (`http://127.0.0.1:PORT`).
    pub fn new(issuer: impl Into<String>) -> Self {
        let issuer = issuer.into().trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client for the test OpenID Provider");
        Self { issuer, http }
    }

    /// The issuer, exactly as the provider's ID tokens and discovery name
    /// it (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `path` (starting with `/`) on the provider.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The discovery document.
    pub async fn discovery(&self) -> Value {
        self.get_json("/.well-known/openid-configuration").await
    }

    /// The provider's current JWKS (`{"keys": [...]}`).
    pub async fn jwks(&self) -> Value {
        self.get_json("/jwks").await
    }

    async fn get_json(&self, path: &str) -> Value {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {url}: {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
    }

    /// Registers a new confidential client (`client_secret_basic`) whose
    /// only redirect URI is `redirect_uri`; its id and secret are random.
    pub async fn register_client(&self, redirect_uri: &str) -> RegisteredClient {
        self.register_client_with(&[redirect_uri], ClientAuth::Basic)
            .await
    }

    /// Registers a new confidential client with these redirect URIs and
    /// token endpoint authentication.
    pub async fn register_client_with(
        &self,
        redirect_uris: &[&str],
        auth: ClientAuth,
    ) -> RegisteredClient {
        let url = self.url("/__test/clients");
        let body = json!({
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": auth.as_str(),
        });
        let resp = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "registering a client at {url}: {text}"
        );
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {url}: not JSON ({e}): {text}"));
        let field = |name: &str| {
            answer[name]
                .as_str()
                .unwrap_or_else(|| panic!("POST {url}: no {name} in {text}"))
                .to_owned()
        };
        RegisteredClient {
            client_id: field("client_id"),
            client_secret: field("client_secret"),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            auth,
        }
    }

    /// Drives an authorization request through the provider as `user`, the
    /// way a browser would, and returns the URL the provider finally
    /// redirects to: the request's `redirect_uri` with `code`, `state` and
    /// `iss` (or `error`, `error_description`, `state`, `iss`). Nothing is
    /// requested from that URL: delivering it to the app is the test's job.
    ///
    /// `authorization_url` is the provider's authorization endpoint with the
    /// app's parameters; its `login_hint` is replaced by `user`'s. Each call
    /// keeps its own cookies, so flows never share a provider session.
    /// Errors: the URL is not on the provider or has no `redirect_uri`, the
    /// provider answers with something else than a redirect (an error page,
    /// such as for a missing PKCE challenge or an unregistered
    /// redirect_uri), or it redirects somewhere else.
    pub async fn authorize(
        &self,
        authorization_url: &str,
        user: &OidcUser,
    ) -> Result<Url, FlowError> {
        self.authorize_with_hint(authorization_url, &user.login_hint())
            .await
    }

    /// [`authorize`](Self::authorize) with a raw `login_hint` (JSON, or
    /// the provider's `sub=...;email=...` pairs; an empty one sends none),
    /// for testing the hint itself.
    pub async fn authorize_with_hint(
        &self,
        authorization_url: &str,
        login_hint: &str,
    ) -> Result<Url, FlowError> {
        let fail = |reason: String, url: &str| FlowError {
            reason,
            url: url.to_owned(),
            status: None,
            body: String::new(),
        };
        let mut url = Url::parse(authorization_url)
            .map_err(|e| fail(format!("not a URL: {e}"), authorization_url))?;
        let provider = Url::parse(&self.issuer)
            .map_err(|e| fail(format!("the issuer is not a URL: {e}"), &self.issuer))?;
        if url.origin() != provider.origin() {
            return Err(fail(
                format!("not on the provider ({})", self.issuer),
                url.as_str(),
            ));
        }
        let redirect_uri = param(&url, "redirect_uri")
            .ok_or_else(|| fail("no redirect_uri parameter".into(), url.as_str()))?;
        let redirect_uri = Url::parse(&redirect_uri)
            .map_err(|e| fail(format!("redirect_uri is not a URL: {e}"), url.as_str()))?;
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "login_hint")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut query = url.query_pairs_mut();
            query.clear().extend_pairs(pairs);
            if !login_hint.is_empty() {
                query.append_pair("login_hint", login_hint);
            }
        }

        let mut jar = CookieJar::default();
        for _ in 0..MAX_HOPS {
            let mut request = self.http.get(url.clone());
            if let Some(cookies) = jar.header_for(&url) {
                request = request.header(COOKIE, cookies);
            }
            let resp = request
                .send()
                .await
                .map_err(|e| fail(format!("request failed: {e}"), url.as_str()))?;
            let status = resp.status();
            jar.store(&resp);
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let mut body = resp.text().await.unwrap_or_default();
                body.truncate(2000);
                return Err(FlowError {
                    reason: "the provider answered without a redirect".into(),
                    url: url.to_string(),
                    status: Some(status),
                    body,
                });
            };
            let next = url.join(&location).map_err(|e| FlowError {
                reason: format!("bad Location {location:?}: {e}"),
                url: url.to_string(),
                status: Some(status),
                body: String::new(),
            })?;
            if same_endpoint(&next, &redirect_uri) {
                return Ok(next);
            }
            if next.origin() != provider.origin() {
                return Err(FlowError {
                    reason: format!("redirected away from the provider, to {next}"),
                    url: url.to_string(),
                    status: Some(status),
                    body: String::new(),
                });
            }
            url = next;
        }
        Err(fail(
            format!("no redirect to the redirect_uri after {MAX_HOPS} hops"),
            url.as_str(),
        ))
    }
}

/// The first value of query parameter `name` in `url`.
pub fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A compact JWS's header and payload as JSON, without any verification
/// (for asserting what a provider sent). Panics if `token` is not three
/// dot-separated parts with base64url JSON in the first two.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    let decode = |part: &str, what: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("JWT {what} is not base64url ({e}): {token}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("JWT {what} is not JSON ({e}): {token}"))
    };
    (decode(parts[0], "header"), decode(parts[1], "payload"))
}

/// Same scheme, host, port and path: where a redirect_uri match ends (the
/// query carries the answer).
fn same_endpoint(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
}

/// The provider's cookies for one flow: only as much of RFC 6265 as one
/// host needs (name, path, deletion), since every request goes to the
/// provider.
#[derive(Debug, Default)]
struct CookieJar {
    /// (name, path, value)
    cookies: Vec<(String, String, String)>,
}

impl CookieJar {
    fn store(&mut self, resp: &reqwest::Response) {
        for header in resp.headers().get_all(SET_COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            let mut attrs = text.split(';');
            let Some((name, value)) = attrs.next().and_then(|nv| nv.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            let mut path = default_path(resp.url());
            let mut expired = value.is_empty();
            for attr in attrs {
                let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
                match key.trim().to_ascii_lowercase().as_str() {
                    "path" if val.trim().starts_with('/') => path = val.trim().to_owned(),
                    "max-age" => expired |= val.trim().parse::<i64>().is_ok_and(|s| s <= 0),
                    "expires" => {
                        expired |= chrono::DateTime::parse_from_rfc2822(val.trim())
                            .is_ok_and(|at| at < chrono::Utc::now());
                    }
                    _ => {}
                }
            }
            self.cookies.retain(|(n, p, _)| !(*n == name && *p == path));
            if !expired {
                self.cookies.push((name, path, value));
            }
        }
    }

    fn header_for(&self, url: &Url) -> Option<String> {
        let matching: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, path, _)| path_matches(url.path(), path))
            .map(|(name, _, value)| format!("{name}={value}"))
            .collect();
        (!matching.is_empty()).then(|| matching.join("; "))
    }
}

/// RFC 6265 §5.1.4's default path: the request path up to its last `/`.
fn default_path(url: &Url) -> String {
    match url.path().rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => url.path()[..i].to_owned(),
    }
}

/// RFC 6265 §5.1.4's path-match.
fn path_matches(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request[cookie.len()..].starts_with('/')))
}
