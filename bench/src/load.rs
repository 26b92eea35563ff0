//! The load generator: closed-loop clients on keep-alive HTTP/1.1
//! connections (hyper's bare client connection, so the generator itself
//! costs as little CPU as possible on a machine it shares with the server).
//!
//! Every client runs one operation in a loop until the scenario's end.
//! Requests that complete during the warm-up are not counted; the rest are
//! recorded in an HDR histogram (microseconds). A response with an
//! unexpected status, a body that does not parse where it must, and a
//! transport error are errors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// Where the API under test lives.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The API prefix, e.g. `/api/auth`.
    pub prefix: String,
}

impl Target {
    pub fn path(&self, route: &str) -> String {
        format!("{}{route}", self.prefix)
    }
}

/// One keep-alive connection that reconnects after a transport error.
pub struct Conn {
    target: Target,
    host: String,
    sender: Option<http1::SendRequest<Full<Bytes>>>,
}

/// A finished exchange.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {}, body is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn str_field(&self, name: &str) -> Result<String> {
        self.json()?
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow!(
                    "status {}, no `{name}` in {}",
                    self.status,
                    String::from_utf8_lossy(&self.body)
                )
            })
    }

    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(160).collect();
        format!("HTTP {}: {body}", self.status.as_u16())
    }
}

impl Conn {
    pub fn new(target: &Target) -> Self {
        Self {
            target: target.clone(),
            host: target.addr.to_string(),
            sender: None,
        }
    }

