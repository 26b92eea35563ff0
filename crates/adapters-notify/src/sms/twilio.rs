//! The Twilio transport: Programmable Messaging's REST API,
//! `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with HTTP Basic
//! auth (account SID : auth token) and the form fields `To`, `From`,
//! `Body` — what regstack's Twilio SDK call sends, without the SDK.
//!
//! Twilio answers an error with `{"code", "message", "more_info",
//! "status"}`. A 400 is Twilio refusing this message (21211: not a valid
//! `To` number; 21606: the `From` number cannot send there), so
//! [`NotifyError::Rejected`] with Twilio's code; 429 (20429), 5xx, and a
//! refused SID or token (401/403/404) may pass later, so
//! [`NotifyError::Delivery`]. One POST per message, never retried here: a
//! retry after a lost answer could send a second code.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use regstack_ports::{NotifyError, OutgoingSms, SmsSender};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::{self, short, TransportConfigError};

/// The `tracing` target of this transport's events.
pub const LOG_TARGET: &str = "regstack::sms::twilio";

const PROVIDER: &str = "twilio";

/// A Twilio account and sender: `sms.twilio_account_sid`,
/// `sms.twilio_auth_token`, `sms.from_number`, plus an endpoint override
/// and a timeout.
#[derive(Clone)]
pub struct TwilioSettings {
    /// Account SID (`AC…`).
    pub account_sid: String,
    /// Auth token. Never printed: `Debug` shows `[redacted]`.
    pub auth_token: SecretString,
    /// Sender: a Twilio number in E.164, or an alphanumeric sender ID.
    pub from_number: String,
    /// Base URL instead of `https://api.twilio.com`: a test stand-in
    /// (plain `http://` only on this host) or a Twilio edge location.
    pub endpoint: Option<String>,
    /// The budget for one whole send, connect to last byte.
    pub timeout: Duration,
}

impl TwilioSettings {
    /// The default send budget.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Twilio's API.
    pub const DEFAULT_ENDPOINT: &'static str = "https://api.twilio.com";

    /// These credentials and sender, the real endpoint, the default
    /// timeout.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: impl Into<SecretString>,
        from_number: impl Into<String>,
    ) -> Self {
        Self {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            from_number: from_number.into(),
            endpoint: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

impl TwilioSettings {
    /// The required keys are there and the SID is one.
    pub(crate) fn check(&self) -> Result<(), TransportConfigError> {
        let sid = self.account_sid.trim();
        // The SID goes into the URL path: letters and digits only, so it
        // cannot change which resource is addressed.
        if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TransportConfigError::new(
                "sms.twilio_account_sid",
                "is required with sms.backend = \"twilio\" and must be the account SID (AC…)",
            ));
        }
        if self.auth_token.expose_secret().trim().is_empty() {
            return Err(TransportConfigError::new(
                "sms.twilio_auth_token",
                "is required with sms.backend = \"twilio\"",
            ));
        }
        if self.from_number.trim().is_empty() {
            return Err(TransportConfigError::new(
                "sms.from_number",
                "is required with sms.backend = \"twilio\"",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("from_number", &self.from_number)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends text messages through Twilio. Cheap to share behind an `Arc`.
pub struct TwilioSms {
    account_sid: String,
    auth_token: SecretString,
    from_number: String,
    url: Url,
    client: reqwest::Client,
    timeout: Duration,
}

impl TwilioSms {
    /// Checks `settings` (regstack's rule: SID, token and sender are all
    /// required). Sends nothing.
    pub fn new(settings: TwilioSettings) -> Result<Self, TransportConfigError> {
        settings.check()?;
        let TwilioSettings {
            account_sid,
            auth_token,
            from_number,
            endpoint,
            timeout,
        } = settings;
        let account_sid = account_sid.trim().to_owned();
        let from_number = from_number.trim().to_owned();
        let base = http::endpoint(
            "sms",
            endpoint
                .as_deref()
                .unwrap_or(TwilioSettings::DEFAULT_ENDPOINT),
        )?;
        let url = http::join(
            &base,
            &format!("/2010-04-01/Accounts/{account_sid}/Messages.json"),
        );
        Ok(Self {
            account_sid,
            auth_token,
            from_number,
            url,
            client: http::client("sms", timeout)?,
            timeout,
        })
    }
}

/// Twilio's error body. Every field is optional: a proxy in between may
/// answer with anything.
#[derive(Deserialize, Default)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

#[async_trait]
impl SmsSender for TwilioSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<(), NotifyError> {
        let request = self
            .client
            .post(self.url.clone())
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .header("accept", "application/json")
            .form(&[
                ("To", sms.to.as_str()),
                ("From", self.from_number.as_str()),
                ("Body", sms.body.as_str()),
            ]);
        let answer = http::exchange(PROVIDER, request, self.timeout).await?;
        let status = answer.status;
        if (200..300).contains(&status) {
            tracing::debug!(target: LOG_TARGET, to = %sms.to, "message accepted by Twilio");
            return Ok(());
        }
        let error: TwilioError = serde_json::from_slice(&answer.body).unwrap_or_default();
        let code = error
            .code
            .map_or_else(|| format!("HTTP {status}"), |c| c.to_string());
        let reason = short(
            error.message.as_deref().unwrap_or("(no message)"),
            &sms.body,
        );
        Err(match status {
            429 => {
                NotifyError::Delivery(format!("{PROVIDER}: throttled ({status} {code}): {reason}"))
            }
            401 | 403 | 404 => NotifyError::Delivery(format!(
                "{PROVIDER}: credentials or account refused ({status} {code}): {reason}"
            )),
            400..=499 => NotifyError::Rejected {
                provider: PROVIDER,
                code,
                reason,
            },
            _ => NotifyError::Delivery(format!("{PROVIDER}: failed ({status} {code}): {reason}")),
        })
    }
}

impl fmt::Debug for TwilioSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSms")
            .field("account_sid", &self.account_sid)
            .field("from_number", &self.from_number)
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TwilioSettings {
        TwilioSettings::new(
            "AC0123456789abcdef",
            "twilio-token-never-shown",
            "+15005550006",
        )
    }

    #[test]
    fn sid_token_and_sender_are_required_naming_their_keys() {
        for (s, key) in [
            (
                TwilioSettings {
                    account_sid: " ".into(),
                    ..settings()
                },
                "sms.twilio_account_sid",
            ),
            (
                TwilioSettings {
                    account_sid: "AC1/../../x".into(),
                    ..settings()
                },
                "sms.twilio_account_sid",
            ),
            (
                TwilioSettings {
                    auth_token: "".into(),
                    ..settings()
                },
                "sms.twilio_auth_token",
            ),
            (
                TwilioSettings {
                    from_number: "".into(),
                    ..settings()
                },
                "sms.from_number",
            ),
        ] {
            assert_eq!(TwilioSms::new(s).unwrap_err().key, key);
        }
    }

    #[test]
    fn debug_shows_no_token() {
        let s = settings();
        assert!(!format!("{s:?}").contains("twilio-token-never-shown"));
        let t = TwilioSms::new(s).unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("twilio-token-never-shown"), "{shown}");
        assert!(
            shown.contains("/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"),
            "{shown}"
        );
    }
}
