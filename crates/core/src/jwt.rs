//! Signed tokens: access tokens today; any other purpose gets its own key.
//!
//! Each purpose signs with its own key, derived from `jwt_secret` by
//! HMAC-SHA256 over a purpose label, and carries a `purpose` claim: a token
//! minted for one purpose cannot verify under another's key (RFC 8725
//! §3.11–3.12). The algorithm is pinned by configuration; `exp` is checked
//! against the injected clock with zero leeway; `iat` may lie in the future
//! by at most `jwt_iat_leeway_seconds` (clock skew between instances that
//! share the secret: one signs, another verifies a moment later by a clock
//! a little behind), never more; `aud` is required exactly when configured
//! and refused when not.
//!
//! **Key rotation**: every token names its key in the
//! header's `kid` (a fingerprint of the derived key, never the key), and
//! verification picks the key by `kid` from a keyring — the current
//! `jwt_secret`'s, then each of `jwt_previous_secrets`'. An unknown `kid`
//! is refused before any signature check; a token without one (minted
//! before tokens carried it) is checked against the current key only.
//! Header parameters that point at keys elsewhere (`jku`, `jwk`, `x5u`,
//! `x5c`) are never followed: a token carrying one is refused.
//!
//! **Asymmetric access tokens** (`jwt_algorithm = "EdDSA"` or `"RS256"`):
//! access tokens are signed with the first of [`SigningKeys`] instead of
//! the derived HMAC key, and verified by whichever of them the `kid` names
//! (the RFC 7638 thumbprint of its public key). A token without a `kid`,
//! or naming a key not held, is refused; the algorithm stays pinned, so an
//! HS256 token "signed" with the public key (the classic confusion) is
//! refused too. The public halves are the JWKS the HTTP layer publishes.
//! Refresh tokens, device cookies and every other key stay derived from
//! `jwt_secret`: only access tokens leave the service.

use hmac::{Hmac, Mac};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use regstack_ports::{SessionId, Timestamp, UserId};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::JwtAlgorithm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;

/// Largest token accepted from a request, before any parsing.
pub const MAX_JWT_BYTES: usize = 8192;

/// What a token is for. Each has its own derived key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `Authorization: Bearer` on API calls.
    Access,
    /// The key that derives refresh-token successors (never signs a JWT).
    RefreshSuccessor,
    /// The key that tags refresh tokens with their session (never signs a
    /// JWT).
    RefreshTag,
    /// The key that binds a device cookie to its address (never signs a
    /// JWT).
    DeviceCookie,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::RefreshSuccessor => "refresh-successor",
            Self::RefreshTag => "refresh-tag",
            Self::DeviceCookie => "device-cookie",
        }
    }
}

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// User id.
    pub sub: String,
    /// Session id.
    pub sid: String,
    /// Unique token id.
    pub jti: String,
    /// Always `"access"`.
    pub purpose: String,
    /// Issue time, seconds since the epoch with microseconds.
    pub iat: f64,
    /// Expiry, whole seconds since the epoch.
    pub exp: i64,
    /// Audience, when configured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub aud: Option<String>,
    /// Not-before, never issued by us; refused if in the future.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nbf: Option<i64>,
}

/// A token that verified: who, which session, when issued.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAccess {
    /// Owner.
    pub user_id: UserId,
    /// Session the token belongs to.
    pub session_id: SessionId,
    /// Issue time.
    pub issued_at: Timestamp,
}

/// Why a token was refused. Callers answer all of them alike (a static 401
/// body): the variants exist for logs and tests, never for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, wrong signature, wrong algorithm, wrong purpose or audience,
    /// missing claims.
    #[error("token is malformed or its signature does not verify")]
    Invalid,
    /// Past `exp` (or before `nbf`, or issued in the future).
    #[error("token is expired or not yet valid")]
    Expired,
}

/// Signs and verifies regstack's JWTs.
pub struct JwtCodec {
    algorithm: Algorithm,
    /// Signs every new token.
    access_key: SecretString,
    /// `kid` of [`Self::access_key`].
    kid: String,
    /// Keys of `jwt_previous_secrets` by `kid`: verify only, never sign.
    previous: Vec<(String, SecretString)>,
    audience: Option<String>,
    ttl_seconds: u64,
    /// How far `iat` may lie beyond `now`, in microseconds.
    iat_leeway_micros: i64,
    /// With an asymmetric algorithm: the key pairs that sign and verify
    /// instead of [`Self::access_key`].
    keys: Option<SigningKeys>,
}

