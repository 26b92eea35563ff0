//! `SnsSms` against a stand-in SNS: a `Publish` form signed with SigV4
//! (checked by recomputing the signature from the request as received),
//! SNS's XML error answers mapped to a permanent or a transient
//! `NotifyError`, and a black-holed API bounded by the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stand_in;

use std::time::{Duration, Instant};

use regstack_adapters_notify::{AwsCredentials, SnsSettings, SnsSms};
use regstack_ports::{NotifyError, OutgoingSms, SmsSender};
use stand_in::{never_answers, verify_sigv4, Reply, StandIn};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN";
const CODE: &str = "493817";

fn sms() -> OutgoingSms {
    OutgoingSms {
        to: "+15551234567".into(),
        body: format!("Your RegStack sign-in code is {CODE}"),
    }
}

fn credentials(session_token: Option<&str>) -> AwsCredentials {
    AwsCredentials::Static {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        session_token: session_token.map(Into::into),
    }
}

fn settings(base: &str, from_number: Option<&str>) -> SnsSettings {
    SnsSettings {
        region: "us-east-1".into(),
        from_number: from_number.map(str::to_owned),
        credentials: credentials(None),
        endpoint: Some(base.to_owned()),
        timeout: Duration::from_secs(5),
    }
}

fn assert_clean(err: &NotifyError) {
    let shown = format!("{err} {err:?}");
    for secret in [SECRET, CODE, SESSION_TOKEN] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

const PUBLISHED: &str = r#"<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <PublishResult><MessageId>567910cd-659e-55d4-8ccb-5aaf14679dc0</MessageId></PublishResult>
  <ResponseMetadata><RequestId>d74b8436-ae13-5ab4-a9ff-ce54dfea72a0</RequestId></ResponseMetadata>
</PublishResponse>"#;

fn error_response(code: &str, message: &str, kind: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
  <Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>9b2a4d8e-5d7c-5b1e-a0a8-0f2c7c3e4d11</RequestId>
</ErrorResponse>"#
    )
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn publish_is_a_sigv4_signed_query_api_form() {
    let sns = StandIn::start(Reply::xml(200, PUBLISHED)).await;
    SnsSms::new(settings(&sns.base, Some("+15005550006")))
        .unwrap()
        .send(&sms())
        .await
        .unwrap();

    let req = sns.only_request();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded; charset=utf-8")
    );
    let auth = verify_sigv4(&req, SECRET);
    assert_eq!(auth.access_key_id, AKID);
    assert_eq!(auth.region, "us-east-1");
    assert_eq!(auth.service, "sns");
    assert_eq!(auth.signed_headers, ["content-type", "host", "x-amz-date"]);
    assert_eq!(req.header("x-amz-security-token"), None);

    let mut form = req.form();
    form.sort();
    assert_eq!(
        form,
        pairs(&[
            ("Action", "Publish"),
            ("Version", "2010-03-31"),
            ("PhoneNumber", "+15551234567"),
            ("Message", &sms().body),
            (
                "MessageAttributes.entry.1.Name",
                "AWS.MM.SMS.OriginationNumber"
            ),
            ("MessageAttributes.entry.1.Value.DataType", "String"),
            (
                "MessageAttributes.entry.1.Value.StringValue",
                "+15005550006"
            ),
        ])
    );
}

#[tokio::test]
async fn an_alphanumeric_sender_goes_as_the_sender_id_and_none_as_nothing() {
    let sns = StandIn::start(Reply::xml(200, PUBLISHED)).await;
    SnsSms::new(settings(&sns.base, Some("RegStack")))
        .unwrap()
        .send(&sms())
        .await
        .unwrap();
    SnsSms::new(settings(&sns.base, None))
        .unwrap()
        .send(&sms())
        .await
        .unwrap();
    let seen = sns.requests();
    assert_eq!(seen.len(), 2);
    for req in &seen {
        verify_sigv4(req, SECRET);
    }
    assert!(seen[0].form().contains(&(
        "MessageAttributes.entry.1.Name".to_owned(),
        "AWS.SNS.SMS.SenderID".to_owned()
    )));
    let mut bare = seen[1].form();
    bare.sort();
    assert_eq!(
        bare,
        pairs(&[
            ("Action", "Publish"),
            ("Version", "2010-03-31"),
            ("PhoneNumber", "+15551234567"),
            ("Message", &sms().body),
        ])
    );
}

