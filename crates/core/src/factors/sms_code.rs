//! One-time codes sent by SMS (checklist rows MF-1, OT-2): uniformly random
//! decimal digits, six or more, stored only as an HMAC bound to the
//! challenge they were sent for.
//!
//! Why keyed: a six-digit code has a million values, so a plain SHA-256 of
//! it is reversed by trying them all; under a key derived from the server
//! secret, a database dump alone cannot be searched. Why the challenge id
//! in the MAC: the digest of the same code sent for two challenges differs,
//! so a row cannot be matched to or replayed against another challenge.
//! Attempt counting, expiry and single use are the store's (MF-1, MF-2).

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::Rng;
use regstack_ports::TokenHash;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Shortest code (MF-1, ASVS 6.5.5: at least six digits).
pub const MIN_LEN: usize = 6;
/// Default length.
pub const DEFAULT_LEN: usize = 6;
/// Longest code: nine digits stays short of a backup code's ten characters,
/// which keeps [`super::looks_like`] unambiguous; nobody types more.
pub const MAX_LEN: usize = 9;
/// HKDF label of the MAC key.
const KEY_LABEL: &[u8] = b"regstack sms code v1";

/// A code length outside what [`generate`] accepts; `Config` validation
/// reports it at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("SMS code length must be {MIN_LEN} to {MAX_LEN} digits, not {0}")]
pub struct SmsCodeError(pub usize);

/// A fresh code of `len` digits, each drawn uniformly from the OS CSPRNG
/// (a uniform range, not a byte modulo ten, which would favour 0–5).
pub fn generate(len: usize) -> Result<SecretString, SmsCodeError> {
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Err(SmsCodeError(len));
    }
    let code: String = (0..len)
        .map(|_| char::from(b'0' + OsRng.gen_range(0u8..10)))
        .collect();
    Ok(SecretString::from(code))
}

/// Hashes and checks SMS codes under one server secret.
pub struct SmsCodeHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for SmsCodeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmsCodeHasher([redacted])")
    }
}

impl SmsCodeHasher {
    /// Derives the MAC key from the server secret (`Config::jwt_secret`).
    pub fn new(server_secret: &SecretString) -> Self {
        let key = super::derive_key(server_secret, KEY_LABEL);
        // HMAC takes keys of any length, so this cannot fail; the fallback
        // (an empty key) only keeps the constructor total.
        let mac = Hmac::<Sha256>::new_from_slice(key.as_ref())
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        Self { mac }
    }

    /// The digest to store for `code` sent for `challenge_id` (the pending
    /// login's or phone setup's id). Surrounding whitespace is ignored.
    pub fn hash(&self, code: &str, challenge_id: &str) -> TokenHash {
        let mut mac = self.mac.clone();
        // Length-prefixed so no (challenge, code) pair can be re-split into
        // another with the same bytes.
        mac.update(&(challenge_id.len() as u64).to_be_bytes());
        mac.update(challenge_id.as_bytes());
        mac.update(code.trim().as_bytes());
        super::to_token_hash(&mac.finalize().into_bytes())
    }

    /// Whether `presented` is the code whose digest is `stored`, compared
    /// in constant time.
    pub fn verify(&self, presented: &str, challenge_id: &str, stored: &TokenHash) -> bool {
        let computed = self.hash(presented, challenge_id);
        bool::from(
            computed
                .as_str()
                .as_bytes()
                .ct_eq(stored.as_str().as_bytes()),
        )
    }

    /// [`hash`](Self::hash) of a code held as a secret, as [`generate`]
    /// returns it.
    pub fn hash_secret(&self, code: &SecretString, challenge_id: &str) -> TokenHash {
        self.hash(code.expose_secret(), challenge_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(secret: &str) -> SmsCodeHasher {
        SmsCodeHasher::new(&SecretString::from(secret.repeat(32)))
    }

    #[test]
    fn codes_have_the_asked_length_and_only_digits() {
        for len in MIN_LEN..=MAX_LEN {
            let code = generate(len).unwrap();
            assert_eq!(code.expose_secret().len(), len);
            assert!(code.expose_secret().bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(generate(DEFAULT_LEN).unwrap().expose_secret().len(), 6);
    }

    #[test]
    fn lengths_below_six_or_above_nine_are_refused() {
        for len in [0, 1, 4, 5, 10, 64] {
            assert_eq!(generate(len).err(), Some(SmsCodeError(len)));
        }
    }

    #[test]
    fn every_digit_appears_at_every_position_over_2000_codes() {
        // Each (position, digit) cell expects 200 hits; missing one entirely
        // has probability below 6 × 10 × 0.9^2000 ≈ 1e-90, so this cannot
        // flake. It catches gross faults (a digit never drawn, a position
        // stuck), not subtle bias: a byte taken modulo ten is only 4% off,
        // which 2000 codes cannot see. `gen_range` is what rules that out.
        let mut counts = [[0u32; 10]; DEFAULT_LEN];
        for _ in 0..2000 {
            let code = generate(DEFAULT_LEN).unwrap();
            for (pos, b) in code.expose_secret().bytes().enumerate() {
                counts[pos][usize::from(b - b'0')] += 1;
            }
        }
        for (pos, row) in counts.iter().enumerate() {
            assert!(row.iter().all(|&n| n > 0), "position {pos}: {row:?}");
        }
        // Chi-square over all 12000 digits, 9 degrees of freedom: a fair
        // generator exceeds 50 with probability about 1e-7.
        let mut totals = [0u32; 10];
        for row in &counts {
            for (d, n) in row.iter().enumerate() {
                totals[d] += n;
            }
        }
        let expected = 1200.0;
        let chi2: f64 = totals
            .iter()
            .map(|&n| (f64::from(n) - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 50.0, "chi-square {chi2}: {totals:?}");
    }

    #[test]
    fn the_digest_binds_code_challenge_and_key() {
        let h = hasher("k");
        let d = h.hash("123456", "challenge-a");
        assert_eq!(d, h.hash(" 123456 ", "challenge-a"));
        assert_ne!(d, h.hash("123457", "challenge-a"));
        assert_ne!(d, h.hash("123456", "challenge-b"));
        assert_ne!(d, hasher("j").hash("123456", "challenge-a"));
        // Not the plain SHA-256, which a dump would reverse in a second.
        assert_ne!(d, crate::tokens::hash_raw("123456"));
        // The length prefix keeps ("ab", "1…") apart from ("a", "b1…").
        assert_ne!(h.hash("1234567", "ab"), h.hash("b1234567", "a"));
    }

    #[test]
    fn verify_accepts_the_code_and_nothing_else() {
        let h = hasher("k");
        let code = generate(6).unwrap();
        let stored = h.hash_secret(&code, "c1");
        assert!(h.verify(code.expose_secret(), "c1", &stored));
        assert!(!h.verify(code.expose_secret(), "c2", &stored));
        let other = if code.expose_secret() == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert!(!h.verify(other, "c1", &stored));
    }
}
