//! `NullSms`'s log line, read back through a real `tracing` fmt
//! subscriber: regstack's, verbatim, and with the code only when
//! `log_bodies` is on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use regstack_adapters_notify::{NullSms, SmsTransport};
use regstack_ports::{OutgoingSms, SmsSender};

const CODE: &str = "493817";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sms() -> OutgoingSms {
    OutgoingSms {
        to: "+15551234567".into(),
        body: format!("Your RegStack sign-in code is {CODE}"),
    }
}

/// Sends one message with everything down to TRACE captured, as the
/// server's fmt layer would print it.
async fn logged(sender: &dyn SmsSender) -> String {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    {
        // `#[tokio::test]` runs on one thread, so the thread default holds
        // across the await.
        let _guard = tracing::subscriber::set_default(subscriber);
        sender.send(&sms()).await.unwrap();
    }
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn without_log_bodies_the_line_is_regstacks_and_no_code_is_logged_at_any_level() {
    let out = logged(&NullSms::new(Some("+15005550006".into()), false)).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    let line = out.lines().next().unwrap();
    assert!(
        line.ends_with(
            "[regstack/null-sms] To: +15551234567 | From: +15005550006 | (body suppressed)"
        ),
        "{line}"
    );
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("regstack::sms::null"), "{line}");
    assert!(!out.contains(CODE), "{out}");
}

#[tokio::test]
async fn with_log_bodies_the_body_ends_regstacks_line() {
    let out = logged(&NullSms::new(Some("+15005550006".into()), true)).await;
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.trim_end().ends_with(&format!(
            "[regstack/null-sms] To: +15551234567 | From: +15005550006 | Body: Your RegStack sign-in code is {CODE}"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn an_unset_sender_is_shown_as_regstack_shows_it() {
    let out = logged(&NullSms::new(None, false)).await;
    assert!(
        out.trim_end()
            .ends_with("[regstack/null-sms] To: +15551234567 | From: (unset) | (body suppressed)"),
        "{out}"
    );
}

#[tokio::test]
async fn the_default_transport_is_null_and_keeps_the_code_out_of_the_log() {
    let sender = SmsTransport::default().sender().unwrap();
    let out = logged(sender.as_ref()).await;
    assert!(out.contains("(body suppressed)"), "{out}");
    assert!(!out.contains(CODE), "{out}");
}

#[test]
fn debug_of_a_message_shows_the_recipient_only() {
    let shown = format!("{:?}", sms());
    assert!(shown.contains("+15551234567"), "{shown}");
    assert!(!shown.contains(CODE), "{shown}");
}
