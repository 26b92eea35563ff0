//! Backup codes: ten single-use codes shown once at enrolment, for when the
//! authenticator is lost; each works once, and a new set kills the old.
//!
//! Each code is ten characters of Crockford's base32 in lower case (50
//! bits), written `xxxxx-xxxxx`. The alphabet has no `i`, `l`, `o` or `u`,
//! and [`normalise`] reads `i`/`l` as `1` and `o` as `0`, so a code copied
//! by hand from paper still works; case, spaces and dashes do not matter.
//!
//! At rest: HMAC-SHA256 under a key derived from the server secret, not a
//! bare SHA-256. Fifty bits are too few for an unkeyed hash (a dump could
//! be searched offline in days); with the key outside the database, the
//! dump alone gives nothing to search against. MF-9 asks for Argon2id for
//! codes under 112 bits for the same reason; the keyed digest meets the
//! same threat without a slow hash per attempt, and keeps the digest
//! deterministic so the store can consume a code by looking it up — one
//! atomic conditional delete, which is what single use needs. Both fall if
//! the server secret leaks together with the database.

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::Rng;
use regstack_ports::TokenHash;
use secrecy::SecretString;
use sha2::Sha256;

/// Codes issued at a time (MF-9: at least ten).
pub const COUNT: usize = 10;
/// Characters per code, without the dash: 10 × 5 = 50 bits.
pub const CODE_CHARS: usize = 10;
/// Crockford's base32, lower case: no `i`, `l`, `o`, `u`.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
// At least 50 bits a code, checked when compiling: 5 bits a character.
const _: () = assert!(ALPHABET.len() == 32 && CODE_CHARS * 5 >= 50);
/// HKDF label of the digest key.
const KEY_LABEL: &[u8] = b"regstack backup code v1";

/// A fresh set: the codes to show once, and their digests to store.
/// `codes[i]` hashes to `hashes[i]`.
pub struct IssuedBackupCodes {
    /// Shown to the user once, in `xxxxx-xxxxx` form; never stored or logged.
    pub codes: Vec<SecretString>,
    /// What the store keeps, one row (or array entry) per code.
    pub hashes: Vec<TokenHash>,
}

impl std::fmt::Debug for IssuedBackupCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedBackupCodes")
            .field("count", &self.codes.len())
            .finish_non_exhaustive()
    }
}

/// Makes and hashes backup codes under one server secret.
pub struct BackupCodeHasher {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for BackupCodeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupCodeHasher([redacted])")
    }
}

impl BackupCodeHasher {
    /// Derives the digest key from the server secret (`Config::jwt_secret`).
    pub fn new(server_secret: &SecretString) -> Self {
        let key = super::derive_key(server_secret, KEY_LABEL);
        // HMAC takes keys of any length, so this cannot fail; the fallback
        // (an empty key) only keeps the constructor total.
        let mac = Hmac::<Sha256>::new_from_slice(key.as_ref())
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
        Self { mac }
    }

    /// Ten distinct codes from the OS CSPRNG, with their digests.
    pub fn generate(&self) -> IssuedBackupCodes {
        let mut normalised: Vec<String> = Vec::with_capacity(COUNT);
        while normalised.len() < COUNT {
            let code: String = (0..CODE_CHARS)
                .map(|_| char::from(ALPHABET[OsRng.gen_range(0..ALPHABET.len())]))
                .collect();
            // A repeat is a 2^-50 event; drawing again keeps "ten distinct"
            // a guarantee rather than a likelihood.
            if !normalised.contains(&code) {
                normalised.push(code);
            }
        }
        let hashes = normalised.iter().map(|c| self.digest(c)).collect();
        let codes = normalised
            .into_iter()
            .map(|c| {
                let (head, tail) = c.split_at(CODE_CHARS / 2);
                SecretString::from(format!("{head}-{tail}"))
            })
            .collect();
        IssuedBackupCodes { codes, hashes }
    }

    /// The digest to look a presented code up by, or `None` if it cannot
    /// be a backup code in any spelling (then there is nothing to look up).
    pub fn hash(&self, presented: &str) -> Option<TokenHash> {
        let normalised = normalise(presented);
        is_normal_code(&normalised).then(|| self.digest(&normalised))
    }

