//! TOTP (RFC 6238) with the parameters every authenticator app assumes:
//! HMAC-SHA-1, 30-second steps, 6 digits. Anything else is silently
//! misread by some apps, so none of it is configurable.
//!
//! ```text
//!   enrol:   TotpSecret::generate ─▶ otpauth_uri ─▶ qr_svg ─▶ user's app
//!            (sealed for the store by `SecretSealer`)
//!   verify:  verify(code, now) ─▶ Some(step) ─▶ store: accept only if
//!                                               step > last accepted step
//! ```
//!
//! Replay (RFC 6238 §5.2 "MUST NOT accept the second
//! attempt") is the store's half: [`TotpSecret::verify`] says *which* step
//! a code belongs to, and the store records it with a conditional update
//! that succeeds only if the step is later than the last one it accepted.
//! That refuses the same code twice and any earlier code still inside the
//! ±1 window, and two parallel submissions of one code succeed once.

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use rand::rngs::OsRng;
use rand::RngCore;
use regstack_ports::Timestamp;
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

/// Secret length: 160 bits, what RFC 4226 §4 recommends (SHA-1's output
/// size) and what authenticator apps expect.
pub const SECRET_BYTES: usize = 20;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted either side of the current one, for clock drift and the
/// time it takes to type a code (RFC 6238 §5.2 recommends one).
pub const SKEW_STEPS: u64 = 1;

/// Why an enrolment artefact could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TotpError {
    /// The issuer or account name contains a `:`, which separates the two in
    /// an otpauth label and would make apps show the wrong names.
    #[error("issuer and account name must not contain ':'")]
    Label,
    /// The bytes are not a 160-bit secret (a sealed value from elsewhere).
    #[error("a TOTP secret is exactly {SECRET_BYTES} bytes")]
    SecretLength,
    /// The URI does not fit in a QR code (far longer than any otpauth URI).
    #[error("too long for a QR code")]
    QrTooLong,
}

/// A user's TOTP key. `Debug` prints nothing of it and it is wiped on drop;
/// at rest it exists only sealed ([`super::SecretSealer`]).
#[derive(Clone)]
pub struct TotpSecret([u8; SECRET_BYTES]);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret([redacted])")
    }
}

impl Drop for TotpSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The RFC 6238 time-step counter (`unix seconds / 30`) a code belongs to.
/// Stores keep the last one accepted per user and refuse any step at or
/// below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TotpStep(u64);

impl TotpStep {
    /// Rebuilds a step read back from a store.
    pub fn from_counter(counter: u64) -> Self {
        Self(counter)
    }

    /// The counter, for the store.
    pub fn counter(self) -> u64 {
        self.0
    }

    /// The step that `now` falls in; `None` before 1970, where no code can
    /// be valid.
    pub fn at(now: Timestamp) -> Option<Self> {
        u64::try_from(now.timestamp())
            .ok()
            .map(|secs| Self(secs / STEP_SECONDS))
    }
}