/// The key pairs of an asymmetric `jwt_algorithm`: the first signs every
/// new access token, every one verifies the tokens it signed, and all of
/// their public halves are published (a rotated-out key must stay
/// published while its tokens live, or verifiers elsewhere refuse them).
pub struct SigningKeys {
    signing: EncodingKey,
    /// `kid` of the signing key.
    kid: String,
    /// Every key by `kid`, the signing one first.
    verifying: Vec<(String, DecodingKey)>,
    /// The public JWKs, in the same order.
    public: Vec<serde_json::Value>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kid", &self.kid)
            .field("keys", &self.verifying.len())
            .finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Reads PEM private keys for `algorithm` (each string may hold
    /// several blocks; the first block of all signs): PKCS#8
    /// `PRIVATE KEY` for EdDSA, PKCS#8 or PKCS#1 `RSA PRIVATE KEY` of at
    /// least 2048 bits for RS256. The error says which key is wrong, never
    /// what it holds.
    pub fn parse(algorithm: JwtAlgorithm, pems: &[SecretString]) -> Result<Self, String> {
        let mut blocks = Vec::new();
        for (i, text) in pems.iter().enumerate() {
            let parsed = pem::parse_many(text.expose_secret().as_bytes())
                .map_err(|_| format!("key {} is not PEM", i + 1))?;
            if parsed.is_empty() {
                return Err(format!("key {} holds no PEM block", i + 1));
            }
            blocks.extend(parsed);
        }
        if blocks.is_empty() {
            return Err(format!(
                "jwt_algorithm = \"{}\" needs a private key (jwt_keys_file)",
                algorithm.as_str()
            ));
        }
        let mut verifying: Vec<(String, DecodingKey)> = Vec::new();
        let mut public = Vec::new();
        let mut signing = None;
        for (i, block) in blocks.iter().enumerate() {
            let n = i + 1;
            let (jwk, thumbprint_input, encoding, decoding) = match algorithm {
                JwtAlgorithm::EdDSA => {
                    if block.tag() != "PRIVATE KEY" {
                        return Err(format!(
                            "key {n} is a {} block; EdDSA needs a PKCS#8 \"PRIVATE KEY\" (openssl genpkey -algorithm ed25519)",
                            block.tag()
                        ));
                    }
                    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(
                        block.contents(),
                    )
                    .map_err(|e| format!("key {n} is not an Ed25519 private key ({e})"))?;
                    use ring::signature::KeyPair as _;
                    let raw = pair.public_key().as_ref().to_vec();
                    let x = B64URL.encode(&raw);
                    (
                        serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": x }),
                        format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
                        EncodingKey::from_ed_der(block.contents()),
                        DecodingKey::from_ed_der(&raw),
                    )
                }
                JwtAlgorithm::RS256 => {
                    let pair = match block.tag() {
                        "PRIVATE KEY" => ring::rsa::KeyPair::from_pkcs8(block.contents()),
                        "RSA PRIVATE KEY" => ring::rsa::KeyPair::from_der(block.contents()),
                        other => {
                            return Err(format!(
                                "key {n} is a {other} block; RS256 needs an RSA \"PRIVATE KEY\" (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072)"
                            ))
                        }
                    }
                    .map_err(|e| {
                        format!("key {n} is not an RSA private key of 2048 bits or more ({e})")
                    })?;
                    let parts = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                    let (n_b64, e_b64) = (B64URL.encode(&parts.n), B64URL.encode(&parts.e));
                    let encoding = EncodingKey::from_rsa_pem(pem::encode(block).as_bytes())
                        .map_err(|_| format!("key {n} is not a usable RSA private key"))?;
                    (
                        serde_json::json!({ "kty": "RSA", "n": n_b64, "e": e_b64 }),
                        format!(r#"{{"e":"{e_b64}","kty":"RSA","n":"{n_b64}"}}"#),
                        encoding,
                        DecodingKey::from_rsa_raw_components(&parts.n, &parts.e),
                    )
                }
                _ => {
                    return Err(format!(
                        "jwt_algorithm = \"{}\" signs with jwt_secret, not a private key",
                        algorithm.as_str()
                    ))
                }
            };
            let kid = jwk_thumbprint(&thumbprint_input);
            if verifying.iter().any(|(k, _)| *k == kid) {
                return Err(format!("key {n} is listed twice"));
            }
            let mut jwk = jwk;
            if let Some(map) = jwk.as_object_mut() {
                map.insert("kid".into(), kid.clone().into());
                map.insert("alg".into(), algorithm.as_str().into());
                map.insert("use".into(), "sig".into());
            }
            public.push(jwk);
            if signing.is_none() {
                signing = Some((encoding, kid.clone()));
            }
            verifying.push((kid, decoding));
        }
        let (signing, kid) = signing.ok_or_else(|| "no key".to_owned())?;
        Ok(Self {
            signing,
            kid,
            verifying,
            public,
        })
    }

    /// `kid` of the key that signs new tokens.
    pub fn signing_kid(&self) -> &str {
        &self.kid
    }

    /// Every key's `kid`, the signing one first.
    pub fn kids(&self) -> Vec<&str> {
        self.verifying.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// The JWK Set (RFC 7517 §5) of the public keys, the signing one first.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.public })
    }
}

/// The RFC 7638 thumbprint of a public JWK, given its required members in
/// lexicographic order without whitespace: SHA-256, base64url.
fn jwk_thumbprint(canonical: &str) -> String {
    use sha2::Digest;
    B64URL.encode(Sha256::digest(canonical.as_bytes()))
}

impl std::fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCodec")
            .field("algorithm", &self.algorithm)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The key for one purpose, derived from `jwt_secret` by HMAC-SHA256 over
/// the purpose's label: one secret in configuration, a distinct key per use.
pub fn derive_key(secret: &SecretString, purpose: Purpose) -> SecretString {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(m) => m,
        Err(_) => return SecretString::from(String::new()),
    };
    mac.update(b"regstack-rs/jwt/v1/");
    mac.update(purpose.label().as_bytes());
    SecretString::from(hex::encode(mac.finalize().into_bytes()))
}

/// The `kid` naming a derived key: the first 64 bits of its SHA-256 under a
/// label, in hex. Distinguishes keys; reveals nothing about them.
fn key_id(key: &SecretString) -> String {
    use sha2::Digest;
    let mut digest = Sha256::new();
    digest.update(b"regstack-rs/kid/v1/");
    digest.update(key.expose_secret().as_bytes());
    hex::encode(&digest.finalize()[..8])
}

impl JwtCodec {
    /// Builds a codec. `secret` must already have passed
    /// [`Config::validate`](crate::config::Config::validate).
    pub fn new(
        secret: &SecretString,
        algorithm: JwtAlgorithm,
        audience: Option<String>,
        ttl_seconds: u64,
    ) -> Self {
        let algorithm = match algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::HS384 => Algorithm::HS384,
            JwtAlgorithm::HS512 => Algorithm::HS512,
            JwtAlgorithm::EdDSA => Algorithm::EdDSA,
            JwtAlgorithm::RS256 => Algorithm::RS256,
        };
        let access_key = derive_key(secret, Purpose::Access);
        Self {
            algorithm,
            kid: key_id(&access_key),
            access_key,
            previous: Vec::new(),
            audience,
            ttl_seconds,
            iat_leeway_micros: 0,
            keys: None,
        }
    }

