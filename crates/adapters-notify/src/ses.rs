//! The AWS SES transport: SES v2 `SendEmail`
//! (`POST /v2/email/outbound-emails`), signed with SigV4 (service `ses`).
//!
//! regstack's `email.backend = "ses"` called SES v1 through boto3; v2 is
//! the current API and takes the same simple message (subject, text and
//! HTML, UTF-8) as JSON, which needs no SDK. [`SesSettings`] are regstack's
//! keys (`ses_region`, `ses_profile`, `ses_access_key_id`,
//! `ses_secret_access_key`) plus an endpoint override and a timeout;
//! [`SesMailer::new`] checks them and resolves the credentials once (see
//! [`crate::aws`] for what is supported), so a missing key stops start-up.
//!
//! SES answers an error with its name in the `x-amzn-ErrorType` header and
//! `{"message": …}` as the body. `MessageRejected`, a bad request or an
//! unverified sender domain are [`NotifyError::Rejected`] (sending the same
//! mail again would fail again); throttling, SES failing, and refused
//! credentials or a paused account are [`NotifyError::Delivery`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use lettre::message::Mailbox;
use regstack_ports::{Mailer, NotifyError, OutgoingMail};
use reqwest::Url;
use serde_json::json;

use crate::aws::{check_region, classify, AwsCredentials, CredentialError, Signer};
use crate::http::{self, TransportConfigError};

/// The `tracing` target of this transport's events.
pub const LOG_TARGET: &str = "regstack::email::ses";

const PROVIDER: &str = "ses";
const PATH: &str = "/v2/email/outbound-emails";

/// Where and how to reach SES: the SES half of the server's `[email]`
/// keys. Fields are public so a server can fill them from its
/// configuration; [`SesSettings::new`] gives regstack's defaults.
#[derive(Clone)]
pub struct SesSettings {
    /// AWS region (`email.ses_region`, regstack's default `eu-west-1`).
    pub region: String,
    /// Where the keys come from (`email.ses_profile`,
    /// `email.ses_access_key_id` and `email.ses_secret_access_key`).
    pub credentials: AwsCredentials,
    /// Base URL instead of `https://email.{region}.amazonaws.com`: an
    /// SES-compatible service, or a test stand-in (plain `http://` only on
    /// this host).
    pub endpoint: Option<String>,
    /// The budget for one whole send, connect to last byte.
    pub timeout: Duration,
}

