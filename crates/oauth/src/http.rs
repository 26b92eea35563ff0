//! The one way this crate talks to a provider: a client that follows no
//! redirect and gives up after a fixed time, URL rules for every endpoint
//! it is told about, and bounded, sanitised reading of the answers.
//!
//! Why so guarded: the token request carries the client secret and the
//! code; a redirect would hand both to whatever the `Location` names. An
//! answer's size and wording are the provider's choice (or an attacker's,
//! at a misconfigured endpoint), and its text ends up in our logs — so at
//! most a fixed number of bytes is read and only an OAuth `error` code,
//! checked against a narrow alphabet, is ever repeated.

use std::error::Error as _;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::{RequestBuilder, Url};

use crate::config::ConfigError;

/// How long one call to a provider may take by default, from connecting to
/// the last byte of the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an error answer read to find its OAuth `error` code.
const MAX_ERROR_ANSWER: usize = 16 * 1024;

/// The HTTP client every provider uses. It can only be made here, so no
/// caller can hand a provider a client that follows redirects or waits
/// forever; cloning it is cheap and shares the connection pool.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose every call ends within `timeout` (connect included)
    /// and which never follows a redirect.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "timeout",
                "the HTTP timeout must be greater than zero",
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("regstack-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::new("timeout", format!("HTTP client setup failed: {e}")))?;
        Ok(Self { client, timeout })
    }

    pub(crate) fn get(&self, url: &Url) -> RequestBuilder {
        self.client.get(url.clone()).timeout(self.timeout)
    }

    pub(crate) fn post(&self, url: &Url) -> RequestBuilder {
        self.client.post(url.clone()).timeout(self.timeout)
    }

    /// Sends `request` and reads a successful answer of at most `limit`
    /// bytes. A non-2xx answer (a redirect included) becomes
    /// [`Failure::Status`] with the OAuth `error` code its body names, if any.
    pub(crate) async fn send(
        &self,
        request: RequestBuilder,
        limit: usize,
    ) -> Result<Vec<u8>, Failure> {
        // reqwest's own timeout covers the same span; this one also bounds
        // the chunk loop and makes the message say "timed out" either way.
        match tokio::time::timeout(self.timeout, exchange(request, limit)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Failure::Unreachable(format!(
                "no complete answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// [`send`](Self::send), then the body as JSON.
    pub(crate) async fn send_json(
        &self,
        request: RequestBuilder,
        limit: usize,
    ) -> Result<serde_json::Value, Failure> {
        let body = self.send(request, limit).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Failure::Unreadable(format!("answer is not JSON ({:?})", e.classify())))
    }
}

async fn exchange(request: RequestBuilder, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut response = request.send().await.map_err(|e| unreachable(&e))?;
    let status = response.status();
    let cap = if status.is_success() {
        limit
    } else {
        MAX_ERROR_ANSWER
    };
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    if status.is_success() {
                        return Err(Failure::Unreadable(format!(
                            "answer larger than {limit} bytes"
                        )));
                    }
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if status.is_success() => return Err(unreachable(&e)),
            // What arrived of an error answer is enough to classify.
            Err(_) => break,
        }
    }
    if status.is_success() {
        Ok(body)
    } else {
        Err(Failure::Status {
            status: status.as_u16(),
            error: oauth_error_code(&body),
        })
    }
}

/// Why a call to a provider brought nothing usable. Its text names no URL
/// query, header or body beyond a checked OAuth error code, so it holds no
/// secret, code or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No answer: DNS, connect, TLS, timeout.
    Unreachable(String),
    /// An answer with a status other than 2xx.
    Status {
        status: u16,
        /// The OAuth `error` code of the body (RFC 6749 §5.2), if any.
        error: Option<String>,
    },
    /// A 2xx answer that could not be read as expected.
    Unreadable(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "unreachable: {why}"),
            Failure::Status {
                status,
                error: Some(code),
            } => write!(f, "answered {status} ({code})"),
            Failure::Status {
                status,
                error: None,
            } => write!(f, "answered {status}"),
            Failure::Unreadable(why) => write!(f, "unreadable answer: {why}"),
        }
    }
}

