//! Refresh tokens: `<session id>.<secret>.<tag>`.
//!
//! - The **session id** lets a rotation find its family by primary key and
//!   change that one record (live hash, previous hash, idle end): no table
//!   of token hashes, no index to maintain per rotation. It is no secret —
//!   access tokens carry it as `sid` too.
//! - The **secret** is 256 bits: random for the token a sign-in hands out,
//!   `HMAC(successor key, presented token)` for each successor, so a client
//!   retrying a lost answer gets the same successor again and nothing but
//!   hashes is stored.
//! - The **tag** is a 128-bit HMAC of `<session id>.<secret>` under a key
//!   only the server holds. It proves we minted the token for that session,
//!   so a tagged token of a live session that is not its live token can only
//!   be an older one of the same family: reuse, revoking the family — which
//!   a forged token (or a session id read from a log) cannot trigger.
//!
//! Both keys are derived from `jwt_secret` with their own purpose labels
//! ([`crate::jwt::derive_key`]). Tags made under one of
//! `jwt_previous_secrets` still verify, so rotating the secret does not sign
//! everyone out at their next refresh; new tokens are always tagged and
//! derived with the current secret's keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use regstack_ports::{SessionId, TokenHash};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::jwt::{derive_key, Purpose};
use crate::tokens;

/// Characters of the base64url secret (32 bytes).
const SECRET_CHARS: usize = 43;
/// Bytes of the tag: 128 bits is beyond forging by trial.
const TAG_BYTES: usize = 16;
/// Characters of the base64url tag.
const TAG_CHARS: usize = 22;
/// Characters of a session id.
const SID_CHARS: usize = 32;
/// Length of every refresh token this module mints.
pub const REFRESH_TOKEN_CHARS: usize = SID_CHARS + 1 + SECRET_CHARS + 1 + TAG_CHARS;

/// A refresh token as handed out: the raw value for the client, the hash
/// for the store.
pub struct MintedRefresh {
    /// Goes to the client once; never logged, never stored.
    pub raw: SecretString,
    /// What the session record keeps.
    pub hash: TokenHash,
}

/// A presented refresh token whose tag verified: it was minted by this
/// server for `session`.
pub struct PresentedRefresh<'a> {
    /// The family it belongs to.
    pub session: SessionId,
    /// Its digest, compared with the session's live and previous hashes.
    pub hash: TokenHash,
    raw: &'a str,
}

/// Mints, derives and checks refresh tokens with the server's keys.
#[derive(Clone)]
pub struct RefreshTokens {
    successor: Hmac<Sha256>,
    tag: Hmac<Sha256>,
    /// Tag keys of `jwt_previous_secrets`: check, never tag.
    previous_tags: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokens { .. }")
    }
}

