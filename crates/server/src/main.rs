//! The `regstack` binary: `serve`, `migrate`, `purge`.
//!
//! With no configuration at all, `serve` runs the zero-config development
//! mode, on a loopback address only unless `--dev` is given (the guards are
//! in `regstack::development`).

mod cli;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use regstack::config::{load, LogFormat, MetricsSection, TracingSection};
use regstack::development::{development_secret, exposure, secret_path, SecretOrigin};
use regstack::{parse_database_url, Backend, MailTransport, RegStack, Settings};
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(
    name = "regstack",
    version,
    about = "Account management server: registration, login, sessions, recovery."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve {
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to bind (0 picks a free one).
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Configuration file (else $REGSTACK_CONFIG, else ./regstack.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Allow the zero-config development mode (no configuration at all:
        /// mail bodies with live links in the log, a generated secret) on a
        /// --host that is not loopback. Only on a network you trust.
        #[arg(long)]
        dev: bool,
    },
    /// Apply pending database migrations and exit.
    #[command(after_help = cli::EXIT_CODES)]
    Migrate {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// List the pending migrations without applying them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete expired rows (pending registrations, tokens, sessions, …).
    Purge {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Write a commented regstack.toml and a private secrets file beside it.
    Init(cli::init::Args),
    /// Create a verified administrator account (password from a prompt or stdin).
    CreateAdmin(cli::create_admin::Args),
    /// Make an account set a new password at its next sign-in; ends its sessions.
    SetPasswordChange(cli::set_password_change::Args),
    /// Make an existing account an administrator (or `--revoke` it).
    Promote(cli::promote::Args),
    /// Make, list or revoke invitations (registration_mode = "invite").
    Invite(cli::invite::Args),
    /// Check configuration, secret, database, mail and OAuth providers.
    Doctor(cli::doctor::Args),
    /// Probe a running instance end to end through its HTTP API.
    Validate(cli::validate::Args),
    /// Read the audit log: `tail [--follow]`, `export --format jsonl`.
    #[command(subcommand)]
    Audit(cli::audit::Command),
    /// Access-token keys (jwt_algorithm = EdDSA or RS256): `rotate`, `drop-previous`, `list`.
    #[command(subcommand)]
    Keys(cli::keys::Command),
}

/// Logs to stdout, filtered by `RUST_LOG`; coloured only on a terminal, so
/// a log piped to a file or to `grep` (the README's quick start reads the
/// mailed links from one) holds no escape sequences. With
/// `log_format = "json"`, one JSON object per line, each with the spans it
/// happened in (`spans`: the request's carries `request_id`, a flow's its
/// name and the account's ids once known), and nothing else on stdout: the
/// start-up banner goes to stderr. With `[tracing] otlp_endpoint` (feature
/// `otel`), the same spans, through the same filter, also go to an
/// OpenTelemetry collector; the export is returned, to be flushed at exit.
fn init_logging(format: LogFormat, tracing: &TracingSection) -> Result<Option<OtelExport>, String> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{fmt, EnvFilter};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let (text, json) = match format {
        LogFormat::Text => (
            Some(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(std::io::stdout().is_terminal()),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_span_list(true),
            ),
        ),
    };
    // An unusable endpoint is reported by the command's own configuration
    // check (`tracing.otlp_endpoint`), with the other keys.
    #[cfg(feature = "otel")]
    let export = match tracing.traces_url() {
        Ok(Some(url)) => Some(OtelExport::start(&url, &tracing.service_name)?),
        _ => None,
    };
    #[cfg(not(feature = "otel"))]
    let export: Option<OtelExport> = {
        let _ = tracing;
        None
    };
    #[cfg(feature = "otel")]
    let otel = export.as_ref().map(|e| e.layer());
    #[cfg(not(feature = "otel"))]
    let otel: Option<tracing_subscriber::layer::Identity> = None;
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .init();
    Ok(export)
}

#[cfg(feature = "otel")]
use regstack::otel::OtelExport;

/// Without the `otel` feature there is never an export.
#[cfg(not(feature = "otel"))]
enum OtelExport {}

#[cfg(not(feature = "otel"))]
impl OtelExport {
    fn shutdown(self) {
        match self {}
    }
}

/// The log format and the span export, read before logging starts: from
/// the configuration the command will load (`log_format` and `[tracing]`,
/// or their `REGSTACK_*` variables). A configuration that does not load
/// logs as text without export, and the command then reports why.
fn logging_config(cli: &Cli) -> (LogFormat, TracingSection) {
    let config = match &cli.command {
        None => None,
        Some(
            Command::Serve { config, .. }
            | Command::Migrate { config, .. }
            | Command::Purge { config },
        ) => config.as_deref(),
        Some(_) => return (LogFormat::Text, TracingSection::default()),
    };
    load(config).map_or((LogFormat::Text, TracingSection::default()), |l| {
        (l.config.log_format, l.config.tracing)
    })
}

/// The start-up banner: stdout, unless stdout carries JSON log lines.
macro_rules! banner {
    ($json:expr, $($arg:tt)*) => {
        if $json {
            eprintln!($($arg)*);
        } else {
            println!($($arg)*);
        }
    };
}

struct Prepared {
    settings: Settings,
    metrics: MetricsSection,
    log_format: LogFormat,
    development_mode: bool,
    secret_note: Option<String>,
}

/// Where `serve` listens, for the development-mode check: the address it
/// bound and whether `--dev` was given.
struct Listening {
    ip: IpAddr,
    dev: bool,
}

fn prepare(
    config_path: Option<&std::path::Path>,
    base_url_hint: Option<String>,
    listening: Option<Listening>,
) -> anyhow::Result<Prepared> {
    let loaded = load(config_path)?;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let mut config = loaded.config;
    let mut secret_note = None;
    if loaded.development_mode {
        // Zero-config development mode (no configuration file, no
        // REGSTACK_* variable: a generated secret, mail bodies with live
        // links in the log), which must not face a network unasked: decided before the secret file is made.
        if let Some(l) = &listening {
            exposure(l.ip, l.dev).map_err(anyhow::Error::msg)?;
        }
        if config.email.log_bodies.is_none() {
            config.email.log_bodies = Some(true);
        }
        if let Some(base) = base_url_hint {
            config.base_url = base;
        }
        // Development mode has no configuration, so the database is the
        // default SQLite file; the secret lives beside it.
        let file = match parse_database_url(config.database_url.expose_secret())? {
            Backend::Sqlite { file, .. } => file,
            _ => None,
        }
        .unwrap_or_else(|| PathBuf::from("regstack.db"));
        let path = secret_path(&file);
        config.secrets_dir = path.parent().map(std::path::Path::to_path_buf);
        let secret = development_secret(&path)?;
        config.jwt_secret = secret.secret;
        secret_note = Some(format!(
            "{} ({})",
            path.display(),
            match secret.origin {
                SecretOrigin::Kept => "kept from an earlier run",
                SecretOrigin::Generated => "generated now, mode 0600",
                SecretOrigin::Replaced =>
                    "the file held too short a secret: replaced by a new one, mode 0600",
            }
        ));
    } else if listening.is_some_and(|l| l.dev) {
        tracing::warn!("--dev has no effect: configuration is present, so development mode is off");
    }
    let (metrics, log_format) = (config.metrics.clone(), config.log_format);
    let settings = config.split()?;
    settings.validate()?;
    Ok(Prepared {
        settings,
        metrics,
        log_format,
        development_mode: loaded.development_mode,
        secret_note,
    })
}

async fn serve(
    host: String,
    port: u16,
    config_path: Option<PathBuf>,
    dev: bool,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    let addr = listener.local_addr()?;
    let shown_host = if addr.ip().is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let local_url = format!("http://{shown_host}:{}", addr.port());
    let listening = Listening { ip: addr.ip(), dev };
    let p = prepare(
        config_path.as_deref(),
        Some(local_url.clone()),
        Some(listening),
    )?;
    let database = p.settings.database.url.expose_secret().to_owned();
    let mail = match &p.settings.mail {
        MailTransport::Console { log_bodies: true } => "console (bodies logged)".to_owned(),
        MailTransport::Console { log_bodies: false } => "console".to_owned(),
        MailTransport::Smtp(smtp) => format!("smtp {}:{}", smtp.host, smtp.port),
        MailTransport::Ses(ses) => format!("ses {}", ses.region),
    };
    let api = format!("{local_url}{}", p.settings.http.api_prefix);
    let http = p.settings.http.clone();
    let rs = RegStack::builder(p.settings).build().await?;
    let housekeeping = rs.spawn_housekeeping(Duration::from_secs(300));
    let health = regstack_http_axum::with_common_layers(
        rs.health_router().fallback(regstack_http_axum::not_found),
    );
    let mut app = rs
        .router()
        .merge(regstack_http_axum::with_hsts(health, &http));
    let json = p.log_format == LogFormat::Json;
    // Metrics: off unless enabled; on a listener of their own when
    // `metrics.listen` names one, else at /metrics on this port.
    let metrics_at = match p.metrics.listen_addr()? {
        _ if !p.metrics.enabled => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on metrics.listen {addr}"))?;
            let bound = listener.local_addr()?;
            let router = rs.metrics_router().fallback(regstack_http_axum::not_found);
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "metrics listener stopped");
                }
            });
            Some(format!("http://{bound}/metrics"))
        }
        None => {
            app = app.merge(rs.metrics_router());
            Some(format!("{local_url}/metrics"))
        }
    };

    banner!(
        json,
        "regstack {} listening on {local_url}",
        env!("CARGO_PKG_VERSION")
    );
    banner!(json, "  API:       {api}");
    banner!(json, "  health:    {local_url}/healthz, {local_url}/readyz");
    if let Some(at) = &metrics_at {
        banner!(json, "  metrics:   {at}");
    }
    banner!(
        json,
        "  database:  {}",
        if p.development_mode {
            database.clone()
        } else {
            "(from configuration)".into()
        }
    );
    banner!(json, "  mail:      {mail}");
    if let Some(note) = &p.secret_note {
        banner!(json, "  secret:    {note}");
    }
    if p.development_mode {
        banner!(
            json,
            "  development mode — not for production (no regstack.toml, no REGSTACK_* variables)"
        );
    }

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(regstack::shutdown_signal())
    .await?;
    housekeeping.abort();
    // After the last request: closing the database checkpoints SQLite's
    // write-ahead log, so a stopped server leaves one `regstack.db` file.
    rs.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (format, tracing) = logging_config(&cli);
    let export = match init_logging(format, &tracing) {
        Ok(export) => export,
        Err(e) => {
            eprintln!("regstack: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with causes), no backtrace: most failures
            // here are configuration the operator must fix.
            eprintln!("regstack: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    if let Some(export) = export {
        export.shutdown();
    }
    code
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve {
        host: "127.0.0.1".into(),
        port: 8000,
        config: None,
        dev: false,
    }) {
        Command::Serve {
            host,
            port,
            config,
            dev,
        } => serve(host, port, config, dev).await,
        Command::Migrate {
            config,
            dry_run: true,
        } => cli::finish(cli::migrate::dry_run(config.as_deref()).await),
        Command::Migrate { config, .. } => {
            let p = prepare(config.as_deref(), None, None)?;
            let database = &p.settings.database;
            regstack::open_stores(database.url.expose_secret(), &database.mongodb_database).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Purge { config } => {
            let p = prepare(config.as_deref(), None, None)?;
            let rs = RegStack::builder(p.settings).build().await?;
            let report = rs.engine().purge_expired().await;
            rs.shutdown().await;
            println!("{:?}", report?);
            Ok(())
        }
        Command::Init(args) => cli::finish(cli::init::run(args)),
        Command::CreateAdmin(args) => cli::finish(cli::create_admin::run(args).await),
        Command::SetPasswordChange(args) => cli::finish(cli::set_password_change::run(args).await),
        Command::Promote(args) => cli::finish(cli::promote::run(args).await),
        Command::Invite(args) => cli::finish(cli::invite::run(args).await),
        Command::Doctor(args) => cli::finish(cli::doctor::run(args).await),
        Command::Validate(args) => cli::finish(cli::validate::run(args).await),
        Command::Audit(cmd) => cli::finish(cli::audit::run(cmd).await),
        Command::Keys(cmd) => cli::finish(cli::keys::run(cmd)),
    }
}
