//! `SesMailer` against a stand-in SES v2: a `SendEmail` JSON request signed
//! with SigV4 (checked by recomputing the signature from the request as
//! received), SES's error answers (`x-amzn-ErrorType` plus
//! `{"message": …}`) mapped to a permanent or a transient `NotifyError`,
//! and a black-holed API bounded by the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stand_in;

use std::time::{Duration, Instant};

use regstack_adapters_notify::{AwsCredentials, MailTransport, SesMailer, SesSettings};
use regstack_ports::{Email, Mailer, NotifyError, OutgoingMail};
use serde_json::json;
use stand_in::{never_answers, verify_sigv4, Reply, StandIn};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const FROM: &str = "RegStack <noreply@example.com>";
const TOKEN: &str = "tok_4Vq9XlY2u8zP0sKcA1bDeFgHiJkLmNoPqRsTuVwXyZ";

fn mail() -> OutgoingMail {
    OutgoingMail {
        to: Email::parse("alice@example.com").unwrap(),
        subject: "Confirm your RegStack account".into(),
        text: format!(
            "Hello Alice,\n\nConfirm here:\nhttp://127.0.0.1:8740/account/verify?token={TOKEN}\n"
        ),
        html: format!(
            "<p><a href=\"http://127.0.0.1:8740/account/verify?token={TOKEN}\">Confirm</a></p>"
        ),
    }
}

fn settings(base: &str) -> SesSettings {
    SesSettings {
        region: "eu-west-1".into(),
        credentials: AwsCredentials::Static {
            access_key_id: AKID.into(),
            secret_access_key: SECRET.into(),
            session_token: None,
        },
        endpoint: Some(base.to_owned()),
        timeout: Duration::from_secs(5),
    }
}

async fn send_to(base: &str) -> Result<(), NotifyError> {
    SesMailer::new(settings(base), FROM)
        .unwrap()
        .send(&mail())
        .await
}

fn assert_clean(err: &NotifyError) {
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn send_email_is_sigv4_signed_v2_json() {
    let ses = StandIn::start(Reply::json(
        200,
        r#"{"MessageId":"010201903a5c5b8e-7d5f3c2a-0d8f-4c3f-9b0e-1a2b3c4d5e6f-000000"}"#,
    ))
    .await;
    // Through `MailTransport`, as the server builds it.
    MailTransport::Ses(settings(&ses.base))
        .mailer(FROM)
        .unwrap()
        .send(&mail())
        .await
        .unwrap();

    let req = ses.only_request();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v2/email/outbound-emails");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let auth = verify_sigv4(&req, SECRET);
    assert_eq!(auth.access_key_id, AKID);
    assert_eq!(auth.region, "eu-west-1");
    assert_eq!(auth.service, "ses");
    assert_eq!(auth.signed_headers, ["content-type", "host", "x-amz-date"]);

    let m = mail();
    assert_eq!(
        req.json(),
        json!({
            "FromEmailAddress": FROM,
            "Destination": { "ToAddresses": ["alice@example.com"] },
            "Content": { "Simple": {
                "Subject": { "Data": m.subject, "Charset": "UTF-8" },
                "Body": {
                    "Text": { "Data": m.text, "Charset": "UTF-8" },
                    "Html": { "Data": m.html, "Charset": "UTF-8" },
                },
            }},
        })
    );
}

#[tokio::test]
async fn non_ascii_content_arrives_intact_and_signed() {
    let ses = StandIn::start(Reply::json(200, r#"{"MessageId":"x"}"#)).await;
    let sent = OutgoingMail {
        subject: "Bestätigen Sie Ihr Konto – RegStack ✓".into(),
        text: "Grüße, Zoë! 日本語".into(),
        ..mail()
    };
    SesMailer::new(settings(&ses.base), "Zoë’s Shop <noreply@example.com>")
        .unwrap()
        .send(&sent)
        .await
        .unwrap();
    let req = ses.only_request();
    verify_sigv4(&req, SECRET);
    let body = req.json();
    assert_eq!(body["Content"]["Simple"]["Subject"]["Data"], sent.subject);
    assert_eq!(body["Content"]["Simple"]["Body"]["Text"]["Data"], sent.text);
    let from = body["FromEmailAddress"].as_str().unwrap();
    assert!(
        from.starts_with("=?UTF-8?B?") && from.ends_with("?= <noreply@example.com>"),
        "{from}"
    );
}

#[tokio::test]
async fn message_rejected_is_permanent() {
    let ses = StandIn::start(
        Reply::json(
            400,
            r#"{"message":"Email address is not verified. The following identities failed the check in region EU-WEST-1: noreply@example.com"}"#,
        )
        .with_header(
            "x-amzn-errortype",
            "MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/",
        ),
    )
    .await;
    let err = send_to(&ses.base).await.unwrap_err();
    assert_clean(&err);
    assert!(err.is_permanent());
    let NotifyError::Rejected {
        provider,
        code,
        reason,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*provider, "ses");
    assert_eq!(code, "MessageRejected");
    assert!(
        reason.starts_with("Email address is not verified."),
        "{reason}"
    );
}

#[tokio::test]
async fn too_many_requests_is_transient() {
    let ses = StandIn::start(
        Reply::json(429, r#"{"message":"Maximum sending rate exceeded."}"#)
            .with_header("x-amzn-errortype", "TooManyRequestsException"),
    )
    .await;
    let err = send_to(&ses.base).await.unwrap_err();
    assert_clean(&err);
    let NotifyError::Delivery(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("throttled") && msg.contains("TooManyRequestsException"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_paused_account_or_a_refused_signature_is_transient() {
    for (status, kind, message) in [
        (
            400,
            "SendingPausedException",
            "Sending is paused for this account.",
        ),
        (
            403,
            "SignatureDoesNotMatchException",
            "The request signature we calculated does not match the signature you provided.",
        ),
    ] {
        let ses = StandIn::start(
            Reply::json(status, &format!(r#"{{"message":"{message}"}}"#))
                .with_header("x-amzn-errortype", kind),
        )
        .await;
        let err = send_to(&ses.base).await.unwrap_err();
        assert_clean(&err);
        assert!(!err.is_permanent(), "{kind}: {err}");
    }
}

#[tokio::test]
async fn an_api_that_never_answers_times_out_within_the_bound() {
    let (base, holder) = never_answers().await;
    let timeout = Duration::from_millis(500);
    let ses = SesMailer::new(
        SesSettings {
            timeout,
            ..settings(&base)
        },
        FROM,
    )
    .unwrap();
    let started = Instant::now();
    let err = ses.send(&mail()).await.unwrap_err();
    let elapsed = started.elapsed();
    holder.abort();
    assert!(
        elapsed < timeout + Duration::from_secs(1),
        "took {elapsed:?}"
    );
    assert_clean(&err);
    let NotifyError::Delivery(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("timed out"), "{msg}");
}

#[tokio::test]
async fn a_profile_without_static_keys_is_refused_at_start_up_naming_ses_profile() {
    let err = SesMailer::new(
        SesSettings {
            credentials: AwsCredentials::Profile(
                "regstack-test-profile-that-does-not-exist".into(),
            ),
            ..settings("http://127.0.0.1:9")
        },
        FROM,
    )
    .unwrap_err();
    assert_eq!(err.key, "email.ses_profile");
    assert!(
        err.reason
            .contains("regstack-test-profile-that-does-not-exist"),
        "{err}"
    );
}
