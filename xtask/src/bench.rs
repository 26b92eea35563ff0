//! `cargo xtask bench [--smoke] [-- ARGS…]`: builds the `regstack` server and
//! the load benchmark (`bench/`, package `regstack-bench`) and runs it.
//!
//! The full run builds `--release`, measures everything (the Argon2 floor,
//! the server on SQLite — and PostgreSQL when available —, a minimal axum
//! `/me` ceiling, regstack 0.9.3 from PyPI in a throwaway virtualenv), prints
//! the table with the targets' verdicts and saves it to
//! `bench/results/<date>-<machine>.txt`. `--smoke` (what CI runs) uses the
//! debug build for about a second per scenario, skips regstack and
//! PostgreSQL, and fails only when something is broken, never for a missed
//! target. Extra ARGS go to `regstack-bench` (`--help` lists them).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{cargo, root, run};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

pub fn bench(args: &[&str]) -> Result<()> {
    let smoke = args.contains(&"--smoke");
    let extra: Vec<&str> = args
        .iter()
        .copied()
        .filter(|a| *a != "--smoke" && *a != "--")
        .collect();
    let c = cargo();
    let build: &[&str] = if smoke {
        // The smoke runs inside `cargo xtask ci`, right before the tests:
        // building every test target here too resolves features exactly as
        // the test runs will, so they reuse these artifacts instead of
        // building a second copy of every shared dependency (which costs
        // gigabytes of disk on a CI machine that may not have them).
        &[
            "build",
            "-j2",
            "--locked",
            "--workspace",
            "--lib",
            "--bins",
            "--tests",
            "--examples",
        ]
    } else {
        &[
            "build",
            "-j2",
            "--release",
            "-p",
            "regstack",
            "-p",
            "regstack-bench",
        ]
    };
    run(&c, build)?;
    let dir = target_dir().join(if smoke { "debug" } else { "release" });
    let server = dir.join("regstack");
    let server = server.to_string_lossy().into_owned();
    let results = root().join("bench/results");
    let results = results.to_string_lossy().into_owned();
    let mut a: Vec<&str> = vec!["--server", &server];
    if smoke {
        a.push("--smoke");
    } else {
        a.extend(["--results-dir", &results]);
    }
    a.extend(extra);
    let bin = dir.join("regstack-bench");
    eprintln!("\n==> {} {}", bin.display(), a.join(" "));
    let status = Command::new(&bin)
        .args(&a)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    if !status.success() {
        bail!("the benchmark found something broken ({status})");
    }
    Ok(())
}
