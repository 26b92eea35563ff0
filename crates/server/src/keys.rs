//! The access-token key file of an asymmetric `jwt_algorithm` (EdDSA or
//! RS256): reading it, generating it, rotating it.
//!
//! One PEM file (`jwt_keys_file`, by default `regstack.jwt-keys.pem` in the
//! secrets directory: beside the configuration file, or beside the SQLite
//! file in development mode) holds the private keys, the one that signs
//! first, then the rotated-out one whose tokens may still be alive. Core
//! parses them ([`regstack_core::jwt::SigningKeys`]); this module does the
//! I/O core must not. The file is treated like the development secret: it
//! must be a regular file only its owner can read, and it is written
//! atomically with mode 0600 ([`crate::development::write_private_file`]).
//!
//! An EdDSA key is generated when the file does not exist yet (so turning
//! the option on needs no key ceremony); an RSA key never is — the operator
//! brings one (`openssl genpkey -algorithm RSA -pkeyopt
//! rsa_keygen_bits:3072`), since generating RSA keys is a job for a tool
//! that does only that.

use std::path::{Path, PathBuf};

use regstack_core::config::JwtAlgorithm;
use regstack_core::jwt::SigningKeys;
use secrecy::{ExposeSecret, SecretString};

use crate::development::{check_file, read_checked, write_private_file};

/// The key file's name in the secrets directory when `jwt_keys_file` is
/// not set.
pub const KEYS_FILE: &str = "regstack.jwt-keys.pem";

/// Where the key file is: `jwt_keys_file` as given, else [`KEYS_FILE`] in
/// `secrets_dir`.
pub fn keys_path(jwt_keys_file: Option<&Path>, secrets_dir: &Path) -> PathBuf {
    jwt_keys_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| secrets_dir.join(KEYS_FILE))
}

/// The private keys in the file at `path`, one PEM block each, the signing
/// one first. With `generate` and EdDSA, a missing file is created with one
/// new key. The error names the path and what to do; it never holds key
/// material.
pub fn read_keys(
    path: &Path,
    algorithm: JwtAlgorithm,
    generate: bool,
) -> Result<Vec<SecretString>, String> {
    let at = |reason: String| format!("{}: {reason}", path.display());
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if generate && algorithm == JwtAlgorithm::EdDSA {
                let key = generate_ed25519()?;
                write_private_file(path, key.expose_secret().as_bytes())
                    .map_err(|e| at(e.to_string()))?;
                tracing::info!(path = %path.display(), "generated an Ed25519 access-token key");
                return Ok(vec![key]);
            }
            return Err(at(match algorithm {
                JwtAlgorithm::RS256 => "no such file. Make an RSA key with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out <file>` (mode 0600)".into(),
                _ => "no such file; `regstack keys rotate` makes one".into(),
            }));
        }
        Err(e) => return Err(at(e.to_string())),
    };
    check_file(&meta).map_err(at)?;
    let text = read_checked(path, &meta).map_err(at)?;
    let blocks = pem::parse_many(text.as_bytes()).map_err(|_| at("is not PEM".into()))?;
    if blocks.is_empty() {
        return Err(at("holds no PEM block".into()));
    }
    let keys: Vec<SecretString> = blocks
        .iter()
        .map(|b| SecretString::from(pem::encode(b)))
        .collect();
    SigningKeys::parse(algorithm, &keys).map_err(at)?;
    Ok(keys)
}

/// A new Ed25519 private key as PKCS#8 PEM, from the OS's generator.
pub fn generate_ed25519() -> Result<SecretString, String> {
    let der = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| "the system random generator failed".to_owned())?;
    Ok(SecretString::from(pem::encode(&pem::Pem::new(
        "PRIVATE KEY",
        der.as_ref().to_vec(),
    ))))
}

/// What a rotation did, by `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The key that signs from now on.
    pub signing: String,
    /// The key that only verifies now (the one that signed before).
    pub previous: Option<String>,
    /// Keys dropped: rotated out before the previous one.
    pub dropped: Vec<String>,
}