    fn digest(&self, normalised: &str) -> TokenHash {
        let mut mac = self.mac.clone();
        mac.update(normalised.as_bytes());
        super::to_token_hash(&mac.finalize().into_bytes())
    }
}

/// The canonical spelling of a presented code: no whitespace or dashes,
/// lower case, and the look-alikes `i`, `l`, `o` read as `1`, `1`, `0`.
pub fn normalise(input: &str) -> String {
    input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_lowercase() {
            'i' | 'l' => '1',
            'o' => '0',
            other => other,
        })
        .collect()
}

/// Whether `input` is a backup code in some spelling [`normalise`] accepts.
pub fn is_well_formed(input: &str) -> bool {
    is_normal_code(&normalise(input))
}

fn is_normal_code(normalised: &str) -> bool {
    normalised.len() == CODE_CHARS && normalised.bytes().all(|b| ALPHABET.contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;
    use std::collections::HashSet;

    fn hasher(secret: &str) -> BackupCodeHasher {
        BackupCodeHasher::new(&SecretString::from(secret.repeat(32)))
    }

    #[test]
    fn ten_distinct_codes_of_fifty_bits_in_the_readable_form() {
        let issued = hasher("k").generate();
        assert_eq!(issued.codes.len(), COUNT);
        assert_eq!(issued.hashes.len(), COUNT);
        let distinct: HashSet<&str> = issued.codes.iter().map(|c| c.expose_secret()).collect();
        assert_eq!(distinct.len(), COUNT);
        for code in &issued.codes {
            let code = code.expose_secret();
            assert_eq!(code.len(), CODE_CHARS + 1);
            assert_eq!(&code[5..6], "-");
            assert!(code
                .bytes()
                .filter(|b| *b != b'-')
                .all(|b| ALPHABET.contains(&b)));
            assert!(!code.contains(['i', 'l', 'o', 'u']));
        }
    }

    #[test]
    fn each_code_hashes_to_its_stored_digest() {
        let h = hasher("k");
        let issued = h.generate();
        for (code, stored) in issued.codes.iter().zip(&issued.hashes) {
            assert_eq!(h.hash(code.expose_secret()).as_ref(), Some(stored));
        }
    }

    #[test]
    fn spellings_of_one_code_hash_equal() {
        let h = hasher("k");
        let canonical = h.hash("1a0bc-def23").unwrap();
        for variant in [
            "1a0bcdef23",
            "1A0BC-DEF23",
            " 1a0bc def23 ",
            "1a0-bc-def-23",
            "la0bc-def23",
            "Ia0bc-def23",
            "1aObc-def23",
        ] {
            assert_eq!(h.hash(variant).as_ref(), Some(&canonical), "{variant:?}");
        }
        assert_ne!(h.hash("1a0bc-def24"), Some(canonical));
    }

    #[test]
    fn digests_are_keyed_by_the_server_secret() {
        let code = "1a0bc-def23";
        assert_ne!(hasher("k").hash(code), hasher("j").hash(code));
        // Not the unkeyed SHA-256 a dump could be searched against.
        assert_ne!(
            hasher("k").hash(code).unwrap(),
            crate::tokens::hash_raw("1a0bcdef23")
        );
    }

    #[test]
    fn what_cannot_be_a_code_is_not_hashed() {
        let h = hasher("k");
        for bad in [
            "",
            "1a0bc-def2",
            "1a0bc-def234",
            "1a0bc-defu3",
            "1a0bc-def2!",
        ] {
            assert_eq!(h.hash(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_shows_neither_codes_nor_key() {
        let h = hasher("k");
        let issued = h.generate();
        let shown = format!("{issued:?} {h:?}");
        for code in &issued.codes {
            assert!(!shown.contains(code.expose_secret()));
        }
    }

    proptest! {
        #[test]
        fn normalising_twice_changes_nothing(input in "\\PC{0,24}") {
            let once = normalise(&input);
            prop_assert_eq!(normalise(&once), once);
        }

        #[test]
        fn normalising_a_code_spelled_any_way_restores_it(
            code in "[0-9a-hjkmnp-tv-z]{10}",
            upper in any::<bool>(),
            split in 0usize..=10,
        ) {
            let mut spelled = format!("{}-{}", &code[..split], &code[split..]);
            if upper {
                spelled = spelled.to_uppercase();
            }
            prop_assert_eq!(normalise(&spelled), code);
        }
    }
}
