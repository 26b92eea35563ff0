//! `regstack doctor`: checks a deployment's configuration and surroundings
//! before users find the problems — the configuration itself, the signing
//! secret, the database (reachable, migrated), the mail transport (and,
//! with `--send-test`, a real mail) and each OpenID provider's discovery
//! document — and prints one OK / WARN / FAIL line per check with the fix.
//!
//! It exists because each of these otherwise shows up as a failed request
//! in production: a 503 at the first sign-in, a link nobody receives, an
//! OAuth button that errors. The database is opened without migrating it;
//! the one thing doctor may write is development mode's secret file, made
//! as `serve` would make it when there is no configuration at all.

use std::path::PathBuf;
use std::time::Duration;

use regstack::config::load;
use regstack::development::{development_secret, secret_path};
use regstack::{parse_database_url, Backend, MailTransport, Settings};
use regstack_ports::{OutgoingMail, Stores};
use secrecy::ExposeSecret;

use super::{parse_email, Failure, Outcome};

/// How long one network check may take before it counts as failed.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(10);

/// `regstack doctor` arguments.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 no check failed (warnings allowed); 1 a check \
                        failed; 2 usage error."
)]
pub struct Args {
    /// Send a real test mail to this address through the configured
    /// transport.
    #[arg(long, value_name = "ADDRESS")]
    pub send_test: Option<String>,
    /// Configuration file (else $REGSTACK_CONFIG, else ./regstack.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
struct Check {
    status: Status,
    name: &'static str,
    detail: String,
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn ok(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(Status::Ok, name, detail.into(), None);
    }
    fn warn(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(Status::Warn, name, detail.into(), Some(fix.into()));
    }
    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(Status::Fail, name, detail.into(), Some(fix.into()));
    }
    fn push(&mut self, status: Status, name: &'static str, detail: String, fix: Option<String>) {
        self.0.push(Check {
            status,
            name,
            detail,
            fix,
        });
    }
    fn print(&self) {
        for c in &self.0 {
            let tag = match c.status {
                Status::Ok => "OK  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{tag}  {:<10}  {}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("      {:<10}  fix: {fix}", "");
            }
        }
    }
    fn failures(&self) -> usize {
        self.0.iter().filter(|c| c.status == Status::Fail).count()
    }
}

/// Runs every check that can run (a configuration that does not load
/// stops the rest), prints the table; exit 1 if any check failed.
pub async fn run(args: Args) -> Outcome {
    let send_to = args.send_test.as_deref().map(parse_email).transpose()?;
    let mut report = Report::default();
    if let Some(settings) = configuration(&mut report, args.config.as_deref()) {
        database(&mut report, &settings).await;
        mail(&mut report, &settings, send_to).await;
        oauth(&mut report, &settings).await;
    }
    report.print();
    match report.failures() {
        0 => Ok(()),
        n => Err(Failure::Failed(format!(
            "{n} check{} failed",
            if n == 1 { "" } else { "s" }
        ))),
    }
}

