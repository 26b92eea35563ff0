//! `regstack audit tail|export`: the audit log from the command line, for
//! the operator with the configuration file — when the admin API is off,
//! or to hand the log to another system.
//!
//! `tail` prints the newest entries, one line each, and with `--follow`
//! keeps printing new ones. `export --format jsonl` writes every matching
//! entry oldest first, one JSON object per line (the shape
//! `GET /admin/audit` answers with), paging through the store so a log of
//! any size streams in bounded memory.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use regstack_http_axum::wire::AuditEntryOut;
use regstack_ports::{AuditCursor, AuditEntry, AuditQuery, UserId};

use super::{load_settings, open, parse_email, Failure, Outcome, EXIT_CODES};

/// Entries read per store call.
const PAGE: u32 = 1000;
/// How far back `tail --follow` looks again on every poll: an entry is
/// written shortly after the instant it records (another instance's queue
/// may hold it for a moment), so one that lands behind the last printed
/// instant is still printed, once.
const FOLLOW_OVERLAP: TimeDelta = TimeDelta::seconds(30);

/// `regstack audit` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print the newest entries (and with --follow, new ones as they come).
    #[command(after_help = EXIT_CODES)]
    Tail(TailArgs),
    /// Write matching entries oldest first, one JSON object per line.
    #[command(after_help = EXIT_CODES)]
    Export(ExportArgs),
}

/// Which entries: the filters both subcommands take.
#[derive(clap::Args, Debug)]
pub struct Filter {
    /// Only entries about this account id (or done by it as administrator).
    #[arg(long)]
    pub user_id: Option<String>,
    /// Only entries naming this address.
    #[arg(long)]
    pub email: Option<String>,
    /// Only entries of this kind (an event name such as `login_failed`).
    #[arg(long)]
    pub kind: Option<String>,
    /// Configuration file (else $REGSTACK_CONFIG, else ./regstack.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `regstack audit tail` arguments.
#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// How many of the newest entries to print first.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: u32,
    /// Keep printing new entries until interrupted.
    #[arg(short, long)]
    pub follow: bool,
    /// Seconds between two looks for new entries with --follow.
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: Filter,
}

/// The formats `export` writes.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
}

/// `regstack audit export` arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Entries at or after this instant (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Entries strictly before this instant (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    #[command(flatten)]
    pub filter: Filter,
}

/// Runs `regstack audit <subcommand>`.
pub async fn run(cmd: Command) -> Outcome {
    match cmd {
        Command::Tail(args) => tail(args).await,
        Command::Export(args) => export(args).await,
    }
}

fn instant(raw: Option<&str>, flag: &str) -> Result<Option<DateTime<Utc>>, Failure> {
    raw.map(|r| {
        DateTime::parse_from_rfc3339(r.trim())
            .map(|t| t.to_utc())
            .map_err(|_| {
                Failure::Usage(format!(
                    "--{flag} `{r}` is not an RFC 3339 instant (e.g. 2026-12-01T00:00:00Z)"
                ))
            })
    })
    .transpose()
}

/// The query the filter flags describe; a malformed flag is exit 2.
fn base_query(f: &Filter) -> Result<AuditQuery, Failure> {
    let user_id = f
        .user_id
        .as_deref()
        .map(|raw| {
            UserId::parse(raw.trim())
                .ok_or_else(|| Failure::Usage(format!("--user-id `{raw}` is not an account id")))
        })
        .transpose()?;
    let email = f.email.as_deref().map(parse_email).transpose()?;
    if let Some(kind) = &f.kind {
        if regstack_core::events::EventKind::from_name(kind).is_none() {
            return Err(Failure::Usage(format!(
                "--kind `{kind}` is not an event kind (e.g. login_failed, admin_user_updated)"
            )));
        }
    }
    Ok(AuditQuery {
        user_id,
        email,
        kind: f.kind.clone(),
        limit: PAGE,
        ..AuditQuery::default()
    })
}

fn json_line(e: &AuditEntry) -> String {
    serde_json::to_string(&AuditEntryOut::from(e)).unwrap_or_default()
}

fn text_line(e: &AuditEntry) -> String {
    let mut line = format!(
        "{} {}",
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.kind
    );
    let mut field = |name: &str, v: Option<&str>| {
        if let Some(v) = v {
            line.push_str(&format!(" {name}={v}"));
        }
    };
    field("email", e.email.as_ref().map(|m| m.as_str()));
    field("user", e.user_id.as_ref().map(UserId::as_str));
    field("actor", e.actor_id.as_ref().map(UserId::as_str));
    field("ip", e.ip.as_deref());
    if e.detail != "{}" {
        line.push(' ');
        line.push_str(&e.detail);
    }
    line
}

