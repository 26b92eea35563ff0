//! The guards of the zero-config development mode — the mode `serve` runs
//! in when there is no configuration file and no `REGSTACK_*` variable at
//! all: the generated secret in `./.regstack-secret`, and where that mode may
//! listen.
//!
//! Development mode signs with a secret it generates and keeps in a file
//! beside the SQLite database, and logs live links and mail bodies. So the
//! file is written the way a key file must be — a fresh file created
//! exclusively with mode 0600 in the same directory, then renamed into
//! place, so no reader ever sees it half-written or readable by others —
//! and an existing file is used only if it is a regular file (not a
//! symbolic link, which could point anywhere) that neither group nor others
//! can read or write. Anything else stops start-up with a message naming
//! the path: the operator decides, the server does not chmod or delete.
//!
//! [`exposure`] decides whether the mode may serve on the address it bound:
//! on loopback only, unless the operator says `--dev`.
//!
//! Nothing here is used once any configuration is present.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::config::LoadError;

/// Where the development secret lives: beside the SQLite file.
pub fn secret_path(database_file: &Path) -> PathBuf {
    database_file.with_file_name(".regstack-secret")
}

/// Where the development secret came from this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOrigin {
    /// Read from the file an earlier run wrote.
    Kept,
    /// There was no file: generated and written now.
    Generated,
    /// The file held fewer than 32 bytes: a new secret replaced it.
    Replaced,
}

/// The development secret and where it came from.
pub struct DevelopmentSecret {
    /// The secret (at least 32 bytes).
    pub secret: SecretString,
    /// Kept, generated or replaced.
    pub origin: SecretOrigin,
}

impl std::fmt::Debug for DevelopmentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevelopmentSecret")
            .field("secret", &"[redacted]")
            .field("origin", &self.origin)
            .finish()
    }
}

/// Reads the development secret at `path`, generating it on first use (and
/// replacing one too short to sign with). Refuses a symbolic link, anything
/// that is not a regular file, and a file group or others may read or
/// write, naming the path.
pub fn development_secret(path: &Path) -> Result<DevelopmentSecret, LoadError> {
    let refuse = |reason: String| LoadError::Secret {
        path: path.to_path_buf(),
        reason,
    };
    let found = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DevelopmentSecret {
                secret: write_new(path)?,
                origin: SecretOrigin::Generated,
            });
        }
        Err(e) => return Err(refuse(e.to_string())),
    };
    check_file(&found).map_err(refuse)?;
    let existing = read_checked(path, &found).map_err(refuse)?;
    let existing = existing.trim();
    if existing.len() >= regstack_core::config::MIN_JWT_SECRET_BYTES {
        return Ok(DevelopmentSecret {
            secret: SecretString::from(existing.to_owned()),
            origin: SecretOrigin::Kept,
        });
    }
    Ok(DevelopmentSecret {
        secret: write_new(path)?,
        origin: SecretOrigin::Replaced,
    })
}

/// What the file found at the path must be before it is read: a regular
/// file only its owner can touch.
pub(crate) fn check_file(meta: &std::fs::Metadata) -> Result<(), String> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(
            "is a symbolic link; refusing to follow it (the secret signs every token). \
             Replace it with the file itself, or delete it to have a new one generated"
                .into(),
        );
    }
    if !kind.is_file() {
        return Err("is not a regular file; move it away to have a secret generated".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "is readable or writable by group or others (mode {mode:04o}): whoever can \
                 read it can sign tokens for any account. Run `chmod 600` on it, or delete it \
                 to have a new one generated"
            ));
        }
    }
    Ok(())
}

/// Reads the file checked by [`check_file`], making sure the file opened is
/// that file: if the path was swapped in between (for a link, say), the
/// open file's identity differs and nothing is read.
pub(crate) fn read_checked(path: &Path, checked: &std::fs::Metadata) -> Result<String, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let opened = file.metadata().map_err(|e| e.to_string())?;
        if (opened.dev(), opened.ino()) != (checked.dev(), checked.ino()) {
            return Err("changed while it was being read; start again".into());
        }
    }
    #[cfg(not(unix))]
    let _ = checked;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            "does not hold a text secret; delete it to have a new one generated".into()
        } else {
            e.to_string()
        }
    })?;
    Ok(text)
}

