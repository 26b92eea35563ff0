//! `regstack create-admin <email>`: the first administrator of a new
//! deployment, made from the command line.
//!
//! It exists because nobody can be promoted through the API before an
//! administrator exists. The account is created verified (the operator
//! vouches for the address) through the user store's own `insert`, with
//! the password hashed by the configured Argon2 parameters — the same
//! hasher `serve` builds — so it signs in like any other account. The
//! password never travels in argv (visible to every user in the process
//! list): a no-echo prompt on a terminal, else standard input.

use std::path::PathBuf;

use regstack_core::password::Argon2Hasher;
use regstack_core::password_policy::PasswordRefusal;
use regstack_core::AuthError;
use regstack_ports::{NewPassword, NewUser, PasswordHasher, StoreError, UserId};

use super::{load_settings, open, parse_email, read_password, Failure, Outcome, EXIT_CODES};

/// `regstack create-admin` arguments.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// The administrator's address.
    pub email: String,
    /// Read the password from the first line of standard input, even on a
    /// terminal (without a terminal it always is).
    #[arg(long)]
    pub password_stdin: bool,
    /// Display name.
    #[arg(long)]
    pub full_name: Option<String>,
    /// Configuration file (else $REGSTACK_CONFIG, else ./regstack.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Creates the account; a taken address is exit 1 and changes nothing.
pub async fn run(args: Args) -> Outcome {
    let email = parse_email(&args.email)?;
    let settings = load_settings(args.config.as_deref())?;
    let password = read_password("Password for the administrator", args.password_stdin)?;
    let password = NewPassword::parse(password).map_err(|e| {
        Failure::Usage(format!(
            "the password is refused: {e} ({}–{} characters)",
            NewPassword::MIN_CHARS,
            NewPassword::MAX_CHARS
        ))
    })?;
    let hasher = Argon2Hasher::new(&settings.config.password)
        .map_err(|e| Failure::Usage(format!("password: {e}")))?;
    let rs = open(settings).await?;
    let engine = rs.engine();
    engine
        .screen_new_password(&password, &email)
        .await
        .map_err(|e| match e {
            AuthError::PasswordRefused(r) => Failure::Usage(format!(
                "the password is refused: {}",
                match r {
                    PasswordRefusal::Common => "it is too common",
                    PasswordRefusal::ContextWord =>
                        "it is made of the email address or the site name",
                    PasswordRefusal::Breached => "it has appeared in a data breach",
                }
            )),
            AuthError::PasswordScreenUnavailable => Failure::Failed(
                "the breached-password screen is unavailable (password.breach_fail_closed); \
                 nothing changed, try again"
                    .to_owned(),
            ),
            e => Failure::Failed(e.to_string()),
        })?;
    let stores = engine.stores();
    let failed = |e: StoreError| Failure::Failed(format!("database: {e}"));
    if stores
        .users
        .find_by_email(&email)
        .await
        .map_err(failed)?
        .is_some()
    {
        return Err(Failure::Failed(format!(
            "{email} already has an account; nothing changed"
        )));
    }
    let hash = hasher
        .hash(password.secret())
        .await
        .map_err(|e| Failure::Failed(format!("hashing the password: {e}")))?;
    let user = stores
        .users
        .insert(NewUser {
            id: UserId::generate(),
            email: email.clone(),
            password_hash: Some(hash),
            full_name: args.full_name,
            is_verified: true,
            is_superuser: true,
            created_at: engine.now(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                Failure::Failed(format!("{email} already has an account; nothing changed"))
            }
            other => failed(other),
        })?;
    super::record(
        &rs,
        regstack_core::events::EventKind::UserRegistered,
        &user,
        serde_json::json!({ "is_superuser": true, "is_verified": true }),
    )
    .await;
    println!("administrator {} created (id {})", user.email, user.id);
    Ok(())
}