#[tokio::test]
async fn a_session_token_is_sent_and_signed() {
    let sns = StandIn::start(Reply::xml(200, PUBLISHED)).await;
    SnsSms::new(SnsSettings {
        credentials: credentials(Some(SESSION_TOKEN)),
        ..settings(&sns.base, None)
    })
    .unwrap()
    .send(&sms())
    .await
    .unwrap();
    let req = sns.only_request();
    assert_eq!(req.header("x-amz-security-token"), Some(SESSION_TOKEN));
    let auth = verify_sigv4(&req, SECRET);
    assert!(
        auth.signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token"),
        "{:?}",
        auth.signed_headers
    );
}

#[tokio::test]
async fn an_invalid_number_is_a_permanent_rejection() {
    let sns = StandIn::start(Reply::xml(
        400,
        &error_response(
            "InvalidParameter",
            "Invalid parameter: PhoneNumber Reason: +1555 is not valid to publish to",
            "Sender",
        ),
    ))
    .await;
    let err = SnsSms::new(settings(&sns.base, None))
        .unwrap()
        .send(&sms())
        .await
        .unwrap_err();
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
    assert_eq!(*provider, "sns");
    assert_eq!(code, "InvalidParameter");
    assert_eq!(
        reason,
        "Invalid parameter: PhoneNumber Reason: +1555 is not valid to publish to"
    );
}

#[tokio::test]
async fn throttling_is_transient_though_answered_with_400() {
    let sns = StandIn::start(Reply::xml(
        400,
        &error_response("Throttling", "Rate exceeded", "Sender"),
    ))
    .await;
    let err = SnsSms::new(settings(&sns.base, None))
        .unwrap()
        .send(&sms())
        .await
        .unwrap_err();
    assert_clean(&err);
    let NotifyError::Delivery(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("throttled") && msg.contains("Throttling"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_refused_signature_or_a_failing_service_is_transient() {
    for (status, code) in [(403, "SignatureDoesNotMatch"), (500, "InternalError")] {
        let sns = StandIn::start(Reply::xml(
            status,
            &error_response(
                code,
                "The request signature we calculated does not match",
                "Sender",
            ),
        ))
        .await;
        let err = SnsSms::new(settings(&sns.base, None))
            .unwrap()
            .send(&sms())
            .await
            .unwrap_err();
        assert_clean(&err);
        let NotifyError::Delivery(msg) = &err else {
            panic!("{status}: {err:?}")
        };
        assert!(msg.contains(code), "{msg}");
    }
}

#[tokio::test]
async fn an_api_that_never_answers_times_out_within_the_bound() {
    let (base, holder) = never_answers().await;
    let timeout = Duration::from_millis(500);
    let sns = SnsSms::new(SnsSettings {
        timeout,
        ..settings(&base, None)
    })
    .unwrap();
    let started = Instant::now();
    let err = sns.send(&sms()).await.unwrap_err();
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

#[test]
fn debug_of_the_sender_shows_no_credential() {
    let sns = SnsSms::new(settings("http://127.0.0.1:9", None)).unwrap();
    let shown = format!("{sns:?}");
    assert!(!shown.contains(SECRET) && !shown.contains(AKID), "{shown}");
}

#[tokio::test]
async fn the_independent_check_fails_on_a_request_changed_after_signing() {
    // Proves `verify_sigv4` has teeth: the passes above are not vacuous.
    let sns = StandIn::start(Reply::xml(200, PUBLISHED)).await;
    SnsSms::new(settings(&sns.base, None))
        .unwrap()
        .send(&sms())
        .await
        .unwrap();
    let original = sns.only_request();
    verify_sigv4(&original, SECRET);
    let mut tampered = original.clone();
    tampered
        .body
        .extend_from_slice(b"&PhoneNumber=%2B15550000000");
    let check = |req: &stand_in::Recorded, secret: &str| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_sigv4(req, secret)))
    };
    assert!(check(&tampered, SECRET).is_err());
    assert!(check(&original, "not-the-secret").is_err());
}