    /// Signs and verifies access tokens with these key pairs (an
    /// asymmetric `jwt_algorithm`, which [`Self::new`] was given) instead
    /// of the key derived from `jwt_secret`.
    pub fn with_signing_keys(mut self, keys: SigningKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The JWK Set to publish, when access tokens are signed asymmetrically.
    pub fn jwks(&self) -> Option<serde_json::Value> {
        self.keys.as_ref().map(SigningKeys::jwks)
    }

    /// Also accepts tokens signed under these secrets
    /// (`jwt_previous_secrets`): a rotated-out secret keeps its tokens
    /// valid until they expire, and a secret about to be rolled out can be
    /// accepted everywhere before any instance signs with it.
    pub fn with_previous_secrets(mut self, secrets: &[SecretString]) -> Self {
        self.previous = secrets
            .iter()
            .map(|s| derive_key(s, Purpose::Access))
            .map(|k| (key_id(&k), k))
            .collect();
        self
    }

    /// Accepts tokens whose `iat` lies up to `seconds` after `now`
    /// (`jwt_iat_leeway_seconds`, checked by
    /// [`Config::validate`](crate::config::Config::validate)); without it,
    /// none. Only `iat`: `exp` and `nbf` keep zero leeway.
    pub fn with_iat_leeway(mut self, seconds: u64) -> Self {
        self.iat_leeway_micros = i64::try_from(seconds)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        self
    }

    /// Access-token lifetime in seconds.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl_seconds
    }

    /// Mints an access token for a session.
    pub fn issue_access(
        &self,
        user: &UserId,
        session: &SessionId,
        now: Timestamp,
    ) -> Result<String, TokenError> {
        let iat = now.timestamp() as f64 + f64::from(now.timestamp_subsec_micros()) / 1e6;
        let claims = AccessClaims {
            sub: user.as_str().to_owned(),
            sid: session.as_str().to_owned(),
            jti: hex::encode(crate::tokens::random_bytes::<16>()),
            purpose: Purpose::Access.label().to_owned(),
            iat,
            exp: now.timestamp() + self.ttl_seconds as i64,
            aud: self.audience.clone(),
            nbf: None,
        };
        if let Some(keys) = &self.keys {
            let header = Header {
                kid: Some(keys.kid.clone()),
                ..Header::new(self.algorithm)
            };
            return encode(&header, &claims, &keys.signing).map_err(|_| TokenError::Invalid);
        }
        let header = Header {
            kid: Some(self.kid.clone()),
            ..Header::new(self.algorithm)
        };
        encode(
            &header,
            &claims,
            &EncodingKey::from_secret(self.access_key.expose_secret().as_bytes()),
        )
        .map_err(|_| TokenError::Invalid)
    }

