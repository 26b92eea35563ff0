//! Which new passwords are refused besides the length rule (NIST SP
//! 800-63B §5.1.1.2: "passwords obtained from previous breach corpuses,
//! dictionary words, context-specific words"). Pure: no I/O.
//!
//! - **Common passwords**: a bundled list of about 21,600 (`data/`, its
//!   `NOTICE.md` names the sources and their licences), inflated once on
//!   first use. A password is looked up in its NFKC form, lower-cased, so
//!   "PASSWORD123" and "ｐａｓｓｗｏｒｄ123" are as common as "password123".
//! - **Context words** ([`uses_context_word`]): the site's name, the
//!   address's local part and its pieces, the domain's labels (each at
//!   least [`MIN_CONTEXT_WORD_CHARS`] long). A password that is one of them
//!   with only digits or punctuation around it is refused ("alice1",
//!   "RegStack2024!"), and so is any password containing the whole local
//!   part when that is [`LONG_LOCAL_PART_CHARS`] or longer.
//! - **Breached passwords**: [`sha1_of`] gives the digest the
//!   [`BreachedPasswords`](regstack_ports::BreachedPasswords) port looks
//!   up; the engine decides what an unavailable screen means.
//!
//! The refusal is the same whichever flow sets the password (register,
//! change, reset, the forced change): [`PasswordRefusal`]. Nothing here
//! ever logs or returns the password.

use std::collections::HashSet;
use std::sync::LazyLock;

use regstack_ports::PasswordSha1;
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};
use unicode_normalization::UnicodeNormalization;

/// Shorter context words are ignored: "bob" or "io" are in too many good
/// passwords to refuse them all.
pub const MIN_CONTEXT_WORD_CHARS: usize = 4;

/// From this length on, a password containing the address's local part
/// anywhere is refused.
pub const LONG_LOCAL_PART_CHARS: usize = 6;

/// Why a new password is refused (each has its own message on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordRefusal {
    /// It is on the bundled list of common passwords.
    Common,
    /// It is made of the site's name or the account's address.
    ContextWord,
    /// A breach screen knows it.
    Breached,
}

/// The bundled list: sorted, newline-separated, NFKC lower-case, zlib.
/// `data/regenerate_blocklist.py` makes it.
static BUNDLED: &[u8] = include_bytes!("../data/common-passwords.zlib");

static COMMON: LazyLock<HashSet<Box<str>>> = LazyLock::new(|| {
    match miniz_oxide::inflate::decompress_to_vec_zlib(BUNDLED) {
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.is_empty())
            .map(Box::from)
            .collect(),
        // Cannot happen with the committed file (a unit test inflates it);
        // should it, the log says so rather than the server refusing to run.
        Err(e) => {
            tracing::error!(error = ?e, "bundled common-password list does not inflate");
            HashSet::new()
        }
    }
});

/// The form passwords are compared in: NFKC, lower case.
fn folded(s: &str) -> String {
    s.nfkc().collect::<String>().to_lowercase()
}

/// How many passwords the bundled list holds (inflating it if needed).
pub fn common_password_count() -> usize {
    COMMON.len()
}

/// Whether `password` is on the bundled list of common passwords.
pub fn is_common(password: &str) -> bool {
    COMMON.contains(folded(password).as_str())
}

/// The context words of a site name and an address, folded, each at least
/// [`MIN_CONTEXT_WORD_CHARS`] long.
fn context_words(app_name: &str, email: &str) -> Vec<String> {
    let mut words = Vec::new();
    let pieces = |s: &str| -> Vec<String> {
        let mut out: Vec<String> = s
            .split(|c: char| !c.is_alphanumeric())
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        let joined: String = s.chars().filter(|c| c.is_alphanumeric()).collect();
        out.push(joined);
        out.push(s.to_owned());
        out
    };
    words.extend(pieces(&folded(app_name)));
    let email = folded(email);
    if let Some((local, domain)) = email.rsplit_once('@') {
        words.extend(pieces(local));
        // Every label but the top-level one: "example" of example.com.
        let labels: Vec<&str> = domain.split('.').collect();
        if let Some((_, names)) = labels.split_last() {
            for label in names {
                words.extend(pieces(label));
            }
        }
    }
    words.push(email);
    words.retain(|w| w.chars().count() >= MIN_CONTEXT_WORD_CHARS);
    words.sort();
    words.dedup();
    words
}

/// Whether `password` is made of the site's name or the address (see the
/// module doc for the rule).
pub fn uses_context_word(password: &str, app_name: &str, email: &str) -> bool {
    let p = folded(password);
    let no_letters = |s: &str| !s.chars().any(char::is_alphabetic);
    let words = context_words(app_name, email);
    let local = folded(email)
        .rsplit_once('@')
        .map(|(l, _)| l.to_owned())
        .unwrap_or_default();
    if local.chars().count() >= LONG_LOCAL_PART_CHARS && p.contains(local.as_str()) {
        return true;
    }
    words.iter().any(|w| {
        p.match_indices(w.as_str())
            .any(|(i, _)| no_letters(&p[..i]) && no_letters(&p[i + w.len()..]))
    })
}