/// Generates a secret and puts it at `path` atomically (see
/// [`write_private_file`]).
fn write_new(path: &Path) -> Result<SecretString, LoadError> {
    let secret = generate_secret();
    write_private_file(path, secret.as_bytes()).map_err(|e| LoadError::Secret {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(SecretString::from(secret))
}

/// A new signing secret: 48 random bytes from the OS, URL-safe base64 (64
/// characters, well over the 32-byte minimum). Shared by development mode
/// and `regstack init`, so both make secrets the same way.
pub fn generate_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Puts `contents` at `path` the way a key file must be written: into a
/// new file in the same directory (created exclusively, mode 0600, so it is
/// never readable by others and never an existing file or link), synced,
/// then renamed over `path`, so no reader sees it half-written. Used for
/// the development secret and for `regstack init`'s secrets file.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use base64::Engine as _;
    use rand::RngCore;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tag = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut tag);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".regstack-secret".into());
    let temp = dir.join(format!(
        "{name}.{}.tmp",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = opts.open(&temp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&temp, path)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    // Make the rename itself durable; a failure here loses nothing that a
    // rerun would not replace.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Whether the zero-config development mode may serve on `bound` (the
/// address `serve` actually bound). It logs live sign-in links and mail
/// bodies and signs with a secret kept in the working directory, so it
/// serves on a loopback address only, unless `allow_any` (`--dev`) says
/// the operator knows. The error is the message to show.
pub fn exposure(bound: IpAddr, allow_any: bool) -> Result<(), String> {
    if allow_any || bound.to_canonical().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "refusing to serve development mode on {bound}: with no regstack.toml and no \
         REGSTACK_* variables, regstack logs every mail in full (live verification and \
         password-reset links) and signs with a generated secret, which is for a machine \
         of your own, not a network. Configure it (a regstack.toml or REGSTACK_* variables \
         with jwt_secret, database_url and an [email] backend), or listen on 127.0.0.1 \
         (the default --host), or pass --dev to run development mode on {bound} anyway"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn dir_and_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_path(&dir.path().join("regstack.db"));
        (dir, path)
    }

    #[track_caller]
    fn refused(path: &Path, why: &str) -> String {
        let err = development_secret(path).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains(&path.display().to_string()),
            "the refusal names the path: {shown}"
        );
        assert!(shown.contains(why), "{shown}");
        shown
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }

    #[cfg(unix)]
    fn write_with_mode(path: &Path, text: &str, m: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).unwrap();
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_secret_is_generated_once_with_mode_0600_and_no_temporary_file_left() {
        let (dir, path) = dir_and_path();
        let a = development_secret(&path).unwrap();
        assert_eq!(a.origin, SecretOrigin::Generated);
        let b = development_secret(&path).unwrap();
        assert_eq!(b.origin, SecretOrigin::Kept);
        assert_eq!(a.secret.expose_secret(), b.secret.expose_secret());
        assert!(a.secret.expose_secret().len() >= 32);
        assert_eq!(entries(dir.path()), vec![".regstack-secret".to_owned()]);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert!(!format!("{a:?}").contains(a.secret.expose_secret()));
    }

    #[test]
    fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = secret_path(&dir.path().join("data/regstack.db"));
        assert_eq!(
            development_secret(&path).unwrap().origin,
            SecretOrigin::Generated
        );
        assert!(path.is_file());
    }

    #[cfg(unix)]
    #[test]
    fn a_short_secret_is_replaced_by_a_new_private_file() {
        let (dir, path) = dir_and_path();
        write_with_mode(&path, "short\n", 0o600);
        let s = development_secret(&path).unwrap();
        assert_eq!(s.origin, SecretOrigin::Replaced);
        assert!(s.secret.expose_secret().len() >= 32);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            s.secret.expose_secret()
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(entries(dir.path()), vec![".regstack-secret".to_owned()]);
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_read_or_write_is_refused_and_left_alone() {
        let (_dir, path) = dir_and_path();
        let good = "g".repeat(48);
        for loose in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            write_with_mode(&path, &good, loose);
            let shown = refused(&path, "group or others");
            assert!(shown.contains("chmod 600"), "{shown}");
            assert_eq!(mode(&path), loose, "the mode is the operator's to change");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
        }
        // Short or not: a file we did not make private is not ours to
        // replace either.
        write_with_mode(&path, "short", 0o644);
        refused(&path, "group or others");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "short");
        // Made private by its owner, it is used.
        write_with_mode(&path, &good, 0o600);
        let s = development_secret(&path).unwrap();
        assert_eq!(
            (s.origin, s.secret.expose_secret()),
            (SecretOrigin::Kept, good.as_str())
        );
        write_with_mode(&path, &good, 0o400);
        assert_eq!(
            development_secret(&path).unwrap().origin,
            SecretOrigin::Kept
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_is_refused_not_followed() {
        let (dir, path) = dir_and_path();
        // A link to a perfectly good secret elsewhere…
        let elsewhere = dir.path().join("elsewhere");
        write_with_mode(&elsewhere, &"e".repeat(48), 0o600);
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        refused(&path, "symbolic link");
        // …and a dangling one, which writing through would have created
        // its target.
        std::fs::remove_file(&path).unwrap();
        let target = dir.path().join("planted");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        refused(&path, "symbolic link");
        assert!(!target.exists(), "the link's target was created");
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn something_other_than_a_regular_file_is_refused() {
        let (_dir, path) = dir_and_path();
        std::fs::create_dir(&path).unwrap();
        refused(&path, "not a regular file");
        assert!(path.is_dir());
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_opening_it() {
        let (_dir, path) = dir_and_path();
        // Opening a FIFO for reading would block start-up forever.
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: mkfifo(1) is not available");
            return;
        }
        refused(&path, "not a regular file");
    }

    #[cfg(unix)]
    #[test]
    fn bytes_that_are_not_text_are_refused() {
        let (_dir, path) = dir_and_path();
        std::fs::write(&path, [0xff_u8; 40]).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        refused(&path, "text secret");
    }

    #[test]
    fn development_mode_serves_on_loopback_or_with_dev_only() {
        for ok in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = ok.parse().unwrap();
            assert_eq!(exposure(ip, false), Ok(()), "{ok}");
        }
        for exposed in [
            "0.0.0.0",
            "::",
            "192.168.1.20",
            "10.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = exposed.parse().unwrap();
            let why = exposure(ip, false).unwrap_err();
            assert!(why.contains("--dev"), "{why}");
            assert!(why.contains(&ip.to_string()), "{why}");
            assert!(why.contains("development mode"), "{why}");
            assert_eq!(exposure(ip, true), Ok(()), "{exposed} with --dev");
        }
    }
}
