//! The README's quick start, run as written: the done-criterion of "a
//! README a newcomer can follow without reading the source". If a command
//! in it breaks — a route renamed, a field moved, a log line reworded so the
//! mailed link is no longer found — this test fails, naming the block.
//!
//! Which blocks: every fenced ```` ```sh ```` block right after a
//! `<!-- quickstart: serve -->` (exactly one: how to start the server) or a
//! `<!-- quickstart -->` line (the commands a newcomer types next, in a
//! second terminal) in `README.md`. They must reach a signed-in `/me`, a
//! refreshed token and a password reset, or this test fails too.
//!
//! How: in an empty temporary directory (as the newcomer's checkout is,
//! for the server's files), the serve block runs under `bash -euo pipefail`
//! in a process group of its own; once its banner names the port, the other
//! blocks run in order in **one** `bash -euo pipefail` (variables and
//! functions carry over, as in the newcomer's terminal); then the group
//! gets SIGINT, as Ctrl-C in that terminal sends it, and the server must
//! stop and leave `regstack.db` as one file. What the runner substitutes,
//! and nothing else:
//! - in the serve block, `cargo run --release -p regstack --` becomes the
//!   `regstack` binary cargo built for this test (debug; a release build
//!   takes minutes), and `serve` becomes `serve --port 0`, so the test
//!   neither collides with a server on 8000 nor with itself;
//! - in the other blocks, `localhost:8000` becomes `localhost:<the port the
//!   banner names>`;
//! - `curl` is wrapped in a shell function adding `--fail-with-body`, so an
//!   HTTP error fails its block instead of printing a JSON refusal;
//! - no `REGSTACK_*`, `RUST_LOG` or proxy variable reaches either shell
//!   (the newcomer has no configuration, and a proxy must not see
//!   `localhost`).
//!
//! Needs `bash` and `curl`. Without them the test says SKIPPED loudly;
//! under `CI=true` it fails instead. Unix only: it signals process groups.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_regstack");
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The README, read at build time, so a change to it rebuilds this test.
const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"));

const SERVE_MARKER: &str = "<!-- quickstart: serve -->";
const RUN_MARKER: &str = "<!-- quickstart -->";
/// What the serve block must say to start the server, replaced by the
/// built binary.
const CARGO_RUN: &str = "cargo run --release -p regstack --";
const README_HOST: &str = "localhost:8000";

/// Start-up: migrations, first-run secret, bind.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole quick start, from the first command to the last.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Ctrl-C to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// One marked block: its text and the README line its fence opens on.
struct Block {
    line: usize,
    text: String,
}

/// The marked blocks: the serve block and the ones run after it. Panics on
/// a marker not followed by an `sh` fence, so a marker cannot silently
/// select nothing.
fn marked_blocks(readme: &str) -> (Block, Vec<Block>) {
    let lines: Vec<&str> = readme.lines().collect();
    let mut serve = Vec::new();
    let mut run = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let marker = lines[i].trim();
        if marker != SERVE_MARKER && marker != RUN_MARKER {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        assert!(
            j < lines.len() && lines[j].trim() == "```sh",
            "README.md line {}: `{marker}` is not followed by a ```sh block",
            i + 1
        );
        let fence = j;
        let mut text = String::new();
        j += 1;
        while j < lines.len() && lines[j].trim() != "```" {
            text.push_str(lines[j]);
            text.push('\n');
            j += 1;
        }
        assert!(
            j < lines.len(),
            "README.md line {}: the block is never closed",
            fence + 1
        );
        let block = Block {
            line: fence + 1,
            text,
        };
        if marker == SERVE_MARKER {
            serve.push(block);
        } else {
            run.push(block);
        }
        i = j + 1;
    }
    assert_eq!(
        serve.len(),
        1,
        "README.md must mark exactly one block `{SERVE_MARKER}`"
    );
    (serve.remove(0), run)
}

/// Whether `program --version` runs.
fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A shell command line for the serve block: the built binary instead of
/// `cargo run`, on a free port.
fn serve_command(block: &Block) -> String {
    let wanted = format!("{CARGO_RUN} serve");
    assert!(
        block.text.contains(&wanted),
        "README.md line {}: the serve block no longer says `{wanted}`; \
         teach this test how the README starts the server",
        block.line
    );
    assert!(!BIN.contains('\''), "binary path with a quote: {BIN}");
    block
        .text
        .replace(&wanted, &format!("'{BIN}' serve --port 0"))
}

/// The script that runs every other block in one shell, each announced
/// on stdout (`::: block N …` before, `::: block N ok` after) so a failure
/// names its block.
fn client_script(blocks: &[Block], port: u16) -> String {
    let mut script = String::from(
        "shopt -s inherit_errexit\n\
         curl() { command curl --fail-with-body \"$@\"; }\n",
    );
    for (n, b) in blocks.iter().enumerate() {
        let n = n + 1;
        let text = b.text.replace(README_HOST, &format!("localhost:{port}"));
        script.push_str(&format!(
            "printf '\\n::: block {n} (README.md line {}) starts\\n'\n{text}\nprintf '\\n::: block {n} ok\\n'\n",
            b.line
        ));
    }
    script
}

/// Everything a child wrote, stdout and stderr, one line at a time.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn text(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn push_line(&self, line: &str) {
        let mut buf = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buf.push_str(line);
        buf.push('\n');
    }
}

/// Copies a pipe into the log on a background thread until EOF.
fn pump(stream: impl Read + Send + 'static, log: Log) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    log.push_line(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']))
                }
            }
        }
    })
}

