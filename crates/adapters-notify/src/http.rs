//! What the HTTP transports (Twilio, SNS, SES) share: the configuration
//! error they report at start-up, the client, the endpoint rule, and how
//! a provider's answer is read and shortened.
//!
//! Why a fresh, bounded reading of every answer: a provider (or whatever
//! answers at an overridden endpoint) decides how much it sends back, and
//! its error text ends up in our logs. So at most [`MAX_ANSWER`] bytes are
//! read, and the text kept is one short line without control characters,
//! with the message body cut out should the provider ever echo it.

use std::error::Error as _;
use std::net::IpAddr;
use std::time::Duration;

use regstack_ports::NotifyError;
use reqwest::Url;

/// Why an HTTP transport (Twilio, SNS, SES) cannot be built. Shown at
/// start-up: `key` is the `regstack.toml` key to change (as the server's
/// `ConfigError` has it), `reason` what is wrong with it. Neither ever
/// contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct TransportConfigError {
    /// The dotted key, e.g. `"sms.twilio_account_sid"`.
    pub key: &'static str,
    /// What is wrong and what would be accepted.
    pub reason: String,
}

impl TransportConfigError {
    pub(crate) fn new(key: &'static str, reason: impl Into<String>) -> Self {
        Self {
            key,
            reason: reason.into(),
        }
    }
}

/// The most of an answer we read. Real error answers are a few hundred
/// bytes; success answers are not read at all beyond their status.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// The most of a provider's explanation that reaches an error message.
const MAX_REASON_CHARS: usize = 300;

/// A client for one transport: bounded by `timeout` from connecting to the
/// last byte of the answer, and following no redirect, so credentials
/// (Twilio's Basic header) go nowhere but the configured endpoint.
pub(crate) fn client(
    key: &'static str,
    timeout: Duration,
) -> Result<reqwest::Client, TransportConfigError> {
    if timeout.is_zero() {
        return Err(TransportConfigError::new(
            key,
            "the request timeout must be greater than zero",
        ));
    }
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("regstack-rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TransportConfigError::new(key, format!("HTTP client setup failed: {e}")))
}

/// Checks an endpoint (default or override): `https://`, or plain
/// `http://` only to this machine (a test stand-in, a local emulator) —
/// the same rule the SMTP transport applies to credentials, because the
/// request carries a credential or a signature and a live code either way.
/// No user info, query or fragment: the transports add their own path.
pub(crate) fn endpoint(key: &'static str, raw: &str) -> Result<Url, TransportConfigError> {
    // User info may hold a password: the endpoint is echoed only without.
    let shown = match raw.rsplit_once('@') {
        Some((head, tail)) => match head.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://[redacted]@{tail}"),
            None => "[redacted]".to_owned(),
        },
        None => raw.to_owned(),
    };
    let invalid =
        |reason: &str| TransportConfigError::new(key, format!("endpoint {shown:?}: {reason}"));
    let url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if url.host_str().is_some_and(is_loopback) => {}
        "http" => {
            return Err(invalid(
                "plain http is only for a stand-in on this host; use https",
            ))
        }
        _ => return Err(invalid("must be an https:// URL")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry user info"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not carry a query or fragment"));
    }
    Ok(url)
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `url` with `path` appended to whatever path it has (an emulator may be
/// mounted under a prefix).
pub(crate) fn join(url: &Url, path: &str) -> Url {
    let mut out = url.clone();
    let base = url.path().trim_end_matches('/');
    out.set_path(&format!("{base}{path}"));
    out
}

/// An answer as far as the transports care: status, one header, and at
/// most [`MAX_ANSWER`] bytes of body.
pub(crate) struct Answer {
    pub status: u16,
    /// `x-amzn-ErrorType`, which SES v2 uses to name its error.
    pub amzn_error_type: Option<String>,
    pub body: Vec<u8>,
}

/// Sends `request` and reads the answer, all within `timeout` (reqwest's
/// own bound covers the same span; this one also covers the body read
/// loop, and makes the error say "timed out" whichever fires first).
pub(crate) async fn exchange(
    provider: &'static str,
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, NotifyError> {
    let run = async {
        let mut response = request
            .send()
            .await
            .map_err(|e| send_error(provider, &e, timeout))?;
        let status = response.status().as_u16();
        let amzn_error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        if !(200..300).contains(&status) {
            // What arrived of the body is enough to classify; a read error
            // half-way leaves a shorter explanation, not a different verdict.
            while body.len() < MAX_ANSWER {
                match response.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(e) if e.is_timeout() => return Err(send_error(provider, &e, timeout)),
                    Err(_) => break,
                }
            }
            body.truncate(MAX_ANSWER);
        }
        Ok(Answer {
            status,
            amzn_error_type,
            body,
        })
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result,
        Err(_elapsed) => Err(timed_out(provider, timeout)),
    }
}

fn timed_out(provider: &str, timeout: Duration) -> NotifyError {
    NotifyError::Delivery(format!(
        "{provider}: timed out: no complete answer within {timeout:?}"
    ))
}

/// A request that got no answer. reqwest's own text names the URL, which
/// is ours to state; the cause chain (connection refused, TLS, DNS) is
/// what helps, so that is what is kept.
fn send_error(provider: &str, e: &reqwest::Error, timeout: Duration) -> NotifyError {
    if e.is_timeout() {
        return timed_out(provider, timeout);
    }
    let step = if e.is_connect() {
        "could not connect"
    } else if e.is_request() || e.is_body() {
        "request failed"
    } else {
        "exchange failed"
    };
    let mut causes = Vec::new();
    let mut source = e.source();
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let detail = if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    };
    NotifyError::Delivery(format!("{provider}: {step}: {detail}"))
}

