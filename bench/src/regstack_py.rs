//! regstack 0.9.3, the Python library regstack-rs is wire-compatible with,
//! as a comparison target: installed from PyPI into a throwaway virtualenv
//! under the build directory, mounted by a minimal FastAPI host the way its
//! README documents, served by one uvicorn worker over SQLite.
//!
//! Its Argon2 parameters are not configurable: `PasswordHasher()` uses
//! argon2-cffi's defaults (m = 65536 KiB, t = 3, p = 4), which are also
//! regstack-rs's defaults.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const VERSION: &str = "0.9.3";
pub const ARGON2: crate::floor::Argon2Params = crate::floor::Argon2Params {
    m_kib: 65536,
    t: 3,
    p: 4,
};

/// The host application: regstack's documented embedding, nothing more,
/// on a socket bound here so the banner can name the port.
pub const HOST_APP: &str = r#"
import asyncio
import os
import socket
import sys
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI

from regstack import RegStack, RegStackConfig

config = RegStackConfig.load()  # REGSTACK_* from the environment
regstack = RegStack(config=config)


@asynccontextmanager
async def lifespan(app):
    await regstack.install_schema()
    yield
    await regstack.aclose()


app = FastAPI(lifespan=lifespan)
app.include_router(regstack.router, prefix=config.api_prefix)


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(f"regstack-host listening on http://127.0.0.1:{port}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, workers=1, log_level="info"))
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
"#;

pub struct Venv {
    pub python: PathBuf,
    /// "regstack 0.9.3, uvicorn …, fastapi …, argon2-cffi …, Python …".
    pub versions: String,
}

fn versions(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m, platform; \
             print(', '.join(f'{p} {m.version(p)}' for p in ('regstack', 'uvicorn', 'fastapi', 'argon2-cffi', 'uvloop', 'httptools')) + f', Python {platform.python_version()}')",
        ])
        .output()
        .ok()?;
    if out.status.success() {
        Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        None
    }
}

/// Creates the virtualenv in `dir` (once) and installs regstack and
/// uvicorn with its standard extras (uvloop, httptools: regstack's best
/// footing) into it.
pub fn ensure(dir: &Path) -> Result<Venv> {
    let python = dir.join("bin/python");
    if let Some(v) = versions(&python) {
        if v.starts_with(&format!("regstack {VERSION},")) {
            return Ok(Venv {
                python,
                versions: v,
            });
        }
    }
    if !python.exists() {
        eprintln!("bench: creating {}", dir.display());
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir)
            .status()
            .context("python3 -m venv (needs python3 with venv)")?;
        if !status.success() {
            bail!("python3 -m venv {} failed", dir.display());
        }
    }
    eprintln!("bench: pip install regstack=={VERSION} uvicorn[standard]");
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("regstack=={VERSION}"),
            "uvicorn[standard]",
        ])
        .status()
        .context("pip install")?;
    if !status.success() {
        bail!("pip install regstack=={VERSION} uvicorn[standard] failed");
    }
    let versions = versions(&python).context("installed packages not importable")?;
    Ok(Venv { python, versions })
}
