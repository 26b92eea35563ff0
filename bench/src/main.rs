//! `regstack-bench`: the load benchmark behind `cargo xtask bench`.
//!
//! In one run it measures the Argon2 floor on all cores, then starts the
//! `regstack` server (SQLite; PostgreSQL when the build and the machine
//! have it), a minimal axum `/me` ceiling, and regstack 0.9.3 (Python, one
//! uvicorn worker), drives each over loopback with the same closed-loop
//! load generator, and prints one table with the targets' verdicts.
//! `--smoke` is the one-second version for CI: debug build, no regstack,
//! no PostgreSQL, cheap Argon2 parameters; it fails only if a scenario of
//! ours has errors.

mod ceiling;
mod floor;
mod limiter;
mod load;
mod postgres;
mod proc;
mod regstack_py;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use rand::Rng;

use crate::floor::Argon2Params;
use crate::load::{Client, Group, GroupResult, Op, Target};
use crate::proc::{CpuUse, Server};
use crate::report::{Outcome, Report, Row, Run, Scenario};

#[derive(Parser)]
#[command(
    name = "regstack-bench",
    about = "Load benchmark: regstack-rs vs the Argon2 floor, a minimal axum /me and regstack 0.9.3"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Sub>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand)]
enum Sub {
    /// Serve the minimal `/me` ceiling (started by the benchmark itself;
    /// the JWT secret comes from $BENCH_CEILING_SECRET).
    #[command(hide = true)]
    Ceiling {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value_t = 1000)]
        users: u32,
    },
}

#[derive(Args, Clone, Debug)]
pub struct Opts {
    /// The `regstack` server binary (default: next to this one).
    #[arg(long)]
    server: Option<PathBuf>,
    /// One-second CI smoke: no regstack, no PostgreSQL, cheap Argon2.
    #[arg(long)]
    smoke: bool,
    /// Concurrent clients per scenario.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Measured seconds per scenario (default 10; smoke 1).
    #[arg(long)]
    duration: Option<f64>,
    /// Uncounted warm-up seconds before each scenario (default 1; smoke 0.2).
    #[arg(long)]
    warmup: Option<f64>,
    /// `/me` clients beside the login flood in the mixed scenario.
    #[arg(long, default_value_t = 4)]
    mixed_me_clients: usize,
    /// Threads of the load generator (1 leaves the most CPU to the server).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Skip regstack 0.9.3.
    #[arg(long)]
    no_regstack: bool,
    /// Skip PostgreSQL.
    #[arg(long)]
    no_postgres: bool,
    /// Write the report to `DIR/<date>-<machine>.txt` as well.
    #[arg(long)]
    results_dir: Option<PathBuf>,
    /// Scratch space: databases, logs, the virtualenv (default target/bench).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Argon2 memory in KiB (default 65536; smoke 19456).
    #[arg(long)]
    argon2_m: Option<u32>,
    /// Argon2 iterations (default 3; smoke 2).
    #[arg(long)]
    argon2_t: Option<u32>,
    /// Argon2 lanes (default 4; smoke 1).
    #[arg(long)]
    argon2_p: Option<u32>,
    /// The server's `password.max_concurrent_hashes` (default: cores).
    #[arg(long)]
    hash_bound: Option<usize>,
    /// Extra environment for our server, KEY=VALUE (repeatable): for
    /// diagnosis, e.g. `RUST_LOG=warn` or `MALLOC_ARENA_MAX=2`.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
    /// Run only these scenarios (for diagnosis), comma-separated:
    /// login-ok, login-wrong, register, me, refresh, mixed, limiter.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Settings resolved from [`Opts`].
#[derive(Clone, Debug)]
pub struct Cfg {
    pub smoke: bool,
    pub clients: usize,
    pub mixed_me_clients: usize,
    pub client_threads: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub floor_secs: f64,
    pub argon2: Argon2Params,
    pub cores: usize,
    pub hash_bound: usize,
    pub server: PathBuf,
    pub work: PathBuf,
    pub server_env: Vec<(String, String)>,
    pub only: Vec<String>,
}

impl Cfg {
    fn wants(&self, s: Scenario) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == s.key())
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn resolve(o: &Opts) -> Result<Cfg> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = match &o.server {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("regstack"))
            .context("no directory for the server binary")?,
    };
    if !server.is_file() {
        bail!(
            "server binary {} not found (build it: cargo build --release -p regstack)",
            server.display()
        );
    }
    let server = server.canonicalize()?;
    let work = o
        .work_dir
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/bench"));
    std::fs::create_dir_all(&work)?;
    let work = work.canonicalize()?;
    let (m, t, p) = if o.smoke {
        (19456, 2, 1) // the OWASP floor: a smoke checks plumbing, not speed
    } else {
        (65536, 3, 4) // regstack's (and regstack-rs's) defaults
    };
    Ok(Cfg {
        smoke: o.smoke,
        clients: o.clients.max(1),
        mixed_me_clients: o.mixed_me_clients.max(1),
        client_threads: o.client_threads.max(1),
        warmup: Duration::from_secs_f64(o.warmup.unwrap_or(if o.smoke { 0.2 } else { 1.0 })),
        measure: Duration::from_secs_f64(o.duration.unwrap_or(if o.smoke { 1.0 } else { 10.0 })),
        floor_secs: if o.smoke { 1.0 } else { 5.0 },
        argon2: Argon2Params {
            m_kib: o.argon2_m.unwrap_or(m),
            t: o.argon2_t.unwrap_or(t),
            p: o.argon2_p.unwrap_or(p),
        },
        cores,
        hash_bound: o.hash_bound.unwrap_or(cores).max(1),
        server,
        work,
        server_env: o
            .server_env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
                None => bail!("--server-env wants KEY=VALUE, got {kv}"),
            })
            .collect::<Result<_>>()?,
        only: o.only.clone(),
    })
}

