//! The route limiter across instances (issue 16): three `regstack serve`
//! processes on one SQLite file (the counters in the shared database), a
//! limited route driven at a known offered rate over loopback, and `GET
//! /me` (not a limited route, but behind the same layer) with the limiter
//! on and off.
//!
//! The limited route is `/forgot-password` for unknown addresses: its
//! handler is cheap (no hash, no mail), so what is measured is the
//! limiter, not Argon2. Every request names a new address, so the per-IP
//! limit is the one that binds (all come from 127.0.0.1) and is measured
//! alone: the layer counts the IP first, so a request the address limit
//! refused would already have taken one of the IP's slots. The offered load is open-loop — `LANES` senders,
//! each on its own keep-alive connection to one instance (round-robin),
//! each on a fixed schedule — so a refusal does not slow the sender down
//! the way it would in a closed loop. The group allows `LIMIT_PER_SEC`
//! per second, and the generator offers `OFFER_FACTOR` times that; the
//! admitted rate over the measured window must come out at the limit.
//!
//! The window is the scenario's duration (10 s in a full run: "500/10
//! seconds"), and the admitted requests are counted over exactly one
//! window: a sliding window admits in bursts that repeat with its period,
//! so any stretch of one window's length holds the limit's count whatever
//! the phase. A longer window also keeps a real property of the database
//! counters out of the number: a request's timestamp is taken before its
//! transaction waits for the counter's lock, so it also counts hits that
//! requests stamped after it committed first — the effective window is the
//! configured one plus the lock wait, and the admitted rate errs low by
//! about wait ÷ window (some 9 % on a 1 s window on this 2-core machine
//! under a debug build, well under 1 % on per-minute windows).
//!
//! Bounded: loopback only, a fixed rate, a fixed duration (the scenario's
//! `--duration`), never a timed assertion in the test suite.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use http::{Method, StatusCode};
use serde_json::json;

use crate::load::{self, Conn, GroupResult, Op, Target};
use crate::proc::{self, Server};
use crate::report::{Run, Scenario};
use crate::{bench_clients, clean_command, group, measure, measured, prepare, random_secret, Cfg};

/// The configured limit of the driven group, requests per second.
pub const LIMIT_PER_SEC: u32 = 50;
/// Offered rate = this × the limit.
pub const OFFER_FACTOR: u32 = 4;
/// Open-loop senders (each with its own connection).
const LANES: usize = 12;
/// Instances on the one store.
pub const INSTANCES: usize = 3;

/// The limit's window, whole seconds: the scenario's duration.
pub fn window_secs(cfg: &Cfg) -> u32 {
    cfg.measure.as_secs_f64().round().clamp(1.0, 60.0) as u32
}

fn command(cfg: &Cfg, dir: &Path, url: &str, secret: &str, limiter: bool) -> std::process::Command {
    let window = window_secs(cfg);
    let mut cmd = clean_command(&cfg.server, dir);
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .env("REGSTACK_JWT_SECRET", secret)
        .env("REGSTACK_DATABASE_URL", url)
        .env("REGSTACK_REQUIRE_VERIFICATION", "false")
        .env(
            "REGSTACK_RATE_LIMIT_DISABLED",
            if limiter { "false" } else { "true" },
        )
        .env(
            "REGSTACK_RATE_LIMITS__FORGOT_PASSWORD",
            format!("{}/{window} seconds", LIMIT_PER_SEC * window),
        )
        // Only the driven group counts: the untimed preparation signs the
        // clients in from one address far faster than a person would.
        .env("REGSTACK_RATE_LIMITS__LOGIN", "1000/second")
        .env("REGSTACK_RATE_LIMITS__REGISTER", "1000/second")
        .envs(cfg.argon2.server_env());
    for (k, v) in &cfg.server_env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts the instances one after another (the first migrates).
async fn start(
    cfg: &Cfg,
    dir: &Path,
    url: &str,
    secret: &str,
    limiter: bool,
) -> Result<Vec<Server>> {
    let mut servers = Vec::new();
    for i in 0..INSTANCES {
        let tag = if limiter { "on" } else { "off" };
        let mut s = Server::spawn(
            &format!("instance {i} (limiter {tag})"),
            command(cfg, dir, url, secret, limiter),
            "listening on",
            &dir.join(format!("server-{tag}-{i}.log")),
        )?;
        let target = Target {
            addr: s.addr,
            prefix: "/api/auth".into(),
        };
        s.wait_ready(&target, "/readyz").await?;
        servers.push(s);
    }
    Ok(servers)
}

fn stop(servers: Vec<Server>) -> Result<()> {
    for s in servers {
        s.stop()?;
    }
    Ok(())
}

/// Offers `LIMIT_PER_SEC × OFFER_FACTOR` requests a second to the limited
/// route, spread over `targets`; returns the admitted requests of the
/// measured window (as a [`GroupResult`]: `ok` admitted, `errors`
/// anything but an admission or a 429) and the rate actually offered.
async fn flood(cfg: &Cfg, targets: &[Target]) -> (GroupResult, f64) {
    // Past the first window: the limit's first second admits a burst.
    let warmup = cfg.warmup.max(Duration::from_millis(1200));
    let start = Instant::now() + Duration::from_millis(50);
    let counted_from = start + warmup;
    let measure = Duration::from_secs(u64::from(window_secs(cfg)));
    let end = counted_from + measure;
    let offered = f64::from(LIMIT_PER_SEC * OFFER_FACTOR);
    let period = Duration::from_secs_f64(LANES as f64 / offered);
    let mut handles = Vec::new();
    for lane in 0..LANES {
        let target = targets[lane % targets.len()].clone();
        // Lanes start staggered, so the offered load is even in time.
        let first = start + period.mul_f64(lane as f64 / LANES as f64);
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::new(&target);
            let mut hist = load::new_hist();
            let (mut admitted, mut refused, mut errors, mut sent) = (0u64, 0u64, 0u64, 0u64);
            let mut samples = Vec::new();
            let mut next = first;
            let mut sent_any = 0u64;
            loop {
                let now = Instant::now();
                if next >= end {
                    break;
                }
                if next > now {
                    tokio::time::sleep(next - now).await;
                }
                // A late response skips the ticks it missed: the offered
                // rate reported is the one really sent.
                let t0 = Instant::now();
                while next <= t0 {
                    next += period;
                }
                let counted = t0 >= counted_from;
                sent_any += 1;
                let body = json!({ "email": format!("limited-{lane}-{sent_any}@example.com") });
                let r = conn
                    .send(
                        Method::POST,
                        &target.path("/forgot-password"),
                        None,
                        Some(&body),
                    )
                    .await;
                let t1 = Instant::now();
                if !counted || t1 > end {
                    continue;
                }
                sent += 1;
                match r {
                    Ok(r) if r.status.is_success() => {
                        admitted += 1;
                        let us = (t1 - t0).as_micros().max(1) as u64;
                        let _ = hist.record(us.min(120_000_000));
                    }
                    Ok(r) if r.status == StatusCode::TOO_MANY_REQUESTS => refused += 1,
                    Ok(r) => {
                        errors += 1;
                        if samples.len() < 3 {
                            samples.push(format!("HTTP {}", r.status.as_u16()));
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if samples.len() < 3 {
                            samples.push(format!("{e:#}"));
                        }
                    }
                }
            }
            (admitted, refused, errors, sent, hist, samples)
        }));
    }
    let mut res = GroupResult {
        ok: 0,
        errors: 0,
        secs: measure.as_secs_f64(),
        hist: load::new_hist(),
        samples: Vec::new(),
    };
    let mut sent_total = 0u64;
    for h in handles {
        match h.await {
            Ok((admitted, _refused, errors, sent, hist, samples)) => {
                res.ok += admitted;
                res.errors += errors;
                sent_total += sent;
                let _ = res.hist.add(&hist);
                for s in samples {
                    if res.samples.len() < 5 && !res.samples.contains(&s) {
                        res.samples.push(s);
                    }
                }
            }
            Err(e) => {
                res.errors += 1;
                res.samples.push(format!("sender failed: {e}"));
            }
        }
    }
    (res, sent_total as f64 / measure.as_secs_f64())
}

