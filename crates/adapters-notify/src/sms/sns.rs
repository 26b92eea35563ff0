//! The AWS SNS transport: `Publish` to a phone number through SNS's query
//! API (`POST /` with a form body, `Version=2010-03-31`), signed with SigV4
//! (service `sns`).
//!
//! The request is what regstack's boto3 call sends, with one departure:
//! regstack passed `sms.from_number` as the `AWS.SNS.SMS.SenderID`
//! attribute, which SNS defines as 3–11 letters and digits, not a phone
//! number. Here a sender in E.164 form (`+…`) goes as
//! `AWS.MM.SMS.OriginationNumber`, the attribute for a number, and anything
//! else as the sender ID. No `SMSType` is set (regstack set none either),
//! so the account's default applies.
//!
//! SNS answers an error with an XML `ErrorResponse` whose `Code` and
//! `Message` are read here (no XML library: two elements of a fixed
//! shape). `InvalidParameter` (a number SNS will not publish to) is
//! [`NotifyError::Rejected`]; `Throttling`, failures and refused
//! credentials are [`NotifyError::Delivery`]. Credentials come from the
//! environment or `~/.aws` (regstack's SNS backend used boto3's default
//! chain and has no key of its own); see [`crate::aws`].

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use regstack_ports::{NotifyError, OutgoingSms, SmsSender};
use reqwest::Url;

use crate::aws::{check_region, classify, AwsCredentials, Signer};
use crate::http::{self, TransportConfigError};

/// The `tracing` target of this transport's events.
pub const LOG_TARGET: &str = "regstack::sms::sns";

const PROVIDER: &str = "sns";

/// Where and how to reach SNS: `sms.sns_region` and `sms.from_number`, plus
/// the credential source, an endpoint override and a timeout.
#[derive(Clone, Debug)]
pub struct SnsSettings {
    /// AWS region (`sms.sns_region`, regstack's default `eu-west-1`).
    pub region: String,
    /// Sender (`sms.from_number`): an origination number in E.164, or an
    /// alphanumeric sender ID; `None` lets SNS choose.
    pub from_number: Option<String>,
    /// Where the keys come from; regstack's keys leave it at the default
    /// chain.
    pub credentials: AwsCredentials,
    /// Base URL instead of `https://sns.{region}.amazonaws.com`: an
    /// SNS-compatible service, or a test stand-in (plain `http://` only on
    /// this host).
    pub endpoint: Option<String>,
    /// The budget for one whole send, connect to last byte.
    pub timeout: Duration,
}

impl SnsSettings {
    /// regstack's default region.
    pub const DEFAULT_REGION: &'static str = "eu-west-1";
    /// The default send budget.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// `eu-west-1`, no sender, the default credential chain, the real
    /// endpoint.
    pub fn new() -> Self {
        Self {
            region: Self::DEFAULT_REGION.to_owned(),
            from_number: None,
            credentials: AwsCredentials::Default,
            endpoint: None,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

impl Default for SnsSettings {
    fn default() -> Self {
        Self::new()
    }
}

/// Sends text messages through SNS. Cheap to share behind an `Arc`.
pub struct SnsSms {
    from_number: Option<String>,
    url: Url,
    signer: Signer,
    client: reqwest::Client,
    timeout: Duration,
}

impl SnsSms {
    /// Checks `settings` and resolves the credentials. Sends nothing.
    pub fn new(settings: SnsSettings) -> Result<Self, TransportConfigError> {
        let SnsSettings {
            region,
            from_number,
            credentials,
            endpoint,
            timeout,
        } = settings;
        let region = check_region("sms.sns_region", &region)?;
        let url = match endpoint {
            Some(raw) => http::endpoint("sms", &raw)?,
            None => http::endpoint(
                "sms.sns_region",
                &format!("https://sns.{region}.amazonaws.com/"),
            )?,
        };
        let resolved = credentials.resolve().map_err(|e| {
            // regstack has no SNS credential key; the backend is what to
            // change if the machine cannot have credentials.
            TransportConfigError::new("sms.backend", format!("\"sns\" needs AWS credentials: {e}"))
        })?;
        Ok(Self {
            from_number: from_number
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty()),
            url,
            signer: Signer::new(&region, "sns", resolved),
            client: http::client("sms", timeout)?,
            timeout,
        })
    }

    /// The form body of one `Publish`.
    fn form(&self, sms: &OutgoingSms) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", "Publish")
            .append_pair("PhoneNumber", &sms.to)
            .append_pair("Message", &sms.body);
        if let Some(from) = &self.from_number {
            let attribute = if from.starts_with('+') {
                "AWS.MM.SMS.OriginationNumber"
            } else {
                "AWS.SNS.SMS.SenderID"
            };
            form.append_pair("MessageAttributes.entry.1.Name", attribute)
                .append_pair("MessageAttributes.entry.1.Value.DataType", "String")
                .append_pair("MessageAttributes.entry.1.Value.StringValue", from);
        }
        form.append_pair("Version", "2010-03-31");
        form.finish()
    }
}

/// The text of the first `<name>…</name>` in `xml`, entities decoded. The
/// query API's `ErrorResponse` has one `Code` and one `Message`.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[async_trait]
impl SmsSender for SnsSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<(), NotifyError> {
        let body = self.form(sms);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let signed = self.signer.sign(
            "POST",
            self.url.as_str(),
            &[("content-type", content_type)],
            body.as_bytes(),
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
            tracing::debug!(target: LOG_TARGET, to = %sms.to, "message accepted by SNS");
            return Ok(());
        }
        let xml = String::from_utf8_lossy(&answer.body);
        let code = xml_element(&xml, "Code");
        let reason = xml_element(&xml, "Message").unwrap_or_else(|| "(no message)".to_owned());
        Err(classify(
            PROVIDER,
            answer.status,
            code.as_deref(),
            &reason,
            &sms.body,
        ))
    }
}

impl fmt::Debug for SnsSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signer holds the credentials: it is left out.
        f.debug_struct("SnsSms")
            .field("from_number", &self.from_number)
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_code_and_message_are_read_from_the_error_response() {
        let xml = r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error><Type>Sender</Type><Code>InvalidParameter</Code>
    <Message>Invalid parameter: PhoneNumber Reason: +1555 is not valid &amp; so on</Message>
  </Error><RequestId>6c3ab1ef</RequestId></ErrorResponse>"#;
        assert_eq!(
            xml_element(xml, "Code").as_deref(),
            Some("InvalidParameter")
        );
        assert_eq!(
            xml_element(xml, "Message").as_deref(),
            Some("Invalid parameter: PhoneNumber Reason: +1555 is not valid & so on")
        );
        assert_eq!(xml_element("<html>nope</html>", "Code"), None);
    }

    #[test]
    fn a_bad_region_names_sms_sns_region() {
        let err = SnsSms::new(SnsSettings {
            region: "us-east-1.example.com/x".into(),
            ..SnsSettings::new()
        })
        .unwrap_err();
        assert_eq!(err.key, "sms.sns_region");
    }
}
