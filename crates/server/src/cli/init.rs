//! `regstack init`: writes a commented `regstack.toml` and, beside it, the
//! secrets file (`regstack.secrets.env`, mode 0600) with a generated
//! signing secret.
//!
//! It exists so a newcomer starts from a configuration that runs and says
//! what each key does, and so the signing secret is never typed, pasted
//! into the TOML (which may be committed) or left readable by others. The
//! keys written are real keys of [`FileConfig`], their values this build's
//! defaults unless asked otherwise, so the file cannot drift from what the
//! loader accepts. Existing files are never overwritten without `--force`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use regstack::config::{secrets_env_path, FileConfig, SECRETS_FILE};
use regstack::development::{generate_secret, write_private_file};
use secrecy::ExposeSecret;

use super::{Failure, Outcome, EXIT_CODES};

/// `regstack init` arguments. With a terminal attached (and without
/// `--non-interactive`) each value is asked for, the flag's value or the
/// default offered; otherwise flags and defaults are used as they are.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// The configuration file to write; the secrets file goes beside it.
    #[arg(long, default_value = "regstack.toml")]
    pub config: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Ask nothing, even on a terminal.
    #[arg(long)]
    pub non_interactive: bool,
    /// Product name shown in mail.
    #[arg(long)]
    pub app_name: Option<String>,
    /// Public origin of the service; every mailed link is built from it.
    #[arg(long)]
    pub base_url: Option<String>,
    /// sqlite:…, postgres://… or mongodb://…
    #[arg(long)]
    pub database_url: Option<String>,
    /// Sender address of every mail.
    #[arg(long)]
    pub from_address: Option<String>,
    /// Mail transport: console (the log), smtp or ses.
    #[arg(long, value_parser = ["console", "smtp", "ses"])]
    pub email_backend: Option<String>,
    /// SMTP server (with --email-backend smtp).
    #[arg(long)]
    pub smtp_host: Option<String>,
}

/// The values the template is filled with.
struct Answers {
    app_name: String,
    base_url: String,
    database_url: String,
    from_address: String,
    email_backend: String,
    smtp_host: String,
}

/// Writes both files, or refuses if either exists and `--force` is off.
pub fn run(args: Args) -> Outcome {
    let config = args.config.clone();
    let secrets = secrets_env_path(&config);
    if !args.force {
        for path in [&config, &secrets] {
            if std::fs::symlink_metadata(path).is_ok() {
                return Err(Failure::Failed(format!(
                    "{} exists; nothing written (use --force to overwrite it)",
                    path.display()
                )));
            }
        }
    }
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    let answers = answers(args, interactive)?;
    let write_fail = |path: &Path, e: std::io::Error| {
        Failure::Failed(format!("cannot write {}: {e}", path.display()))
    };
    // The secret first: a TOML without its secrets file would not start.
    let secret_text = format!(
        "# {SECRETS_FILE}: secrets for regstack, read from beside regstack.toml.\n\
         # Keep it out of version control and readable by the service's user only\n\
         # (mode 0600). A REGSTACK_* variable in the environment overrides a line here.\n\
         REGSTACK_JWT_SECRET={}\n",
        generate_secret()
    );
    write_private_file(&secrets, secret_text.as_bytes()).map_err(|e| write_fail(&secrets, e))?;
    std::fs::write(&config, render(&answers)).map_err(|e| write_fail(&config, e))?;
    println!("wrote {}", config.display());
    println!("wrote {} (mode 0600)", secrets.display());
    println!("next: `regstack doctor` to check it, then `regstack serve`");
    Ok(())
}

fn answers(args: Args, interactive: bool) -> Result<Answers, Failure> {
    let d = FileConfig::default();
    let mut a = Answers {
        app_name: args.app_name.unwrap_or(d.app_name),
        base_url: args.base_url.unwrap_or(d.base_url),
        database_url: args
            .database_url
            .unwrap_or_else(|| d.database_url.expose_secret().to_owned()),
        from_address: args.from_address.unwrap_or(d.email.from_address),
        email_backend: args.email_backend.unwrap_or_else(|| "console".into()),
        smtp_host: args.smtp_host.unwrap_or_default(),
    };
    if interactive {
        let ask = |prompt: &str, default: &str| -> Result<String, Failure> {
            dialoguer::Input::<String>::new()
                .with_prompt(prompt)
                .default(default.to_owned())
                .interact_text()
                .map_err(|e| Failure::Failed(format!("reading an answer: {e}")))
        };
        a.app_name = ask("App name (shown in mail)", &a.app_name)?;
        a.base_url = ask("Public base URL", &a.base_url)?;
        a.database_url = ask(
            "Database URL (sqlite:…, postgres://…, mongodb://…)",
            &a.database_url,
        )?;
        a.from_address = ask("Sender address", &a.from_address)?;
        let backends = ["console", "smtp", "ses"];
        let current = backends
            .iter()
            .position(|b| *b == a.email_backend)
            .unwrap_or(0);
        let chosen = dialoguer::Select::new()
            .with_prompt("Mail transport")
            .items(backends)
            .default(current)
            .interact()
            .map_err(|e| Failure::Failed(format!("reading an answer: {e}")))?;
        a.email_backend = backends.get(chosen).copied().unwrap_or("console").into();
        if a.email_backend == "smtp" {
            a.smtp_host = ask("SMTP host", &a.smtp_host)?;
        }
    }
    if a.email_backend == "smtp" && a.smtp_host.trim().is_empty() {
        return Err(Failure::Usage(
            "--email-backend smtp needs --smtp-host".into(),
        ));
    }
    Ok(a)
}