/// The provider's explanation as one short line: control characters
/// dropped, `body` (the message we sent) cut out should it be echoed back,
/// at most [`MAX_REASON_CHARS`] characters.
pub(crate) fn short(reason: &str, body: &str) -> String {
    let mut text: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let body = body.trim();
    // A body too short to be distinctive ("OK") would cut innocent words.
    if body.chars().count() >= 6 {
        text = text.replace(body, "[message body]");
    }
    let text = text.trim();
    if text.chars().count() > MAX_REASON_CHARS {
        let cut: String = text.chars().take(MAX_REASON_CHARS).collect();
        format!("{cut}…")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_only_for_this_host() {
        for ok in [
            "https://sns.eu-west-1.amazonaws.com",
            "http://127.0.0.1:4566",
            "http://localhost:8080/prefix",
            "http://[::1]:9000",
        ] {
            assert!(endpoint("k", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://localstack:4566",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/?a=b",
            "not a url",
        ] {
            let err = endpoint("k", bad).unwrap_err();
            assert_eq!(err.key, "k");
            assert!(!err.reason.contains("pw@"), "{err}");
        }
    }

    #[test]
    fn paths_are_appended_to_a_prefix() {
        let base = Url::parse("http://127.0.0.1:1/prefix/").unwrap();
        assert_eq!(
            join(&base, "/v2/email/outbound-emails").as_str(),
            "http://127.0.0.1:1/prefix/v2/email/outbound-emails"
        );
        let bare = Url::parse("https://api.twilio.com").unwrap();
        assert_eq!(
            join(&bare, "/2010-04-01/x").as_str(),
            "https://api.twilio.com/2010-04-01/x"
        );
    }

    #[test]
    fn an_echoed_body_and_control_characters_never_reach_the_reason() {
        let body = "Your RegStack code is 493817";
        let got = short(&format!("bad\r\nmessage: {body}"), body);
        assert_eq!(got, "bad  message: [message body]");
        let long = "x".repeat(1000);
        assert_eq!(short(&long, "").chars().count(), MAX_REASON_CHARS + 1);
    }
}
