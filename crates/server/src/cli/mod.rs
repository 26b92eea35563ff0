//! The operator commands of the `regstack` binary besides `serve`, `migrate`
//! and `purge`: `init`, `migrate --dry-run`, `create-admin`,
//! `set-password-change`, `doctor`, `validate` and `audit tail|export`.
//! `set-password-change`, `promote`, `invite`, `doctor` and `validate`.
//!
//! They exist so that setting up, checking and repairing a deployment
//! needs no hand-written SQL and no one-off scripts, and so scripts can
//! branch on the result: every command ends with one of [`EXIT_CODES`]
//! (0 done, 1 the command or a check failed, 2 the invocation or the
//! configuration is wrong — clap's own code for a usage error). Each
//! command is a module with its clap arguments and a `run` returning an
//! [`Outcome`]; `main.rs` only lists them and hands the outcome to
//! [`finish`].

pub mod audit;
pub mod create_admin;
pub mod doctor;
pub mod init;
pub mod invite;
pub mod keys;
pub mod migrate;
pub mod promote;
pub mod set_password_change;
pub mod validate;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use regstack::config::load;
use regstack::development::{development_secret, secret_path};
use regstack::{parse_database_url, Backend, BuildError, RegStack, Settings};
use secrecy::{ExposeSecret, SecretString};

/// The exit codes, as shown at the end of every command's `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 done; 1 the command or a check failed; \
                              2 usage or configuration error.";

/// Why a command did not succeed, which decides its exit code.
#[derive(Debug)]
pub enum Failure {
    /// The command ran and failed, or a check failed: exit 1.
    Failed(String),
    /// The invocation or the configuration is wrong: exit 2.
    Usage(String),
}

/// What a command reports to [`finish`].
pub type Outcome = Result<(), Failure>;

impl Failure {
    fn code(&self) -> i32 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
        }
    }
}

/// Ends the process with the outcome's exit code (after printing the
/// failure's message on stderr); returns only on success, so `main`'s
/// dispatch stays one line per command.
pub fn finish(outcome: Outcome) -> anyhow::Result<()> {
    let _ = std::io::stdout().flush();
    match outcome {
        Ok(()) => Ok(()),
        Err(f) => {
            let (Failure::Failed(m) | Failure::Usage(m)) = &f;
            eprintln!("regstack: {m}");
            let _ = std::io::stderr().flush();
            std::process::exit(f.code())
        }
    }
}

/// The configuration as `serve` would read it (file, secrets file,
/// `REGSTACK_*`; with none of them the development mode's SQLite file and
/// generated secret), split and validated. Any error is the operator's to
/// fix: [`Failure::Usage`].
pub fn load_settings(config: Option<&Path>) -> Result<Settings, Failure> {
    let usage = |e: &dyn std::fmt::Display| Failure::Usage(format!("{e:#}"));
    let loaded = load(config).map_err(|e| usage(&e))?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let mut raw = loaded.config;
    if loaded.development_mode {
        let file =
            match parse_database_url(raw.database_url.expose_secret()).map_err(|e| usage(&e))? {
                Backend::Sqlite { file, .. } => file,
                _ => None,
            }
            .unwrap_or_else(|| PathBuf::from("regstack.db"));
        raw.secrets_dir = secret_path(&file).parent().map(Path::to_path_buf);
        raw.jwt_secret = development_secret(&secret_path(&file))
            .map_err(|e| usage(&e))?
            .secret;
    }
    let settings = raw.split().map_err(|e| usage(&e))?;
    settings.validate().map_err(|e| usage(&e))?;
    Ok(settings)
}

/// Opens (and migrates, as `serve` does) the configured storage and builds
/// the engine the commands act through, so they obey the same rules as
/// the HTTP API. A configuration error is exit 2, anything else exit 1.
pub async fn open(settings: Settings) -> Result<RegStack, Failure> {
    RegStack::builder(settings)
        .build()
        .await
        .map_err(|e| match e {
            BuildError::Config(_) | BuildError::Templates { .. } => Failure::Usage(e.to_string()),
            other => Failure::Failed(format!("{other:#}")),
        })
}

/// A password for an account, never from the command line (which other
/// users of the machine can read in the process list): from a no-echo
/// prompt, asked twice, when a terminal is attached and `from_stdin` is
/// off; otherwise the first line of standard input.
pub fn read_password(prompt: &str, from_stdin: bool) -> Result<SecretString, Failure> {
    if !from_stdin && std::io::stdin().is_terminal() {
        return dialoguer::Password::new()
            .with_prompt(prompt)
            .with_confirmation("Repeat it", "The two entries differ")
            .interact()
            .map(SecretString::from)
            .map_err(|e| Failure::Failed(format!("reading the password: {e}")));
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::Failed(format!("reading the password from stdin: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(Failure::Usage(
            "no password on standard input (give it as the first line)".into(),
        ));
    }
    Ok(SecretString::from(password))
}

/// The account with address `raw` (checked as `/register` checks it), on
/// the configured database: what every command about one account starts
/// from. No such account is exit 1.
pub async fn account(
    raw: &str,
    config: Option<&Path>,
) -> Result<(RegStack, regstack_ports::User), Failure> {
    let email = parse_email(raw)?;
    let rs = open(load_settings(config)?).await?;
    let user = rs
        .engine()
        .stores()
        .users
        .find_by_email(&email)
        .await
        .map_err(|e| Failure::Failed(format!("database: {e}")))?
        .ok_or_else(|| Failure::Failed(format!("no account has the address {email}")))?;
    Ok((rs, user))
}

/// Reads an address the way every flow does (trimmed, lower-cased,
/// checked); a malformed one is a usage error.
pub fn parse_email(raw: &str) -> Result<regstack_ports::Email, Failure> {
    regstack_ports::Email::parse(raw)
        .map_err(|e| Failure::Usage(format!("`{raw}` is not an email address: {e}")))
}

/// Writes the audit entry for what an operator command did to an account,
/// before the command reports success: the same kinds the admin routes
/// record, with `"via": "cli"` and the operating-system user who ran it
/// in the detail (the command has no signed-in administrator to name).
/// A command's change is already made when this runs, so a failure to
/// record it is reported on stderr but does not fail the command.
pub async fn record(
    rs: &RegStack,
    kind: regstack_core::events::EventKind,
    user: &regstack_ports::User,
    changes: serde_json::Value,
) {
    let engine = rs.engine();
    let mut detail = serde_json::json!({ "via": "cli", "changes": changes });
    if let Ok(who) = std::env::var("USER").or_else(|_| std::env::var("USERNAME")) {
        detail["operator"] = serde_json::Value::String(who);
    }
    let entry = regstack_ports::AuditEntry {
        id: regstack_core::audit::new_entry_id(),
        at: engine.now(),
        kind: kind.name().to_owned(),
        user_id: Some(user.id.clone()),
        actor_id: None,
        email: Some(user.email.clone()),
        ip: None,
        detail: detail.to_string(),
    };
    if let Err(e) = engine.stores().audit.append(&[entry]).await {
        eprintln!("warning: the change is made, but its audit entry was not written: {e}");
    }
}