impl TotpSecret {
    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Rebuilds a secret from opened bytes; anything but 160 bits is refused
    /// rather than used, since we never made it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TotpError> {
        <[u8; SECRET_BYTES]>::try_from(bytes)
            .map(Self)
            .map_err(|_| TotpError::SecretLength)
    }

    /// Reads a secret as `/totp/setup` shows it (unpadded RFC 4648
    /// base32, any case, spaces ignored): what a client of the API enrols
    /// from, as an authenticator app would — `regstack validate` does.
    pub fn from_base32(encoded: &str) -> Result<Self, TotpError> {
        let cleaned: String = encoded
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = totp_rs::Secret::Encoded(cleaned)
            .to_bytes()
            .map_err(|_| TotpError::SecretLength)?;
        Self::from_bytes(&bytes)
    }

    /// The code an authenticator app shows during `step`, for a client
    /// that proves the factor (the other side of [`Self::verify`]).
    pub fn code_for(&self, step: TotpStep) -> SecretString {
        SecretString::from(self.totp().generate(step.0.saturating_mul(STEP_SECONDS)))
    }

    /// The raw key, for sealing. Never log or store it as is.
    pub fn expose_bytes(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }

    /// The key in unpadded RFC 4648 base32, for users who type it into their
    /// app instead of scanning the QR code.
    pub fn to_base32(&self) -> SecretString {
        SecretString::from(self.totp().get_secret_base32())
    }

    /// The `otpauth://totp/…` URI an authenticator app enrols from. It
    /// carries the secret, hence the `SecretString`. `issuer` is the
    /// service's name as the app should show it; an empty one is left out.
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Result<SecretString, TotpError> {
        let issuer = (!issuer.is_empty()).then(|| issuer.to_owned());
        let totp = TOTP::new(
            Algorithm::SHA1,
            DIGITS,
            1,
            STEP_SECONDS,
            self.0.to_vec(),
            issuer,
            account.to_owned(),
        )
        .map_err(|_| TotpError::Label)?;
        Ok(SecretString::from(totp.get_url()))
    }

    /// Checks `code` against the steps `now - 30 s`, `now` and `now + 30 s`
    /// and returns the step it matched, for the store's replay check. Every
    /// candidate is computed and compared in constant time, and the loop
    /// does not stop at a match, so the time taken barely depends on which
    /// step (if any) matched. If
    /// a code happens to match two steps, the later is returned: replay
    /// protection then errs towards refusing.
    ///
    /// Spaces inside the code are ignored (apps display "123 456").
    pub fn verify(&self, code: &str, now: Timestamp) -> Option<TotpStep> {
        let presented: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if presented.len() != DIGITS || !presented.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let current = TotpStep::at(now)?.0;
        let totp = self.totp();
        let mut matched = None;
        for step in current.saturating_sub(SKEW_STEPS)..=current.saturating_add(SKEW_STEPS) {
            let Some(at) = step.checked_mul(STEP_SECONDS) else {
                continue;
            };
            let expected = totp.generate(at);
            if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
                matched = Some(TotpStep(step));
            }
        }
        matched
    }

    fn totp(&self) -> TOTP {
        // The parameters are ours and fixed and the secret is 160 bits, so
        // the checks `TOTP::new` makes cannot fail; skip them.
        TOTP::new_unchecked(
            Algorithm::SHA1,
            DIGITS,
            1,
            STEP_SECONDS,
            self.0.to_vec(),
            None,
            String::new(),
        )
    }
}

