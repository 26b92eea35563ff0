//! `regstack keys rotate|drop-previous|list`: the access-token key file of
//! an asymmetric `jwt_algorithm` (EdDSA or RS256), without editing PEM by
//! hand. The procedure (README, "Asymmetric access tokens"): `rotate`,
//! restart every instance, wait `jwt_ttl_seconds`, `drop-previous`,
//! restart again. Instances read the file at start-up only.

use std::path::PathBuf;

use regstack::config::load;
use regstack::keys;
use regstack_core::config::JwtAlgorithm;
use secrecy::SecretString;

use super::{Failure, Outcome, EXIT_CODES};

/// `regstack keys` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Make a new signing key; the current one stays, verifying only, and
    /// any older one is dropped. EdDSA keys are generated; RS256 needs --key.
    #[command(after_help = EXIT_CODES)]
    Rotate {
        /// Configuration file (else $REGSTACK_CONFIG, else ./regstack.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A PEM private key to sign with from now on, instead of a
        /// generated one (required for RS256).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Drop every key but the signing one (after jwt_ttl_seconds have
    /// passed since the rotation, or at once to cut those tokens off).
    #[command(after_help = EXIT_CODES)]
    DropPrevious {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the key ids (`kid`), the signing one first.
    #[command(after_help = EXIT_CODES)]
    List {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The key file and algorithm of the configuration at `config`.
fn key_file(config: Option<&std::path::Path>) -> Result<(PathBuf, JwtAlgorithm), Failure> {
    let loaded = load(config).map_err(|e| Failure::Usage(format!("{e:#}")))?;
    let c = loaded.config;
    if !c.jwt_algorithm.is_asymmetric() {
        return Err(Failure::Usage(format!(
            "jwt_algorithm is {}, which signs with jwt_secret: keys are used only with jwt_algorithm = \"EdDSA\" or \"RS256\"",
            c.jwt_algorithm.as_str()
        )));
    }
    let dir = c.secrets_dir.unwrap_or_else(|| PathBuf::from("."));
    Ok((
        keys::keys_path(c.jwt_keys_file.as_deref(), &dir),
        c.jwt_algorithm,
    ))
}

/// Runs one `keys` subcommand.
pub fn run(cmd: Command) -> Outcome {
    match cmd {
        Command::Rotate { config, key } => {
            let (path, alg) = key_file(config.as_deref())?;
            let new_key = match key {
                Some(file) => Some(SecretString::from(
                    std::fs::read_to_string(&file)
                        .map_err(|e| Failure::Usage(format!("--key {}: {e}", file.display())))?,
                )),
                None => None,
            };
            let r = keys::rotate(&path, alg, new_key).map_err(Failure::Failed)?;
            println!("{}: signing with {}", path.display(), r.signing);
            if let Some(previous) = &r.previous {
                println!("still accepted until dropped: {previous}");
            }
            for kid in &r.dropped {
                println!("dropped: {kid}");
            }
            println!("restart every instance to sign with the new key");
            Ok(())
        }
        Command::DropPrevious { config } => {
            let (path, alg) = key_file(config.as_deref())?;
            let dropped = keys::drop_previous(&path, alg).map_err(Failure::Failed)?;
            if dropped.is_empty() {
                println!("{}: no previous key", path.display());
            }
            for kid in dropped {
                println!("dropped: {kid}");
            }
            Ok(())
        }
        Command::List { config } => {
            let (path, alg) = key_file(config.as_deref())?;
            for kid in keys::list(&path, alg).map_err(Failure::Failed)? {
                println!("{kid}");
            }
            Ok(())
        }
    }
}