fn keyed(secret: &SecretString, purpose: Purpose) -> Hmac<Sha256> {
    let key = derive_key(secret, purpose);
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

impl RefreshTokens {
    /// Derives both keys from the configured `jwt_secret`.
    pub fn new(jwt_secret: &SecretString) -> Self {
        Self {
            successor: keyed(jwt_secret, Purpose::RefreshSuccessor),
            tag: keyed(jwt_secret, Purpose::RefreshTag),
            previous_tags: Vec::new(),
        }
    }

    /// Also accepts tokens tagged under these secrets
    /// (`jwt_previous_secrets`).
    pub fn with_previous_secrets(mut self, secrets: &[SecretString]) -> Self {
        self.previous_tags = secrets
            .iter()
            .map(|s| keyed(s, Purpose::RefreshTag))
            .collect();
        self
    }

    /// The first token of a new session: a random secret.
    pub fn mint(&self, session: &SessionId) -> MintedRefresh {
        let secret = URL_SAFE_NO_PAD.encode(tokens::random_bytes::<32>());
        self.assemble(session, &secret)
    }

    /// The successor of a presented token; the same every time for the
    /// same token, so a replay answers with what the rotation answered.
    pub fn successor(&self, presented: &PresentedRefresh<'_>) -> MintedRefresh {
        let mut mac = self.successor.clone();
        mac.update(presented.raw.as_bytes());
        let secret = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        self.assemble(&presented.session, &secret)
    }

    /// Checks the shape and the tag. `None` for anything this server did
    /// not mint — before any store is asked.
    pub fn parse<'a>(&self, raw: &'a str) -> Option<PresentedRefresh<'a>> {
        if raw.len() != REFRESH_TOKEN_CHARS {
            return None;
        }
        let (body, tag) = raw.rsplit_once('.')?;
        let (sid, secret) = body.split_once('.')?;
        if sid.len() != SID_CHARS || secret.len() != SECRET_CHARS || tag.len() != TAG_CHARS {
            return None;
        }
        let session = SessionId::parse(sid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let tagged_by = |key: &Hmac<Sha256>| {
            let mut mac = key.clone();
            mac.update(body.as_bytes());
            // Constant time; compares the leftmost TAG_BYTES of the MAC.
            mac.verify_truncated_left(&tag).is_ok()
        };
        if !(tagged_by(&self.tag) || self.previous_tags.iter().any(tagged_by)) {
            return None;
        }
        Some(PresentedRefresh {
            session,
            hash: tokens::hash_raw(raw),
            raw,
        })
    }

    fn assemble(&self, session: &SessionId, secret: &str) -> MintedRefresh {
        let body = format!("{session}.{secret}");
        let mut mac = self.tag.clone();
        mac.update(body.as_bytes());
        let tag = mac.finalize().into_bytes();
        let raw = format!("{body}.{}", URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES]));
        MintedRefresh {
            hash: tokens::hash_raw(&raw),
            raw: SecretString::from(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> RefreshTokens {
        RefreshTokens::new(&SecretString::from(secret.repeat(8)))
    }

    #[test]
    fn tokens_of_a_previous_secret_parse_and_successors_use_the_current() {
        let (old, new) = (
            SecretString::from("k1-".repeat(8)),
            SecretString::from("k2-".repeat(8)),
        );
        let sid = SessionId::generate();
        let before = RefreshTokens::new(&old).mint(&sid);
        let rotated = RefreshTokens::new(&new).with_previous_secrets(std::slice::from_ref(&old));
        let presented = rotated.parse(before.raw.expose_secret()).unwrap();
        assert_eq!(presented.session, sid);
        let successor = rotated.successor(&presented);
        // Tagged with the current key: valid once the old secret is gone.
        assert!(RefreshTokens::new(&new)
            .parse(successor.raw.expose_secret())
            .is_some());
        assert!(RefreshTokens::new(&new)
            .parse(before.raw.expose_secret())
            .is_none());
    }

    #[test]
    fn a_minted_token_parses_back_to_its_session_and_hash() {
        let k = keys("k1-");
        let sid = SessionId::generate();
        let t = k.mint(&sid);
        let raw = t.raw.expose_secret();
        assert_eq!(raw.len(), REFRESH_TOKEN_CHARS);
        assert!(raw.starts_with(&format!("{sid}.")));
        let p = k.parse(raw).expect("our own token parses");
        assert_eq!(p.session, sid);
        assert_eq!(p.hash, t.hash);
        assert_ne!(k.mint(&sid).hash, t.hash, "each sign-in gets a new secret");
    }

    #[test]
    fn successors_are_deterministic_tagged_and_differ_per_key() {
        let (k1, k2) = (keys("k1-"), keys("k2-"));
        let sid = SessionId::generate();
        let t0 = k1.mint(&sid);
        let p0 = k1.parse(t0.raw.expose_secret()).unwrap();
        let s1 = k1.successor(&p0);
        assert_eq!(
            s1.hash,
            k1.successor(&p0).hash,
            "same token, same successor"
        );
        assert_ne!(s1.hash, t0.hash);
        let p1 = k1
            .parse(s1.raw.expose_secret())
            .expect("a successor is ours");
        assert_eq!(p1.session, sid);
        assert_ne!(k1.successor(&p1).hash, s1.hash, "the chain moves on");
        assert!(
            k2.parse(t0.raw.expose_secret()).is_none(),
            "another server's key does not accept it"
        );
    }

    #[test]
    fn anything_not_minted_here_is_refused() {
        let k = keys("k1-");
        let sid = SessionId::generate();
        let raw = k.mint(&sid).raw.expose_secret().to_owned();
        // Every single-character change of a token breaks it.
        for i in 0..raw.len() {
            let mut bytes = raw.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            assert!(k.parse(&changed).is_none(), "changed at {i}: {changed}");
        }
        // Another session's id with this token's secret and tag.
        let other = SessionId::generate();
        let moved = format!("{other}{}", &raw[SID_CHARS..]);
        assert!(k.parse(&moved).is_none(), "a tag binds the session id");
        for bad in [
            "",
            "x",
            &raw[1..],
            &format!("{raw}A"),
            &raw.replace('.', "-"),
        ] {
            assert!(k.parse(bad).is_none(), "{bad:?}");
        }
    }
}