/// An otpauth URI as a QR code: a standalone SVG document, no image
/// libraries involved. It encodes the secret, so it is a `SecretString`
/// too; show it once, on the enrolment page.
pub fn qr_svg(uri: &SecretString) -> Result<SecretString, TotpError> {
    let code = QrCode::with_error_correction_level(uri.expose_secret().as_bytes(), EcLevel::M)
        .map_err(|_| TotpError::QrTooLong)?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    Ok(SecretString::from(image))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;

    /// RFC 4226 HOTP with HMAC-SHA-1, written from the RFC and nothing of
    /// ours or totp-rs's, so the vectors test our code rather than agree
    /// with it.
    fn independent_hotp(key: &[u8], counter: u64, digits: u32) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).unwrap();
        mac.update(&counter.to_be_bytes());
        let hs = mac.finalize().into_bytes();
        let offset = usize::from(hs[19] & 0x0f);
        let bin = (u32::from(hs[offset]) & 0x7f) << 24
            | u32::from(hs[offset + 1]) << 16
            | u32::from(hs[offset + 2]) << 8
            | u32::from(hs[offset + 3]);
        format!(
            "{:0width$}",
            bin % 10u32.pow(digits),
            width = digits as usize
        )
    }

    fn independent_totp(key: &[u8], unix: u64, digits: u32) -> String {
        independent_hotp(key, unix / 30, digits)
    }

    fn at(unix: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(unix, 0).unwrap()
    }

    /// RFC 6238 Appendix B, the SHA-1 rows: time, step (hex T), 8-digit TOTP.
    const RFC6238_SHA1: [(u64, u64, &str); 6] = [
        (59, 0x1, "94287082"),
        (1_111_111_109, 0x23523EC, "07081804"),
        (1_111_111_111, 0x23523ED, "14050471"),
        (1_234_567_890, 0x273EF07, "89005924"),
        (2_000_000_000, 0x3F940AA, "69279037"),
        (20_000_000_000, 0x27BC86AA, "65353130"),
    ];
    const RFC_KEY: &[u8; 20] = b"12345678901234567890";

    #[test]
    fn the_independent_hotp_reproduces_rfc_6238_appendix_b() {
        for (t, step, expected) in RFC6238_SHA1 {
            assert_eq!(t / 30, step);
            assert_eq!(independent_totp(RFC_KEY, t, 8), expected, "T = {t}");
        }
    }

    #[test]
    fn rfc_6238_vectors_verify_at_their_times_and_name_their_step() {
        let secret = TotpSecret::from_bytes(RFC_KEY).unwrap();
        for (t, step, eight) in RFC6238_SHA1 {
            // Six digits are the last six of the eight: both are the same
            // truncated value modulo a power of ten.
            let six = &eight[2..];
            assert_eq!(six, independent_totp(RFC_KEY, t, 6));
            assert_eq!(
                secret.verify(six, at(t as i64)),
                Some(TotpStep(step)),
                "T = {t}"
            );
        }
    }

    #[test]
    fn the_adjacent_steps_are_accepted_and_two_steps_away_refused() {
        let secret = TotpSecret::from_bytes(RFC_KEY).unwrap();
        for (t, step, _) in RFC6238_SHA1 {
            let now = at(t as i64);
            let earlier = independent_totp(RFC_KEY, t - 30, 6);
            let later = independent_totp(RFC_KEY, t + 30, 6);
            assert_eq!(secret.verify(&earlier, now), Some(TotpStep(step - 1)));
            assert_eq!(secret.verify(&later, now), Some(TotpStep(step + 1)));
            assert_eq!(
                secret.verify(&independent_totp(RFC_KEY, t + 60, 6), now),
                None
            );
            if t >= 60 {
                assert_eq!(
                    secret.verify(&independent_totp(RFC_KEY, t - 60, 6), now),
                    None
                );
            }
        }
    }

    #[test]
    fn malformed_codes_and_times_before_1970_are_refused() {
        let secret = TotpSecret::from_bytes(RFC_KEY).unwrap();
        let now = at(59);
        assert_eq!(secret.verify("287082", now), Some(TotpStep(1)));
        assert_eq!(secret.verify("287 082", now), Some(TotpStep(1)));
        for bad in ["", "28708", "2870820", "28708a", "９４２８７０"] {
            assert_eq!(secret.verify(bad, now), None, "{bad:?}");
        }
        assert_eq!(secret.verify("287082", at(-1)), None);
    }

    #[test]
    fn a_generated_secret_round_trips_through_its_otpauth_uri() {
        let secret = TotpSecret::generate();
        let uri = secret
            .otpauth_uri("Example Co", "alice@example.com")
            .unwrap();
        let uri = uri.expose_secret();
        assert!(uri.starts_with("otpauth://totp/Example%20Co:alice%40example.com?"));
        assert!(uri.contains("issuer=Example%20Co"));

        let parsed = TOTP::from_url(uri).unwrap();
        assert_eq!(parsed.secret, secret.expose_bytes().to_vec());
        assert_eq!(parsed.algorithm, Algorithm::SHA1);
        assert_eq!(parsed.digits, 6);
        assert_eq!(parsed.step, 30);
        assert_eq!(parsed.issuer.as_deref(), Some("Example Co"));
        assert_eq!(parsed.account_name, "alice@example.com");
        assert_eq!(
            parsed.get_secret_base32(),
            secret.to_base32().expose_secret()
        );

        // What an app that scanned the URI would show, computed without us.
        let t = 1_700_000_000u64;
        let code = independent_totp(&parsed.secret, t, 6);
        assert_eq!(secret.verify(&code, at(t as i64)), Some(TotpStep(t / 30)));
    }

    #[test]
    fn a_client_reads_the_base32_secret_back_and_computes_the_apps_code() {
        let secret = TotpSecret::generate();
        let shown = secret.to_base32();
        let spaced: String = shown
            .expose_secret()
            .to_lowercase()
            .chars()
            .enumerate()
            .flat_map(|(i, c)| (i % 4 == 0 && i > 0).then_some(' ').into_iter().chain([c]))
            .collect();
        for encoded in [shown.expose_secret().to_owned(), spaced] {
            let read = TotpSecret::from_base32(&encoded).unwrap();
            assert_eq!(read.expose_bytes(), secret.expose_bytes(), "{encoded}");
        }
        let t = 1_700_000_000u64;
        let step = TotpStep(t / 30);
        let code = secret.code_for(step);
        assert_eq!(
            code.expose_secret(),
            independent_totp(secret.expose_bytes(), t, 6)
        );
        assert_eq!(
            secret.verify(code.expose_secret(), at(t as i64)),
            Some(step)
        );
        assert!(TotpSecret::from_base32("not base32!").is_err());
        assert!(TotpSecret::from_base32("MZXW6").is_err(), "too short");
    }

    #[test]
    fn labels_with_a_colon_are_refused() {
        let secret = TotpSecret::generate();
        assert_eq!(
            secret.otpauth_uri("Evil:Co", "a@example.com").err(),
            Some(TotpError::Label)
        );
        assert_eq!(
            secret.otpauth_uri("Co", "a:b@example.com").err(),
            Some(TotpError::Label)
        );
        let bare = secret.otpauth_uri("", "a@example.com").unwrap();
        assert!(bare
            .expose_secret()
            .starts_with("otpauth://totp/a%40example.com?"));
    }

    #[test]
    fn secrets_are_160_bits_random_and_redacted() {
        let a = TotpSecret::generate();
        assert_ne!(a.expose_bytes(), TotpSecret::generate().expose_bytes());
        assert_eq!(a.to_base32().expose_secret().len(), 32);
        assert_eq!(format!("{a:?}"), "TotpSecret([redacted])");
        assert_eq!(
            TotpSecret::from_bytes(&[0; 16]).err(),
            Some(TotpError::SecretLength)
        );
    }

    #[test]
    fn the_qr_code_is_an_svg_document() {
        let uri = TotpSecret::generate()
            .otpauth_uri("Example", "alice@example.com")
            .unwrap();
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.expose_secret().contains("<svg"));
        assert!(svg.expose_secret().trim_end().ends_with("</svg>"));
        assert_eq!(
            qr_svg(&SecretString::from("x".repeat(5000))).err(),
            Some(TotpError::QrTooLong)
        );
    }

    proptest! {
        #[test]
        fn an_accepted_code_is_never_more_than_one_step_away(
            key in proptest::array::uniform20(any::<u8>()),
            unix in 0i64..40_000_000_000,
            offset in -3i64..=3,
        ) {
            let secret = TotpSecret::from_bytes(&key).unwrap();
            let current = unix as u64 / 30;
            let Some(target) = current.checked_add_signed(offset) else {
                return Ok(());
            };
            let code = independent_hotp(&key, target, 6);
            match secret.verify(&code, at(unix)) {
                Some(step) => {
                    prop_assert!(step.counter().abs_diff(current) <= 1);
                    // A code of an adjacent step is found at that step or,
                    // on a one-in-a-million collision, a later one.
                    if offset.abs() <= 1 {
                        prop_assert!(step.counter() >= target);
                    }
                }
                None => prop_assert!(offset.abs() > 1),
            }
        }
    }
}
