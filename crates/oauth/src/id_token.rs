//! ID token validation (OpenID Connect Core §3.1.3.7): the signature
//! against the issuer's keys in an algorithm discovery advertised, then
//! `iss`, `aud`, `azp`, `exp` (no leeway, on the injected clock), `nbf`,
//! `nonce` and `sub`. Every failure is [`ProviderError::IdToken`], except
//! an issuer whose keys cannot be fetched ([`ProviderError::Other`]).
//!
//! `jsonwebtoken` checks the signature and nothing else: its own claim
//! checks read the system clock and know one issuer string, and both the
//! clock and the issuer rules (Google's two spellings, Microsoft's tenant
//! template) are ours to decide.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use regstack_ports::{ExternalIdentity, ProviderError, Timestamp};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::config::Tenancy;
use crate::http::{self, HttpClient};
use crate::jwks::KeyCache;

/// The tenant id Microsoft gives every personal (consumer) account.
pub(crate) const MICROSOFT_CONSUMERS_TID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Google's issuer as we record it, and the two spellings its tokens use.
pub(crate) const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const GOOGLE_ISSUER_BARE: &str = "accounts.google.com";

/// How much a token's `nbf` may lie ahead of our clock: issuers stamp it
/// with their own clock, and a second of skew must not fail a sign-in.
/// (`exp` gets no such allowance.)
const NBF_SKEW_SECONDS: i64 = 60;

/// Which `iss` a provider's tokens may carry, and what we record as the
/// identity's issuer.
#[derive(Clone, Debug)]
pub(crate) enum IssuerRule {
    /// Exactly the configured issuer (generic OpenID Connect).
    Exact(String),
    /// `https://accounts.google.com` or `accounts.google.com`, recorded as
    /// the former so one Google account is one identity whichever arrives.
    Google,
    /// Discovery's issuer with `{tenantid}` replaced by the token's `tid`,
    /// restricted by the configured tenancy.
    Microsoft(Tenancy),
}

impl IssuerRule {
    /// The identity's issuer if `claims` satisfy the rule; `advertised` is
    /// the issuer discovery stated.
    fn check(&self, advertised: &str, claims: &Map<String, Value>) -> Result<String, String> {
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or("the token has no `iss`")?;
        let mismatch = |expected: &str| {
            format!(
                "iss {:?} is not the issuer {:?}",
                http::printable(iss, 120),
                http::printable(expected, 120)
            )
        };
        match self {
            IssuerRule::Exact(expected) => {
                if iss == expected {
                    Ok(expected.clone())
                } else {
                    Err(mismatch(expected))
                }
            }
            IssuerRule::Google => {
                if iss == GOOGLE_ISSUER || iss == GOOGLE_ISSUER_BARE {
                    Ok(GOOGLE_ISSUER.to_owned())
                } else {
                    Err(mismatch(GOOGLE_ISSUER))
                }
            }
            IssuerRule::Microsoft(tenancy) => microsoft_issuer(tenancy, advertised, iss, claims),
        }
    }
}

/// Microsoft signs every tenant's tokens with the same keys, so a valid
/// signature proves only "some tenant"; the `tid` and the issuer naming it
/// decide whether it is a tenant this configuration admits.
fn microsoft_issuer(
    tenancy: &Tenancy,
    advertised: &str,
    iss: &str,
    claims: &Map<String, Value>,
) -> Result<String, String> {
    let tid = claims
        .get("tid")
        .and_then(Value::as_str)
        .filter(|t| is_guid(t));
    let consumer = tid.is_some_and(|t| t.eq_ignore_ascii_case(MICROSOFT_CONSUMERS_TID));
    match tenancy {
        Tenancy::Consumers if !consumer => {
            return Err(
                "tid is not the personal-account tenant; this provider admits personal accounts only"
                    .to_owned(),
            );
        }
        Tenancy::Organizations if tid.is_none() || consumer => {
            return Err(
                "tid is missing or the personal-account tenant; this provider admits work and school accounts only"
                    .to_owned(),
            );
        }
        _ => {}
    }
    let expected = if advertised.contains("{tenantid}") {
        // A single tenant's discovery states its own issuer; a template
        // would admit any tenant (refused at discovery too).
        if matches!(tenancy, Tenancy::Single(_)) {
            return Err("the issuer is a template for a single-tenant provider".to_owned());
        }
        let tid = tid.ok_or("the token has no tenant id (`tid`)")?;
        advertised.replace("{tenantid}", tid)
    } else {
        advertised.to_owned()
    };
    if iss == expected {
        Ok(expected)
    } else {
        Err(format!(
            "iss {:?} is not the issuer {:?}",
            http::printable(iss, 120),
            http::printable(&expected, 120)
        ))
    }
}

