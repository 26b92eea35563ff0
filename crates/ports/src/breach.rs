//! Breached-password screening as a port: is a new password among the
//! passwords known from public data breaches?
//!
//! The check is k-anonymous by construction: the engine hands the adapter
//! only the SHA-1 of the password ([`PasswordSha1`]), and an adapter asking
//! a remote range service sends just [`PasswordSha1::prefix`] — the first
//! five hex digits, shared by about a million other passwords — and
//! compares [`PasswordSha1::suffix`] against the answer locally. Neither
//! the password nor its full hash leaves the process. (SHA-1 because that
//! is how the published breach corpora are keyed; it is a lookup key here,
//! never a stored credential.)
//!
//! The answer may be [`BreachVerdict::Unavailable`]: the engine decides by
//! configuration whether that lets the password through (fail open) or
//! refuses the request with a 503 (fail closed). It never becomes a 500.

use async_trait::async_trait;

/// The SHA-1 digest of a new password (of its NFKC form, the form that is
/// hashed). Never printed: with the password list of a breach it names the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordSha1([u8; 20]);

impl PasswordSha1 {
    /// Hex digits a range query reveals.
    pub const PREFIX_LEN: usize = 5;

    /// Wraps a digest the caller computed.
    pub fn from_digest(digest: [u8; 20]) -> Self {
        Self(digest)
    }

    fn upper_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut s = String::with_capacity(40);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s
    }

    /// The first [`Self::PREFIX_LEN`] hex digits, upper case: all a range
    /// query may send.
    pub fn prefix(&self) -> String {
        let mut hex = self.upper_hex();
        hex.truncate(Self::PREFIX_LEN);
        hex
    }

    /// The other 35 hex digits, upper case: compared locally, never sent.
    pub fn suffix(&self) -> String {
        self.upper_hex().split_off(Self::PREFIX_LEN)
    }
}

impl std::fmt::Debug for PasswordSha1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordSha1([redacted])")
    }
}

/// What a breach screen found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreachVerdict {
    /// The password appears in a breach corpus (with a count above zero).
    Breached,
    /// It does not.
    NotBreached,
    /// No answer could be had (service down, timed out, answered an error,
    /// range file missing). The reason is for the log: it names the step,
    /// never the password or its hash.
    Unavailable(String),
}

/// Looks a password's SHA-1 up in a breach corpus. Implementations bound
/// their own time (a remote one by a timeout) and never fail otherwise:
/// anything that is not an answer is [`BreachVerdict::Unavailable`].
#[async_trait]
pub trait BreachedPasswords: Send + Sync {
    /// Whether the password with this digest is known breached.
    async fn check(&self, password: &PasswordSha1) -> BreachVerdict;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_suffix_split_the_upper_case_hex_digest() {
        // SHA-1("password") = 5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8
        let d = [
            0x5b, 0xaa, 0x61, 0xe4, 0xc9, 0xb9, 0x3f, 0x3f, 0x06, 0x82, 0x25, 0x0b, 0x6c, 0xf8,
            0x33, 0x1b, 0x7e, 0xe6, 0x8f, 0xd8,
        ];
        let h = PasswordSha1::from_digest(d);
        assert_eq!(h.prefix(), "5BAA6");
        assert_eq!(h.suffix(), "1E4C9B93F3F0682250B6CF8331B7EE68FD8");
        assert_eq!(format!("{h:?}"), "PasswordSha1([redacted])");
    }
}