/// The configuration and the secret; the settings if they are usable.
fn configuration(report: &mut Report, path: Option<&std::path::Path>) -> Option<Settings> {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(e) => {
            report.fail(
                "config",
                format!("{e}"),
                "correct the file or variable named (`regstack init` writes a fresh one)",
            );
            return None;
        }
    };
    let mut raw = loaded.config;
    if loaded.development_mode {
        report.warn(
            "config",
            "no regstack.toml and no REGSTACK_* variables: development mode",
            "run `regstack init`, or pass --config",
        );
        let file = match parse_database_url(raw.database_url.expose_secret()) {
            Ok(Backend::Sqlite { file, .. }) => file,
            _ => None,
        }
        .unwrap_or_else(|| PathBuf::from("regstack.db"));
        match development_secret(&secret_path(&file)) {
            Ok(s) => raw.jwt_secret = s.secret,
            Err(e) => report.fail("secret", e.to_string(), "see the message"),
        }
    } else {
        let from = loaded
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "REGSTACK_* variables".into());
        report.ok("config", format!("read from {from}"));
    }
    for w in &loaded.warnings {
        report.warn(
            "config",
            w.clone(),
            "remove the key, or wait for the feature",
        );
    }
    secret(
        report,
        raw.jwt_secret.expose_secret(),
        loaded.development_mode,
    );
    let settings = match raw.split().and_then(|s| s.validate().map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            report.fail("config", e.to_string(), format!("change `{}`", e.key));
            return None;
        }
    };
    let base = settings.config.base();
    if !loaded.development_mode && base.starts_with("http://") {
        let host = base.trim_start_matches("http://");
        if !(host.starts_with("localhost") || host.starts_with("127.") || host.starts_with("[::1]"))
        {
            report.warn(
                "base_url",
                format!("{base} is not https: links in mail travel in clear"),
                "serve behind TLS and set base_url to its https:// origin",
            );
        }
    }
    Some(settings)
}

/// Strength of the signing secret: length, and not one character repeated.
fn secret(report: &mut Report, secret: &str, development: bool) {
    let min = regstack_core::config::MIN_JWT_SECRET_BYTES;
    let len = secret.len();
    let distinct = secret
        .chars()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if len == 0 {
        report.fail(
            "secret",
            "jwt_secret is not set",
            "run `regstack init`, or set REGSTACK_JWT_SECRET (`openssl rand -base64 48`)",
        );
    } else if len < min {
        report.fail(
            "secret",
            format!("jwt_secret is {len} bytes; at least {min} are needed"),
            "generate one with `openssl rand -base64 48`",
        );
    } else if distinct < 8 {
        report.fail(
            "secret",
            format!("jwt_secret has only {distinct} distinct characters: guessable"),
            "generate one with `openssl rand -base64 48`",
        );
    } else if development {
        report.ok(
            "secret",
            format!("{len} bytes (generated, development mode)"),
        );
    } else {
        report.ok("secret", format!("{len} bytes"));
    }
}

/// Opens the stores without migrating them (doctor changes nothing).
async fn connect(settings: &Settings) -> Result<Stores, String> {
    let db = &settings.database;
    let why = |e: regstack_ports::StoreError| format!("{e} ({})", super::migrate::source_of(&e));
    match parse_database_url(db.url.expose_secret()).map_err(|e| e.to_string())? {
        Backend::Sqlite { url, .. } => regstack_adapters_sql::sqlite::connect(&url)
            .await
            .map(regstack_adapters_sql::sqlite::stores)
            .map_err(why),
        Backend::Postgres { url } => regstack_adapters_sql::postgres::connect(&url)
            .await
            .map(regstack_adapters_sql::postgres::stores)
            .map_err(why),
        Backend::Mongo { url } => regstack_adapters_mongo::connect(&url, &db.mongodb_database)
            .await
            .map(regstack_adapters_mongo::stores)
            .map_err(why),
    }
}

