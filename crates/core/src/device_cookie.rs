//! Device cookies: `<device id>.<tag>` (checklist row LK-4; OWASP "Slow
//! Down Online Guessing Attacks with Device Cookies").
//!
//! **Why.** The sign-in lockout counts failures per address, so anyone who
//! knows an address can lock its owner out by failing on purpose. A browser
//! that signed in to the address before carries a device cookie; an attempt
//! that presents one for the address it names counts in that device's own
//! lockout bucket (`LockoutKey::device`), which strangers' failures never
//! fill — and which its own failures fill without touching anyone else's.
//! Clients that present no cookie (scripts, other devices, the attacker)
//! keep counting in the address's bucket exactly as before.
//!
//! **Format.** The **device id** is a fresh random id (a UUIDv4's 122 bits,
//! 32 hex digits) minted on every successful password sign-in; the **tag**
//! is a 128-bit HMAC-SHA256 of `<device id>.<canonical address>` under a
//! key derived from `jwt_secret` for this purpose alone
//! ([`crate::jwt::derive_key`]). So the cookie says "this server saw the
//! right password for *this address* from the device holding it": one
//! minted for another address, a changed id, a forged or truncated tag
//! — anything [`DeviceCookies::recognize`] does not verify — is treated
//! as no cookie at all. Nothing is stored: the id names the bucket, the tag
//! proves it was handed out here.
//!
//! A stolen cookie buys no more than its own bucket: `threshold` guesses a
//! window, like an address. A new cookie is minted on each sign-in, so the
//! owner's next success moves it to a bucket a thief's copy does not share.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use regstack_ports::{DeviceId, Email};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::jwt::{derive_key, Purpose};

/// Characters of a device id (a UUIDv4 without dashes).
const ID_CHARS: usize = 32;
/// Bytes of the tag: 128 bits is beyond forging by trial.
const TAG_BYTES: usize = 16;
/// Characters of the base64url tag.
const TAG_CHARS: usize = 22;
/// Length of every device cookie value this module mints.
pub const DEVICE_COOKIE_CHARS: usize = ID_CHARS + 1 + TAG_CHARS;

/// Mints and recognises device cookies with the server's key.
#[derive(Clone)]
pub struct DeviceCookies {
    tag: Hmac<Sha256>,
    /// Keys of `jwt_previous_secrets`: recognise, never mint.
    previous: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceCookies { .. }")
    }
}

impl DeviceCookies {
    /// Derives the key from the configured `jwt_secret`.
    pub fn new(jwt_secret: &SecretString) -> Self {
        Self {
            tag: Self::key(jwt_secret),
            previous: Vec::new(),
        }
    }

    /// Also recognises cookies minted under these secrets
    /// (`jwt_previous_secrets`), so rotating the secret does not put every
    /// owner's browser back into the address's lockout bucket.
    pub fn with_previous_secrets(mut self, secrets: &[SecretString]) -> Self {
        self.previous = secrets.iter().map(Self::key).collect();
        self
    }

    fn key(jwt_secret: &SecretString) -> Hmac<Sha256> {
        let key = derive_key(jwt_secret, Purpose::DeviceCookie);
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
    }

    /// A new device cookie for `email`: a fresh device id and its tag.
    pub fn mint(&self, email: &Email) -> SecretString {
        let device = DeviceId::generate();
        let tag = self.tag_of(&device, email);
        SecretString::from(format!(
            "{device}.{}",
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        ))
    }

    /// The device a presented cookie names, if it was minted here for
    /// `email`; `None` for anything else (another address's cookie, a
    /// forged, changed or malformed one). Checks the shape before the MAC,
    /// and the MAC in constant time.
    pub fn recognize(&self, raw: &str, email: &Email) -> Option<DeviceId> {
        if raw.len() != DEVICE_COOKIE_CHARS {
            return None;
        }
        let (id, tag) = raw.split_once('.')?;
        if id.len() != ID_CHARS || tag.len() != TAG_CHARS {
            return None;
        }
        let device = DeviceId::parse(id)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let message = Self::message(&device, email);
        let tagged_by = |key: &Hmac<Sha256>| {
            let mut mac = key.clone();
            mac.update(message.as_bytes());
            mac.verify_truncated_left(&tag).is_ok()
        };
        (tagged_by(&self.tag) || self.previous.iter().any(tagged_by)).then_some(device)
    }

    fn tag_of(&self, device: &DeviceId, email: &Email) -> Vec<u8> {
        let mut mac = self.tag.clone();
        mac.update(Self::message(device, email).as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// What the tag covers. The id has a fixed length and no `.`, so the
    /// pair reads back one way only.
    fn message(device: &DeviceId, email: &Email) -> String {
        format!("{device}.{}", email.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> DeviceCookies {
        DeviceCookies::new(&SecretString::from(secret.repeat(8)))
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn cookies_of_a_previous_secret_are_recognised_and_new_ones_use_the_current() {
        let (old, new) = (
            SecretString::from("k1-".repeat(8)),
            SecretString::from("k2-".repeat(8)),
        );
        let owner = email("owner@example.com");
        let before = DeviceCookies::new(&old).mint(&owner);
        let rotated = DeviceCookies::new(&new).with_previous_secrets(std::slice::from_ref(&old));
        assert!(rotated.recognize(before.expose_secret(), &owner).is_some());
        let after = rotated.mint(&owner);
        assert!(DeviceCookies::new(&new)
            .recognize(after.expose_secret(), &owner)
            .is_some());
        assert!(DeviceCookies::new(&new)
            .recognize(before.expose_secret(), &owner)
            .is_none());
    }

    #[test]
    fn a_minted_cookie_is_recognised_for_its_address_only() {
        let k = keys("k1-");
        let owner = email("owner@example.com");
        let c = k.mint(&owner);
        let raw = c.expose_secret();
        assert_eq!(raw.len(), DEVICE_COOKIE_CHARS);
        let device = k.recognize(raw, &owner).expect("our own cookie");
        assert!(raw.starts_with(&format!("{device}.")));
        assert!(
            k.recognize(raw, &email("other@example.com")).is_none(),
            "a cookie names one address"
        );
        assert!(
            k.recognize(raw, &email("owner@example.co")).is_none(),
            "not a prefix match"
        );
        assert!(
            keys("k2-").recognize(raw, &owner).is_none(),
            "another server's key does not accept it"
        );
        let again = k.mint(&owner);
        assert_ne!(
            k.recognize(again.expose_secret(), &owner),
            Some(device),
            "each sign-in gets a new device id"
        );
    }

    #[test]
    fn anything_not_minted_here_is_refused() {
        let k = keys("k1-");
        let owner = email("owner@example.com");
        let raw = k.mint(&owner).expose_secret().to_owned();
        // Every single-character change of a cookie breaks it.
        for i in 0..raw.len() {
            let mut bytes = raw.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            assert!(
                k.recognize(&changed, &owner).is_none(),
                "changed at {i}: {changed}"
            );
        }
        for junk in [
            "",
            ".",
            "x",
            &raw[..raw.len() - 1],
            &format!("{raw}A"),
            &raw.replace('.', "-"),
            &format!("{}.{}", &raw[..ID_CHARS], "A".repeat(TAG_CHARS)),
            &format!("{}.{}", "0".repeat(ID_CHARS), &raw[ID_CHARS + 1..]),
            &format!("{}x", "é".repeat(DEVICE_COOKIE_CHARS / 2)),
        ] {
            assert!(k.recognize(junk, &owner).is_none(), "{junk:?}");
        }
    }
}