    async fn sender(&mut self) -> Result<&mut http1::SendRequest<Full<Bytes>>> {
        if let Some(s) = &mut self.sender {
            // A connection the server closed while idle is replaced
            // silently: that is keep-alive housekeeping, not a failure.
            if s.ready().await.is_err() {
                self.sender = None;
            }
        }
        if self.sender.is_none() {
            let stream = TcpStream::connect(self.target.addr)
                .await
                .with_context(|| format!("connect {}", self.target.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| anyhow!("no connection"))
    }

    /// Sends one request; any transport failure drops the connection.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::ACCEPT, "application/json");
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(payload))?;
        let sender = self.sender().await?;
        let result = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(Reply { status, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// What a client does in its loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    LoginOk,
    LoginWrong,
    Register,
    Me,
    Refresh,
    /// The ceiling's cheapest durable write: one autocommit UPDATE.
    RefreshMinimal,
}

/// One client's identity and tokens.
#[derive(Clone, Debug)]
pub struct Client {
    pub email: String,
    pub password: String,
    pub access: Option<String>,
    pub refresh: Option<String>,
}

/// A group of clients doing the same thing; a scenario runs one or more
/// groups at once.
pub struct Group {
    pub op: Op,
    pub clients: Vec<Client>,
    /// Distinguishes the addresses a `Register` group invents.
    pub tag: String,
}

/// A group's measurements.
pub struct GroupResult {
    pub ok: u64,
    pub errors: u64,
    pub secs: f64,
    pub hist: Histogram<u64>,
    /// The first few distinct error descriptions.
    pub samples: Vec<String>,
}

impl GroupResult {
    pub fn rps(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Latency at `q` (0..1) in milliseconds, of successful requests.
    pub fn ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }
}

pub fn new_hist() -> Histogram<u64> {
    // 1 µs .. 120 s at 3 significant figures.
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

pub const PASSWORD: &str = "correct-horse-battery-staple";
pub const WRONG_PASSWORD: &str = "incorrect-horse-battery-staple";

/// Expected outcome of one operation.
async fn once(
    conn: &mut Conn,
    target: &Target,
    op: Op,
    client: &mut Client,
    tag: &str,
    n: u64,
) -> Result<()> {
    let check = |reply: &Reply, want: fn(StatusCode) -> bool| -> Result<()> {
        if want(reply.status) {
            Ok(())
        } else {
            bail!("{}", reply.describe())
        }
    };
    match op {
        Op::LoginOk | Op::LoginWrong => {
            let password = if op == Op::LoginOk {
                client.password.as_str()
            } else {
                WRONG_PASSWORD
            };
            let reply = conn
                .send(
                    Method::POST,
                    &target.path("/login"),
                    None,
                    Some(&json!({"email": client.email, "password": password})),
                )
                .await?;
            if op == Op::LoginOk {
                check(&reply, |s| s.is_success())?;
                reply.str_field("access_token").map(|_| ())
            } else {
                check(&reply, |s| s == StatusCode::UNAUTHORIZED)
            }
        }
        Op::Register => {
            let email = format!("{tag}-{n}@example.com");
            let reply = conn
                .send(
                    Method::POST,
                    &target.path("/register"),
                    None,
                    Some(&json!({"email": email, "password": PASSWORD})),
                )
                .await?;
            check(&reply, |s| s.is_success())
        }
        Op::Me => {
            let reply = conn
                .send(
                    Method::GET,
                    &target.path("/me"),
                    client.access.as_deref(),
                    None,
                )
                .await?;
            check(&reply, |s| s.is_success())?;
            // Both servers answer with the user's public fields.
            reply.str_field("email").map(|_| ())
        }
        Op::Refresh | Op::RefreshMinimal => {
            let token = client.refresh.clone().unwrap_or_default();
            let route = match op {
                Op::RefreshMinimal => "/refresh-minimal",
                _ => "/refresh",
            };
            let reply = conn
                .send(
                    Method::POST,
                    &target.path(route),
                    None,
                    Some(&json!({"refresh_token": token})),
                )
                .await?;
            check(&reply, |s| s.is_success())?;
            client.refresh = Some(reply.str_field("refresh_token")?);
            Ok(())
        }
    }
}

/// Logs `client` in (untimed) and stores its tokens.
pub async fn login(conn: &mut Conn, target: &Target, client: &mut Client) -> Result<()> {
    let reply = conn
        .send(
            Method::POST,
            &target.path("/login"),
            None,
            Some(&json!({"email": client.email, "password": client.password})),
        )
        .await?;
    if !reply.status.is_success() {
        bail!("login {}: {}", client.email, reply.describe());
    }
    client.access = Some(reply.str_field("access_token")?);
    client.refresh = reply.str_field("refresh_token").ok();
    Ok(())
}

/// Registers `client` (untimed). An existing account is fine.
pub async fn register(conn: &mut Conn, target: &Target, client: &Client) -> Result<()> {
    let reply = conn
        .send(
            Method::POST,
            &target.path("/register"),
            None,
            Some(&json!({"email": client.email, "password": client.password})),
        )
        .await?;
    if reply.status.is_success() || reply.status == StatusCode::CONFLICT {
        Ok(())
    } else {
        bail!("register {}: {}", client.email, reply.describe())
    }
}

/// Runs every group at once for `warmup + measure` and returns one
/// result per group.
pub async fn run(
    target: &Target,
    groups: Vec<Group>,
    warmup: Duration,
    measure: Duration,
) -> Vec<GroupResult> {
    let start = Instant::now();
    let counted_from = start + warmup;
    let end = counted_from + measure;
    let mut handles = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (ci, client) in g.clients.iter().enumerate() {
            let target = target.clone();
            let mut client = client.clone();
            let op = g.op;
            let tag = format!("{}-{ci}", g.tag);
            handles.push((
                gi,
                tokio::spawn(async move {
                    let mut conn = Conn::new(&target);
                    let mut hist = new_hist();
                    let (mut ok, mut errors, mut samples) = (0u64, 0u64, Vec::<String>::new());
                    let mut n = 0u64;
                    loop {
                        let t0 = Instant::now();
                        if t0 >= end {
                            break;
                        }
                        n += 1;
                        let outcome = once(&mut conn, &target, op, &mut client, &tag, n).await;
                        let t1 = Instant::now();
                        if t1 > end {
                            break;
                        }
                        let counted = t1 >= counted_from;
                        match outcome {
                            Ok(()) => {
                                if counted {
                                    ok += 1;
                                    let us = (t1 - t0).as_micros().max(1) as u64;
                                    let _ = hist.record(us.min(120_000_000));
                                }
                            }
                            Err(e) => {
                                // Errors count whenever they happen: a broken
                                // warm-up is still broken.
                                errors += 1;
                                let text = format!("{e:#}");
                                if samples.len() < 3 && !samples.contains(&text) {
                                    samples.push(text);
                                }
                                if matches!(op, Op::Refresh | Op::RefreshMinimal) {
                                    // The rotation chain is broken: start a
                                    // new session (untimed) and go on.
                                    let _ = login(&mut conn, &target, &mut client).await;
                                }
                                // Do not spin on a dead server.
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                        }
                    }
                    (ok, errors, hist, samples)
                }),
            ));
        }
    }
    let mut results: Vec<GroupResult> = groups
        .iter()
        .map(|_| GroupResult {
            ok: 0,
            errors: 0,
            secs: measure.as_secs_f64(),
            hist: new_hist(),
            samples: Vec::new(),
        })
        .collect();
    for (gi, h) in handles {
        let r = &mut results[gi];
        match h.await {
            Ok((ok, errors, hist, samples)) => {
                r.ok += ok;
                r.errors += errors;
                let _ = r.hist.add(&hist);
                for s in samples {
                    if r.samples.len() < 5 && !r.samples.contains(&s) {
                        r.samples.push(s);
                    }
                }
            }
            Err(e) => {
                r.errors += 1;
                r.samples.push(format!("client task failed: {e}"));
            }
        }
    }
    results
}