/// `8-4-4-4-12` hex digits: the only shape a tenant id has, so nothing
/// else is ever spliced into an issuer.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Everything the checks need besides the token.
pub(crate) struct Verifier<'a> {
    pub client_id: &'a str,
    /// The HS256 key, when the configuration and discovery allow HS256.
    pub client_secret: &'a SecretString,
    /// Discovery's algorithms, less those we never accept.
    pub algorithms: &'a [Algorithm],
    /// Discovery's `issuer`.
    pub advertised_issuer: &'a str,
    pub issuer_rule: &'a IssuerRule,
    pub keys: &'a KeyCache,
    pub http: &'a HttpClient,
    pub now: Timestamp,
}

impl Verifier<'_> {
    /// The token's issuer (as recorded) and claims, if every check passes.
    pub(crate) async fn verify(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<(String, Map<String, Value>), ProviderError> {
        let reject = |why: String| ProviderError::IdToken(why);
        // `none` and unknown algorithms fail to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            reject("malformed token, or a signing algorithm we do not know".to_owned())
        })?;
        let alg = header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(reject(format!(
                "signed with {alg:?}, which is not among the accepted {:?}",
                self.algorithms
            )));
        }
        let keys = if alg == Algorithm::HS256 {
            // Only in `algorithms` when the configuration allows it.
            vec![DecodingKey::from_secret(
                self.client_secret.expose_secret().as_bytes(),
            )]
        } else {
            self.keys
                .keys_for(self.http, header.kid.as_deref(), alg, self.now)
                .await?
        };
        let mut only_signature = Validation::new(alg);
        only_signature.required_spec_claims.clear();
        only_signature.validate_exp = false;
        only_signature.validate_nbf = false;
        only_signature.validate_aud = false;
        only_signature.leeway = 0;
        let claims = keys
            .iter()
            .find_map(|key| {
                jsonwebtoken::decode::<Map<String, Value>>(token, key, &only_signature).ok()
            })
            .map(|data| data.claims)
            .ok_or_else(|| {
                reject("the signature does not verify with the issuer's key".to_owned())
            })?;
        let issuer = self
            .issuer_rule
            .check(self.advertised_issuer, &claims)
            .map_err(reject)?;
        self.check_claims(&claims, nonce).map_err(reject)?;
        Ok((issuer, claims))
    }

    fn check_claims(&self, claims: &Map<String, Value>, nonce: &str) -> Result<(), String> {
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many
                .iter()
                .map(|a| a.as_str().ok_or("`aud` holds a non-string"))
                .collect::<Result<_, _>>()?,
            _ => return Err("the token has no `aud`".to_owned()),
        };
        if !audiences.contains(&self.client_id) {
            return Err("aud does not name this client".to_owned());
        }
        match claims.get("azp") {
            Some(Value::String(azp)) if azp == self.client_id => {}
            Some(_) => return Err("azp is not this client".to_owned()),
            None if audiences.len() > 1 => {
                return Err("several audiences and no `azp`".to_owned());
            }
            None => {}
        }
        let now = self.now.timestamp_micros();
        let exp = claims
            .get("exp")
            .and_then(micros)
            .ok_or("the token has no numeric `exp`")?;
        if now >= exp {
            return Err("the token has expired".to_owned());
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = micros(nbf).ok_or("`nbf` is not a number")?;
            if now.saturating_add(NBF_SKEW_SECONDS * 1_000_000) < nbf {
                return Err("the token is not valid yet (`nbf`)".to_owned());
            }
        }
        match claims.get("nonce") {
            Some(Value::String(n)) if n == nonce => {}
            Some(_) => return Err("nonce does not match this flow's".to_owned()),
            None => return Err("the token has no `nonce`".to_owned()),
        }
        match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => {}
            _ => return Err("`sub` is missing or not 1-255 characters".to_owned()),
        }
        Ok(())
    }
}