/// Both runs: limiter off (`/me` only) and on (`/me`, then the flood).
/// Also returns the rate really offered to the limited route.
pub async fn run(cfg: &Cfg, dir: &Path) -> Result<(Run, Run, f64)> {
    let url = format!("sqlite:{}", dir.join("bench.db").display());
    let secret = random_secret();

    let off = start(cfg, dir, &url, &secret, false).await?;
    let target = |s: &Server| Target {
        addr: s.addr,
        prefix: "/api/auth".into(),
    };
    let idle_off = off[0].rss().map(|m| m.rss_kib).unwrap_or(0);
    let mut clients = bench_clients(cfg.clients, "limiter");
    eprintln!(
        "bench: limiter: registering and signing in {} users",
        clients.len()
    );
    prepare(&target(&off[0]), &mut clients, true).await?;
    eprintln!("bench: limiter off: GET /me");
    let (mut res, peak, cpu) = measure(
        cfg,
        &off[0],
        &target(&off[0]),
        vec![group(Op::Me, &clients, "me")],
    )
    .await;
    let off_run = Run {
        name: format!("ours ×{INSTANCES} (SQLite), limiter off"),
        idle_kib: idle_off,
        after_kib: off[0].rss().map(|m| m.rss_kib).unwrap_or(0),
        rows: vec![measured(Scenario::LimiterMe, res.remove(0), peak, cpu)],
        log: off[0].log.clone(),
    };
    stop(off)?;

    // The same database and secret: the sessions signed in above stay.
    let on = start(cfg, dir, &url, &secret, true).await?;
    let idle_on = on[0].rss().map(|m| m.rss_kib).unwrap_or(0);
    eprintln!("bench: limiter on: GET /me");
    let (mut res, peak, cpu) = measure(
        cfg,
        &on[0],
        &target(&on[0]),
        vec![group(Op::Me, &clients, "me")],
    )
    .await;
    let mut rows = vec![measured(Scenario::LimiterMe, res.remove(0), peak, cpu)];
    eprintln!(
        "bench: limiter on: /forgot-password at {} req/s over {INSTANCES} instances, limit {}/{} s",
        LIMIT_PER_SEC * OFFER_FACTOR,
        LIMIT_PER_SEC * window_secs(cfg),
        window_secs(cfg)
    );
    let targets: Vec<Target> = on.iter().map(target).collect();
    let cpu = proc::CpuMeter::start_many(on.iter().map(|s| s.pid).collect());
    let (admitted, offered) = flood(cfg, &targets).await;
    let cpu = cpu.finish();
    let peak = on
        .iter()
        .filter_map(|s| s.rss().ok())
        .map(|m| m.hwm_kib)
        .max()
        .unwrap_or(0);
    rows.push(measured(Scenario::LimiterAdmitted, admitted, peak, cpu));
    let on_run = Run {
        name: format!("ours ×{INSTANCES} (SQLite), limiter on"),
        idle_kib: idle_on,
        after_kib: on[0].rss().map(|m| m.rss_kib).unwrap_or(0),
        rows,
        log: on[0].log.clone(),
    };
    stop(on)?;
    Ok((off_run, on_run, offered))
}
