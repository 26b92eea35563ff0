//! PostgreSQL for the benchmark, when this machine has it and the server
//! build supports it: a throwaway cluster under the build directory, run
//! as an unprivileged user when we are root (initdb refuses root),
//! listening on 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Why PostgreSQL is skipped, or `None` if it can run.
pub fn unavailable(server: &Path, workdir: &Path) -> Option<String> {
    // Ask the server build first: a cheap `migrate` against a closed port.
    let mut cmd = Command::new(server);
    cmd.arg("migrate")
        .current_dir(workdir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env(
            "REGSTACK_JWT_SECRET",
            "bench-probe-secret-bench-probe-secret-0123456789",
        )
        .env(
            "REGSTACK_DATABASE_URL",
            "postgres://bench@127.0.0.1:1/bench?connect_timeout=2",
        )
        .stdin(Stdio::null());
    let out = match run_with_timeout(cmd, Duration::from_secs(30)) {
        Ok(o) => o,
        Err(e) => return Some(format!("cannot probe the server: {e:#}")),
    };
    let text = out.to_lowercase();
    if text.contains("later version") || text.contains("unsupported scheme") {
        let line = out
            .lines()
            .find(|l| l.contains("database_url"))
            .unwrap_or("no PostgreSQL backend")
            .trim()
            .to_owned();
        return Some(format!(
            "this server build has no PostgreSQL backend ({line})"
        ));
    }
    for tool in ["initdb", "postgres", "psql"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Runs `cmd`, returns stdout + stderr; kills it after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<String> {
    let dir = std::env::temp_dir();
    let out_path = dir.join(format!("regstack-bench-probe-{}.log", std::process::id()));
    let f = std::fs::File::create(&out_path)?;
    cmd.stdout(f.try_clone()?).stderr(f);
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    Ok(text)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A running throwaway cluster; stopped on drop.
pub struct Cluster {
    data: PathBuf,
    pub url: String,
    as_user: Option<&'static str>,
}

fn as_user(user: Option<&str>, program: &str) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", program]);
            c
        }
        None => Command::new(program),
    }
}

impl Cluster {
    pub fn start(dir: &Path) -> Result<Self> {
        let user = if is_root() { Some("nobody") } else { None };
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        if let Some(u) = user {
            let status = Command::new("chown").args(["-R", u]).arg(dir).status()?;
            if !status.success() {
                bail!("chown {u} {}", dir.display());
            }
        }
        let data = dir.join("data");
        let out = as_user(user, "initdb")
            .args(["-U", "bench", "--auth=trust", "-E", "UTF8", "-D"])
            .arg(&data)
            .current_dir(dir)
            .output()
            .context("initdb")?;
        if !out.status.success() {
            bail!("initdb: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = crate::proc::free_port()?;
        let log = dir.join("postgres.log");
        let out = as_user(user, "pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c max_connections=100",
                dir.display()
            ))
            .arg("start")
            .current_dir(dir)
            .output()
            .context("pg_ctl start")?;
        if !out.status.success() {
            bail!(
                "pg_ctl start: {}{}",
                String::from_utf8_lossy(&out.stderr),
                crate::proc::tail(&log, 20)
            );
        }
        let cluster = Self {
            data,
            url: format!("postgres://bench@127.0.0.1:{port}/bench"),
            as_user: user,
        };
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "bench",
                "-d",
                "postgres",
                "-c",
                "CREATE DATABASE bench",
            ])
            .output()
            .context("psql")?;
        if !out.status.success() {
            bail!("CREATE DATABASE: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(cluster)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_user(self.as_user, "pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
