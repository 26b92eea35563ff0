//! `regstack promote <email>`: makes an existing account an administrator
//! (or, with `--revoke`, takes the right away).
//!
//! It exists for the day the last administrator is gone and nobody can
//! reach the admin API's `PATCH /admin/users/{id}`: the operator with the
//! configuration file is the one who can still grant the right. It goes
//! through the same store step as that route (`UserStore::admin_update`).

use std::path::PathBuf;

use regstack_ports::AdminChange;

use super::{account, Failure, Outcome, EXIT_CODES};

/// `regstack promote` arguments.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// The account's address.
    pub email: String,
    /// Withdraw administrator rights instead of granting them.
    #[arg(long)]
    pub revoke: bool,
    /// Configuration file (else $REGSTACK_CONFIG, else ./regstack.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Grants (or with `--revoke` withdraws) administrator rights; no such
/// account is exit 1.
pub async fn run(args: Args) -> Outcome {
    let (rs, user) = account(&args.email, args.config.as_deref()).await?;
    let engine = rs.engine();
    let email = &user.email;
    let grant = !args.revoke;
    let change = AdminChange {
        is_superuser: Some(grant),
        ..AdminChange::default()
    };
    engine
        .stores()
        .users
        .admin_update(&user.id, &change, engine.now())
        .await
        .map_err(|e| Failure::Failed(format!("database: {e}")))?
        .ok_or_else(|| {
            Failure::Failed(format!(
                "no account has the address {email} (deleted meanwhile?)"
            ))
        })?;
    super::record(
        &rs,
        regstack_core::events::EventKind::AdminUserUpdated,
        &user,
        serde_json::json!({ "is_superuser": grant }),
    )
    .await;
    if grant {
        println!("{email} is an administrator");
    } else {
        println!("{email} is no longer an administrator");
    }
    Ok(())
}
