//! `TwilioSms` against a stand-in Twilio: the exact request (path, Basic
//! auth, form fields), Twilio's real error bodies mapped to a permanent or
//! a transient `NotifyError`, and a black-holed API bounded by the timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stand_in;

use std::time::{Duration, Instant};

use base64::Engine as _;
use regstack_adapters_notify::{SmsTransport, TwilioSettings, TwilioSms};
use regstack_ports::{NotifyError, OutgoingSms, SmsSender};
use stand_in::{never_answers, Reply, StandIn};

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token-never-logged";
const FROM: &str = "+15005550006";
const CODE: &str = "493817";

fn sms() -> OutgoingSms {
    OutgoingSms {
        to: "+15551234567".into(),
        body: format!("Your RegStack sign-in code is {CODE}"),
    }
}

fn settings(base: &str) -> TwilioSettings {
    TwilioSettings {
        endpoint: Some(base.to_owned()),
        timeout: Duration::from_secs(5),
        ..TwilioSettings::new(SID, TOKEN, FROM)
    }
}

async fn send_to(stand_in: &StandIn) -> Result<(), NotifyError> {
    TwilioSms::new(settings(&stand_in.base))
        .unwrap()
        .send(&sms())
        .await
}

/// Neither the token nor the code may appear in what a caller logs.
fn assert_clean(err: &NotifyError) {
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(!shown.contains(CODE), "{shown}");
}

const CREATED: &str = r#"{"account_sid":"AC0123456789abcdef0123456789abcdef","api_version":"2010-04-01","body":"Your RegStack sign-in code is 493817","from":"+15005550006","sid":"SM1f0e8ae6ade43cb3c0ce4525424e404f","status":"queued","to":"+15551234567"}"#;

#[tokio::test]
async fn a_message_is_posted_as_twilios_form_with_basic_auth() {
    let twilio = StandIn::start(Reply::json(201, CREATED)).await;
    send_to(&twilio).await.unwrap();

    let req = twilio.only_request();
    assert_eq!(req.method, "POST");
    assert_eq!(
        req.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(req.query, None);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let mut form = req.form();
    form.sort();
    assert_eq!(
        form,
        vec![
            ("Body".to_owned(), sms().body),
            ("From".to_owned(), FROM.to_owned()),
            ("To".to_owned(), "+15551234567".to_owned()),
        ]
    );
}

#[tokio::test]
async fn the_transport_built_from_regstack_keys_posts_the_same_request() {
    let twilio = StandIn::start(Reply::json(201, CREATED)).await;
    let transport: SmsTransport = serde_json::from_value(serde_json::json!({
        "backend": "twilio",
        "from_number": FROM,
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
    }))
    .unwrap();
    let SmsTransport::Twilio(mut s) = transport else {
        panic!("twilio expected")
    };
    s.endpoint = Some(twilio.base.clone());
    SmsTransport::Twilio(s)
        .sender()
        .unwrap()
        .send(&sms())
        .await
        .unwrap();
    let req = twilio.only_request();
    assert_eq!(
        req.path,
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert!(req.form().contains(&("From".to_owned(), FROM.to_owned())));
}

#[tokio::test]
async fn an_invalid_number_is_a_permanent_rejection_with_twilios_code() {
    let twilio = StandIn::start(Reply::json(
        400,
        r#"{"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#,
    ))
    .await;
    let err = send_to(&twilio).await.unwrap_err();
    assert_clean(&err);
    assert!(err.is_permanent(), "{err}");
    let NotifyError::Rejected {
        provider,
        code,
        reason,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*provider, "twilio");
    assert_eq!(code, "21211");
    assert_eq!(reason, "The 'To' number +1555 is not a valid phone number.");
}

#[tokio::test]
async fn too_many_requests_is_transient() {
    let twilio = StandIn::start(Reply::json(
        429,
        r#"{"code": 20429, "message": "Too Many Requests", "more_info": "https://www.twilio.com/docs/errors/20429", "status": 429}"#,
    ))
    .await;
    let err = send_to(&twilio).await.unwrap_err();
    assert_clean(&err);
    assert!(!err.is_permanent());
    let NotifyError::Delivery(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("throttled") && msg.contains("20429"), "{msg}");
}

#[tokio::test]
async fn refused_credentials_are_transient_and_never_shown() {
    let twilio = StandIn::start(Reply::json(
        401,
        r#"{"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}"#,
    ))
    .await;
    let err = send_to(&twilio).await.unwrap_err();
    assert_clean(&err);
    let NotifyError::Delivery(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(
        msg.contains("credentials") && msg.contains("20003"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_server_error_without_twilios_json_is_transient() {
    let twilio = StandIn::start(Reply::new(
        503,
        "text/html",
        "<html><body>Service Unavailable</body></html>",
    ))
    .await;
    let err = send_to(&twilio).await.unwrap_err();
    assert_clean(&err);
    let NotifyError::Delivery(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("503"), "{msg}");
}

#[tokio::test]
async fn an_echoed_body_is_cut_from_the_reason() {
    // Twilio does not echo bodies today; if a proxy or a future error did,
    // the code must still not reach the caller's log.
    let twilio = StandIn::start(Reply::json(
        400,
        &format!(
            r#"{{"code": 21617, "message": "Body too long: Your RegStack sign-in code is {CODE}", "status": 400}}"#
        ),
    ))
    .await;
    let err = send_to(&twilio).await.unwrap_err();
    assert_clean(&err);
    assert!(err.to_string().contains("[message body]"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let base = stand_in::closed_port_base();
    let err = TwilioSms::new(settings(&base))
        .unwrap()
        .send(&sms())
        .await
        .unwrap_err();
    assert_clean(&err);
    let NotifyError::Delivery(msg) = &err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("could not connect"), "{msg}");
}

#[tokio::test]
async fn an_api_that_never_answers_times_out_within_the_bound() {
    let (base, holder) = never_answers().await;
    let timeout = Duration::from_millis(500);
    let twilio = TwilioSms::new(TwilioSettings {
        timeout,
        ..settings(&base)
    })
    .unwrap();
    let started = Instant::now();
    let err = twilio.send(&sms()).await.unwrap_err();
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
