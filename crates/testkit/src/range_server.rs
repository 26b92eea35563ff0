//! A stand-in breached-password range API (the Pwned Passwords shape:
//! `GET /range/<5 hex>` → `SUFFIX:COUNT` lines) on 127.0.0.1, started by
//! the test itself, which records every request head it receives so a
//! test can assert what left the process — the prefix and nothing else.
//!
//! It answers with the suffixes of the passwords it was told are breached
//! (count 42) and, as padding, of the passwords it was told to pad with
//! (count 0, which a client must ignore). [`RangeMode`] makes it fail:
//! answer an error status, or accept and never answer (a timeout).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeMode {
    /// The range, as the real service would.
    Normal,
    /// This status with an empty body.
    Status(u16),
    /// Read the request and never answer.
    Stall,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RangeRequest {
    /// The request target (`/range/5BAA6`).
    pub path: String,
    /// The `Add-Padding` header's value, if sent.
    pub add_padding: Option<String>,
    /// The whole request head, as text.
    pub raw: String,
}

/// SHA-1 in upper-case hex, as the corpora key passwords.
pub fn sha1_hex(password: &str) -> String {
    Sha1::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

struct State {
    /// (full upper-case hash, count) the server knows.
    entries: Vec<(String, u64)>,
    mode: RangeMode,
    requests: Vec<RangeRequest>,
}

/// The running stand-in; stops when dropped.
pub struct RangeServer {
    url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RangeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RangeServer {
    /// Starts a server knowing `breached` (count 42) and padding its
    /// answers with `padding` (count 0).
    pub async fn start(breached: &[&str], padding: &[&str]) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut entries: Vec<(String, u64)> = breached.iter().map(|p| (sha1_hex(p), 42)).collect();
        entries.extend(padding.iter().map(|p| (sha1_hex(p), 0)));
        let state = Arc::new(Mutex::new(State {
            entries,
            mode: RangeMode::Normal,
            requests: Vec::new(),
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        });
        Ok(Self { url, state, task })
    }

    /// The base URL (`http://127.0.0.1:PORT`), for `password.breach_range_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Changes how later requests are answered.
    pub fn set_mode(&self, mode: RangeMode) {
        lock(&self.state).mode = mode;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RangeRequest> {
        lock(&self.state).requests.clone()
    }
}

/// A URL on which nothing listens (connection refused): a range service
/// that is down.
pub async fn closed_url() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    drop(listener);
    Ok(url)
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let raw = String::from_utf8_lossy(&head).into_owned();
    let path = raw
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned();
    let add_padding = raw.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("add-padding")
            .then(|| value.trim().to_owned())
    });
    let (mode, body) = {
        let mut s = lock(&state);
        s.requests.push(RangeRequest {
            path: path.clone(),
            add_padding,
            raw,
        });
        let prefix = path
            .strip_prefix("/range/")
            .unwrap_or("")
            .to_ascii_uppercase();
        let body: String = s
            .entries
            .iter()
            .filter(|(h, _)| prefix.len() == 5 && h.starts_with(&prefix))
            .map(|(h, n)| format!("{}:{n}\r\n", &h[5..]))
            .collect();
        (s.mode, body)
    };
    let answer = match mode {
        RangeMode::Normal => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        RangeMode::Status(code) => format!(
            "HTTP/1.1 {code} Stand-in\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        RangeMode::Stall => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return;
        }
    };
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}
