//! `ConsoleMailer`'s log lines, read back through a real `tracing` fmt
//! subscriber: they must be regstack's, verbatim, and carry the body only
//! when `log_bodies` is on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use regstack_adapters_notify::ConsoleMailer;
use regstack_ports::{Email, Mailer, OutgoingMail};

const FROM: &str = "RegStack <noreply@example.com>";
const TOKEN: &str = "tok_4Vq9XlY2u8zP0sKcA1bDeFgHiJkLmNoPqRsTuVwXyZ";

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

fn mail() -> OutgoingMail {
    OutgoingMail {
        to: Email::parse("alice@example.com").unwrap(),
        subject: "Confirm your RegStack account".into(),
        text: format!(
            "Hello Alice,\n\nConfirm here:\n  http://127.0.0.1:8740/account/verify?token={TOKEN}\n"
        ),
        html: format!("<a href=\"http://127.0.0.1:8740/account/verify?token={TOKEN}\">Confirm</a>"),
    }
}

/// Sends one mail with everything down to TRACE captured, as the server's
/// fmt layer would print it.
async fn logged(mailer: &ConsoleMailer) -> String {
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
        mailer.send(&mail()).await.unwrap();
    }
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

const HEADER_LINE: &str = "[regstack/console-email] To: alice@example.com | From: RegStack <noreply@example.com> | Subject: Confirm your RegStack account";

#[tokio::test]
async fn the_header_line_is_regstacks_verbatim() {
    let out = logged(&ConsoleMailer::new(FROM, false)).await;
    let line = out
        .lines()
        .find(|l| l.contains("[regstack/console-email] To:"))
        .unwrap_or_else(|| panic!("no header line in:\n{out}"));
    assert!(line.ends_with(HEADER_LINE), "{line}");
    assert!(line.contains(" INFO "), "{line}");
    assert!(line.contains("regstack::email::console"), "{line}");
}

#[tokio::test]
async fn without_log_bodies_no_body_is_logged_at_any_level() {
    let out = logged(&ConsoleMailer::new(FROM, false)).await;
    assert!(!out.contains("text body"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
    assert!(!out.contains("Hello Alice"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[tokio::test]
async fn with_log_bodies_the_text_body_follows_the_marker_line() {
    let out = logged(&ConsoleMailer::new(FROM, true)).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with(HEADER_LINE), "{out}");
    let marker = lines
        .iter()
        .position(|l| l.ends_with("[regstack/console-email] text body:"))
        .unwrap_or_else(|| panic!("no body marker in:\n{out}"));
    assert!(lines[marker].contains(" INFO "), "{out}");
    // The body itself, line for line, right after the marker — what the
    // tooling that scrapes regstack logs reads.
    let text = mail().text;
    let body: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[marker + 1..marker + 1 + body.len()],
        &body[..],
        "{out}"
    );
    assert!(out.contains(&format!(
        "  http://127.0.0.1:8740/account/verify?token={TOKEN}\n"
    )));
    // Never the HTML body: one copy of the link is enough.
    assert!(!out.contains("<a href"), "{out}");
}
