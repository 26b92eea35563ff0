//! `SmtpMailer` against a real SMTP server (aiosmtpd, see `sink`): plain,
//! STARTTLS and implicit TLS, AUTH, refusals, and a black-holed relay.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sink;

use std::time::{Duration, Instant};

use mailparse::MailHeaderMap;
use regstack_adapters_notify::{SmtpMailer, SmtpSecurity, SmtpSettings};
use regstack_ports::{Email, Mailer, NotifyError, OutgoingMail};
use sink::{start_or_skip, SinkOptions, SinkTls, SmtpSink};

const FROM: &str = "RegStack <noreply@example.com>";
const USER: &str = "mailer";
const PASSWORD: &str = "correct-horse-smtp-password";
/// Stands for the one-time token a real body carries: it must reach the
/// relay and nothing else.
const TOKEN: &str = "tok_4Vq9XlY2u8zP0sKcA1bDeFgHiJkLmNoPqRsTuVwXyZ";

fn mail() -> OutgoingMail {
    OutgoingMail {
        to: Email::parse("alice@example.com").unwrap(),
        subject: "Confirm your RegStack account".into(),
        text: format!("Hello Alice,\n\nConfirm here:\nhttp://127.0.0.1:8740/account/verify?token={TOKEN}\n"),
        html: format!(
            "<p>Hello Alice,</p><p><a href=\"http://127.0.0.1:8740/account/verify?token={TOKEN}\">Confirm</a></p>"
        ),
    }
}

fn settings(sink_port: u16, security: SmtpSecurity) -> SmtpSettings {
    SmtpSettings {
        port: sink_port,
        security,
        timeout: Duration::from_secs(10),
        ..SmtpSettings::new("127.0.0.1")
    }
}

fn with_auth(settings: SmtpSettings, password: &str) -> SmtpSettings {
    SmtpSettings {
        username: Some(USER.into()),
        password: Some(password.into()),
        accept_invalid_certs: true,
        ..settings
    }
}

async fn send(settings: SmtpSettings, mail: &OutgoingMail) -> Result<(), NotifyError> {
    SmtpMailer::new(settings, FROM).unwrap().send(mail).await
}

fn delivered_one(sink: &SmtpSink, sent: &OutgoingMail) {
    let received = sink.messages();
    assert_eq!(received.len(), 1, "sink stderr:\n{}", sink.stderr());
    let got = &received[0];
    assert_eq!(got.mail_from, "noreply@example.com");
    assert_eq!(got.rcpt_tos, vec!["alice@example.com".to_owned()]);

    let parsed = mailparse::parse_mail(got.data.as_bytes()).unwrap();
    let h = &parsed.headers;
    assert_eq!(h.get_first_value("From").as_deref(), Some(FROM));
    assert_eq!(
        h.get_first_value("To").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        h.get_first_value("Subject").as_deref(),
        Some(sent.subject.as_str())
    );
    assert_eq!(h.get_first_value("MIME-Version").as_deref(), Some("1.0"));
    assert!(h.get_first_value("Date").is_some());
    let message_id = h.get_first_value("Message-ID").unwrap();
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@example.com>"),
        "{message_id}"
    );

    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    assert_eq!(parsed.subparts.len(), 2);
    let (text, html) = (&parsed.subparts[0], &parsed.subparts[1]);
    assert_eq!(text.ctype.mimetype, "text/plain");
    assert_eq!(text.ctype.charset, "utf-8");
    assert_eq!(text.get_body().unwrap().replace("\r\n", "\n"), sent.text);
    assert_eq!(html.ctype.mimetype, "text/html");
    assert_eq!(html.get_body().unwrap().replace("\r\n", "\n"), sent.html);
}

#[tokio::test]
async fn plain_smtp_delivers_text_and_html_as_multipart_alternative() {
    let Some(sink) = start_or_skip("plain_smtp_delivers", SinkOptions::plain()) else {
        return;
    };
    let sent = mail();
    send(settings(sink.port, SmtpSecurity::Plain), &sent)
        .await
        .unwrap();
    delivered_one(&sink, &sent);
}

#[tokio::test]
async fn non_ascii_subject_and_bodies_arrive_intact() {
    let Some(sink) = start_or_skip("non_ascii_arrives", SinkOptions::plain()) else {
        return;
    };
    let sent = OutgoingMail {
        subject: "Bestätigen Sie Ihr Konto – RegStack ✓".into(),
        text: format!("Grüße, Zoë!\n{}\n", "ä".repeat(200)),
        html: "<p>Grüße, Zoë! 日本語</p>".into(),
        ..mail()
    };
    send(settings(sink.port, SmtpSecurity::Plain), &sent)
        .await
        .unwrap();
    delivered_one(&sink, &sent);
}

#[tokio::test]
async fn starttls_with_auth_delivers() {
    let options = SinkOptions::tls(SinkTls::StartTls).with_auth(USER, PASSWORD);
    let Some(sink) = start_or_skip("starttls_with_auth_delivers", options) else {
        return;
    };
    let sent = mail();
    send(
        with_auth(settings(sink.port, SmtpSecurity::StartTls), PASSWORD),
        &sent,
    )
    .await
    .unwrap();
    delivered_one(&sink, &sent);
}