    /// Verifies an access token against `now`.
    pub fn verify_access(&self, token: &str, now: Timestamp) -> Result<VerifiedAccess, TokenError> {
        if token.len() > MAX_JWT_BYTES {
            return Err(TokenError::Invalid);
        }
        let kid = match header_kid(token) {
            HeaderCheck::Refused => return Err(TokenError::Invalid),
            HeaderCheck::Kid(kid) => kid,
        };
        let hmac_key;
        let key = match (&self.keys, kid) {
            // Every asymmetric token names its key: none, or one not held,
            // is refused before any signature check.
            (Some(keys), Some(kid)) => match keys.verifying.iter().find(|(id, _)| *id == kid) {
                Some((_, key)) => key,
                None => return Err(TokenError::Invalid),
            },
            (Some(_), None) => return Err(TokenError::Invalid),
            (None, kid) => {
                let secret = match kid {
                    None => &self.access_key,
                    Some(kid) if kid == self.kid => &self.access_key,
                    Some(kid) => match self.previous.iter().find(|(id, _)| *id == kid) {
                        Some((_, key)) => key,
                        None => return Err(TokenError::Invalid),
                    },
                };
                hmac_key = DecodingKey::from_secret(secret.expose_secret().as_bytes());
                &hmac_key
            }
        };
        let mut validation = Validation::new(self.algorithm);
        // Expiry is checked below against the injected clock, with no leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.required_spec_claims = ["exp", "sub"].iter().map(|s| (*s).to_owned()).collect();
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        let data =
            decode::<AccessClaims>(token, key, &validation).map_err(|_| TokenError::Invalid)?;
        let c = data.claims;
        if c.purpose != Purpose::Access.label() {
            return Err(TokenError::Invalid);
        }
        if self.audience.is_none() && c.aud.is_some() {
            return Err(TokenError::Invalid);
        }
        let now_s = now.timestamp();
        if now_s >= c.exp {
            return Err(TokenError::Expired);
        }
        if c.nbf.is_some_and(|nbf| nbf > now_s) {
            return Err(TokenError::Expired);
        }
        let iat_us = (c.iat * 1e6).round() as i64;
        let now_us = now.timestamp_micros();
        if !c.iat.is_finite() || iat_us > now_us.saturating_add(self.iat_leeway_micros) {
            return Err(TokenError::Expired);
        }
        let issued_at =
            chrono::DateTime::from_timestamp_micros(iat_us).ok_or(TokenError::Invalid)?;
        Ok(VerifiedAccess {
            user_id: UserId::parse(&c.sub).ok_or(TokenError::Invalid)?,
            session_id: SessionId::parse(&c.sid).ok_or(TokenError::Invalid)?,
            issued_at,
        })
    }
}

/// What a token's header allows before its signature is checked.
enum HeaderCheck {
    /// A parameter we must not accept.
    Refused,
    /// The key the token names, if it names one.
    Kid(Option<String>),
}

/// Header parameters refused outright: critical extensions (`crit`, RFC
/// 7515 §4.1.11 — we understand none, and a recipient must refuse what it
/// does not understand; `jsonwebtoken` ignores the parameter) and pointers
/// to keys held elsewhere (RFC 8725 §3.10: never fetched, never trusted).
const REFUSED_HEADER_PARAMETERS: [&str; 5] = ["crit", "jku", "jwk", "x5u", "x5c"];

