//! Phone numbers for SMS codes, parsed with libphonenumber's metadata (the
//! `phonenumber` crate) and kept in E.164, one spelling per number, so the
//! daily per-number text caps count one number once.
//!
//! A regex would accept numbers no carrier routes and spell one number
//! several ways; per-country metadata refuses impossible lengths and
//! unassigned ranges, and E.164 gives each number one spelling, so the
//! per-destination send limit and "is this number already in use" compare
//! like with like.

use std::fmt;
use std::str::FromStr;

use phonenumber::country;
use phonenumber::{Mode, ParseError};

/// Longest input looked at; any real spelling of a number (with spaces,
/// punctuation and a `tel:` prefix) is far shorter, and the parser's
/// regexes need not see anything larger.
const MAX_INPUT_CHARS: usize = 64;

/// Why a phone number was refused, in the order the checks run.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum PhoneError {
    /// The default region is not a two-letter CLDR region code (a
    /// configuration fault, not the user's).
    #[error("unknown region code")]
    UnknownRegion,
    /// Nothing in the input reads as a phone number.
    #[error("not a phone number")]
    NotANumber,
    /// Read as digits, but no number anywhere could look like it: an
    /// unknown country code, too short after the country code or too long
    /// for any country, or a national number with no region to place it in.
    #[error("not a possible phone number")]
    NotPossible,
    /// Placed in a country, but not a number there: outside every range
    /// assigned in its metadata (wrong length for the country included).
    #[error("not a valid phone number")]
    NotValid,
    /// Carries an extension, which an SMS cannot reach.
    #[error("phone numbers with an extension cannot receive SMS")]
    HasExtension,
}

/// A phone number in E.164 form (`+442079460958`): `+`, country code and
/// national number, nothing else. Only [`E164::parse`] and
/// [`E164::from_stored`] make one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    /// Parses what a user typed. A number written with `+` (or an
    /// international prefix such as `00`) needs no region; a national
    /// number is read in `default_region` (`"GB"`, `"US"`, …), if given.
    pub fn parse(input: &str, default_region: Option<&str>) -> Result<Self, PhoneError> {
        let region = default_region
            .map(|r| country::Id::from_str(&r.trim().to_ascii_uppercase()))
            .transpose()
            .map_err(|_| PhoneError::UnknownRegion)?;
        if input.chars().count() > MAX_INPUT_CHARS {
            return Err(PhoneError::NotANumber);
        }
        let number = phonenumber::parse(region, input).map_err(|e| match e {
            ParseError::NoNumber | ParseError::MalformedInteger(_) => PhoneError::NotANumber,
            ParseError::InvalidCountryCode
            | ParseError::TooShortAfterIdd
            | ParseError::TooShortNsn
            | ParseError::TooLong => PhoneError::NotPossible,
        })?;
        if !phonenumber::is_valid(&number) {
            return Err(PhoneError::NotValid);
        }
        if number.extension().is_some() {
            return Err(PhoneError::HasExtension);
        }
        Ok(Self(number.format().mode(Mode::E164).to_string()))
    }

    /// Accepts a value this type wrote to a store; only the E.164 shape is
    /// checked (`+`, a non-zero digit, at most fifteen digits in all).
    pub fn from_stored(stored: &str) -> Option<Self> {
        let digits = stored.strip_prefix('+')?;
        let ok = (2..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| Self(stored.to_owned()))
    }

    /// The number as stored and handed to the SMS gateway.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e164(input: &str, region: Option<&str>) -> Result<String, PhoneError> {
        E164::parse(input, region).map(|n| n.as_str().to_owned())
    }

    #[test]
    fn international_spellings_normalise_to_one_e164_form() {
        for spelled in [
            "+44 20 7946 0958",
            "+442079460958",
            "+44 (0)20 7946-0958",
            "tel:+44-20-7946-0958",
        ] {
            assert_eq!(
                e164(spelled, None).as_deref(),
                Ok("+442079460958"),
                "{spelled:?}"
            );
        }
        // A region does not override an explicit country code.
        assert_eq!(
            e164("+44 20 7946 0958", Some("US")).as_deref(),
            Ok("+442079460958")
        );
    }

    #[test]
    fn national_numbers_are_read_in_the_default_region() {
        assert_eq!(
            e164("020 7946 0958", Some("GB")).as_deref(),
            Ok("+442079460958")
        );
        assert_eq!(
            e164("020 7946 0958", Some("gb")).as_deref(),
            Ok("+442079460958")
        );
        assert_eq!(
            e164("(201) 555-0123", Some("US")).as_deref(),
            Ok("+12015550123")
        );
        assert_eq!(
            e164("00 44 20 7946 0958", Some("FR")).as_deref(),
            Ok("+442079460958")
        );
    }

    #[test]
    fn garbage_and_impossible_numbers_are_refused_by_kind() {
        assert_eq!(e164("", None), Err(PhoneError::NotANumber));
        assert_eq!(e164("call me", Some("GB")), Err(PhoneError::NotANumber));
        assert_eq!(e164(&"1".repeat(65), None), Err(PhoneError::NotANumber));
        // A national number with no region to read it in.
        assert_eq!(e164("020 7946 0958", None), Err(PhoneError::NotPossible));
        assert_eq!(e164("+999 1234 5678", None), Err(PhoneError::NotPossible));
        assert_eq!(
            e164("+44 20 7946 0958 1234 5678 9", None),
            Err(PhoneError::NotPossible)
        );
        // Right length for the US, but no exchange code starts with 0; and
        // a number merely too short for its country is not valid either.
        assert_eq!(e164("12", Some("GB")), Err(PhoneError::NotValid));
        assert_eq!(e164("+1 201 055 0123", None), Err(PhoneError::NotValid));
        assert_eq!(
            e164("+44 20 7946 0958 ext. 12", None),
            Err(PhoneError::HasExtension)
        );
        assert_eq!(
            e164("020 7946 0958", Some("XX")),
            Err(PhoneError::UnknownRegion)
        );
    }

    #[test]
    fn stored_values_are_shape_checked() {
        assert_eq!(
            E164::from_stored("+442079460958").map(|n| n.to_string()),
            Some("+442079460958".to_owned())
        );
        for bad in [
            "",
            "+",
            "442079460958",
            "+0442079460958",
            "+44 20",
            "+1234567890123456",
        ] {
            assert_eq!(E164::from_stored(bad), None, "{bad:?}");
        }
    }
}