/// A NumericDate (seconds since the epoch, possibly fractional) in
/// microseconds.
fn micros(v: &Value) -> Option<i64> {
    if let Some(seconds) = v.as_i64() {
        return Some(seconds.saturating_mul(1_000_000));
    }
    let seconds = v.as_f64().filter(|f| f.is_finite())?;
    // `as` saturates; a NumericDate beyond i64 microseconds is "never".
    Some((seconds * 1_000_000.0) as i64)
}

/// The identity a verified token describes. `email_verified` counts only
/// as the JSON boolean `true`, and only from providers trusted to assert it.
pub(crate) fn identity(
    issuer: String,
    claims: &Map<String, Value>,
    trust_email_verified: bool,
) -> ExternalIdentity {
    let text = |key: &str| {
        claims
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    ExternalIdentity {
        issuer,
        // Verbatim: the subject is half of the identity's key, so
        // " 42" and "42" must stay two subjects.
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        email: text("email"),
        email_verified: trust_email_verified
            && claims.get("email_verified") == Some(&Value::Bool(true)),
        full_name: text("name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const TEMPLATE: &str = "https://login.microsoftonline.com/{tenantid}/v2.0";
    const OTHER_TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn ms(tid: &str) -> Map<String, Value> {
        claims(json!({"iss": format!("https://login.microsoftonline.com/{tid}/v2.0"), "tid": tid}))
    }

    #[test]
    fn microsoft_tenancy_decides_which_tids_pass() {
        let common = IssuerRule::Microsoft(Tenancy::Common);
        assert!(common.check(TEMPLATE, &ms(OTHER_TID)).is_ok());
        assert!(common.check(TEMPLATE, &ms(MICROSOFT_CONSUMERS_TID)).is_ok());
        let consumers = IssuerRule::Microsoft(Tenancy::Consumers);
        assert!(consumers.check(TEMPLATE, &ms(OTHER_TID)).is_err());
        assert!(consumers
            .check(TEMPLATE, &ms(MICROSOFT_CONSUMERS_TID))
            .is_ok());
        let orgs = IssuerRule::Microsoft(Tenancy::Organizations);
        assert!(orgs.check(TEMPLATE, &ms(OTHER_TID)).is_ok());
        assert!(orgs.check(TEMPLATE, &ms(MICROSOFT_CONSUMERS_TID)).is_err());
        // iss must be the template filled with the token's own tid.
        let mut mixed = ms(OTHER_TID);
        mixed.insert("tid".into(), json!(MICROSOFT_CONSUMERS_TID));
        assert!(common.check(TEMPLATE, &mixed).is_err());
        // No tid, or one that is not a GUID, is never spliced in.
        let mut odd = ms(OTHER_TID);
        odd.insert("tid".into(), json!("x/v2.0"));
        assert!(common.check(TEMPLATE, &odd).is_err());
    }

    #[test]
    fn google_accepts_both_spellings_and_records_one() {
        let bare = claims(json!({"iss": "accounts.google.com"}));
        assert_eq!(IssuerRule::Google.check("", &bare).unwrap(), GOOGLE_ISSUER);
        let evil = claims(json!({"iss": "https://accounts.google.com.evil"}));
        assert!(IssuerRule::Google.check("", &evil).is_err());
    }

    #[test]
    fn email_verified_is_the_boolean_true_only() {
        for (value, expected) in [
            (json!(true), true),
            (json!(false), false),
            (json!("true"), false),
            (json!(1), false),
        ] {
            let c = claims(json!({"sub": "s", "email": "a@example.com", "email_verified": value}));
            assert_eq!(identity("i".into(), &c, true).email_verified, expected);
            assert!(!identity("i".into(), &c, false).email_verified);
        }
        let c = claims(json!({"sub": " s ", "email": " a@example.com "}));
        let id = identity("i".into(), &c, true);
        assert!(!id.email_verified);
        assert_eq!(id.subject, " s ");
        assert_eq!(id.email.as_deref(), Some("a@example.com"));
    }
}
