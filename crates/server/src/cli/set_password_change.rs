//! `regstack set-password-change <email>`: makes an account set a new
//! password at its next sign-in, and signs it out everywhere now.
//!
//! It exists for the operator who suspects a password leaked (or handed
//! one out by hand) and has no admin UI at hand. It goes through
//! `Engine::require_password_change`, the same step the admin API takes,
//! so the flag and the ending of every session happen as the engine
//! defines them.

use std::path::PathBuf;

use super::{account, Failure, Outcome, EXIT_CODES};

/// `regstack set-password-change` arguments.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// The account's address.
    pub email: String,
    /// Clear the flag instead of setting it.
    #[arg(long)]
    pub clear: bool,
    /// Configuration file (else $REGSTACK_CONFIG, else ./regstack.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Flags (or with `--clear` unflags) the account; no such account is
/// exit 1.
pub async fn run(args: Args) -> Outcome {
    let (rs, user) = account(&args.email, args.config.as_deref()).await?;
    let engine = rs.engine();
    let email = &user.email;
    let required = !args.clear;
    let done = engine
        .require_password_change(&user.id, required)
        .await
        .map_err(|e| Failure::Failed(format!("{e}")))?;
    if !done {
        return Err(Failure::Failed(format!(
            "no account has the address {email} (deleted meanwhile?)"
        )));
    }
    super::record(
        &rs,
        regstack_core::events::EventKind::AdminPasswordChangeRequired,
        &user,
        serde_json::json!({ "must_change_password": required }),
    )
    .await;
    if required {
        println!("{email} must set a new password at the next sign-in; its sessions have ended");
    } else {
        println!("{email} no longer has to change its password");
    }
    Ok(())
}