/// The SHA-1 of the password's NFKC form (the form that is hashed) in
/// upper-case hex terms, for the breach screen.
pub fn sha1_of(password: &SecretString) -> PasswordSha1 {
    let nfkc: String = password.expose_secret().nfkc().collect();
    PasswordSha1::from_digest(Sha1::digest(nfkc.as_bytes()).into())
}

/// The checks that need no I/O, in order: the common list, then context
/// words (each only when switched on). For callers outside the engine's
/// flows (the CLI's `create-admin`).
pub fn refusal(
    password: &str,
    blocklist: bool,
    context: Option<(&str, &str)>,
) -> Option<PasswordRefusal> {
    if blocklist && is_common(password) {
        return Some(PasswordRefusal::Common);
    }
    if let Some((app_name, email)) = context {
        if uses_context_word(password, app_name, email) {
            return Some(PasswordRefusal::ContextWord);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_list_inflates_and_holds_only_possible_passwords() {
        let n = common_password_count();
        assert!(n > 20_000, "{n} entries");
        assert!(COMMON
            .iter()
            .all(|w| (8..=128).contains(&w.chars().count())));
        assert!(COMMON.iter().all(|w| **w == folded(w)), "stored folded");
    }

    #[test]
    fn common_passwords_are_refused_in_any_case_and_unicode_form() {
        for pw in [
            "password",
            "password1",
            "PASSWORD123",
            "Password123",
            "qwertyuiop",
            "iloveyou",
            "12345678",
            // Fullwidth letters and digits: NFKC folds them to ASCII.
            "ｐａｓｓｗｏｒｄ１２３",
        ] {
            assert!(is_common(pw), "{pw}");
        }
        for pw in [
            "correct-horse-battery",
            "correct horse battery staple",
            "vB7#kq2!Lm9z",
            "password-for-regstack-tests-xyz",
        ] {
            assert!(!is_common(pw), "{pw}");
        }
    }

    #[test]
    fn context_words_with_only_digits_or_punctuation_around_are_refused() {
        let email = "alice.smith@examplecorp.com";
        for pw in [
            "alice.smith1",
            "alice.smith",
            "Alice1",
            "alice!!!2024",
            "smith2024",
            "1234alicesmith",
            "examplecorp1",
            "ExampleCorp!",
            "RegStack2024!",
            "regstack123",
            "alice.smith@examplecorp.com",
            // The long local part inside other words.
            "my alice.smith password",
            // NFKC: fullwidth letters are the same letters.
            "ａｌｉｃｅ１２３４",
        ] {
            assert!(uses_context_word(pw, "RegStack", email), "{pw}");
        }
        for pw in [
            "alice in wonderland",
            "smithereens-42",
            "correct-horse-battery",
            "regstacked-horse",
            "com12345678",
        ] {
            assert!(!uses_context_word(pw, "RegStack", email), "{pw}");
        }
    }

    #[test]
    fn short_context_words_are_ignored() {
        // "bob", "x" and "io" are too short to refuse on.
        assert!(!uses_context_word("bob12345", "io", "bob@x.io"));
        assert!(uses_context_word("bobby12345", "io", "bobby@x.io"));
    }

    #[test]
    fn the_site_name_counts_whole_and_in_pieces() {
        for pw in ["acme shop!", "acmeshop99", "acme1234", "shop2024!"] {
            assert!(uses_context_word(pw, "Acme Shop", "z@q.io"), "{pw}");
        }
        assert!(!uses_context_word(
            "acme of shopping",
            "Acme Shop",
            "z@q.io"
        ));
    }

    #[test]
    fn refusal_checks_the_list_first_and_only_what_is_switched_on() {
        let ctx = Some(("RegStack", "alice@example.com"));
        assert_eq!(
            refusal("password123", true, ctx),
            Some(PasswordRefusal::Common)
        );
        assert_eq!(refusal("password123", false, None), None);
        assert_eq!(
            refusal("alice1", true, ctx),
            Some(PasswordRefusal::ContextWord)
        );
        assert_eq!(refusal("alice1", true, None), None);
        assert_eq!(refusal("correct-horse-battery", true, ctx), None);
    }

    #[test]
    fn the_breach_digest_is_the_sha1_of_the_nfkc_form() {
        let h = sha1_of(&SecretString::from("password"));
        assert_eq!(h.prefix(), "5BAA6");
        assert_eq!(h.suffix(), "1E4C9B93F3F0682250B6CF8331B7EE68FD8");
        assert_eq!(sha1_of(&SecretString::from("ｐａｓｓｗｏｒｄ")), h);
    }
}
