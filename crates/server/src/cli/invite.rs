//! `regstack invite create|list|revoke`: the invitations
//! `registration_mode = "invite"` asks for, made by the operator with the
//! configuration file (the same engine steps as `POST /admin/invites`,
//! `GET /admin/invites`, `DELETE /admin/invites/{id}`).
//!
//! `create` prints the code once — it is stored only as a hash — and the
//! invitation's id, which `list` shows and `revoke` takes.

use std::path::PathBuf;

use regstack_core::engine::{InviteSpec, MAX_INVITE_PAGE, MAX_INVITE_TTL_SECONDS};
use regstack_core::AuthError;
use regstack_ports::Invite;
use secrecy::ExposeSecret;

use super::{load_settings, open, parse_email, Failure, Outcome, EXIT_CODES};

/// `regstack invite` arguments.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Configuration file (else $REGSTACK_CONFIG, else ./regstack.toml).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
}

/// `regstack invite` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Make an invitation and print its code (shown this once).
    #[command(after_help = EXIT_CODES)]
    Create {
        /// Admit only this address.
        #[arg(long)]
        email: Option<String>,
        /// Lifetime: seconds, or a number with s, m, h or d (default 7d,
        /// at most 90d).
        #[arg(long)]
        expires_in: Option<String>,
        /// A reminder of whom it is for.
        #[arg(long)]
        note: Option<String>,
    },
    /// List the open invitations, newest first (never their codes).
    #[command(after_help = EXIT_CODES)]
    List {
        /// Spent, revoked and expired ones too.
        #[arg(long)]
        all: bool,
    },
    /// Withdraw an invitation not yet spent.
    #[command(after_help = EXIT_CODES)]
    Revoke {
        /// The invitation's id (from `create` or `list`).
        id: String,
    },
}

/// A lifetime as written on the command line: `3600`, `90s`, `30m`, `12h`,
/// `7d`. `None` for anything else.
pub fn parse_duration(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&raw[..i], c.to_ascii_lowercase()),
        _ => (raw, 's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(unit)
}

fn state(i: &Invite, now: regstack_ports::Timestamp) -> &'static str {
    if i.revoked_at.is_some() {
        "revoked"
    } else if i.used_at.is_some() {
        "used"
    } else if i.expires_at <= now {
        "expired"
    } else {
        "open"
    }
}

fn failed(e: AuthError) -> Failure {
    Failure::Failed(format!("{e:#}"))
}

/// Runs one `regstack invite` subcommand.
pub async fn run(args: Args) -> Outcome {
    // Arguments first: a usage error needs no database.
    let spec = match &args.command {
        Command::Create {
            email,
            expires_in,
            note,
        } => {
            let expires_in_seconds = match expires_in {
                None => None,
                Some(raw) => Some(parse_duration(raw).ok_or_else(|| {
                    Failure::Usage(format!(
                        "--expires-in `{raw}`: give seconds or a number with s, m, h or d (e.g. 7d)"
                    ))
                })?),
            };
            let spec = InviteSpec {
                email: email.as_deref().map(parse_email).transpose()?,
                expires_in_seconds,
                note: note.clone(),
            };
            spec.check().map_err(|e| {
                let field = if e.field == "expires_in_seconds" {
                    "--expires-in"
                } else {
                    "--note"
                };
                let reason = if e.field == "expires_in_seconds" {
                    format!(
                        "must be between 1 minute and {} days",
                        MAX_INVITE_TTL_SECONDS / 86_400
                    )
                } else {
                    e.reason
                };
                Failure::Usage(format!("{field} {reason}"))
            })?;
            Some(spec)
        }
        _ => None,
    };
    let rs = open(load_settings(args.config.as_deref())?).await?;
    let engine = rs.engine();
    let result = match (args.command, spec) {
        (Command::Create { .. }, Some(spec)) => engine
            .create_invite(spec, None)
            .await
            .map_err(failed)
            .map(|made| {
                let i = &made.invite;
                println!("code: {}", made.code.expose_secret());
                println!("id: {}", i.id);
                if let Some(email) = &i.email {
                    println!("email: {email}");
                }
                println!("expires_at: {}", i.expires_at.to_rfc3339());
                println!("The code is shown only now; it is stored as a hash.");
            }),
        (Command::List { all }, _) => engine
            .list_invites(all, MAX_INVITE_PAGE)
            .await
            .map_err(failed)
            .map(|items| {
                let now = engine.now();
                if items.is_empty() {
                    println!("no invitations");
                }
                for i in &items {
                    println!(
                        "{}  {:7}  expires {}  {}{}",
                        i.id,
                        state(i, now),
                        i.expires_at.to_rfc3339(),
                        i.email.as_ref().map_or("(any address)", |e| e.as_str()),
                        i.note
                            .as_deref()
                            .map(|n| format!("  \"{n}\""))
                            .unwrap_or_default(),
                    );
                }
            }),
        (Command::Revoke { id }, _) => match engine.revoke_invite(&id).await {
            Ok(_) => {
                println!("invitation {id} revoked");
                Ok(())
            }
            Err(AuthError::InviteNotFound) => Err(Failure::Failed(format!(
                "no open invitation has the id {id} (unknown, spent or revoked already)"
            ))),
            Err(e) => Err(failed(e)),
        },
        (Command::Create { .. }, None) => Err(Failure::Failed("internal: no spec".into())),
    };
    rs.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn lifetimes_read_as_seconds_or_with_a_unit() {
        assert_eq!(parse_duration("3600"), Some(3600));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("7D"), Some(604_800));
        for bad in ["", "d", "7w", "-5", "1.5h", "7 d", "x7"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