fn random_secret() -> String {
    let mut rng = rand::thread_rng();
    (0..48)
        .map(|_| {
            let i = rng.gen_range(0..62u8);
            (match i {
                0..=9 => b'0' + i,
                10..=35 => b'a' + i - 10,
                _ => b'A' + i - 36,
            }) as char
        })
        .collect()
}

/// A command with a clean environment: no inherited `REGSTACK_*`,
/// `RUST_LOG` or configuration file, so every run configures the same.
fn clean_command(program: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir).env_clear();
    for var in ["PATH", "HOME", "LANG", "TMPDIR"] {
        if let Ok(v) = std::env::var(var) {
            cmd.env(var, v);
        }
    }
    cmd
}

fn ours_command(cfg: &Cfg, dir: &Path, database_url: &str) -> Command {
    let mut cmd = clean_command(&cfg.server, dir);
    cmd.args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .env("REGSTACK_JWT_SECRET", random_secret())
        .env("REGSTACK_DATABASE_URL", database_url)
        .env("REGSTACK_RATE_LIMIT_DISABLED", "true")
        .env("REGSTACK_REQUIRE_VERIFICATION", "false")
        .envs(cfg.argon2.server_env())
        .env(
            "REGSTACK_PASSWORD__MAX_CONCURRENT_HASHES",
            cfg.hash_bound.to_string(),
        );
    for (k, v) in &cfg.server_env {
        cmd.env(k, v);
    }
    cmd
}