fn database(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(format!("database: {e}"))
}

/// Writes one line; a closed pipe (`| head`) ends the command quietly.
fn emit(out: &mut impl Write, line: &str) -> Result<bool, Failure> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure::Failed(format!("writing: {e}"))),
    }
}

async fn tail(args: TailArgs) -> Outcome {
    let base = base_query(&args.filter)?;
    let rs = open(load_settings(args.filter.config.as_deref())?).await?;
    let store = rs.engine().stores().audit.clone();
    let line = |e: &AuditEntry| {
        if args.json {
            json_line(e)
        } else {
            text_line(e)
        }
    };
    let mut newest = store
        .query(&AuditQuery {
            limit: args.lines,
            ..base.clone()
        })
        .await
        .map_err(database)?;
    newest.reverse();
    let mut out = std::io::stdout().lock();
    for e in &newest {
        if !emit(&mut out, &line(e))? {
            return Ok(());
        }
    }
    out.flush().ok();
    drop(out);
    if !args.follow {
        return Ok(());
    }
    // The ids already there (printed or not: older than the last `-n`)
    // within the overlap window, so a later look prints only what is new.
    let mut last = newest.last().map_or_else(|| rs.engine().now(), |e| e.at);
    let mut printed: Vec<(DateTime<Utc>, String)> = Vec::new();
    let mut after: Option<AuditCursor> = None;
    loop {
        let page = store
            .query(&AuditQuery {
                since: Some(last - FOLLOW_OVERLAP),
                after: after.clone(),
                newest_first: false,
                ..base.clone()
            })
            .await
            .map_err(database)?;
        printed.extend(page.iter().map(|e| (e.at, e.id.clone())));
        last = page.iter().map(|e| e.at).fold(last, DateTime::max);
        match page.last() {
            Some(e) if page.len() == PAGE as usize => {
                after = Some(AuditCursor {
                    at: e.at,
                    id: e.id.clone(),
                });
            }
            _ => break,
        }
    }
    loop {
        tokio::time::sleep(Duration::from_secs(args.interval.max(1))).await;
        let since = last - FOLLOW_OVERLAP;
        printed.retain(|(at, _)| *at >= since);
        let seen: HashSet<String> = printed.iter().map(|(_, id)| id.clone()).collect();
        let mut after: Option<AuditCursor> = None;
        loop {
            let page = store
                .query(&AuditQuery {
                    since: Some(since),
                    after: after.clone(),
                    newest_first: false,
                    ..base.clone()
                })
                .await
                .map_err(database)?;
            let mut out = std::io::stdout().lock();
            for e in page.iter().filter(|e| !seen.contains(&e.id)) {
                if !emit(&mut out, &line(e))? {
                    return Ok(());
                }
                printed.push((e.at, e.id.clone()));
                last = last.max(e.at);
            }
            out.flush().ok();
            match page.last() {
                Some(e) if page.len() == PAGE as usize => {
                    after = Some(AuditCursor {
                        at: e.at,
                        id: e.id.clone(),
                    });
                }
                _ => break,
            }
        }
    }
}

async fn export(args: ExportArgs) -> Outcome {
    let Format::Jsonl = args.format;
    let mut q = base_query(&args.filter)?;
    q.since = instant(args.since.as_deref(), "since")?;
    q.until = instant(args.until.as_deref(), "until")?;
    q.newest_first = false;
    let rs = open(load_settings(args.filter.config.as_deref())?).await?;
    let store = rs.engine().stores().audit.clone();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut count = 0u64;
    loop {
        let page = store.query(&q).await.map_err(database)?;
        for e in &page {
            if !emit(&mut out, &json_line(e))? {
                return Ok(());
            }
            count += 1;
        }
        match page.last() {
            Some(e) if page.len() == PAGE as usize => {
                q.after = Some(AuditCursor {
                    at: e.at,
                    id: e.id.clone(),
                });
            }
            _ => break,
        }
    }
    out.flush()
        .map_err(|e| Failure::Failed(format!("writing: {e}")))?;
    eprintln!("{count} entries exported");
    Ok(())
}