impl SesSettings {
    /// regstack's default region.
    pub const DEFAULT_REGION: &'static str = "eu-west-1";
    /// The default send budget.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// `eu-west-1`, the default credential chain, the real endpoint.
    pub fn new() -> Self {
        Self {
            region: Self::DEFAULT_REGION.to_owned(),
            credentials: AwsCredentials::Default,
            endpoint: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// The credential source regstack's keys describe. As regstack: the
    /// key id and the secret come together or not at all, and not with a
    /// profile, so nobody believes one source is used while the other is.
    pub fn credentials_from_keys(
        profile: Option<String>,
        access_key_id: Option<secrecy::SecretString>,
        secret_access_key: Option<secrecy::SecretString>,
    ) -> Result<AwsCredentials, TransportConfigError> {
        match (profile, access_key_id, secret_access_key) {
            (None, None, None) => Ok(AwsCredentials::Default),
            (Some(profile), None, None) => Ok(AwsCredentials::Profile(profile)),
            (None, Some(access_key_id), Some(secret_access_key)) => Ok(AwsCredentials::Static {
                access_key_id,
                secret_access_key,
                session_token: None,
            }),
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(TransportConfigError::new(
                "email.ses_profile",
                "cannot be combined with ses_access_key_id / ses_secret_access_key: \
                 set one or the other",
            )),
            (None, _, _) => Err(TransportConfigError::new(
                "email.ses_access_key_id",
                "ses_access_key_id and ses_secret_access_key must be set together \
                 (or both left unset to use the environment or ~/.aws)",
            )),
        }
    }
}

impl Default for SesSettings {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SesSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SesSettings")
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends mail through SES. Cheap to share behind an `Arc`.
pub struct SesMailer {
    from: String,
    url: Url,
    signer: Signer,
    client: reqwest::Client,
    timeout: Duration,
}

impl SesMailer {
    /// Checks `settings` and the sender `from` (`"Name <user@example.com>"`
    /// or a bare address, which must be an identity verified in SES) and
    /// resolves the credentials. Sends nothing.
    pub fn new(settings: SesSettings, from: &str) -> Result<Self, TransportConfigError> {
        let SesSettings {
            region,
            credentials,
            endpoint,
            timeout,
        } = settings;
        let region = check_region("email.ses_region", &region)?;
        let base = match endpoint {
            // No regstack key holds an override: it is set by a host.
            Some(raw) => http::endpoint("email", &raw)?,
            None => http::endpoint(
                "email.ses_region",
                &format!("https://email.{region}.amazonaws.com"),
            )?,
        };
        let from = encode_from(from)?;
        let resolved = credentials
            .resolve()
            .map_err(|e| credential_error(&credentials, &e))?;
        Ok(Self {
            from,
            url: http::join(&base, PATH),
            signer: Signer::new(&region, "ses", resolved),
            client: http::client("email", timeout)?,
            timeout,
        })
    }

    /// The `FromEmailAddress` every mail carries (a non-ASCII display name
    /// MIME-encoded, as SES requires).
    pub fn from(&self) -> &str {
        &self.from
    }
}

fn credential_error(source: &AwsCredentials, e: &CredentialError) -> TransportConfigError {
    let key = match source {
        AwsCredentials::Profile(_) => "email.ses_profile",
        AwsCredentials::Static { .. } | AwsCredentials::Default => "email.ses_access_key_id",
    };
    TransportConfigError::new(key, e.to_string())
}

/// The sender as SES v2 takes it: parsed like the SMTP transport's, and a
/// non-ASCII display name as RFC 2047 encoded words (SES refuses raw
/// UTF-8 there).
fn encode_from(raw: &str) -> Result<String, TransportConfigError> {
    let invalid = |reason: String| {
        TransportConfigError::new(
            "email.from_address",
            format!(
                "invalid sender {raw:?}: {reason} \
                 (expected \"Name <user@example.com>\" or \"user@example.com\")"
            ),
        )
    };
    if raw.chars().any(char::is_control) {
        return Err(invalid(
            "it contains a line break or control character".into(),
        ));
    }
    let mailbox: Mailbox = raw.trim().parse().map_err(|e| invalid(format!("{e}")))?;
    let name = mailbox.name.as_deref().map(str::trim).unwrap_or("");
    if name.is_ascii() {
        return Ok(mailbox.to_string());
    }
    // Encoded words are at most 75 characters: 45 bytes of name become 60
    // of base64, plus the 12 of `=?UTF-8?B??=`.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in name.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    let encoded: Vec<String> = words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w)
            )
        })
        .collect();
    Ok(format!("{} <{}>", encoded.join(" "), mailbox.email))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<(), NotifyError> {
        let body = json!({
            "FromEmailAddress": self.from,
            "Destination": { "ToAddresses": [mail.to.as_str()] },
            "Content": { "Simple": {
                "Subject": { "Data": mail.subject, "Charset": "UTF-8" },
                "Body": {
                    "Text": { "Data": mail.text, "Charset": "UTF-8" },
                    "Html": { "Data": mail.html, "Charset": "UTF-8" },
                },
            }},
        });
        let body = serde_json::to_vec(&body).map_err(|e| {
            NotifyError::Delivery(format!("{PROVIDER}: composing the request failed: {e}"))
        })?;
        let content_type = "application/json";
        let signed = self.signer.sign(
            "POST",
            self.url.as_str(),
            &[("content-type", content_type)],
            &body,
        )?;
        let mut request = self
            .client
            .post(self.url.clone())
            .header("content-type", content_type);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let answer = http::exchange(PROVIDER, request.body(body), self.timeout).await?;
        if (200..300).contains(&answer.status) {
            tracing::debug!(target: LOG_TARGET, to = %mail.to, "mail accepted by SES");
            return Ok(());
        }
        let parsed: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        // The header is `Name` or `Name:namespace`; some answers carry the
        // name in the body's `__type` (`namespace#Name`) instead.
        let code = answer
            .amzn_error_type
            .as_deref()
            .map(|t| t.split(':').next().unwrap_or(t).to_owned())
            .or_else(|| {
                parsed["__type"]
                    .as_str()
                    .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
            });
        let reason = parsed["message"]
            .as_str()
            .or_else(|| parsed["Message"].as_str())
            .unwrap_or("(no message)");
        Err(classify(
            PROVIDER,
            answer.status,
            code.as_deref(),
            reason,
            &mail.text,
        ))
    }
}

