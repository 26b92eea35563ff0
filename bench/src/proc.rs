//! Server processes under test: start, find the port in the banner, wait
//! until they answer, measure their memory, stop them.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::load::{Conn, Target};

pub struct Server {
    pub name: String,
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

/// Finds `http://HOST:PORT` after `marker` in a banner line.
pub fn parse_banner(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let url = rest.split_whitespace().next()?;
    let hostport = url.strip_prefix("http://")?.trim_end_matches('/');
    hostport.parse().ok()
}

impl Server {
    /// Starts `cmd` with stdout and stderr going straight to `log` (no
    /// pipe for this process to drain: request logs must cost only the
    /// server) and waits for a line there containing `marker` followed by
    /// the URL.
    pub fn spawn(name: &str, mut cmd: Command, marker: &str, log: &Path) -> Result<Self> {
        let log_file = File::create(log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone()?))
            .stderr(Stdio::from(log_file));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|l| parse_banner(l, marker)) {
                return Ok(Self {
                    name: name.to_owned(),
                    child,
                    pid,
                    addr,
                    log: log.to_owned(),
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited ({status}) before listening; its log ({}):\n{}",
                    log.display(),
                    tail(log, 30)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{name} printed no `{marker} http://…` line within 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `path` until the server answers it with a status below 500.
    pub async fn wait_ready(&mut self, target: &Target, path: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited ({status}); its log:\n{}",
                    self.name,
                    tail(&self.log, 30)
                );
            }
            let mut conn = Conn::new(target);
            match conn.send(http::Method::GET, path, None, None).await {
                Ok(r) if r.status.as_u16() < 500 => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} not ready after 60 s: {last}", self.name)
    }

    pub fn rss(&self) -> Result<Mem> {
        Mem::of(self.pid)
    }

    /// Restarts the kernel's peak-RSS counter (VmHWM), where permitted.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after five seconds.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        if !self.alive() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Mem {
    pub fn of(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(Self {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        })
    }
}

/// Samples VmRSS every 10 ms on its own thread until dropped; the
/// maximum seen backs up VmHWM where it cannot be reset.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(m) = Mem::of(pid) {
                    p.fetch_max(m.rss_kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            peak,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// CPU time (in clock ticks) of the whole machine, the server and this
/// process, to tell a slow server from a busy machine.
#[derive(Clone, Copy, Debug)]
struct CpuSnap {
    at: Instant,
    busy: u64,
    server: u64,
    me: u64,
}

/// Cores' worth of CPU used during a scenario.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuUse {
    pub server: f64,
    pub generator: f64,
    /// Everything else on the machine: other users' work disturbs the
    /// measurement, and shows here.
    pub others: f64,
}

fn proc_ticks(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th fields of the whole line.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum()
}

fn machine_busy() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().next() else {
        return 0;
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    [0usize, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| v.get(i))
        .sum()
}

pub struct CpuMeter {
    pids: Vec<u32>,
    start: CpuSnap,
}

impl CpuMeter {
    fn snap(pids: &[u32]) -> CpuSnap {
        CpuSnap {
            at: Instant::now(),
            busy: machine_busy(),
            server: pids
                .iter()
                .map(|pid| proc_ticks(&format!("/proc/{pid}/stat")))
                .sum(),
            me: proc_ticks("/proc/self/stat"),
        }
    }

    pub fn start(pid: u32) -> Self {
        Self::start_many(vec![pid])
    }

    /// One meter over several server processes (instances sharing a
    /// store): their CPU is the "server" share, not "others".
    pub fn start_many(pids: Vec<u32>) -> Self {
        let start = Self::snap(&pids);
        Self { pids, start }
    }

    pub fn finish(self) -> CpuUse {
        let end = Self::snap(&self.pids);
        // USER_HZ is 100 on every Linux this runs on.
        let secs = (end.at - self.start.at).as_secs_f64().max(1e-3) * 100.0;
        let server = end.server.saturating_sub(self.start.server) as f64;
        let me = end.me.saturating_sub(self.start.me) as f64;
        let busy = end.busy.saturating_sub(self.start.busy) as f64;
        CpuUse {
            server: server / secs,
            generator: me / secs,
            others: (busy - server - me).max(0.0) / secs,
        }
    }
}