fn fresh_dir(cfg: &Cfg, name: &str) -> Result<PathBuf> {
    let dir = cfg.work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn bench_clients(n: usize, prefix: &str) -> Vec<Client> {
    (0..n)
        .map(|i| Client {
            email: format!("{prefix}-{i}@example.com"),
            password: load::PASSWORD.to_owned(),
            access: None,
            refresh: None,
        })
        .collect()
}

/// Registers then logs in every client (untimed, a few at a time so a
/// single-worker server is not flooded).
async fn prepare(target: &Target, clients: &mut [Client], register: bool) -> Result<()> {
    for chunk in clients.chunks_mut(4) {
        let mut set = tokio::task::JoinSet::new();
        for c in chunk.iter() {
            let target = target.clone();
            let mut c = c.clone();
            set.spawn(async move {
                let mut conn = load::Conn::new(&target);
                if register {
                    load::register(&mut conn, &target, &c).await?;
                }
                load::login(&mut conn, &target, &mut c).await?;
                anyhow::Ok(c)
            });
        }
        let mut done = Vec::new();
        while let Some(r) = set.join_next().await {
            done.push(r??);
        }
        for c in chunk.iter_mut() {
            if let Some(d) = done.iter().find(|d| d.email == c.email) {
                *c = d.clone();
            }
        }
    }
    Ok(())
}

/// Runs `groups` against `server`, sampling its memory.
async fn measure(
    cfg: &Cfg,
    server: &Server,
    target: &Target,
    groups: Vec<Group>,
) -> (Vec<GroupResult>, u64, CpuUse) {
    let reset = server.reset_peak();
    let sampler = proc::RssSampler::start(server.pid);
    let cpu = proc::CpuMeter::start(server.pid);
    let results = load::run(target, groups, cfg.warmup, cfg.measure).await;
    let cpu = cpu.finish();
    let sampled = sampler.finish();
    let hwm = if reset {
        server.rss().map(|m| m.hwm_kib).unwrap_or(0)
    } else {
        0
    };
    (results, sampled.max(hwm), cpu)
}

fn group(op: Op, clients: &[Client], tag: &str) -> Group {
    Group {
        op,
        clients: clients.to_vec(),
        tag: tag.to_owned(),
    }
}

fn measured(scenario: Scenario, res: GroupResult, peak_kib: u64, cpu: CpuUse) -> Row {
    Row {
        scenario,
        outcome: Outcome::Measured { res, peak_kib, cpu },
    }
}

fn na(scenario: Scenario, why: impl Into<String>) -> Row {
    Row {
        scenario,
        outcome: Outcome::NotApplicable(why.into()),
    }
}

/// Idle memory: after start-up settles, before any request but the
/// readiness probe.
async fn idle_kib(server: &Server) -> u64 {
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.rss().map(|m| m.rss_kib).unwrap_or(0)
}

/// Every scenario against one account server (ours or regstack).
async fn account_scenarios(
    cfg: &Cfg,
    server: &mut Server,
    target: &Target,
    name: &str,
    no_refresh_reason: &str,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut clients = bench_clients(cfg.clients, "bench");
    eprintln!(
        "bench: {name}: registering and signing in {} users",
        clients.len()
    );
    prepare(target, &mut clients, true).await?;
    let has_refresh = clients.iter().all(|c| c.refresh.is_some());

    let plan: [(Scenario, Op); 5] = [
        (Scenario::LoginOk, Op::LoginOk),
        (Scenario::LoginWrong, Op::LoginWrong),
        (Scenario::Register, Op::Register),
        (Scenario::Me, Op::Me),
        (Scenario::Refresh, Op::Refresh),
    ];
    for (scenario, op) in plan {
        if !cfg.wants(scenario) {
            continue;
        }
        if !server.alive() {
            rows.push(na(scenario, "the server died (see its log)"));
            continue;
        }
        if op == Op::Refresh {
            if !has_refresh {
                rows.push(na(scenario, no_refresh_reason));
                continue;
            }
            // A fresh session per client, so every chain starts clean.
            prepare(target, &mut clients, false).await?;
        }
        eprintln!("bench: {name}: {}", scenario.label());
        let tag = format!("reg-{}", rand::thread_rng().gen::<u32>());
        let (mut res, peak, cpu) =
            measure(cfg, server, target, vec![group(op, &clients, &tag)]).await;
        rows.push(measured(scenario, res.remove(0), peak, cpu));
    }

    if cfg.wants(Scenario::MixedLogin) && server.alive() {
        eprintln!("bench: {name}: mixed (login flood + GET /me)");
        let me_clients: Vec<Client> = clients
            .iter()
            .cycle()
            .take(cfg.mixed_me_clients)
            .cloned()
            .collect();
        let (mut res, peak, cpu) = measure(
            cfg,
            server,
            target,
            vec![
                group(Op::LoginOk, &clients, "mixed"),
                group(Op::Me, &me_clients, "mixed"),
            ],
        )
        .await;
        let me = res.remove(1);
        let login = res.remove(0);
        rows.push(measured(Scenario::MixedLogin, login, peak, cpu));
        rows.push(measured(Scenario::MixedMe, me, peak, cpu));
    } else if cfg.wants(Scenario::MixedLogin) {
        rows.push(na(Scenario::MixedLogin, "the server died (see its log)"));
        rows.push(na(Scenario::MixedMe, "the server died (see its log)"));
    }
    Ok(rows)
}

async fn run_ours(cfg: &Cfg, name: &str, dir: &Path, database_url: &str) -> Result<Run> {
    let mut server = Server::spawn(
        name,
        ours_command(cfg, dir, database_url),
        "listening on",
        &dir.join("server.log"),
    )?;
    let target = Target {
        addr: server.addr,
        prefix: "/api/auth".into(),
    };
    server.wait_ready(&target, "/healthz").await?;
    let idle = idle_kib(&server).await;
    let rows = account_scenarios(
        cfg,
        &mut server,
        &target,
        name,
        "this build's login returns no refresh_token (POST /refresh not there yet)",
    )
    .await?;
    let after = server.rss().map(|m| m.rss_kib).unwrap_or(0);
    let log = server.log.clone();
    server.stop()?;
    Ok(Run {
        name: name.to_owned(),
        idle_kib: idle,
        after_kib: after,
        rows,
        log,
    })
}

async fn run_ceiling(cfg: &Cfg) -> Result<Run> {
    let dir = fresh_dir(cfg, "ceiling")?;
    let secret = random_secret();
    let exe = std::env::current_exe()?;
    let mut cmd = clean_command(&exe, &dir);
    cmd.args(["ceiling", "--db"])
        .arg(dir.join("ceiling.db"))
        .args(["--users", "1000"])
        .env("BENCH_CEILING_SECRET", &secret);
    let mut server = Server::spawn(
        "axum ceiling",
        cmd,
        "ceiling listening on",
        &dir.join("server.log"),
    )?;
    let target = Target {
        addr: server.addr,
        prefix: "/api/auth".into(),
    };
    server.wait_ready(&target, "/healthz").await?;
    let idle = idle_kib(&server).await;
    let clients = (1..=cfg.clients as u32)
        .map(|i| {
            Ok(Client {
                email: ceiling::email(i),
                password: String::new(),
                access: Some(ceiling::token(&secret, i)?),
                refresh: Some(ceiling::seed_refresh(i)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    let mut clients = clients;
    for (scenario, op) in [
        (Scenario::Me, Op::Me),
        (Scenario::Refresh, Op::Refresh),
        (Scenario::RefreshMinimal, Op::RefreshMinimal),
    ] {
        if !cfg.wants(scenario) {
            continue;
        }
        eprintln!("bench: axum ceiling: {}", scenario.label());
        let (mut res, peak, cpu) =
            measure(cfg, &server, &target, vec![group(op, &clients, "ceiling")]).await;
        rows.push(measured(scenario, res.remove(0), peak, cpu));
        if op != Op::Me {
            // The seeds are spent: continue each chain from a fresh token.
            for (i, c) in clients.iter_mut().enumerate() {
                c.refresh = Some(ceiling::reseed_token(&target, i as u32 + 1).await?);
            }
        }
    }
    let after = server.rss().map(|m| m.rss_kib).unwrap_or(0);
    let log = server.log.clone();
    server.stop()?;
    Ok(Run {
        name: "axum ceiling".into(),
        idle_kib: idle,
        after_kib: after,
        rows,
        log,
    })
}

async fn run_regstack(cfg: &Cfg) -> Result<(Run, String)> {
    let venv = regstack_py::ensure(&cfg.work.join("regstack-venv"))?;
    let dir = fresh_dir(cfg, "regstack")?;
    let app = dir.join("host.py");
    std::fs::write(&app, regstack_py::HOST_APP)?;
    let mut cmd = clean_command(&venv.python, &dir);
    cmd.arg(&app)
        .env("REGSTACK_JWT_SECRET", random_secret())
        .env(
            "REGSTACK_DATABASE_URL",
            format!("sqlite+aiosqlite:///{}", dir.join("regstack.db").display()),
        )
        .env("REGSTACK_RATE_LIMIT_DISABLED", "true")
        .env("REGSTACK_REQUIRE_VERIFICATION", "false")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let name = format!("regstack {}", regstack_py::VERSION);
    let mut server = Server::spawn(&name, cmd, "listening on", &dir.join("server.log"))?;
    let target = Target {
        addr: server.addr,
        prefix: "/api/auth".into(),
    };
    server.wait_ready(&target, "/api/auth/me").await?;
    let idle = idle_kib(&server).await;
    let rows = account_scenarios(
        cfg,
        &mut server,
        &target,
        &name,
        "regstack 0.9.3 has no refresh tokens",
    )
    .await?;
    let after = server.rss().map(|m| m.rss_kib).unwrap_or(0);
    let log = server.log.clone();
    server.stop()?;
    Ok((
        Run {
            name,
            idle_kib: idle,
            after_kib: after,
            rows,
            log,
        },
        venv.versions,
    ))
}

fn command_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> report::Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let host = read("/proc/sys/kernel/hostname").trim().to_owned();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default();
    report::Machine {
        host: if host.is_empty() {
            "unknown".into()
        } else {
            host
        },
        cpu,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_gib: mem_kib as f64 / 1024.0 / 1024.0,
        kernel,
        os,
    }
}

async fn bench(cfg: Cfg, opts: &Opts) -> Result<Report> {
    let started = chrono::Utc::now();
    let server_version = command_line(&cfg.server, &["--version"])
        .unwrap_or_else(|| "regstack (unknown version)".into());
    let profile = if cfg.server.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else {
        "debug"
    };
    let rustc = command_line(Path::new("rustc"), &["--version"]).unwrap_or_default();

    eprintln!(
        "bench: Argon2 floor (m={} KiB, t={}, p={}) on {} threads for {} s",
        cfg.argon2.m_kib, cfg.argon2.t, cfg.argon2.p, cfg.cores, cfg.floor_secs
    );
    let argon2 = cfg.argon2;
    let (cores, secs) = (cfg.cores, cfg.floor_secs);
    let floor = tokio::task::spawn_blocking(move || {
        floor::measure(argon2, cores, Duration::from_secs_f64(secs))
    })
    .await??;

    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    let mut fatal = Vec::new();

    let dir = fresh_dir(&cfg, "ours-sqlite")?;
    let url = format!("sqlite:{}", dir.join("bench.db").display());
    match run_ours(&cfg, "ours (SQLite)", &dir, &url).await {
        Ok(r) => runs.push(r),
        Err(e) => fatal.push(format!("ours (SQLite): {e:#}")),
    }

    // The floor again right after our SQLite run, so the two measurements
    // bracket the login scenarios (a shared VM's speed drifts over
    // minutes). Other work on the machine can only make a floor look
    // lower, so the higher of the two is the one logins are judged
    // against.
    let floor_after = if cfg.smoke {
        None
    } else {
        eprintln!("bench: Argon2 floor again");
        let (cores, secs) = (cfg.cores, cfg.floor_secs);
        Some(
            tokio::task::spawn_blocking(move || {
                floor::measure(argon2, cores, Duration::from_secs_f64(secs))
            })
            .await??,
        )
    };

    if cfg.wants(Scenario::Me) || cfg.wants(Scenario::Refresh) {
        match run_ceiling(&cfg).await {
            Ok(r) => runs.push(r),
            Err(e) => fatal.push(format!("axum ceiling: {e:#}")),
        }
    }

    let mut limiter_offered = None;
    if cfg.wants(Scenario::LimiterMe) {
        let dir = fresh_dir(&cfg, "ours-limiter")?;
        match limiter::run(&cfg, &dir).await {
            Ok((off, on, offered)) => {
                runs.push(off);
                runs.push(on);
                limiter_offered = Some(offered);
            }
            Err(e) => fatal.push(format!("limiter (3 instances): {e:#}")),
        }
    }

    if cfg.smoke || opts.no_postgres {
        skipped.push((
            "ours (PostgreSQL)".to_owned(),
            "skipped in this run".to_owned(),
        ));
    } else {
        let dir = fresh_dir(&cfg, "ours-postgres")?;
        match postgres::unavailable(&cfg.server, &dir) {
            Some(why) => skipped.push(("ours (PostgreSQL)".to_owned(), why)),
            None => match postgres::Cluster::start(&cfg.work.join("postgres")) {
                Ok(cluster) => {
                    match run_ours(&cfg, "ours (PostgreSQL)", &dir, &cluster.url).await {
                        Ok(r) => runs.push(r),
                        Err(e) => fatal.push(format!("ours (PostgreSQL): {e:#}")),
                    }
                    drop(cluster);
                }
                Err(e) => skipped.push((
                    "ours (PostgreSQL)".to_owned(),
                    format!("could not start PostgreSQL: {e:#}"),
                )),
            },
        }
    }

    let mut regstack_versions = None;
    if cfg.smoke || opts.no_regstack {
        skipped.push((
            format!("regstack {}", regstack_py::VERSION),
            "skipped in this run".to_owned(),
        ));
    } else {
        match run_regstack(&cfg).await {
            Ok((r, v)) => {
                runs.push(r);
                regstack_versions = Some(v);
            }
            Err(e) => skipped.push((
                format!("regstack {}", regstack_py::VERSION),
                format!("could not run: {e:#}"),
            )),
        }
    }

    Ok(Report {
        started,
        finished: chrono::Utc::now(),
        machine: machine(),
        server_version,
        profile: profile.into(),
        rustc,
        regstack_versions,
        cfg,
        floor,
        floor_after,
        runs,
        skipped,
        fatal,
        limiter_offered,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("regstack-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    if let Some(Sub::Ceiling { db, users }) = cli.cmd {
        let secret = std::env::var("BENCH_CEILING_SECRET").context("BENCH_CEILING_SECRET")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(ceiling::serve(&db, &secret, users))?;
        return Ok(ExitCode::SUCCESS);
    }
    let opts = cli.opts;
    let cfg = resolve(&opts)?;
    let rt = if cfg.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.client_threads)
            .enable_all()
            .build()?
    };
    let report = rt.block_on(bench(cfg, &opts))?;
    let text = report.render();
    println!("{text}");
    if let Some(dir) = &opts.results_dir {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(report.file_name());
        std::fs::write(&path, &text).with_context(|| format!("write {}", path.display()))?;
        eprintln!("bench: report saved to {}", path.display());
    }
    let broken = report.broken();
    if broken.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for b in &broken {
            eprintln!("regstack-bench: broken: {b}");
        }
        Ok(ExitCode::FAILURE)
    }
}
