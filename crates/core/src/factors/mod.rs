//! Second factors as pure building blocks: TOTP (RFC 6238), backup codes,
//! SMS codes, TOTP secrets sealed for storage, and E.164 phone numbers.
//!
//! Nothing here stores, sends or reads a clock: each function takes what it
//! decides with (`now`, the server secret, the user id) and returns a value
//! for the store or the user. The single-use and replay rules (a code or
//! TOTP step works once, also among parallel attempts and across
//! instances) need an atomic conditional write, so they belong to the
//! stores; these types hand the stores exactly what such a write compares:
//! the TOTP step that matched ([`TotpStep`]), and the keyed digests of
//! backup and SMS codes ([`regstack_ports::TokenHash`]).
//!
//! Keys: one configured server secret (today `Config::jwt_secret`), a
//! distinct 256-bit key per use derived from it with HKDF-SHA256 under a
//! fixed label, so the AEAD key for TOTP secrets never doubles as an HMAC
//! key for codes, nor as a JWT key (those come from their own HMAC-based
//! derivation in `jwt.rs`, under other labels).
//!
//! Where to start reading: [`totp`] (verification and enrolment), then
//! [`sealed`] for how its secret is kept, then [`backup_codes`],
//! [`sms_code`] and [`phone`].
//!
//! Must never depend on a store, a transport or the system clock.

pub mod backup_codes;
pub mod phone;
pub mod sealed;
pub mod sms_code;
pub mod totp;

pub use backup_codes::{BackupCodeHasher, IssuedBackupCodes};
pub use phone::{PhoneError, E164};
pub use sealed::{SealError, SecretSealer};
pub use sms_code::{SmsCodeError, SmsCodeHasher};
pub use totp::{TotpError, TotpSecret, TotpStep};

use hkdf::Hkdf;
use regstack_ports::TokenHash;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// What a presented second-factor code looks like, so `/login/mfa-confirm`
/// can route it without the client naming the method.
///
/// The shapes cannot overlap: TOTP and SMS codes are 6–9 digits
/// ([`sms_code::MAX_LEN`] stops short of a backup code's length), and a
/// backup code is ten characters of its alphabet once normalised — even in
/// the rare draw that makes it all digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeShape {
    /// Six to nine digits: a TOTP code or an SMS code; which one depends on
    /// what the account has enrolled and which challenge is pending.
    Digits,
    /// A backup code, in any spelling [`backup_codes::normalise`] accepts.
    BackupCode,
}

/// Infers the method from a code's shape; `None` when it fits none, which
/// the caller can refuse without touching a store.
pub fn looks_like(code: &str) -> Option<CodeShape> {
    let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = compact.len();
    if (sms_code::MIN_LEN..=sms_code::MAX_LEN).contains(&digits)
        && compact.bytes().all(|b| b.is_ascii_digit())
    {
        return Some(CodeShape::Digits);
    }
    backup_codes::is_well_formed(code).then_some(CodeShape::BackupCode)
}

/// A 256-bit key for one use, from the server secret. HKDF rather than a
/// bare hash so each label yields an independent key even from a secret
/// that is a passphrase rather than uniform bytes.
fn derive_key(server_secret: &SecretString, label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(None, server_secret.expose_secret().as_bytes());
    // 32 bytes is far below HKDF-SHA256's limit of 255 × 32, so `expand`
    // cannot fail; on the impossible error the key stays zero and every
    // check under it fails closed against digests made with the real key.
    if hk.expand(label, okm.as_mut()).is_err() {
        okm.fill(0);
    }
    okm
}

/// Wraps a 32-byte digest as the hex string stores keep.
fn to_token_hash(digest: &[u8]) -> TokenHash {
    // A 32-byte digest always hex-encodes to 64 lower-case digits, which is
    // all `from_hex` checks; the fallback keeps this total, as in `tokens`.
    TokenHash::from_hex(hex::encode(digest)).unwrap_or_else(|| crate::tokens::hash_raw(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_to_nine_digits_look_like_totp_or_sms() {
        assert_eq!(looks_like("123456"), Some(CodeShape::Digits));
        assert_eq!(looks_like(" 123 456 "), Some(CodeShape::Digits));
        assert_eq!(looks_like("123456789"), Some(CodeShape::Digits));
        assert_eq!(looks_like("12345"), None);
        assert_eq!(looks_like("12345a"), None);
    }

    #[test]
    fn backup_codes_in_any_spelling_look_like_backup_codes() {
        let hasher = BackupCodeHasher::new(&SecretString::from("k".repeat(32)));
        for code in hasher.generate().codes {
            let code = code.expose_secret();
            assert_eq!(looks_like(code), Some(CodeShape::BackupCode));
            assert_eq!(
                looks_like(&code.to_uppercase().replace('-', " ")),
                Some(CodeShape::BackupCode)
            );
        }
        // All digits, ten of them: still a backup code, never an SMS code.
        assert_eq!(looks_like("23456-78923"), Some(CodeShape::BackupCode));
        assert_eq!(looks_like("2345678923"), Some(CodeShape::BackupCode));
        assert_eq!(looks_like("abcde-fghu"), None);
    }

    #[test]
    fn derived_keys_differ_by_label_and_by_secret() {
        let a = SecretString::from("a".repeat(32));
        let b = SecretString::from("b".repeat(32));
        assert_ne!(*derive_key(&a, b"one"), *derive_key(&a, b"two"));
        assert_ne!(*derive_key(&a, b"one"), *derive_key(&b, b"one"));
        assert_eq!(*derive_key(&a, b"one"), *derive_key(&a, b"one"));
    }
}