#[tokio::test]
async fn wrong_credentials_are_a_notify_error_naming_authentication() {
    let options = SinkOptions::tls(SinkTls::StartTls).with_auth(USER, PASSWORD);
    let Some(sink) = start_or_skip("wrong_credentials", options) else {
        return;
    };
    let wrong = "wrong-password-never-logged";
    let err = send(
        with_auth(settings(sink.port, SmtpSecurity::StartTls), wrong),
        &mail(),
    )
    .await
    .unwrap_err();
    let NotifyError::Delivery(msg) = &err else {
        panic!("a delivery failure expected, got {err:?}")
    };
    eprintln!("delivery error: {msg}");
    assert!(msg.contains("authentication refused"), "{msg}");
    assert!(msg.contains("535"), "{msg}");
    for secret in [wrong, PASSWORD, TOKEN] {
        assert!(!msg.contains(secret), "{msg}");
    }
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_self_signed_certificate_is_refused_unless_allowed() {
    let Some(sink) = start_or_skip("self_signed_refused", SinkOptions::tls(SinkTls::StartTls))
    else {
        return;
    };
    let err = send(settings(sink.port, SmtpSecurity::StartTls), &mail())
        .await
        .unwrap_err();
    let NotifyError::Delivery(msg) = &err else {
        panic!("a delivery failure expected, got {err:?}")
    };
    eprintln!("delivery error: {msg}");
    assert!(msg.contains("TLS handshake failed"), "{msg}");
    assert!(msg.contains("certificate"), "{msg}");
    assert!(!msg.contains(TOKEN), "{msg}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    // A relay (or a man in the middle) that does not offer STARTTLS gets
    // nothing: no credentials, no message.
    let Some(sink) = start_or_skip("starttls_required", SinkOptions::plain()) else {
        return;
    };
    let err = send(
        with_auth(settings(sink.port, SmtpSecurity::StartTls), PASSWORD),
        &mail(),
    )
    .await
    .unwrap_err();
    let NotifyError::Delivery(msg) = &err else {
        panic!("a delivery failure expected, got {err:?}")
    };
    eprintln!("delivery error: {msg}");
    assert!(!msg.contains(PASSWORD), "{msg}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers() {
    let options = SinkOptions::tls(SinkTls::Implicit).with_auth(USER, PASSWORD);
    let Some(sink) = start_or_skip("implicit_tls_delivers", options) else {
        return;
    };
    let sent = mail();
    send(
        with_auth(settings(sink.port, SmtpSecurity::Tls), PASSWORD),
        &sent,
    )
    .await
    .unwrap();
    delivered_one(&sink, &sent);
}

#[tokio::test]
async fn one_mailer_sends_several_mails() {
    let options = SinkOptions::tls(SinkTls::StartTls).with_auth(USER, PASSWORD);
    let Some(sink) = start_or_skip("several_mails", options) else {
        return;
    };
    let mailer = SmtpMailer::new(
        with_auth(settings(sink.port, SmtpSecurity::StartTls), PASSWORD),
        FROM,
    )
    .unwrap();
    for _ in 0..3 {
        mailer.send(&mail()).await.unwrap();
    }
    assert_eq!(sink.messages().len(), 3);
}

#[tokio::test]
async fn a_black_holed_relay_fails_within_the_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });

    for security in [
        SmtpSecurity::Plain,
        SmtpSecurity::StartTls,
        SmtpSecurity::Tls,
    ] {
        let timeout = Duration::from_secs(1);
        let started = Instant::now();
        let err = send(
            SmtpSettings {
                timeout,
                ..settings(port, security)
            },
            &mail(),
        )
        .await
        .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed < timeout + Duration::from_secs(1),
            "{security:?} took {elapsed:?}"
        );
        let NotifyError::Delivery(msg) = &err else {
            panic!("a delivery failure expected, got {err:?}")
        };
        eprintln!("delivery error: {msg}");
        assert!(msg.contains("timed out"), "{msg}");
    }
    holder.abort();
}

#[tokio::test]
async fn a_refused_connection_is_a_notify_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = send(settings(port, SmtpSecurity::Plain), &mail())
        .await
        .unwrap_err();
    let NotifyError::Delivery(msg) = &err else {
        panic!("a delivery failure expected, got {err:?}")
    };
    eprintln!("delivery error: {msg}");
    assert!(msg.contains("connection or TLS handshake failed"), "{msg}");
}

#[tokio::test]
async fn a_line_break_in_the_subject_is_refused_before_connecting() {
    // Port 9 (discard) on loopback is closed here; the check must come first
    // anyway, so the error names the subject, not the connection.
    for subject in ["Hi\r\nBcc: eve@example.com", "Hi\nthere", "Hi\rthere"] {
        let bad = OutgoingMail {
            subject: subject.into(),
            ..mail()
        };
        let err = send(settings(9, SmtpSecurity::Plain), &bad)
            .await
            .unwrap_err();
        let NotifyError::Delivery(msg) = &err else {
            panic!("a delivery failure expected, got {err:?}")
        };
        eprintln!("delivery error: {msg}");
        assert!(msg.contains("subject"), "{msg}");
        assert!(!msg.contains(TOKEN), "{msg}");
    }
}

#[test]
fn debug_of_the_settings_redacts_the_password() {
    let settings = with_auth(settings(587, SmtpSecurity::StartTls), PASSWORD);
    let debug = format!("{settings:?}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert!(debug.contains(USER), "{debug}");
    let mailer = SmtpMailer::new(settings, FROM).unwrap();
    assert!(!format!("{mailer:?}").contains(PASSWORD));
}

#[test]
fn a_mailer_that_outlives_its_runtime_drops_without_panicking() {
    // lettre's transport spawns a task when dropped; outside a runtime that
    // would panic, so the mailer leaks it instead.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mailer = SmtpMailer::new(settings(port, SmtpSecurity::Plain), FROM).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(runtime.block_on(mailer.send(&mail())).is_err());
    drop(runtime);
    drop(mailer);
}
