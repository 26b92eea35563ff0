//! Developer workflow: `cargo xtask ci | tidy | deny | bench | migrate | services up|down`.
//!
//! `services up` starts the real databases and the OpenID Provider the tests
//! use (and prints their `TEST_*_URL` variables); `ci` is what `.ci/run` runs on a clean clone: formatting, lints, the
//! layering and documentation checks (`tidy`, `cargo doc` with warnings denied), the
//! dependency policy (`cargo deny`, installed on first use), the benchmark's smoke, and every test
//! with nextest (one shared build; the SMTP tests install their Python SMTP
//! sink on first use), then the property-based API test (schemathesis against
//! `/openapi.json` and a real server; its venv is made on first use). `bench` is the load benchmark (`xtask/src/bench.rs`).

mod bench;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    eprintln!("\n==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs a command with extra environment variables.
fn run_env(program: &str, args: &[&str], envs: &[(String, String)]) -> Result<()> {
    let shown: Vec<String> = envs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("\n==> {} {program} {}", shown.join(" "), args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The real services the tests use: PostgreSQL (Debian's package, a
/// throwaway cluster), a MongoDB-wire server (SecantusDB from PyPI), an
/// OpenID Provider (npm `oidc-provider` behind `tests/support/oidc/`) and
/// Redis (Debian's `redis-server`, for the Redis rate-limit counters).
const SERVICES: &[&str] = &["postgres", "mongo", "oidc", "redis", "chromium"];

/// Starts (or reuses) every service; returns the `TEST_*_URL` variables
/// their scripts print.
fn services_up() -> Result<Vec<(String, String)>> {
    let mut envs = Vec::new();
    for svc in SERVICES {
        let script = format!("scripts/services/{svc}.sh");
        eprintln!("\n==> bash {script} up");
        let out = Command::new("bash")
            .args([script.as_str(), "up"])
            .current_dir(root())
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {script}"))?;
        if !out.status.success() {
            bail!("{script} up failed ({})", out.status);
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.trim().split_once('=') {
                if k.starts_with("TEST_") && k.ends_with("_URL") {
                    eprintln!("{k}={v}");
                    envs.push((k.to_owned(), v.to_owned()));
                }
            }
        }
    }
    Ok(envs)
}

fn services_down() -> Result<()> {
    for svc in SERVICES {
        run("bash", &[&format!("scripts/services/{svc}.sh"), "down"])?;
    }
    Ok(())
}

fn has_nextest() -> bool {
    Command::new(cargo())
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The cargo-deny release CI installs when it is missing: pinned, so a new
/// release cannot change what passes, and one that builds with our Rust
/// (1.95; cargo-deny 0.20.2 needs 1.88).
const CARGO_DENY_VERSION: &str = "0.20.2";

fn has_cargo_deny() -> bool {
    Command::new(cargo())
        .args(["deny", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Licences, banned or duplicate crates and sources, per `deny.toml`.
/// Only `licenses bans sources`: the `advisories` check
/// needs the RustSec database, which is fetched from GitHub, and this
/// machine (like CI) cannot reach GitHub. A clean machine has only rustup's
/// toolchain and cargo-nextest, so cargo-deny is built from crates.io the
/// first time — as a debug build (`--debug`): its release profile (LTO, one
/// codegen unit) takes several times as long to build on 2 cores, and a
/// check of our dependency graph runs in seconds either way.
fn deny() -> Result<()> {
    let c = cargo();
    if !has_cargo_deny() {
        run(
            &c,
            &[
                "install",
                "cargo-deny",
                "--version",
                CARGO_DENY_VERSION,
                "--locked",
                "--debug",
                "-j2",
            ],
        )?;
    }
    // Duplicate versions are warnings; their inclusion graphs would run to
    // thousands of lines, so they are hidden (run without the flag to see
    // them).
    run(
        &c,
        &[
            "deny",
            "--locked",
            "check",
            "--hide-inclusion-graph",
            "licenses",
            "bans",
            "sources",
        ],
    )
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every crate opens with a `//!` doc saying its role in the hexagon, and
/// every module of every crate with one saying why it exists — a reader
/// who opens any file should learn its place first. (That every contract
/// case is listed is a test: `crates/testkit/tests/case_list.rs`.)
fn tidy() -> Result<()> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root().join("crates"))? {
        let src = entry?.path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files)?;
        }
    }
    for dir in ["xtask/src", "bench/src"] {
        rust_files(&root().join(dir), &mut files)?;
    }
    let mut missing = Vec::new();
    for file in &files {
        let src = std::fs::read_to_string(file)?;
        if !src.trim_start().starts_with("//!") {
            missing.push(
                file.strip_prefix(root())
                    .unwrap_or(file)
                    .display()
                    .to_string(),
            );
        }
    }
    if !missing.is_empty() {
        missing.sort();
        bail!(
            "modules without a `//!` doc comment saying what they are for: {}",
            missing.join(", ")
        );
    }
    eprintln!("tidy: all {} modules have their doc comment", files.len());
    Ok(())
}

/// CI builds from scratch once and throws the tree away, on a machine whose
/// free disk is not ours to choose (one run died with `No space left on
/// device` half-way through): incremental caches (about 1.7 GB for this
/// workspace) only help a rebuild that never comes. Set only under `CI`, so
/// a developer's own `cargo xtask ci` keeps sharing artifacts with their
/// everyday `cargo test`.
fn lean_ci_build() {
    let under_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    if under_ci && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // Edition 2021: `set_var` is safe; xtask is single-threaded here,
        // before any child process or thread starts.
        std::env::set_var("CARGO_INCREMENTAL", "0");
    }
}

fn ci() -> Result<()> {
    lean_ci_build();
    let c = cargo();
    run(&c, &["fmt", "--all", "--", "--check"])?;
    run(
        &c,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "-j2",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    tidy()?;
    deny()?;
    // Broken intra-doc links and malformed docs fail the run.
    run_env(
        &c,
        &["doc", "--workspace", "--no-deps", "--locked", "-j2"],
        &[("RUSTDOCFLAGS".into(), "-D warnings".into())],
    )?;
    // The benchmark's one-second smoke (debug build): fails only if broken.
    bench::bench(&["--smoke"])?;
    let envs = services_up()?;
    // Doc tests first: nextest does not run them, and its summary should be
    // the run's closing line.
    run(&c, &["test", "--workspace", "--doc", "--locked", "-j2"])?;
    // The black-box package alone: selected by filter over the whole
    // workspace under nextest, so the features resolve as in the full run
    // and nothing is rebuilt (`-p` would rebuild sqlx for a different
    // feature set).
    let (tester, black_box): (&[&str], &[&str]) = if has_nextest() {
        (
            &["nextest", "run", "--locked", "-j2", "--no-fail-fast"],
            &["--workspace", "-E", "package(regstack-tests)"],
        )
    } else {
        eprintln!("cargo-nextest not found: falling back to cargo test");
        (
            &["test", "--locked", "-j2", "--no-fail-fast"],
            &["-p", "regstack-tests"],
        )
    };
    // Everything once (the store contract suite runs on every backend here),
    // then the black-box HTTP suite again on PostgreSQL and on MongoDB.
    run_env(&c, &[tester, &["--workspace"]].concat(), &envs)?;
    for backend in ["postgres", "mongo"] {
        let mut e = envs.clone();
        e.push(("TEST_BACKEND".into(), backend.into()));
        run_env(&c, &[tester, black_box].concat(), &e)?;
    }
    // The property-based API test (schemathesis from PyPI, in a venv the
    // test makes under target/test-services): ignored in the runs above,
    // run once here against the SQLite-backed server, bounded to minutes.
    let property: &[&str] = if has_nextest() {
        &[
            "nextest",
            "run",
            "--locked",
            "-j2",
            "--workspace",
            "--run-ignored",
            "only",
            "-E",
            "package(regstack-tests) & test(schemathesis)",
        ]
    } else {
        &[
            "test",
            "--locked",
            "-j2",
            "-p",
            "regstack-tests",
            "--",
            "--ignored",
            "schemathesis",
        ]
    };
    run_env(&c, property, &envs)?;
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["ci"] => ci(),
        ["tidy"] => tidy(),
        ["deny"] => deny(),
        ["bench", rest @ ..] => bench::bench(rest),
        ["migrate", rest @ ..] => {
            let mut a = vec!["run", "-p", "regstack", "--", "migrate"];
            a.extend(rest.iter().copied());
            run(&cargo(), &a)
        }
        ["services", "up"] => {
            for (k, v) in services_up()? {
                println!("export {k}={v}");
            }
            Ok(())
        }
        ["services", "down"] => services_down(),
        _ => bail!("usage: cargo xtask ci | tidy | deny | bench [--smoke] | migrate [--config FILE] | services up|down"),
    }
}