/// A `bash -euo pipefail -c script` in `dir`, leading a process group of
/// its own (so a signal reaches everything it started, as in a terminal);
/// the group is killed when this drops.
struct Shell {
    child: Child,
    log: Log,
    pumps: Vec<JoinHandle<()>>,
}

impl Shell {
    fn spawn(dir: &Path, script: &str) -> Shell {
        let mut cmd = Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", script])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("REGSTACK_") || k.to_ascii_lowercase().ends_with("_proxy") {
                cmd.env_remove(&key);
            }
        }
        for var in ["RUST_LOG", "RUST_BACKTRACE", "RUST_LIB_BACKTRACE"] {
            cmd.env_remove(var);
        }
        let mut child = cmd.spawn().expect("spawn bash");
        let log = Log::default();
        let pumps = vec![
            pump(child.stdout.take().expect("stdout piped"), log.clone()),
            pump(child.stderr.take().expect("stderr piped"), log.clone()),
        ];
        Shell { child, log, pumps }
    }

    /// Sends `signal` (`INT`, `KILL`) to the whole group.
    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([
                &format!("-{signal}"),
                "--",
                &format!("-{}", self.child.id()),
            ])
            .stderr(Stdio::null())
            .status();
    }

    /// Waits for the shell to exit and its pipes to drain; `None` on
    /// timeout.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait().expect("wait for bash") {
                Some(status) => break status,
                None if Instant::now() < deadline => std::thread::sleep(POLL),
                None => return None,
            }
        };
        // The server may outlive bash only if something detached it; the
        // pipes close when every writer in the group is gone.
        let drained = Instant::now() + Duration::from_secs(5);
        while !self.pumps.iter().all(JoinHandle::is_finished) && Instant::now() < drained {
            std::thread::sleep(POLL);
        }
        Some(status)
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal_group("KILL");
            let _ = self.child.wait();
        }
    }
}

#[test]
fn the_readme_quick_start_runs_as_written_against_the_built_server() {
    let (serve, run) = marked_blocks(README);
    let all: String = run.iter().map(|b| b.text.as_str()).collect();
    for needed in [
        "/api/auth/register",
        "/api/auth/verify",
        "/api/auth/me",
        "/api/auth/refresh",
        "/api/auth/reset-password",
    ] {
        assert!(
            all.contains(needed),
            "the README's quick-start blocks no longer reach {needed}"
        );
    }
    for b in &run {
        assert!(
            !b.text.contains("curl") || b.text.contains(README_HOST),
            "README.md line {}: a quick-start block calls curl but not {README_HOST}",
            b.line
        );
    }

    let missing: Vec<&str> = ["bash", "curl"]
        .into_iter()
        .filter(|p| !available(p))
        .collect();
    if !missing.is_empty() {
        let why = format!("the README quick start needs {}", missing.join(" and "));
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}, which CI must have");
        }
        eprintln!("\n*** SKIPPED: {why} (under CI=true this fails) ***\n");
        return;
    }

    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Shell::spawn(dir.path(), &serve_command(&serve));
    let prefix = format!("regstack {VERSION} listening on http://127.0.0.1:");
    let deadline = Instant::now() + START_TIMEOUT;
    let port = loop {
        let log = server.log.text();
        if let Some(p) = log
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|p| p.trim().parse::<u16>().ok())
        {
            break p;
        }
        let exited = matches!(server.child.try_wait(), Ok(Some(_)));
        if exited || Instant::now() >= deadline {
            panic!(
                "README.md line {}: the serve block printed no `{prefix}…` banner \
                 ({}).\n----- server -----\n{log}-----",
                serve.line,
                if exited { "it exited" } else { "timed out" }
            );
        }
        std::thread::sleep(POLL);
    };
    eprintln!("server listening on port {port} after {:?}", t0.elapsed());

    let mut client = Shell::spawn(dir.path(), &client_script(&run, port));
    let status = client.wait(RUN_TIMEOUT);
    let out = client.log.text();
    let failed = match status {
        Some(s) if s.success() => None,
        Some(s) => Some(format!("bash exited with {s}")),
        None => Some(format!("still running after {RUN_TIMEOUT:?}")),
    };
    if let Some(why) = failed {
        drop(client);
        let block = out
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("::: block "))
            .unwrap_or("(none started)");
        panic!(
            "the README quick start failed in block {block}: {why}\n\
             ----- commands' output -----\n{out}----- server log -----\n{}-----",
            server.log.text()
        );
    }
    let ok = out.lines().filter(|l| l.ends_with(" ok")).count();
    assert_eq!(ok, run.len(), "not every block reported ok:\n{out}");
    eprintln!("{} quick-start blocks ran in {:?}", run.len(), t0.elapsed());

    // Ctrl-C in the server's terminal: it stops, leaving one database file.
    server.signal_group("INT");
    if server.wait(STOP_TIMEOUT).is_none() {
        panic!(
            "the server still runs {STOP_TIMEOUT:?} after Ctrl-C\n----- server log -----\n{}-----",
            server.log.text()
        );
    }
    let log = server.log.text();
    assert!(
        std::fs::read_to_string(dir.path().join("regstack.log"))
            .is_ok_and(|l| l.contains("/verify?token=")),
        "regstack.log holds no mailed link: the README's `tee` no longer keeps the log"
    );
    assert!(
        dir.path().join("regstack.db").is_file(),
        "no regstack.db in the directory the README runs in\n{log}"
    );
    for side in ["regstack.db-wal", "regstack.db-shm"] {
        assert!(
            !dir.path().join(side).exists(),
            "{side} left behind after Ctrl-C\n----- server log -----\n{log}-----"
        );
    }
}