/// A TOML basic string: quotes and backslashes escaped.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The commented configuration file. Values not asked for are this
/// build's defaults, read from [`FileConfig::default`].
fn render(a: &Answers) -> String {
    let d = FileConfig::default();
    let smtp = if a.email_backend == "smtp" {
        format!(
            "smtp_host = {}\nsmtp_port = {}\n# smtp_security = \"starttls\"   # or \"tls\"; \"plain\" only on a trusted network\n# smtp_username = \"…\"\n# The password belongs in {SECRETS_FILE}: REGSTACK_EMAIL__SMTP_PASSWORD=…\n",
            quoted(&a.smtp_host),
            d.email.smtp_port
        )
    } else {
        String::new()
    };
    let ses = if a.email_backend == "ses" {
        format!(
            "ses_region = {}\n# Credentials: the AWS default chain, or ses_profile = \"…\"\n",
            quoted(&d.email.ses_region)
        )
    } else {
        String::new()
    };
    format!(
        r#"# regstack.toml — written by `regstack init`.
# Every key has a default; remove what you do not change. Any key can be
# overridden by a REGSTACK_* variable (REGSTACK_EMAIL__SMTP_HOST for
# email.smtp_host). The signing secret is not here: it is jwt_secret in
# {SECRETS_FILE} beside this file (mode 0600), so this file may be committed.

# Product name shown in mail.
app_name = {app_name}
# Public origin of the service: every link in a mail is built from it.
base_url = {base_url}
# Storage: sqlite:./file.db, postgres://user@host/db or mongodb://host/db.
database_url = {database_url}
# Take the client address from Forwarded / X-Forwarded-For (only behind
# a proxy you run: anyone can send those headers).
behind_proxy = {behind_proxy}
# Mount point of the JSON API.
api_prefix = {api_prefix}

# Access-token lifetime, seconds.
jwt_ttl_seconds = {jwt_ttl}
# New accounts confirm their address before they can sign in.
require_verification = {require_verification}
# Who may register: "open" (anyone), "invite" (with a code from
# `regstack invite create` or POST /admin/invites) or "closed".
registration_mode = "open"
# The forgot/reset-password routes exist.
enable_password_reset = {enable_password_reset}
# Failed sign-ins per address within the window before a lockout.
login_lockout_threshold = {lockout_threshold}
login_lockout_window_seconds = {lockout_window}
# Log lines: "text", or "json" (one object per line, for a log pipeline).
log_format = "text"

[email]
# console: mail is written to the log (development); smtp; ses.
backend = {backend}
from_address = {from_address}
# Mail to one address per hour, at most.
max_per_address_per_hour = {max_per_hour}
{smtp}{ses}
[sessions]
# A session ends when not refreshed for this long, seconds.
refresh_idle_ttl_seconds = {idle}
# …and this long after sign-in in any case.
refresh_absolute_ttl_seconds = {absolute}
# A spent refresh token presented again within this window is a retry;
# later it is theft and ends the session.
reuse_grace_seconds = {grace}

[metrics]
# Serve Prometheus metrics at GET /metrics. Off by default: they tell how
# many sign-ins fail and why.
enabled = false
# On this address alone (a port the public cannot reach); unset, on the
# main port.
# listen = "127.0.0.1:9464"
"#,
        app_name = quoted(&a.app_name),
        base_url = quoted(&a.base_url),
        database_url = quoted(&a.database_url),
        behind_proxy = d.behind_proxy,
        api_prefix = quoted(&d.api_prefix),
        jwt_ttl = d.jwt_ttl_seconds,
        require_verification = d.require_verification,
        enable_password_reset = d.enable_password_reset,
        lockout_threshold = d.login_lockout_threshold,
        lockout_window = d.login_lockout_window_seconds,
        backend = quoted(&a.email_backend),
        from_address = quoted(&a.from_address),
        max_per_hour = d.email.max_per_address_per_hour,
        idle = d.sessions.refresh_idle_ttl_seconds,
        absolute = d.sessions.refresh_absolute_ttl_seconds,
        grace = d.sessions.reuse_grace_seconds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_file_is_read_back_as_written_with_the_secret_beside_it() {
        let a = Answers {
            app_name: "Say \"hi\"".into(),
            base_url: "https://id.example.com".into(),
            database_url: "sqlite:./x.db".into(),
            from_address: "id@example.com".into(),
            email_backend: "smtp".into(),
            smtp_host: "mail.example.com".into(),
        };
        let text = render(&a);
        let dict: figment::value::Dict = figment::Figment::new()
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&text))
            .extract()
            .unwrap();
        let (cfg, warnings) = regstack::config::from_dict(dict).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.app_name, "Say \"hi\"");
        assert_eq!(cfg.base_url, "https://id.example.com");
        assert_eq!(cfg.email.smtp_host.as_deref(), Some("mail.example.com"));
    }
}