impl fmt::Debug for SesMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signer holds the credentials: it is left out.
        f.debug_struct("SesMailer")
            .field("from", &self.from)
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit() -> SesSettings {
        SesSettings {
            credentials: AwsCredentials::Static {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: "ses-secret-never-shown".into(),
                session_token: None,
            },
            ..SesSettings::new()
        }
    }

    #[test]
    fn a_non_ascii_display_name_is_mime_encoded() {
        assert_eq!(
            encode_from("RegStack <noreply@example.com>").unwrap(),
            "RegStack <noreply@example.com>"
        );
        assert_eq!(
            encode_from("\"Acme, Inc.\" <noreply@example.com>").unwrap(),
            "\"Acme, Inc.\" <noreply@example.com>"
        );
        assert_eq!(
            encode_from("Zoë <noreply@example.com>").unwrap(),
            "=?UTF-8?B?Wm/Dqw==?= <noreply@example.com>"
        );
        let long = encode_from(&format!("{} <a@example.com>", "ä".repeat(40))).unwrap();
        assert!(long
            .split(' ')
            .filter(|w| w.starts_with("=?"))
            .all(|w| w.len() <= 75));
        assert_eq!(long.matches("=?UTF-8?B?").count(), 2, "{long}");
    }

    #[test]
    fn a_bad_sender_region_or_endpoint_names_its_key() {
        let err = SesMailer::new(explicit(), "not a mailbox").unwrap_err();
        assert_eq!(err.key, "email.from_address");
        let err = SesMailer::new(
            SesSettings {
                region: "eu-west-1.evil.example/".into(),
                ..explicit()
            },
            "a@example.com",
        )
        .unwrap_err();
        assert_eq!(err.key, "email.ses_region");
        let err = SesMailer::new(
            SesSettings {
                endpoint: Some("http://ses.example.com".into()),
                ..explicit()
            },
            "a@example.com",
        )
        .unwrap_err();
        assert!(err.reason.contains("https"), "{err}");
        let err = SesMailer::new(
            SesSettings {
                timeout: Duration::ZERO,
                ..explicit()
            },
            "a@example.com",
        )
        .unwrap_err();
        assert!(err.reason.contains("timeout"), "{err}");
    }

    #[test]
    fn regstack_key_combinations_are_checked_as_regstack_does() {
        let s = |v: &str| Some(secrecy::SecretString::from(v));
        assert!(matches!(
            SesSettings::credentials_from_keys(None, None, None),
            Ok(AwsCredentials::Default)
        ));
        assert!(matches!(
            SesSettings::credentials_from_keys(Some("p".into()), None, None),
            Ok(AwsCredentials::Profile(_))
        ));
        assert!(matches!(
            SesSettings::credentials_from_keys(None, s("id"), s("secret")),
            Ok(AwsCredentials::Static { .. })
        ));
        let err = SesSettings::credentials_from_keys(None, s("id"), None).unwrap_err();
        assert_eq!(err.key, "email.ses_access_key_id");
        let err =
            SesSettings::credentials_from_keys(Some("p".into()), s("id"), s("x")).unwrap_err();
        assert_eq!(err.key, "email.ses_profile");
    }

    #[test]
    fn debug_of_settings_and_mailer_shows_no_secret() {
        let settings = explicit();
        assert!(!format!("{settings:?}").contains("ses-secret-never-shown"));
        let mailer = SesMailer::new(settings, "RegStack <noreply@example.com>").unwrap();
        let shown = format!("{mailer:?}");
        assert!(!shown.contains("ses-secret-never-shown"), "{shown}");
        assert!(!shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(shown.contains("email.eu-west-1.amazonaws.com"), "{shown}");
    }
}