async fn database(report: &mut Report, settings: &Settings) {
    if let Ok(Backend::Sqlite {
        file: Some(file), ..
    }) = parse_database_url(settings.database.url.expose_secret())
    {
        if !file.exists() {
            report.warn(
                "database",
                format!("{} does not exist yet", file.display()),
                "`regstack migrate` (or the first `serve`) creates it",
            );
            return;
        }
    }
    let stores = match tokio::time::timeout(NETWORK_TIMEOUT, connect(settings)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            report.fail(
                "database",
                format!("cannot connect: {e}"),
                "check database_url, that the server runs and that this host may reach it",
            );
            return;
        }
        Err(_) => {
            report.fail(
                "database",
                format!("no answer within {}s", NETWORK_TIMEOUT.as_secs()),
                "check database_url and the network between here and the database",
            );
            return;
        }
    };
    let health = stores.health.clone();
    match tokio::time::timeout(NETWORK_TIMEOUT, health.ping()).await {
        Ok(Ok(())) => report.ok("database", "reachable"),
        Ok(Err(e)) => {
            report.fail(
                "database",
                format!("ping failed: {e} ({})", super::migrate::source_of(&e)),
                "check database_url and the credentials in it",
            );
            return;
        }
        Err(_) => {
            report.fail(
                "database",
                "ping timed out",
                "check the database server's load and the network",
            );
            return;
        }
    }
    match tokio::time::timeout(NETWORK_TIMEOUT, health.schema_is_current()).await {
        Ok(Ok(true)) => report.ok("schema", "every migration of this build is applied"),
        Ok(Ok(false)) => report.warn(
            "schema",
            "migrations pending (`regstack migrate --dry-run` lists them)",
            "run `regstack migrate` (`serve` also applies them at start)",
        ),
        Ok(Err(e)) => report.fail(
            "schema",
            format!("cannot read the migration record: {e}"),
            "check the database user's rights",
        ),
        Err(_) => report.fail(
            "schema",
            "reading the migration record timed out",
            "check the database",
        ),
    }
}

async fn mail(report: &mut Report, settings: &Settings, send_to: Option<regstack_ports::Email>) {
    let mailer = match settings.mail.mailer(&settings.config.from_header()) {
        Ok(m) => m,
        Err(e) => {
            report.fail("mail", e.to_string(), "correct the [email] settings");
            return;
        }
    };
    match &settings.mail {
        MailTransport::Console { .. } => report.warn(
            "mail",
            "console: mail is written to the log, nobody receives it",
            "set [email] backend = \"smtp\" or \"ses\" for real users",
        ),
        MailTransport::Smtp(s) => report.ok("mail", format!("smtp {}:{}", s.host, s.port)),
        MailTransport::Ses(s) => report.ok("mail", format!("ses {}", s.region)),
    }
    let Some(to) = send_to else {
        return;
    };
    let mail = OutgoingMail {
        to: to.clone(),
        subject: format!(
            "{}: test mail from regstack doctor",
            settings.config.app_name
        ),
        text: "This is a test mail sent by `regstack doctor --send-test`. Nothing to do.".into(),
        html: "<p>This is a test mail sent by <code>regstack doctor --send-test</code>. \
               Nothing to do.</p>"
            .into(),
    };
    match tokio::time::timeout(NETWORK_TIMEOUT * 3, mailer.send(&mail)).await {
        Ok(Ok(())) => report.ok("test mail", format!("sent to {to}")),
        Ok(Err(e)) => report.fail(
            "test mail",
            format!(
                "sending to {to} failed: {e} ({})",
                super::migrate::source_of(&e)
            ),
            "check the transport's host, port, security and credentials",
        ),
        Err(_) => report.fail(
            "test mail",
            "the transport did not answer in time",
            "check the host and port, and that this host may reach it",
        ),
    }
}

async fn oauth(report: &mut Report, settings: &Settings) {
    let oauth = &settings.oauth;
    if oauth.providers.is_empty() {
        return;
    }
    if !oauth.enabled {
        report.warn(
            "oauth",
            "providers are configured but enable_oauth is off",
            "set enable_oauth = true, or remove the providers",
        );
    }
    let http = match regstack_oauth::HttpClient::new(NETWORK_TIMEOUT) {
        Ok(h) => h,
        Err(e) => {
            report.fail("oauth", e.to_string(), "see the message");
            return;
        }
    };
    for p in &oauth.providers {
        match regstack_oauth::probe(p, &http).await {
            Ok(Some(url)) => report.ok("oauth", format!("{}: discovery document {url}", p.name)),
            Ok(None) => report.ok(
                "oauth",
                format!("{}: fixed endpoints, nothing to fetch", p.name),
            ),
            Err(e) => report.fail(
                "oauth",
                format!("{}: {e}", p.name),
                format!(
                    "check oauth.providers.{}'s issuer/tenant and that this host reaches it",
                    p.name
                ),
            ),
        }
    }
}
