//! The breach screens against a stand-in range API on 127.0.0.1 and a
//! range directory: what is sent (the 5-digit prefix and the padding
//! header, nothing else), padding ignored, every failure unavailable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use regstack_adapters_notify::{RangeApiScreen, RangeFileScreen};
use regstack_ports::{BreachVerdict, BreachedPasswords, PasswordSha1};
use regstack_testkit::range_server::{closed_url, sha1_hex, RangeMode, RangeServer};

const BREACHED: &str = "monkey-business-1987";
const PADDED: &str = "only-ever-padding-42";
const CLEAN: &str = "correct-horse-battery";

fn digest(password: &str) -> PasswordSha1 {
    let bytes: [u8; 20] = hex::decode(sha1_hex(password)).unwrap().try_into().unwrap();
    PasswordSha1::from_digest(bytes)
}

fn screen(url: &str, timeout_ms: u64) -> RangeApiScreen {
    RangeApiScreen::new(url, Duration::from_millis(timeout_ms)).unwrap()
}

#[tokio::test]
async fn only_the_prefix_leaves_and_padding_is_asked_for() {
    let server = RangeServer::start(&[BREACHED], &[PADDED]).await.unwrap();
    let s = screen(server.url(), 2000);
    assert_eq!(s.check(&digest(BREACHED)).await, BreachVerdict::Breached);
    assert_eq!(s.check(&digest(CLEAN)).await, BreachVerdict::NotBreached);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for (r, pw) in requests.iter().zip([BREACHED, CLEAN]) {
        let full = sha1_hex(pw);
        assert_eq!(r.path, format!("/range/{}", &full[..5]));
        assert_eq!(r.path.len(), "/range/".len() + 5);
        assert_eq!(r.add_padding.as_deref(), Some("true"));
        let raw = r.raw.to_ascii_uppercase();
        assert!(!raw.contains(&full[5..]), "suffix sent: {}", r.raw);
        assert!(!raw.contains(&pw.to_ascii_uppercase()), "password sent");
    }
}

#[tokio::test]
async fn padding_entries_with_count_zero_are_not_breaches() {
    let server = RangeServer::start(&[BREACHED], &[PADDED]).await.unwrap();
    let s = screen(server.url(), 2000);
    assert_eq!(s.check(&digest(PADDED)).await, BreachVerdict::NotBreached);
}

#[tokio::test]
async fn an_error_status_is_unavailable() {
    let server = RangeServer::start(&[BREACHED], &[]).await.unwrap();
    let s = screen(server.url(), 2000);
    for code in [500, 503, 429, 404] {
        server.set_mode(RangeMode::Status(code));
        match s.check(&digest(BREACHED)).await {
            BreachVerdict::Unavailable(reason) => {
                assert!(reason.contains(&code.to_string()), "{reason}")
            }
            v => panic!("{code}: {v:?}"),
        }
    }
}

#[tokio::test]
async fn a_stalled_service_is_unavailable_within_the_timeout() {
    let server = RangeServer::start(&[BREACHED], &[]).await.unwrap();
    server.set_mode(RangeMode::Stall);
    let s = screen(server.url(), 300);
    let start = Instant::now();
    let v = s.check(&digest(BREACHED)).await;
    assert!(matches!(v, BreachVerdict::Unavailable(_)), "{v:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_service_that_is_down_is_unavailable() {
    let s = screen(&closed_url().await.unwrap(), 2000);
    let v = s.check(&digest(BREACHED)).await;
    assert!(matches!(v, BreachVerdict::Unavailable(_)), "{v:?}");
}

#[test]
fn the_range_url_must_be_https_or_local_http() {
    let t = Duration::from_secs(1);
    assert!(RangeApiScreen::new("https://api.pwnedpasswords.com", t).is_ok());
    assert!(RangeApiScreen::new("http://127.0.0.1:9", t).is_ok());
    for bad in ["ftp://x.test", "http://ranges.example.com", "not a url", ""] {
        let e = RangeApiScreen::new(bad, t).unwrap_err();
        assert_eq!(e.key, "password.breach_range_url", "{bad}");
    }
    let e = RangeApiScreen::new("https://x.test", Duration::ZERO).unwrap_err();
    assert_eq!(e.key, "password.breach_timeout_ms");
}

/// The directory layout: `<PREFIX>.txt` (or `<PREFIX>`) holding the range
/// API's answer for that prefix.
#[tokio::test]
async fn a_range_directory_answers_like_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (b, p) = (sha1_hex(BREACHED), sha1_hex(PADDED));
    std::fs::write(
        dir.path().join(format!("{}.txt", &b[..5])),
        format!("0000000000000000000000000000000000A:0\r\n{}:7\r\n", &b[5..]),
    )
    .unwrap();
    // A bare `<PREFIX>` file, lower-case suffix, padding only.
    std::fs::write(
        dir.path().join(&p[..5]),
        format!("{}:0\n", p[5..].to_ascii_lowercase()),
    )
    .unwrap();
    let s = RangeFileScreen::new(dir.path()).unwrap();
    assert_eq!(s.check(&digest(BREACHED)).await, BreachVerdict::Breached);
    assert_eq!(s.check(&digest(PADDED)).await, BreachVerdict::NotBreached);
    // No file for this prefix: unavailable, not "clean".
    let clean = sha1_hex(CLEAN);
    assert_ne!(&clean[..5], &b[..5]);
    assert_ne!(&clean[..5], &p[..5]);
    let v = s.check(&digest(CLEAN)).await;
    assert!(matches!(v, BreachVerdict::Unavailable(_)), "{v:?}");
}

#[test]
fn a_range_directory_must_exist() {
    let e = RangeFileScreen::new(std::path::Path::new("/nonexistent/ranges")).unwrap_err();
    assert_eq!(e.key, "password.breach_file");
    assert!(e.reason.contains("/nonexistent/ranges"), "{}", e.reason);
}
