//! TOTP secrets at rest: sealed with XChaCha20-Poly1305
//! under a key derived from the server secret, so a copy of the database
//! alone yields no secret, and tampering is detected rather than turning
//! into wrong codes.
//!
//! The user id is the associated data: a sealed secret copied onto another
//! user's row does not open there, so a write to one column cannot enrol
//! an attacker's authenticator on someone else's account.
//!
//! Stored form: `v1.` followed by unpadded base64url of the 24-byte nonce
//! and the ciphertext with its tag. The version names the key derivation
//! and cipher, so a later scheme can be recognised beside this one and old
//! rows re-sealed as users verify.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore;
use regstack_ports::UserId;
use secrecy::zeroize::Zeroizing;
use secrecy::SecretString;

use super::totp::TotpSecret;

/// HKDF label of the sealing key; a new label means a new version prefix.
const KEY_LABEL: &[u8] = b"regstack totp secret v1";
const PREFIX: &str = "v1.";
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;

/// Why a sealed secret did not open. Tampering, another key and another
/// user are one variant on purpose: the AEAD cannot tell them apart, and a
/// caller has nothing different to do about them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// Not something [`SecretSealer::seal`] wrote: wrong shape or encoding.
    #[error("sealed secret is malformed")]
    Malformed,
    /// A version prefix this build does not know.
    #[error("sealed secret has an unknown version")]
    UnknownVersion,
    /// The tag did not verify: altered, sealed under another server secret,
    /// or sealed for another user.
    #[error("sealed secret does not open")]
    Refused,
    /// The cipher refused to encrypt (only for inputs of gigabytes).
    #[error("could not seal")]
    Seal,
}

/// Seals and opens TOTP secrets for one server secret.
pub struct SecretSealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer([redacted])")
    }
}

impl SecretSealer {
    /// Derives the sealing key from the server secret (`Config::jwt_secret`).
    pub fn new(server_secret: &SecretString) -> Self {
        let key = super::derive_key(server_secret, KEY_LABEL);
        Self {
            cipher: XChaCha20Poly1305::new(&Key::from(*key)),
        }
    }

    /// Seals `secret` for `user` under a fresh random nonce (192 bits, so
    /// random nonces never collide in practice).
    pub fn seal(&self, secret: &TotpSecret, user: &UserId) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.expose_bytes(),
                    aad: user.as_str().as_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut body = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&ciphertext);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(body)))
    }

    /// Opens what [`seal`](Self::seal) wrote for the same user under the
    /// same server secret.
    pub fn open(&self, sealed: &str, user: &UserId) -> Result<TotpSecret, SealError> {
        let Some(encoded) = sealed.strip_prefix(PREFIX) else {
            return Err(if sealed.starts_with('v') && sealed.contains('.') {
                SealError::UnknownVersion
            } else {
                SealError::Malformed
            });
        };
        let body = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Malformed)?;
        if body.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = body.split_at(NONCE_BYTES);
        let nonce = <[u8; NONCE_BYTES]>::try_from(nonce).map_err(|_| SealError::Malformed)?;
        let plaintext = Zeroizing::new(
            self.cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: user.as_str().as_bytes(),
                    },
                )
                .map_err(|_| SealError::Refused)?,
        );
        // Authentic but not 160 bits: only a sealer of ours could have
        // written it, and ours seals only `TotpSecret`s.
        TotpSecret::from_bytes(&plaintext).map_err(|_| SealError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn sealer(secret: &str) -> SecretSealer {
        SecretSealer::new(&SecretString::from(secret.repeat(32)))
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_for_its_user_under_the_same_key() {
        let s = sealer("k");
        let secret = TotpSecret::generate();
        let sealed = s.seal(&secret, &user("alice")).unwrap();
        assert!(sealed.starts_with("v1."));
        let opened = s.open(&sealed, &user("alice")).unwrap();
        assert_eq!(opened.expose_bytes(), secret.expose_bytes());
        // The stored form holds nothing of the secret in the clear.
        assert!(!sealed.contains(secret.to_base32().expose_secret()));
        assert!(!sealed.contains(&URL_SAFE_NO_PAD.encode(secret.expose_bytes())));
    }

    #[test]
    fn sealing_twice_gives_different_strings() {
        let s = sealer("k");
        let secret = TotpSecret::generate();
        assert_ne!(
            s.seal(&secret, &user("alice")).unwrap(),
            s.seal(&secret, &user("alice")).unwrap()
        );
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let s = sealer("k");
        let sealed = s.seal(&TotpSecret::generate(), &user("alice")).unwrap();
        let body = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        for i in 0..body.len() {
            let mut altered = body.clone();
            altered[i] ^= 0x01;
            let altered = format!("v1.{}", URL_SAFE_NO_PAD.encode(altered));
            assert_eq!(
                s.open(&altered, &user("alice")).err(),
                Some(SealError::Refused),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_secret_sealed_for_one_user_does_not_open_for_another() {
        let s = sealer("k");
        let sealed = s.seal(&TotpSecret::generate(), &user("alice")).unwrap();
        assert_eq!(
            s.open(&sealed, &user("mallory")).err(),
            Some(SealError::Refused)
        );
    }

    #[test]
    fn another_server_secret_does_not_open_it() {
        let sealed = sealer("k")
            .seal(&TotpSecret::generate(), &user("alice"))
            .unwrap();
        assert_eq!(
            sealer("j").open(&sealed, &user("alice")).err(),
            Some(SealError::Refused)
        );
    }

    #[test]
    fn malformed_and_unknown_versions_are_named() {
        let s = sealer("k");
        let alice = user("alice");
        assert_eq!(s.open("", &alice).err(), Some(SealError::Malformed));
        assert_eq!(s.open("v1.", &alice).err(), Some(SealError::Malformed));
        assert_eq!(s.open("v1.***", &alice).err(), Some(SealError::Malformed));
        assert_eq!(s.open("v1.AAAA", &alice).err(), Some(SealError::Malformed));
        assert_eq!(
            s.open("v2.AAAA", &alice).err(),
            Some(SealError::UnknownVersion)
        );
        assert_eq!(
            s.open("JBSWY3DPEHPK3PXP", &alice).err(),
            Some(SealError::Malformed)
        );
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(format!("{:?}", sealer("k")), "SecretSealer([redacted])");
    }
}
