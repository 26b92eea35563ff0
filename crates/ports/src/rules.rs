//! Values a user chooses, checked once: a [`NewPassword`] and a
//! [`DisplayName`].
//!
//! The rules are regstack's (8–128 code points for a password, at most 200
//! for a name) plus ours (no control characters in a name: it ends up in
//! mail headers and logs). They live here so the engine, the HTTP layer's
//! 422 answers and any other front end read the same constants and call
//! the same check; a value of these types has passed it.
//!
//! A [`NewPassword`] has passed the length rule only. The rest of the
//! password policy — common passwords, context words, breach corpora —
//! needs the account's address, the site's name or I/O, so the engine
//! applies it where a password is set (`regstack_core::password_policy`,
//! the [`BreachedPasswords`](crate::BreachedPasswords) port).

use secrecy::{ExposeSecret, SecretString};

/// Why a password is not acceptable as a new password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordLengthError {
    /// Fewer than [`NewPassword::MIN_CHARS`] code points.
    #[error("password shorter than {} characters", NewPassword::MIN_CHARS)]
    TooShort,
    /// More than [`NewPassword::MAX_CHARS`] code points.
    #[error("password longer than {} characters", NewPassword::MAX_CHARS)]
    TooLong,
}

/// A password that may be set: between [`Self::MIN_CHARS`] and
/// [`Self::MAX_CHARS`] Unicode code points (not bytes — eight emoji are a
/// valid password, seven CJK characters are not). The upper bound is
/// checked before anything is hashed. Never printed.
#[derive(Clone)]
pub struct NewPassword(SecretString);

impl NewPassword {
    /// Shortest password accepted (regstack parity).
    pub const MIN_CHARS: usize = 8;
    /// Longest password accepted.
    pub const MAX_CHARS: usize = 128;

    /// Checks the length rule.
    pub fn parse(password: SecretString) -> Result<Self, PasswordLengthError> {
        let n = password.expose_secret().chars().count();
        if n < Self::MIN_CHARS {
            Err(PasswordLengthError::TooShort)
        } else if n > Self::MAX_CHARS {
            Err(PasswordLengthError::TooLong)
        } else {
            Ok(Self(password))
        }
    }

    /// The password, for hashing.
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword([redacted])")
    }
}

/// Why a display name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    /// More than [`DisplayName::MAX_CHARS`] code points.
    #[error("name longer than {} characters", DisplayName::MAX_CHARS)]
    TooLong,
    /// A control character (newline, NUL, …), which could forge a mail
    /// header or a log line.
    #[error("name contains a control character")]
    ControlCharacter,
}

/// A user's display name (`full_name`): at most [`Self::MAX_CHARS`] code
/// points, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Longest name accepted (regstack parity).
    pub const MAX_CHARS: usize = 200;

    /// Checks the rule.
    pub fn parse(name: &str) -> Result<Self, DisplayNameError> {
        if name.chars().count() > Self::MAX_CHARS {
            Err(DisplayNameError::TooLong)
        } else if name.chars().any(char::is_control) {
            Err(DisplayNameError::ControlCharacter)
        } else {
            Ok(Self(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned (for a record).
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Why a disabling reason is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DisableReasonError {
    /// More than [`DisableReason::MAX_CHARS`] code points.
    #[error("reason longer than {} characters", DisableReason::MAX_CHARS)]
    TooLong,
    /// A control character (newline, NUL, …), which could forge a log line
    /// or a row of an administrator's screen.
    #[error("reason contains a control character")]
    ControlCharacter,
}

/// An administrator's note on why an account is disabled
/// ([`User::disabled_reason`](crate::User::disabled_reason)): at most
/// [`Self::MAX_CHARS`] code points, no control characters. Shown to
/// administrators only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisableReason(String);

impl DisableReason {
    /// Longest reason accepted.
    pub const MAX_CHARS: usize = 500;

    /// Checks the rule.
    pub fn parse(reason: &str) -> Result<Self, DisableReasonError> {
        if reason.chars().count() > Self::MAX_CHARS {
            Err(DisableReasonError::TooLong)
        } else if reason.chars().any(char::is_control) {
            Err(DisableReasonError::ControlCharacter)
        } else {
            Ok(Self(reason.to_owned()))
        }
    }

    /// The reason, owned (for a record).
    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pw(s: &str) -> Result<NewPassword, PasswordLengthError> {
        NewPassword::parse(SecretString::from(s))
    }

    #[test]
    fn password_length_counts_code_points_not_bytes() {
        assert!(pw(&"😀".repeat(8)).is_ok(), "32 bytes, 8 code points");
        assert_eq!(
            pw(&"漢".repeat(7)).err(),
            Some(PasswordLengthError::TooShort)
        );
        assert!(pw(&"a".repeat(128)).is_ok());
        assert_eq!(
            pw(&"a".repeat(129)).err(),
            Some(PasswordLengthError::TooLong)
        );
        assert_eq!(pw("").err(), Some(PasswordLengthError::TooShort));
    }

    #[test]
    fn a_new_password_never_prints() {
        let p = pw("correct-horse-battery").unwrap();
        assert_eq!(format!("{p:?}"), "NewPassword([redacted])");
        assert_eq!(p.secret().expose_secret(), "correct-horse-battery");
    }

    #[test]
    fn display_names_are_bounded_and_free_of_control_characters() {
        assert_eq!(
            DisplayName::parse("Zoë Ångström").unwrap().as_str(),
            "Zoë Ångström"
        );
        assert!(DisplayName::parse(&"é".repeat(200)).is_ok());
        assert_eq!(
            DisplayName::parse(&"é".repeat(201)),
            Err(DisplayNameError::TooLong)
        );
        for bad in ["a\nBcc: x@evil.test", "nul\0", "tab\there", "\u{7f}"] {
            assert_eq!(
                DisplayName::parse(bad),
                Err(DisplayNameError::ControlCharacter),
                "{bad:?}"
            );
        }
        assert!(DisplayName::parse("").is_ok(), "an empty name is a name");
    }

    #[test]
    fn disable_reasons_are_bounded_and_free_of_control_characters() {
        assert!(DisableReason::parse(&"é".repeat(500)).is_ok());
        assert_eq!(
            DisableReason::parse(&"é".repeat(501)),
            Err(DisableReasonError::TooLong)
        );
        for bad in ["spam\r\nX-Admin: yes", "nul\0", "\u{85}"] {
            assert_eq!(
                DisableReason::parse(bad),
                Err(DisableReasonError::ControlCharacter),
                "{bad:?}"
            );
        }
    }
}