/// Reads the header's `kid` and refuses [`REFUSED_HEADER_PARAMETERS`]. An
/// undecodable header is left to the signature check, which refuses it
/// anyway; a `kid` that is not a string names no key we have.
fn header_kid(token: &str) -> HeaderCheck {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok());
    let Some(header) = header else {
        return HeaderCheck::Kid(None);
    };
    if REFUSED_HEADER_PARAMETERS
        .iter()
        .any(|p| header.get(p).is_some())
    {
        return HeaderCheck::Refused;
    }
    match header.get("kid") {
        None => HeaderCheck::Kid(None),
        Some(serde_json::Value::String(kid)) => HeaderCheck::Kid(Some(kid.clone())),
        Some(_) => HeaderCheck::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use chrono::{TimeDelta, TimeZone, Utc};

    fn now() -> Timestamp {
        Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap()
    }
    fn codec(aud: Option<&str>) -> JwtCodec {
        JwtCodec::new(
            &SecretString::from("s".repeat(40)),
            JwtAlgorithm::HS256,
            aud.map(str::to_owned),
            7200,
        )
    }
    fn ids() -> (UserId, SessionId) {
        (UserId::generate(), SessionId::generate())
    }

    /// `header` and the base64url `payload` signed with `c`'s own access
    /// key: a token whose signature is right, so only what the test
    /// changed in it can make it fail.
    fn signed(c: &JwtCodec, header: impl AsRef<[u8]>, payload: &str) -> String {
        use hmac::Mac;
        let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header));
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(c.access_key.expose_secret().as_bytes())
                .unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn a_fresh_token_verifies_and_names_its_session() {
        let c = codec(None);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        let v = c.verify_access(&t, now()).unwrap();
        assert_eq!((v.user_id, v.session_id, v.issued_at), (u, s, now()));
    }

    #[test]
    fn expiry_has_zero_leeway() {
        let c = codec(None);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        let just_before = now() + TimeDelta::seconds(7199);
        assert!(c.verify_access(&t, just_before).is_ok());
        let at_exp = now() + TimeDelta::seconds(7200);
        assert_eq!(c.verify_access(&t, at_exp), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let c = codec(None);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now() + TimeDelta::hours(1)).unwrap();
        assert_eq!(c.verify_access(&t, now()), Err(TokenError::Expired));
    }

    #[test]
    fn iat_may_lie_ahead_by_the_leeway_and_not_a_microsecond_more() {
        let c = codec(None).with_iat_leeway(5);
        let (u, s) = ids();
        // Another instance, its clock 5 s ahead, signed it just now.
        let at_leeway = c
            .issue_access(&u, &s, now() + TimeDelta::seconds(5))
            .unwrap();
        let v = c.verify_access(&at_leeway, now()).unwrap();
        assert_eq!(v.issued_at, now() + TimeDelta::seconds(5));
        for beyond in [
            TimeDelta::seconds(5) + TimeDelta::microseconds(1),
            TimeDelta::seconds(6),
            TimeDelta::hours(1),
        ] {
            let t = c.issue_access(&u, &s, now() + beyond).unwrap();
            assert_eq!(
                c.verify_access(&t, now()),
                Err(TokenError::Expired),
                "iat {beyond} ahead"
            );
        }
        // Zero leeway (the default of a bare codec): one microsecond is
        // too far.
        let strict = codec(None);
        let t = strict
            .issue_access(&u, &s, now() + TimeDelta::microseconds(1))
            .unwrap();
        assert_eq!(strict.verify_access(&t, now()), Err(TokenError::Expired));
        assert!(strict
            .verify_access(&t, now() + TimeDelta::microseconds(1))
            .is_ok());
    }

    #[test]
    fn the_iat_leeway_does_not_stretch_exp() {
        let c = codec(None).with_iat_leeway(60);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        assert!(c
            .verify_access(&t, now() + TimeDelta::seconds(7199))
            .is_ok());
        for late in [7200, 7201, 7260] {
            assert_eq!(
                c.verify_access(&t, now() + TimeDelta::seconds(late)),
                Err(TokenError::Expired),
                "{late} s after issue"
            );
        }
        // A token signed ahead within the leeway still expires by its own
        // `exp`, with no leeway either.
        let ahead = c
            .issue_access(&u, &s, now() + TimeDelta::seconds(30))
            .unwrap();
        assert!(c.verify_access(&ahead, now()).is_ok());
        assert_eq!(
            c.verify_access(&ahead, now() + TimeDelta::seconds(7230)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn another_secret_or_algorithm_does_not_verify() {
        let (u, s) = ids();
        let t = codec(None).issue_access(&u, &s, now()).unwrap();
        let other = JwtCodec::new(
            &SecretString::from("t".repeat(40)),
            JwtAlgorithm::HS256,
            None,
            7200,
        );
        assert_eq!(other.verify_access(&t, now()), Err(TokenError::Invalid));
        let hs512 = JwtCodec::new(
            &SecretString::from("s".repeat(40)),
            JwtAlgorithm::HS512,
            None,
            7200,
        );
        assert_eq!(hs512.verify_access(&t, now()), Err(TokenError::Invalid));
    }

    #[test]
    fn a_correctly_signed_token_with_a_crit_header_is_refused() {
        let c = codec(None);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let sign = |header: &[u8]| signed(&c, header, payload);
        // The same claims and key without `crit` verify: only `crit` differs.
        let plain = sign(br#"{"alg":"HS256","typ":"JWT"}"#);
        assert!(c.verify_access(&plain, now()).is_ok());
        for header in [
            &br#"{"alg":"HS256","typ":"JWT","crit":["x"]}"#[..],
            br#"{"alg":"HS256","typ":"JWT","crit":["exp"],"exp":1}"#,
            br#"{"alg":"HS256","crit":[]}"#,
        ] {
            assert_eq!(
                c.verify_access(&sign(header), now()),
                Err(TokenError::Invalid),
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }

    #[test]
    fn tokens_name_their_key_and_a_rotated_out_secret_verifies_until_dropped() {
        let old = SecretString::from("o".repeat(40));
        let new = SecretString::from("n".repeat(40));
        let build = |secret: &SecretString, previous: &[SecretString]| {
            JwtCodec::new(secret, JwtAlgorithm::HS256, None, 7200).with_previous_secrets(previous)
        };
        let (u, s) = ids();
        let before = build(&old, &[]).issue_access(&u, &s, now()).unwrap();
        let header = jsonwebtoken::decode_header(&before).unwrap();
        let kid = header.kid.expect("every token names its key");
        assert_eq!(kid.len(), 16);
        assert!(
            !kid.contains(&"o".repeat(8)),
            "the kid is no part of the key"
        );

        // Rotated: the new secret signs, the old one still verifies.
        let rotated = build(&new, std::slice::from_ref(&old));
        assert!(rotated.verify_access(&before, now()).is_ok());
        let after = rotated.issue_access(&u, &s, now()).unwrap();
        assert_ne!(jsonwebtoken::decode_header(&after).unwrap().kid, Some(kid));
        assert!(rotated.verify_access(&after, now()).is_ok());
        // Before the roll-out, the next secret can be accepted everywhere.
        assert!(build(&old, std::slice::from_ref(&new))
            .verify_access(&after, now())
            .is_ok());
        // Dropped: the old secret's tokens die.
        assert_eq!(
            build(&new, &[]).verify_access(&before, now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn an_unknown_kid_and_pointers_to_foreign_keys_are_refused() {
        let c = codec(None);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let sign = |header: &str| signed(&c, header, payload);
        // Signed with the right key throughout: only the header differs.
        let kid = &c.kid;
        assert!(c
            .verify_access(&sign(&format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)), now())
            .is_ok());
        // Without a kid (tokens from before kids): the current key.
        assert!(c.verify_access(&sign(r#"{"alg":"HS256"}"#), now()).is_ok());
        for header in [
            r#"{"alg":"HS256","kid":"0000000000000000"}"#.to_owned(),
            r#"{"alg":"HS256","kid":7}"#.to_owned(),
            format!(r#"{{"alg":"HS256","kid":"{kid}","jku":"https://evil.test/keys"}}"#),
            format!(r#"{{"alg":"HS256","kid":"{kid}","x5u":"https://evil.test/cert"}}"#),
            format!(r#"{{"alg":"HS256","kid":"{kid}","jwk":{{"kty":"oct","k":"AAAA"}}}}"#),
            format!(r#"{{"alg":"HS256","kid":"{kid}","x5c":["MIIB"]}}"#),
        ] {
            assert_eq!(
                c.verify_access(&sign(&header), now()),
                Err(TokenError::Invalid),
                "{header}"
            );
        }
    }

    #[test]
    fn every_required_claim_is_required() {
        let c = codec(None);
        let (u, s) = ids();
        let full = serde_json::json!({
            "sub": u.to_string(),
            "sid": s.to_string(),
            "jti": "j",
            "purpose": "access",
            "iat": now().timestamp() as f64,
            "exp": now().timestamp() + 60,
        });
        let sign = |claims: &serde_json::Value| {
            signed(
                &c,
                format!(r#"{{"alg":"HS256","kid":"{}"}}"#, c.kid),
                &URL_SAFE_NO_PAD.encode(claims.to_string()),
            )
        };
        assert!(c.verify_access(&sign(&full), now()).is_ok());
        for claim in ["sub", "sid", "jti", "purpose", "iat", "exp"] {
            let mut partial = full.clone();
            partial.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                c.verify_access(&sign(&partial), now()),
                Err(TokenError::Invalid),
                "a token without `{claim}` verified"
            );
        }
    }

    #[test]
    fn a_not_before_in_the_future_is_refused_without_leeway() {
        let c = codec(None);
        let (u, s) = ids();
        let sign = |nbf: i64| {
            let claims = serde_json::json!({
                "sub": u.to_string(), "sid": s.to_string(), "jti": "j", "purpose": "access",
                "iat": now().timestamp() as f64, "exp": now().timestamp() + 60, "nbf": nbf,
            });
            signed(
                &c,
                r#"{"alg":"HS256"}"#,
                &URL_SAFE_NO_PAD.encode(claims.to_string()),
            )
        };
        assert!(c.verify_access(&sign(now().timestamp()), now()).is_ok());
        assert_eq!(
            c.verify_access(&sign(now().timestamp() + 1), now()),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn an_asymmetrically_signed_token_is_refused() {
        // An RS256 header over our claims: the configured HMAC algorithm
        // is the only one accepted, whatever the token says.
        let c = codec(None);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        for alg in ["RS256", "ES256", "PS256", "EdDSA", "HS512"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            let forged = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]));
            assert_eq!(
                c.verify_access(&forged, now()),
                Err(TokenError::Invalid),
                "{alg}"
            );
        }
    }

    #[test]
    fn alg_none_is_refused() {
        let c = codec(None);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let forged = format!("{header}.{payload}.");
        assert_eq!(c.verify_access(&forged, now()), Err(TokenError::Invalid));
    }

    #[test]
    fn a_token_signed_with_the_raw_secret_is_not_an_access_token() {
        // The key is derived per purpose: signing with jwt_secret itself (as a
        // naive implementation would) must not verify.
        let (u, s) = ids();
        let claims = AccessClaims {
            sub: u.to_string(),
            sid: s.to_string(),
            jti: "j".into(),
            purpose: "access".into(),
            iat: now().timestamp() as f64,
            exp: now().timestamp() + 60,
            aud: None,
            nbf: None,
        };
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret("s".repeat(40).as_bytes()),
        )
        .unwrap();
        assert_eq!(
            codec(None).verify_access(&t, now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn audience_is_required_when_configured_and_refused_when_not() {
        let (u, s) = ids();
        let with = codec(Some("app-a"));
        let t = with.issue_access(&u, &s, now()).unwrap();
        assert!(with.verify_access(&t, now()).is_ok());
        assert_eq!(
            codec(Some("app-b")).verify_access(&t, now()),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            codec(None).verify_access(&t, now()),
            Err(TokenError::Invalid)
        );
        let without = codec(None).issue_access(&u, &s, now()).unwrap();
        assert_eq!(
            with.verify_access(&without, now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn garbage_and_oversized_input_is_invalid() {
        let c = codec(None);
        assert_eq!(c.verify_access("garbage", now()), Err(TokenError::Invalid));
        assert_eq!(
            c.verify_access(&"a".repeat(MAX_JWT_BYTES + 1), now()),
            Err(TokenError::Invalid)
        );
    }

    // --- Asymmetric access tokens. Fixtures: crates/core/src/testdata (test
    // keys made with openssl for these tests only).
    const ED_A: &str = include_str!("testdata/ed25519.pem");
    const ED_B: &str = include_str!("testdata/ed25519-b.pem");
    const RSA: &str = include_str!("testdata/rsa2048.pem");
    const RSA_PKCS1: &str = include_str!("testdata/rsa2048-pkcs1.pem");
    const RSA_1024: &str = include_str!("testdata/rsa1024.pem");

    fn asym(alg: JwtAlgorithm, pems: &[&str]) -> JwtCodec {
        let pems: Vec<SecretString> = pems.iter().map(|p| SecretString::from(*p)).collect();
        JwtCodec::new(&SecretString::from("s".repeat(40)), alg, None, 7200)
            .with_signing_keys(SigningKeys::parse(alg, &pems).unwrap())
    }

    fn kid_of(token: &str) -> String {
        jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
    }

    #[test]
    fn eddsa_tokens_name_the_rfc7638_thumbprint_and_the_jwks_holds_the_public_key() {
        let c = asym(JwtAlgorithm::EdDSA, &[ED_A]);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        let header = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert!(c.verify_access(&t, now()).is_ok());
        let jwks = c.jwks().unwrap();
        let key = &jwks["keys"][0];
        // `openssl pkey -pubout` of the fixture, last 32 bytes, base64url.
        assert_eq!(key["x"], "lc80SXc3NnW41sG9YAxt9QArL0QjhQpuVd_z4gQDLcw");
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        assert_eq!(key["alg"], "EdDSA");
        let canonical = format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            key["x"].as_str().unwrap()
        );
        use sha2::Digest;
        let thumb = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()));
        assert_eq!(header.kid.as_deref(), Some(thumb.as_str()));
        assert_eq!(key["kid"], thumb);
        // Nothing private is published.
        assert!(key.get("d").is_none());
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        // HMAC codecs publish nothing.
        assert!(codec(None).jwks().is_none());
    }

    #[test]
    fn rs256_reads_pkcs8_and_pkcs1_and_publishes_n_and_e() {
        let c = asym(JwtAlgorithm::RS256, &[RSA]);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t).unwrap().alg,
            Algorithm::RS256
        );
        assert!(c.verify_access(&t, now()).is_ok());
        let key = c.jwks().unwrap()["keys"][0].clone();
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["e"], "AQAB");
        assert!(key.get("d").is_none() && key.get("p").is_none());
        // The same key in PKCS#1 is the same key: same kid, verifies.
        let pkcs1 = asym(JwtAlgorithm::RS256, &[RSA_PKCS1]);
        assert_eq!(pkcs1.jwks().unwrap()["keys"][0]["kid"], key["kid"]);
        assert!(pkcs1.verify_access(&t, now()).is_ok());
    }

    #[test]
    fn keys_of_the_wrong_kind_or_size_are_refused_naming_the_key() {
        let parse = |alg, pems: &[&str]| {
            let pems: Vec<SecretString> = pems.iter().map(|p| SecretString::from(*p)).collect();
            SigningKeys::parse(alg, &pems).map(|_| ()).unwrap_err()
        };
        assert!(parse(JwtAlgorithm::RS256, &[RSA_1024]).contains("key 1"));
        assert!(parse(JwtAlgorithm::RS256, &[ED_A]).contains("key 1"));
        assert!(parse(JwtAlgorithm::EdDSA, &[ED_A, RSA]).contains("key 2"));
        assert!(parse(JwtAlgorithm::EdDSA, &[ED_A, ED_A]).contains("twice"));
        assert!(parse(JwtAlgorithm::EdDSA, &[]).contains("jwt_keys_file"));
        assert!(parse(JwtAlgorithm::EdDSA, &["not a key"]).contains("key 1"));
        let public = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAlc80SXc3NnW41sG9YAxt9QArL0QjhQpuVd/z4gQDLcw=\n-----END PUBLIC KEY-----\n";
        assert!(parse(JwtAlgorithm::EdDSA, &[public]).contains("PUBLIC KEY"));
        // Never the key material in the message.
        let msg = parse(JwtAlgorithm::RS256, &[RSA_1024]);
        assert!(!msg.contains("MII"), "{msg}");
    }

    #[test]
    fn a_rotated_out_key_verifies_its_tokens_until_dropped_and_the_new_one_signs() {
        let (u, s) = ids();
        let alg = JwtAlgorithm::EdDSA;
        let before = asym(alg, &[ED_A]).issue_access(&u, &s, now()).unwrap();
        let rotated = asym(alg, &[ED_B, ED_A]);
        let after = rotated.issue_access(&u, &s, now()).unwrap();
        assert_ne!(kid_of(&before), kid_of(&after));
        assert_eq!(kid_of(&after), rotated.jwks().unwrap()["keys"][0]["kid"]);
        assert_eq!(rotated.jwks().unwrap()["keys"].as_array().unwrap().len(), 2);
        assert!(rotated.verify_access(&before, now()).is_ok());
        assert!(rotated.verify_access(&after, now()).is_ok());
        // The old key's tokens expire as any other.
        assert_eq!(
            rotated.verify_access(&before, now() + TimeDelta::seconds(7200)),
            Err(TokenError::Expired)
        );
        // Dropped: refused, though not yet expired.
        let dropped = asym(alg, &[ED_B]);
        assert_eq!(
            dropped.verify_access(&before, now()),
            Err(TokenError::Invalid)
        );
        assert!(dropped.verify_access(&after, now()).is_ok());
    }

    #[test]
    fn asymmetric_verification_refuses_alg_confusion_none_and_missing_or_unknown_kids() {
        let c = asym(JwtAlgorithm::EdDSA, &[ED_A]);
        let (u, s) = ids();
        let t = c.issue_access(&u, &s, now()).unwrap();
        let payload = t.split('.').nth(1).unwrap();
        let kid = kid_of(&t);
        let x = c.jwks().unwrap()["keys"][0]["x"]
            .as_str()
            .unwrap()
            .to_owned();
        let raw_public = URL_SAFE_NO_PAD.decode(&x).unwrap();
        let hs256_with = |key: &[u8], header: String| {
            use hmac::Mac;
            let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header));
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(input.as_bytes());
            format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        let public_pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAlc80SXc3NnW41sG9YAxt9QArL0QjhQpuVd/z4gQDLcw=\n-----END PUBLIC KEY-----\n";
        let forged = [
            // HS256 keyed with the published public key, every spelling.
            hs256_with(&raw_public, format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
            hs256_with(x.as_bytes(), format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#)),
            hs256_with(
                public_pem.as_bytes(),
                format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
            ),
            // HS256 with the jwt_secret-derived key (the HMAC codec's).
            hs256_with(
                c.access_key.expose_secret().as_bytes(),
                format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
            ),
            // alg none.
            format!(
                "{}.{payload}.",
                URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#))
            ),
            // The real signature under a header without a kid, or another kid.
            format!(
                "{}.{payload}.{}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA"}"#),
                t.split('.').nth(2).unwrap()
            ),
            asym(JwtAlgorithm::EdDSA, &[ED_B])
                .issue_access(&u, &s, now())
                .unwrap(),
        ];
        for token in &forged {
            assert_eq!(
                c.verify_access(token, now()),
                Err(TokenError::Invalid),
                "{token}"
            );
        }
        // An HMAC codec refuses the EdDSA token.
        assert_eq!(
            codec(None).verify_access(&t, now()),
            Err(TokenError::Invalid)
        );
    }
}