/// reqwest's text names the URL, which is ours to know; the cause chain
/// (refused, TLS, DNS) is what helps, so that is what is kept.
fn unreachable(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::Unreachable("timed out".to_owned());
    }
    let step = if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        causes.push(printable(&cause.to_string(), 200));
        source = cause.source();
    }
    if causes.is_empty() {
        Failure::Unreachable(step.to_owned())
    } else {
        Failure::Unreachable(format!("{step}: {}", causes.join(": ")))
    }
}

/// The `error` member of an OAuth error answer, if it is a short code of
/// the characters RFC 6749 allows minus anything that could carry text:
/// letters, digits, `_`, `-`, `.`.
pub(crate) fn oauth_error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("error")?.as_str()?;
    safe_code(code)
}

/// `code` if it is a plausible error code (at most 64 characters of
/// `[A-Za-z0-9_.-]`); anything else may be free text and is not repeated.
pub(crate) fn safe_code(code: &str) -> Option<String> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    ok.then(|| code.to_owned())
}

/// One line of at most `max` characters without control characters.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Checks an endpoint URL, configured or discovered: `https://`, or plain
/// `http://` only to this machine (a test stand-in, a local issuer),
/// because the calls carry the client secret, codes and tokens. No user
/// info or fragment; a query only where `query_allowed` (OpenID Connect
/// allows one on the authorization endpoint).
pub(crate) fn endpoint(raw: &str, query_allowed: bool) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{:?} is not a URL: {e}", shown(raw)))?;
    match url.scheme() {
        "https" => {}
        "http" if url.host_str().is_some_and(is_loopback) => {}
        "http" => {
            return Err(format!(
                "{:?}: plain http is only for a server on this host; use https",
                shown(raw)
            ))
        }
        _ => return Err(format!("{:?} must be an https:// URL", shown(raw))),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{:?} has no host", shown(raw)));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{:?} must not carry user info", shown(raw)));
    }
    if url.fragment().is_some() || (!query_allowed && url.query().is_some()) {
        return Err(format!(
            "{:?} must not carry a query or fragment",
            shown(raw)
        ));
    }
    Ok(url)
}

/// `raw` for an error message: user info (which may hold a password) cut
/// out, and bounded.
fn shown(raw: &str) -> String {
    let cut = match raw.rsplit_once('@') {
        Some((head, tail)) => match head.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://[redacted]@{tail}"),
            None => "[redacted]".to_owned(),
        },
        None => raw.to_owned(),
    };
    printable(&cut, 200)
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `base` with `path` appended to whatever path it has (GitHub
/// Enterprise mounts its API under `/api/v3`).
pub(crate) fn join(base: &Url, path: &str) -> Url {
    let mut out = base.clone();
    let prefix = base.path().trim_end_matches('/');
    out.set_path(&format!("{prefix}{path}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_or_loopback() {
        assert!(endpoint("https://accounts.google.com/o/oauth2/v2/auth", false).is_ok());
        assert!(endpoint("http://127.0.0.1:8080/token", false).is_ok());
        assert!(endpoint("http://[::1]:8080/token", false).is_ok());
        assert!(endpoint("http://example.com/token", false).is_err());
        assert!(endpoint("ftp://example.com/token", false).is_err());
        assert!(endpoint("https://u:p@example.com/token", false)
            .unwrap_err()
            .contains("[redacted]"));
        assert!(endpoint("https://example.com/a?x=1", false).is_err());
        assert!(endpoint("https://example.com/a?x=1", true).is_ok());
        assert!(endpoint("https://example.com/a#f", true).is_err());
    }

    #[test]
    fn only_plain_error_codes_are_repeated() {
        assert_eq!(
            oauth_error_code(br#"{"error":"invalid_grant","error_description":"code abc"}"#),
            Some("invalid_grant".to_owned())
        );
        assert_eq!(oauth_error_code(br#"{"error":"has space"}"#), None);
        assert_eq!(oauth_error_code(b"<html>"), None);
    }

    #[test]
    fn join_keeps_a_path_prefix() {
        let base = Url::parse("https://ghe.example.com/api/v3/").unwrap();
        assert_eq!(
            join(&base, "/user").as_str(),
            "https://ghe.example.com/api/v3/user"
        );
    }
}