/// Rotates the key file: `new_key` (PEM; generated for EdDSA when `None`)
/// signs from now on, the current signing key stays as the previous one,
/// and any older key is dropped. Checked before anything is written; the
/// file is replaced atomically.
pub fn rotate(
    path: &Path,
    algorithm: JwtAlgorithm,
    new_key: Option<SecretString>,
) -> Result<Rotated, String> {
    let existing = if path.exists() {
        read_keys(path, algorithm, false)?
    } else {
        Vec::new()
    };
    let new_key = match new_key {
        Some(k) => k,
        None if algorithm == JwtAlgorithm::EdDSA => generate_ed25519()?,
        None => {
            return Err(
                "RS256 keys are not generated: pass --key <file> with a new RSA private key (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072)".into(),
            )
        }
    };
    let mut keys = vec![new_key];
    keys.extend(existing.first().cloned());
    let kept = SigningKeys::parse(algorithm, &keys).map_err(|e| format!("the new key: {e}"))?;
    let all_before = if existing.is_empty() {
        Vec::new()
    } else {
        SigningKeys::parse(algorithm, &existing)?
            .kids()
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    write_keys(path, &keys)?;
    let kids: Vec<String> = kept.kids().into_iter().map(str::to_owned).collect();
    Ok(Rotated {
        signing: kids[0].clone(),
        previous: kids.get(1).cloned(),
        dropped: all_before.into_iter().skip(1).collect(),
    })
}

/// Drops every key but the signing one: once the previous key's tokens
/// have expired (`jwt_ttl_seconds` after the rotation), or at once to cut
/// them off. Returns the dropped `kid`s.
pub fn drop_previous(path: &Path, algorithm: JwtAlgorithm) -> Result<Vec<String>, String> {
    let existing = read_keys(path, algorithm, false)?;
    let kids: Vec<String> = SigningKeys::parse(algorithm, &existing)?
        .kids()
        .into_iter()
        .map(str::to_owned)
        .collect();
    write_keys(path, &existing[..1])?;
    Ok(kids.into_iter().skip(1).collect())
}

/// The `kid`s in the key file, the signing one first.
pub fn list(path: &Path, algorithm: JwtAlgorithm) -> Result<Vec<String>, String> {
    let existing = read_keys(path, algorithm, false)?;
    Ok(SigningKeys::parse(algorithm, &existing)?
        .kids()
        .into_iter()
        .map(str::to_owned)
        .collect())
}

fn write_keys(path: &Path, keys: &[SecretString]) -> Result<(), String> {
    let mut text = String::new();
    for k in keys {
        text.push_str(k.expose_secret().trim_end());
        text.push('\n');
    }
    write_private_file(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eddsa_key_file_is_generated_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYS_FILE);
        let first = read_keys(&path, JwtAlgorithm::EdDSA, true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let again = read_keys(&path, JwtAlgorithm::EdDSA, true).unwrap();
        assert_eq!(
            first[0].expose_secret(),
            again[0].expose_secret(),
            "the key is kept across starts"
        );
        // RS256 is never generated; a missing file says how to make one.
        let rsa = dir.path().join("rsa.pem");
        let err = read_keys(&rsa, JwtAlgorithm::RS256, true).unwrap_err();
        assert!(err.contains("openssl genpkey"), "{err}");
        assert!(!rsa.exists());
    }

    #[test]
    fn a_key_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYS_FILE);
        read_keys(&path, JwtAlgorithm::EdDSA, true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = read_keys(&path, JwtAlgorithm::EdDSA, true).unwrap_err();
            assert!(err.contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn rotation_keeps_one_previous_key_and_drop_previous_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEYS_FILE);
        let first = rotate(&path, JwtAlgorithm::EdDSA, None).unwrap();
        assert_eq!(first.previous, None);
        let second = rotate(&path, JwtAlgorithm::EdDSA, None).unwrap();
        assert_eq!(second.previous.as_deref(), Some(first.signing.as_str()));
        let third = rotate(&path, JwtAlgorithm::EdDSA, None).unwrap();
        assert_eq!(third.previous.as_deref(), Some(second.signing.as_str()));
        assert_eq!(second.dropped, Vec::<String>::new());
        assert_eq!(third.dropped, vec![first.signing.clone()]);
        assert_eq!(
            list(&path, JwtAlgorithm::EdDSA).unwrap(),
            vec![third.signing.clone(), second.signing.clone()]
        );
        let dropped = drop_previous(&path, JwtAlgorithm::EdDSA).unwrap();
        assert_eq!(dropped, vec![second.signing]);
        assert_eq!(
            list(&path, JwtAlgorithm::EdDSA).unwrap(),
            vec![third.signing]
        );
        // A bad new key changes nothing.
        let before = std::fs::read_to_string(&path).unwrap();
        assert!(rotate(
            &path,
            JwtAlgorithm::EdDSA,
            Some(SecretString::from("not a key"))
        )
        .is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert!(rotate(&path, JwtAlgorithm::RS256, None).is_err());
    }
}
