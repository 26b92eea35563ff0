//! Opaque one-time tokens: generated from the OS CSPRNG, handed to the
//! user once, stored only as a SHA-256 digest.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use regstack_ports::TokenHash;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Random bytes per token: 256 bits, 43 URL-safe characters.
pub const TOKEN_BYTES: usize = 32;

/// Longest raw token accepted from a request; anything longer cannot be
/// ours and is refused before hashing.
pub const MAX_TOKEN_CHARS: usize = 2048;

/// A freshly minted raw token and the digest to store.
pub struct IssuedToken {
    /// What goes into the link; never logged, never stored.
    pub raw: SecretString,
    /// What the store keeps.
    pub hash: TokenHash,
}

/// Mints a token from the operating system's CSPRNG.
pub fn issue() -> IssuedToken {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    let raw = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_raw(&raw);
    IssuedToken {
        raw: SecretString::from(raw),
        hash,
    }
}

/// The digest a presented token is looked up by.
pub fn hash_raw(raw: &str) -> TokenHash {
    let digest = Sha256::digest(raw.as_bytes());
    // A SHA-256 digest always hex-encodes to 64 lower-case digits, so the
    // fallback is unreachable; it exists to keep this function total.
    TokenHash::from_hex(hex::encode(digest)).unwrap_or_else(|| hash_raw(""))
}

/// The digest of a presented secret token.
pub fn hash_presented(raw: &SecretString) -> TokenHash {
    hash_raw(raw.expose_secret())
}

/// Fills a buffer from the OS CSPRNG (for keys and ids outside this module).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// Replaces `token` in `url` with `[REDACTED]` (raw and percent-encoded
/// spellings), for handing URLs to event handlers and logs.
pub fn redact_url(url: &str, token: &str) -> String {
    if token.is_empty() {
        return url.to_owned();
    }
    let encoded: String = token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    url.replace(token, "[REDACTED]")
        .replace(&encoded, "[REDACTED]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_256_bits_and_hash_to_64_hex_digits() {
        let t = issue();
        let raw = t.raw.expose_secret();
        assert_eq!(raw.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(raw).unwrap().len(), 32);
        assert_eq!(t.hash, hash_raw(raw));
        assert_eq!(t.hash.as_str().len(), 64);
    }

    #[test]
    fn two_tokens_differ() {
        assert_ne!(issue().hash, issue().hash);
    }

    #[test]
    fn redaction_covers_raw_and_percent_encoded_tokens() {
        assert_eq!(
            redact_url("https://a.example/verify?token=abc-_x", "abc-_x"),
            "https://a.example/verify?token=[REDACTED]"
        );
        assert_eq!(
            redact_url("https://a.example/#/t/a%2Bb", "a+b"),
            "https://a.example/#/t/[REDACTED]"
        );
    }
}
