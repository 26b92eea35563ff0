//! A real SMTP server for the SMTP tests: `tests/support/smtp/smtp_sink.py`
//! (aiosmtpd) run from a Python venv.
//!
//! The venv is `$SMTP_SINK_VENV` when that is set, otherwise
//! `<target>/test-services/smtp-venv`, created once from
//! `tests/support/smtp/requirements.txt` and reused until that file changes.
//! Creation is guarded by a lock file, so test threads and test binaries
//! running at once build it once. If no venv can be had, [`start_or_skip`]
//! fails the test under `CI=true` and otherwise prints a loud `SKIPPED:` line
//! and lets the test return.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// How the sink secures its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkTls {
    None,
    StartTls,
    Implicit,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    pub tls: SinkTls,
    /// Required AUTH user and password.
    pub auth: Option<(String, String)>,
}

impl SinkOptions {
    pub fn plain() -> Self {
        Self {
            tls: SinkTls::None,
            auth: None,
        }
    }
    pub fn tls(tls: SinkTls) -> Self {
        Self { tls, auth: None }
    }
    pub fn with_auth(mut self, user: &str, password: &str) -> Self {
        self.auth = Some((user.into(), password.into()));
        self
    }
}

/// One message as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The raw message, headers and MIME body.
    pub data: String,
}

/// A running sink; killed when dropped.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    out: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

/// Starts a sink, or says why there is none: panics under `CI=true`,
/// otherwise prints `SKIPPED: …` to stderr and returns `None`.
pub fn start_or_skip(test: &str, options: SinkOptions) -> Option<SmtpSink> {
    match venv_python() {
        Ok(python) => Some(SmtpSink::start(python, options)),
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: no Python venv for the SMTP sink, and CI=true: {why}");
            }
            loud(&format!(
                "\n*** SKIPPED: {test}: no Python venv for the SMTP sink ({why}). \
                 Install python3 with venv and pip, or set SMTP_SINK_VENV. ***\n"
            ));
            None
        }
    }
}

impl SmtpSink {
    fn start(python: &Path, options: SinkOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the SMTP sink");
        let out = dir.path().join("received.jsonl");
        let stderr = dir.path().join("sink.stderr");
        let mut cmd = Command::new(python);
        cmd.arg(support_dir().join("smtp_sink.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--out"])
            .arg(&out)
            .arg("--tls")
            .arg(match options.tls {
                SinkTls::None => "none",
                SinkTls::StartTls => "starttls",
                SinkTls::Implicit => "implicit",
            });
        if let Some((user, password)) = &options.auth {
            cmd.args(["--auth-user", user, "--auth-password", password]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("sink stderr file"))
            .spawn()
            .expect("spawn the SMTP sink");

        // The sink prints `LISTENING <port>` once its socket is bound.
        let stdout = child.stdout.take().expect("sink stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep the pipe open (and drained) until the sink exits.
            let mut rest = String::new();
            while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {
                rest.clear();
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SMTP sink did not start (first line {line:?}); its stderr:\n{}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        Self {
            child,
            port,
            out,
            stderr,
            _dir: dir,
        }
    }

    /// Every message received so far, oldest first. The sink writes each
    /// one before it answers 250, so a successful send is already here.
    pub fn messages(&self) -> Vec<Received> {
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("sink JSON line");
                Received {
                    mail_from: v["mail_from"].as_str().expect("mail_from").to_owned(),
                    rcpt_tos: v["rcpt_tos"]
                        .as_array()
                        .expect("rcpt_tos")
                        .iter()
                        .map(|r| r.as_str().expect("rcpt").to_owned())
                        .collect(),
                    data: v["data"].as_str().expect("data").to_owned(),
                }
            })
            .collect()
    }

    /// What the sink wrote to stderr (for failure messages).
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes to the process's stderr past libtest's capture (which only takes
/// `eprintln!`), so a skip is seen even when the test passes.
fn loud(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The directory holding `tests/support/smtp`: the nearest ancestor of the
/// including package that has it (this file is also included by the
/// black-box tests, one level nearer the root).
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = here
        .ancestors()
        .find(|d| d.join("tests/support/smtp/smtp_sink.py").exists())
        .map_or_else(|| here.join("../.."), Path::to_path_buf);
    root.canonicalize().unwrap_or(root)
}

fn support_dir() -> PathBuf {
    workspace_root().join("tests/support/smtp")
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The venv's interpreter, made at most once per process (and, through the
/// lock file, once across processes).
fn venv_python() -> Result<&'static Path, String> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(find_or_create_venv)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

fn find_or_create_venv() -> Result<PathBuf, String> {
    if let Some(venv) = std::env::var_os("SMTP_SINK_VENV") {
        let python = PathBuf::from(venv).join("bin/python");
        return if python.exists() {
            Ok(python)
        } else {
            Err(format!(
                "SMTP_SINK_VENV is set but {} does not exist",
                python.display()
            ))
        };
    }

    let requirements = fs::read_to_string(support_dir().join("requirements.txt"))
        .map_err(|e| format!("reading requirements.txt: {e}"))?;
    let services = target_dir().join("test-services");
    let venv = services.join("smtp-venv");
    let python = venv.join("bin/python");
    // The stamp holds the requirements the venv was built from: when they
    // change, the venv is rebuilt.
    let stamp = venv.join(".regstack-requirements");
    let ready = || fs::read_to_string(&stamp).is_ok_and(|s| s == requirements);
    if ready() {
        return Ok(python);
    }

    fs::create_dir_all(&services).map_err(|e| format!("creating {}: {e}", services.display()))?;
    let _lock = LockFile::acquire(&services.join("smtp-venv.lock"))?;
    if ready() {
        return Ok(python); // another process built it while we waited
    }

    let started = Instant::now();
    loud(&format!(
        "smtp sink: creating the Python venv at {} …",
        venv.display()
    ));
    if venv.exists() {
        fs::remove_dir_all(&venv).map_err(|e| format!("removing stale venv: {e}"))?;
    }
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .arg("-r")
        .arg(support_dir().join("requirements.txt")))?;
    fs::write(&stamp, &requirements).map_err(|e| format!("writing the venv stamp: {e}"))?;
    loud(&format!(
        "smtp sink: venv ready in {:.1?}",
        started.elapsed()
    ));
    Ok(python)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{shown} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// An exclusive lock held by creating a file; removed on drop. A lock older
/// than ten minutes is taken as left behind by a killed run.
struct LockFile(PathBuf);

impl LockFile {
    fn acquire(path: &Path) -> Result<Self, String> {
        const STALE: Duration = Duration::from_secs(600);
        let deadline = Instant::now() + STALE + Duration::from_secs(60);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(_) => return Ok(Self(path.to_owned())),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    let age = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok());
                    if age.is_some_and(|age| age > STALE) {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if Instant::now() > deadline {
                        return Err(format!("timed out waiting for {}", path.display()));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(format!("creating {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
