//! Developer workflow: `cargo xtask ci | tidy | migrate | services up|down`.
//!
//! `ci` is what `.ci/run` runs on a clean clone: formatting, lints, the
//! layering and documentation checks, and every test with nextest (one
//! shared build; the SMTP tests install their Python SMTP sink on first use).

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

fn has_nextest() -> bool {
    Command::new(cargo())
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Every crate opens with a `//!` doc saying its role in the hexagon.
fn tidy() -> Result<()> {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root().join("crates"))? {
        let dir = entry?.path();
        let lib = dir.join("src/lib.rs");
        if lib.exists() {
            let src = std::fs::read_to_string(&lib)?;
            if !src.trim_start().starts_with("//!") {
                missing.push(lib.display().to_string());
            }
        }
    }
    if !missing.is_empty() {
        bail!(
            "crates without a crate-level `//!` doc: {}",
            missing.join(", ")
        );
    }
    eprintln!("tidy: every crate has its crate doc");
    Ok(())
}

fn ci() -> Result<()> {
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
    // Doc tests first: nextest does not run them, and its summary should be
    // the run's closing line.
    run(&c, &["test", "--workspace", "--doc", "--locked", "-j2"])?;
    if has_nextest() {
        run(
            &c,
            &[
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "-j2",
                "--no-fail-fast",
            ],
        )?;
    } else {
        eprintln!("cargo-nextest not found: falling back to cargo test");
        run(
            &c,
            &["test", "--workspace", "--locked", "-j2", "--no-fail-fast"],
        )?;
    }
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
        ["migrate", rest @ ..] => {
            let mut a = vec!["run", "-p", "regstack", "--", "migrate"];
            a.extend(rest.iter().copied());
            run(&cargo(), &a)
        }
        ["services", "up" | "down"] => {
            eprintln!("no external services are needed yet: SQLite is embedded and the SMTP tests start their own sink");
            Ok(())
        }
        _ => bail!("usage: cargo xtask ci | tidy | migrate [--config FILE] | services up|down"),
    }
}
