//! The issuer's signing keys (its JWK Set), fetched on first use, kept,
//! and fetched again when a token names a key we do not have — at most
//! once per [`REFETCH_INTERVAL_SECONDS`].
//!
//! Why refetch at all: issuers rotate keys, and a restarted test issuer
//! makes new ones; a token signed with a key newer than our copy must not
//! fail until a restart. Why the limit: the `kid` comes from the token, so
//! without one, a stream of tokens naming made-up keys would turn into a
//! stream of requests to the issuer. The interval is measured on the
//! injected clock, like every other time decision here.

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use regstack_ports::{ProviderError, Timestamp};
use reqwest::Url;
use tokio::sync::Mutex;

use crate::http::{self, HttpClient};

/// At most one refetch for an unknown key per this many seconds.
pub const REFETCH_INTERVAL_SECONDS: i64 = 60;

/// The most of a key set we read, and the most keys we keep from it
/// (real sets hold two to ten).
const MAX_SET: usize = 256 * 1024;
const MAX_KEYS: usize = 64;

/// One issuer's keys.
pub(crate) struct KeyCache {
    uri: Url,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: Option<Vec<Jwk>>,
    /// When an unknown key last sent us to the issuer.
    last_refetch: Option<Timestamp>,
}

impl KeyCache {
    pub(crate) fn new(uri: Url) -> Self {
        Self {
            uri,
            state: Mutex::new(State::default()),
        }
    }

    /// The keys that may have signed a token with header `kid` and `alg`:
    /// those with that `kid` (every key when the header names none), meant
    /// for signing, of the algorithm's family and, if they name one, of
    /// that algorithm. A miss refetches the set once per interval;
    /// a miss after that is [`ProviderError::IdToken`]. An unreachable or
    /// unreadable key set is [`ProviderError::Other`].
    pub(crate) async fn keys_for(
        &self,
        http: &HttpClient,
        kid: Option<&str>,
        alg: Algorithm,
        now: Timestamp,
    ) -> Result<Vec<DecodingKey>, ProviderError> {
        // One lock for lookup and fetch: concurrent misses wait for the one
        // refetch instead of each starting their own.
        let mut state = self.state.lock().await;
        let keys = match state.keys.take() {
            Some(keys) => keys,
            None => self.fetch(http).await?,
        };
        let found = candidates(&keys, kid, alg);
        state.keys = Some(keys);
        if !found.is_empty() {
            return Ok(found);
        }
        let shown = kid.map_or_else(
            || "(none)".to_owned(),
            |k| format!("{:?}", http::printable(k, 64)),
        );
        let may_refetch = state
            .last_refetch
            .is_none_or(|last| (now - last).num_seconds() >= REFETCH_INTERVAL_SECONDS);
        if !may_refetch {
            return Err(ProviderError::IdToken(format!(
                "no signing key matches kid {shown} and alg {alg:?} (key set refetched less than {REFETCH_INTERVAL_SECONDS} s ago)"
            )));
        }
        // Counted before the fetch, so a failing issuer is not asked more
        // often either.
        state.last_refetch = Some(now);
        let keys = self.fetch(http).await?;
        tracing::debug!(kid = %shown, "fetched the issuer's key set again for an unknown key");
        let found = candidates(&keys, kid, alg);
        state.keys = Some(keys);
        if found.is_empty() {
            return Err(ProviderError::IdToken(format!(
                "no signing key matches kid {shown} and alg {alg:?}"
            )));
        }
        Ok(found)
    }

    async fn fetch(&self, http: &HttpClient) -> Result<Vec<Jwk>, ProviderError> {
        let value = http
            .send_json(
                http.get(&self.uri).header("accept", "application/json"),
                MAX_SET,
            )
            .await
            .map_err(|f| ProviderError::Other(format!("key set (jwks_uri): {f}")))?;
        let Some(list) = value.get("keys").and_then(|k| k.as_array()) else {
            return Err(ProviderError::Other(
                "key set (jwks_uri) has no `keys` array".to_owned(),
            ));
        };
        // Each key on its own: one key of a type we do not know (an
        // encryption key, a new curve) must not hide the others.
        Ok(list
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .take(MAX_KEYS)
            .collect())
    }
}

fn candidates(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
    keys.iter()
        .filter(|k| kid.is_none_or(|kid| k.common.key_id.as_deref() == Some(kid)))
        .filter(|k| usable_for(k, alg))
        .filter_map(|k| DecodingKey::from_jwk(k).ok())
        .collect()
}

fn usable_for(key: &Jwk, alg: Algorithm) -> bool {
    if key
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return false;
    }
    if key
        .common
        .key_algorithm
        .is_some_and(|named| named.to_string() != format!("{alg:?}"))
    {
        return false;
    }
    use Algorithm::*;
    matches!(
        (&key.algorithm, alg),
        (
            AlgorithmParameters::RSA(_),
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512
        ) | (AlgorithmParameters::EllipticCurve(_), ES256 | ES384)
            | (AlgorithmParameters::OctetKeyPair(_), EdDSA)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn keys_are_chosen_by_kid_use_and_family() {
        let n = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";
        let keys = vec![
            jwk(
                serde_json::json!({"kty":"RSA","kid":"a","use":"sig","alg":"RS256","n":n,"e":"AQAB"}),
            ),
            jwk(serde_json::json!({"kty":"RSA","kid":"b","use":"enc","n":n,"e":"AQAB"})),
            jwk(serde_json::json!({"kty":"RSA","kid":"c","alg":"RS512","n":n,"e":"AQAB"})),
        ];
        assert_eq!(candidates(&keys, Some("a"), Algorithm::RS256).len(), 1);
        assert_eq!(candidates(&keys, Some("a"), Algorithm::ES256).len(), 0);
        assert_eq!(candidates(&keys, Some("b"), Algorithm::RS256).len(), 0);
        assert_eq!(candidates(&keys, Some("c"), Algorithm::RS256).len(), 0);
        assert_eq!(candidates(&keys, Some("z"), Algorithm::RS256).len(), 0);
        assert_eq!(candidates(&keys, None, Algorithm::RS256).len(), 1);
    }
}
