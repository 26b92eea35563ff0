//! Text-message transports implementing [`SmsSender`], and
//! [`SmsTransport`]: which one, from regstack's `[sms]` keys.
//!
//! - [`NullSms`] logs instead of sending (`sms.backend = "null"`, the
//!   default; the body only with `sms.log_bodies = true`);
//! - [`TwilioSms`] posts to Twilio's REST API (`"twilio"`);
//! - [`SnsSms`] publishes through AWS SNS, SigV4-signed (`"sns"`).
//!
//! [`SmsTransport`] deserializes from the `[sms]` table exactly as regstack
//! 0.9.3 writes it (`backend`, `from_number`, `sns_region`,
//! `twilio_account_sid`, `twilio_auth_token`, `log_bodies`), so a regstack
//! file's table can be handed to it unchanged. Who sends what, and when, is
//! the caller's: this module only delivers.

pub mod null;
pub mod sns;
pub mod twilio;

use std::sync::Arc;

use regstack_ports::SmsSender;
use secrecy::SecretString;
use serde::Deserialize;

use crate::http::TransportConfigError;

pub use null::NullSms;
pub use sns::{SnsSettings, SnsSms};
pub use twilio::{TwilioSettings, TwilioSms};

/// How text messages leave the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "SmsKeys")]
pub enum SmsTransport {
    /// Log instead of sending (`sms.backend = "null"`, the default).
    Null {
        /// Shown as the sender in the log line (`sms.from_number`).
        from_number: Option<String>,
        /// Put the body, a live code, in the log line (`sms.log_bodies`):
        /// on only in development.
        log_bodies: bool,
    },
    /// Send through Twilio (`sms.backend = "twilio"`).
    Twilio(TwilioSettings),
    /// Send through AWS SNS (`sms.backend = "sns"`).
    Sns(SnsSettings),
}

impl Default for SmsTransport {
    /// The null transport, bodies not logged (regstack's default).
    fn default() -> Self {
        Self::Null {
            from_number: None,
            log_bodies: false,
        }
    }
}

impl SmsTransport {
    /// Builds the sender. Settings are checked and AWS credentials resolved
    /// here, so a bad value stops start-up rather than the first code.
    pub fn sender(&self) -> Result<Arc<dyn SmsSender>, TransportConfigError> {
        Ok(match self {
            Self::Null {
                from_number,
                log_bodies,
            } => Arc::new(NullSms::new(from_number.clone(), *log_bodies)),
            Self::Twilio(settings) => Arc::new(TwilioSms::new(settings.clone())?),
            Self::Sns(settings) => Arc::new(SnsSms::new(settings.clone())?),
        })
    }
}

/// `sms.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SmsBackend {
    #[default]
    Null,
    Sns,
    Twilio,
}

/// `[sms]` as regstack writes it: every key in one flat table, whichever
/// backend is chosen (regstack's defaults fill the rest), so a file that
/// sets `sns_region` and then switches to Twilio still loads.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SmsKeys {
    backend: SmsBackend,
    from_number: Option<String>,
    sns_region: String,
    twilio_account_sid: Option<String>,
    twilio_auth_token: Option<SecretString>,
    log_bodies: bool,
}

impl Default for SmsKeys {
    fn default() -> Self {
        Self {
            backend: SmsBackend::Null,
            from_number: None,
            sns_region: SnsSettings::DEFAULT_REGION.to_owned(),
            twilio_account_sid: None,
            twilio_auth_token: None,
            log_bodies: false,
        }
    }
}

impl TryFrom<SmsKeys> for SmsTransport {
    type Error = TransportConfigError;

    /// Checks what can be checked without the network or the environment
    /// (Twilio's required keys); AWS credentials are resolved by
    /// [`SmsTransport::sender`].
    fn try_from(keys: SmsKeys) -> Result<Self, Self::Error> {
        let SmsKeys {
            backend,
            from_number,
            sns_region,
            twilio_account_sid,
            twilio_auth_token,
            // Only the null backend logs; regstack ignored it elsewhere too.
            log_bodies,
        } = keys;
        Ok(match backend {
            SmsBackend::Null => Self::Null {
                from_number,
                log_bodies,
            },
            SmsBackend::Twilio => {
                let settings = TwilioSettings::new(
                    twilio_account_sid.unwrap_or_default(),
                    twilio_auth_token.unwrap_or_else(|| SecretString::from("")),
                    from_number.unwrap_or_default(),
                );
                settings.check()?;
                Self::Twilio(settings)
            }
            SmsBackend::Sns => Self::Sns(SnsSettings {
                region: sns_region,
                from_number,
                ..SnsSettings::new()
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<SmsTransport, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn an_empty_table_is_the_null_transport_without_bodies() {
        assert!(matches!(
            parse(serde_json::json!({})).unwrap(),
            SmsTransport::Null {
                from_number: None,
                log_bodies: false
            }
        ));
        assert!(matches!(
            SmsTransport::default(),
            SmsTransport::Null {
                log_bodies: false,
                ..
            }
        ));
    }

    #[test]
    fn regstack_keys_select_and_fill_each_backend() {
        let t = parse(serde_json::json!({
            "backend": "twilio",
            "from_number": "+15005550006",
            "sns_region": "us-east-1",
            "twilio_account_sid": "AC123",
            "twilio_auth_token": "tok",
            "log_bodies": true,
        }))
        .unwrap();
        let SmsTransport::Twilio(s) = t else {
            panic!("{t:?}")
        };
        assert_eq!(s.account_sid, "AC123");
        assert_eq!(s.from_number, "+15005550006");

        let t =
            parse(serde_json::json!({ "backend": "sns", "from_number": "+15005550006" })).unwrap();
        let SmsTransport::Sns(s) = t else {
            panic!("{t:?}")
        };
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.from_number.as_deref(), Some("+15005550006"));

        let t = parse(serde_json::json!({ "backend": "null", "log_bodies": true })).unwrap();
        assert!(matches!(
            t,
            SmsTransport::Null {
                log_bodies: true,
                ..
            }
        ));
    }

    #[test]
    fn twilio_without_its_keys_and_unknown_keys_are_refused_by_name() {
        let err = parse(serde_json::json!({ "backend": "twilio", "from_number": "+1" }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sms.twilio_account_sid"), "{err}");
        let err = parse(serde_json::json!({ "backend": "twilio", "twilio_account_sid": "AC1", "twilio_auth_token": "t" }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sms.from_number"), "{err}");
        let err = parse(serde_json::json!({ "twilio_sid": "x" }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twilio_sid"), "{err}");
        let err = parse(serde_json::json!({ "backend": "carrier-pigeon" }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn debug_of_a_parsed_twilio_transport_hides_the_token() {
        let t = parse(serde_json::json!({
            "backend": "twilio", "from_number": "+1", "twilio_account_sid": "AC1",
            "twilio_auth_token": "hunter2-twilio",
        }))
        .unwrap();
        assert!(!format!("{t:?}").contains("hunter2-twilio"));
    }
}
