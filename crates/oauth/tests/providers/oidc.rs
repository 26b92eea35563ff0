//! Generic OpenID Connect by discovery: the happy path with what is sent
//! on the wire, then every rejection — each a `ProviderError::IdToken`
//! unless the token endpoint or discovery failed.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use regstack_oauth::{build, HttpClient, ProviderKind, REFETCH_INTERVAL_SECONDS};
use regstack_ports::{IdentityProvider, ProviderError};
use serde_json::{json, Value};

use crate::support::*;

struct Setup {
    stand_in: StandIn,
    clock: Arc<TestClock>,
    provider: Arc<dyn IdentityProvider>,
    issuer: String,
}

fn document(base: &str, algs: Value, auth_methods: Value) -> Value {
    json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/me"),
        "jwks_uri": format!("{base}/jwks"),
        "scopes_supported": ["openid", "email", "profile"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": auth_methods,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "email", "email_verified", "name"],
    })
}

async fn setup_with(algs: Value, auth_methods: Value, allow_hs256: bool) -> Setup {
    let stand_in = StandIn::start().await;
    let issuer = stand_in.base.clone();
    stand_in.with(|s| {
        s.documents.insert(
            "/.well-known/openid-configuration".into(),
            document(&issuer, algs, auth_methods),
        );
    });
    let clock = TestClock::at(T0);
    let mut cfg = config("corp", ProviderKind::Oidc);
    cfg.issuer = Some(issuer.clone());
    cfg.allow_hs256 = allow_hs256;
    let provider = build(&cfg, clock.clone(), http()).unwrap();
    Setup {
        stand_in,
        clock,
        provider,
        issuer,
    }
}

async fn setup() -> Setup {
    setup_with(
        json!(["RS256"]),
        json!(["client_secret_basic", "client_secret_post"]),
        false,
    )
    .await
}

impl Setup {
    async fn redeem_token(
        &self,
        token: &str,
    ) -> Result<regstack_ports::ExternalIdentity, ProviderError> {
        self.stand_in.answer_id_token(token);
        redeem(self.provider.as_ref()).await
    }

    fn claims(&self) -> Value {
        claims(&self.issuer, T0)
    }
}

#[tokio::test]
async fn authorization_url_carries_every_parameter_of_the_flow() {
    let s = setup().await;
    let url = authorize(s.provider.as_ref()).await.unwrap();
    assert!(
        url.starts_with(&format!("{}/authorize?", s.issuer)),
        "{url}"
    );
    let expected: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email profile"),
        ("state", STATE),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("nonce", NONCE),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(query(&url), expected);
    // Discovery once, then cached.
    authorize(s.provider.as_ref()).await.unwrap();
    assert_eq!(s.stand_in.with(|st| st.discovery_fetches), 1);
}

#[tokio::test]
async fn configured_scopes_are_sent() {
    let s = setup().await;
    let mut cfg = config("corp", ProviderKind::Oidc);
    cfg.issuer = Some(s.issuer.clone());
    cfg.scopes = Some(vec!["openid".into(), "email".into()]);
    let provider = build(&cfg, s.clock.clone(), http()).unwrap();
    let url = authorize(provider.as_ref()).await.unwrap();
    assert!(query(&url).contains(&("scope".into(), "openid email".into())));
}

#[tokio::test]
async fn a_valid_token_yields_the_identity_and_the_wire_is_right() {
    let s = setup().await;
    let token = sign(&s.claims(), "a", Key::A);
    let id = s.redeem_token(&token).await.unwrap();
    assert_eq!(id.issuer, s.issuer);
    assert_eq!(id.subject, "248289761001");
    assert_eq!(id.email.as_deref(), Some("jane@example.com"));
    assert!(id.email_verified);
    assert_eq!(id.full_name.as_deref(), Some("Jane Doe"));

    // The stand-in refused anything but Basic with these credentials and
    // this verifier; the recorded request shows what was sent.
    let sent = s.stand_in.token_requests();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.form.get("grant_type").unwrap(), "authorization_code");
    assert_eq!(r.form.get("code").unwrap(), CODE);
    assert_eq!(r.form.get("code_verifier").unwrap(), VERIFIER);
    assert_eq!(r.form.get("redirect_uri").unwrap(), REDIRECT);
    assert!(!r.form.contains_key("client_secret"));
    assert!(r
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("Basic "));
    // Keys were fetched once, lazily.
    assert_eq!(s.stand_in.jwks_fetches(), 1);
}

#[tokio::test]
async fn client_secret_post_when_discovery_offers_only_that() {
    let s = setup_with(json!(["RS256"]), json!(["client_secret_post"]), false).await;
    s.stand_in
        .with(|st| st.client_auth = Some(ClientAuth::Post));
    let token = sign(&s.claims(), "a", Key::A);
    s.redeem_token(&token).await.unwrap();
    let r = &s.stand_in.token_requests()[0];
    assert_eq!(r.form.get("client_id").unwrap(), CLIENT_ID);
    assert_eq!(r.form.get("client_secret").unwrap(), CLIENT_SECRET);
    assert!(r.headers.get("authorization").is_none());
}

#[tokio::test]
async fn a_token_endpoint_refusal_is_a_token_exchange_failure() {
    let s = setup().await;
    s.stand_in.with(|st| {
        st.token_answer = (
            400,
            json!({"error": "invalid_grant", "error_description": "code CODE expired"}),
        )
    });
    let e = redeem(s.provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::TokenExchange(_)), "{e:?}");
    assert!(e.to_string().contains("400 (invalid_grant)"), "{e}");
    assert_no_secrets(&e.to_string(), "400");

    // Wrong client credentials: the stand-in's 401.
    let mut cfg = config("corp", ProviderKind::Oidc);
    cfg.issuer = Some(s.issuer.clone());
    cfg.client_secret = "wrong".to_owned().into();
    let provider = build(&cfg, s.clock.clone(), http()).unwrap();
    let e = redeem(provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::TokenExchange(_)), "{e:?}");
    assert!(e.to_string().contains("invalid_client"), "{e}");
}

#[tokio::test]
async fn an_unreachable_or_slow_token_endpoint_is_a_token_exchange_failure() {
    let s = setup().await;
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    s.stand_in.with(|st| {
        let doc = st
            .documents
            .get_mut("/.well-known/openid-configuration")
            .unwrap();
        doc["token_endpoint"] = json!(format!("http://{closed}/token"));
    });
    let e = redeem(s.provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::TokenExchange(_)), "{e:?}");

    // A token endpoint that answers too late: the timeout ends the call.
    let s = setup().await;
    s.stand_in
        .with(|st| st.token_delay = Some(Duration::from_secs(3)));
    let mut cfg = config("corp", ProviderKind::Oidc);
    cfg.issuer = Some(s.issuer.clone());
    let quick = HttpClient::new(Duration::from_millis(300)).unwrap();
    let provider = build(&cfg, s.clock.clone(), quick).unwrap();
    let started = std::time::Instant::now();
    let e = redeem(provider.as_ref()).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, ProviderError::TokenExchange(_)), "{e:?}");
    assert!(
        e.to_string().contains("timed out") || e.to_string().contains("within"),
        "{e}"
    );
}

#[tokio::test]
async fn a_missing_id_token_is_refused() {
    let s = setup().await;
    s.stand_in
        .with(|st| st.token_answer = (200, json!({"access_token": "x", "token_type": "Bearer"})));
    assert_id_token(
        redeem(s.provider.as_ref()).await.unwrap_err(),
        "no id_token",
    );
}

#[tokio::test]
async fn every_forged_or_foreign_token_is_refused() {
    let s = setup().await;
    let good = s.claims();
    let with = |key: &str, value: Value| {
        let mut c = good.clone();
        c[key] = value;
        c
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "flipped signature",
            flip_signature(&sign(&good, "a", Key::A)),
        ),
        (
            "wrong nonce",
            sign(&with("nonce", json!("another-flow")), "a", Key::A),
        ),
        ("no nonce", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("nonce");
            sign(&c, "a", Key::A)
        }),
        (
            "wrong aud",
            sign(&with("aud", json!("another-client")), "a", Key::A),
        ),
        (
            "aud list without us",
            sign(&with("aud", json!(["x", "y"])), "a", Key::A),
        ),
        (
            "wrong iss",
            sign(&with("iss", json!("https://evil.example.com")), "a", Key::A),
        ),
        (
            "iss with a trailing slash",
            sign(&with("iss", json!(format!("{}/", s.issuer))), "a", Key::A),
        ),
        (
            "azp mismatch",
            sign(&with("azp", json!("another-client")), "a", Key::A),
        ),
        (
            "several audiences, no azp",
            sign(&with("aud", json!([CLIENT_ID, "other"])), "a", Key::A),
        ),
        (
            "expired a second ago",
            sign(&with("exp", json!(T0 - 1)), "a", Key::A),
        ),
        (
            "expiring exactly now",
            sign(&with("exp", json!(T0)), "a", Key::A),
        ),
        (
            "exp as a string",
            sign(&with("exp", json!((T0 + 300).to_string())), "a", Key::A),
        ),
        (
            "not valid yet",
            sign(&with("nbf", json!(T0 + 3600)), "a", Key::A),
        ),
        ("another key under the same kid", sign(&good, "a", Key::B)),
        ("alg none", unsigned(&good, "a")),
        (
            "HS256 with the client secret",
            sign_hs256(&good, CLIENT_SECRET),
        ),
        (
            "RS512, not advertised",
            sign_alg(&good, Algorithm::RS512, Some("a"), Key::A),
        ),
        ("empty sub", sign(&with("sub", json!("")), "a", Key::A)),
        ("not a JWT", "not.a.jwt".to_owned()),
    ];
    for (case, token) in cases {
        let e = s.redeem_token(&token).await.unwrap_err();
        assert_id_token(e, case);
    }
    // The same token, unforged, passes — so each case failed for its one change.
    s.redeem_token(&sign(&good, "a", Key::A)).await.unwrap();
    // Several audiences with azp = us is fine.
    let multi = with("aud", json!([CLIENT_ID, "other"]));
    let mut multi = multi;
    multi["azp"] = json!(CLIENT_ID);
    s.redeem_token(&sign(&multi, "a", Key::A)).await.unwrap();
}

#[tokio::test]
async fn expiry_has_no_leeway_on_the_injected_clock() {
    let s = setup().await;
    let token = sign(&s.claims(), "a", Key::A);
    let exp = T0 + 300;
    // One microsecond before exp: valid.
    s.clock.set_micros(exp * 1_000_000 - 1);
    s.redeem_token(&token).await.unwrap();
    // At exp: expired.
    s.clock.set_micros(exp * 1_000_000);
    assert_id_token(s.redeem_token(&token).await.unwrap_err(), "at exp");
    // A second past exp.
    s.clock.set_micros((exp + 1) * 1_000_000);
    assert_id_token(s.redeem_token(&token).await.unwrap_err(), "exp + 1 s");
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_keys_once_per_interval() {
    let s = setup().await;
    s.redeem_token(&sign(&s.claims(), "a", Key::A))
        .await
        .unwrap();
    assert_eq!(s.stand_in.jwks_fetches(), 1);

    // Unknown kid: one refetch, still unknown, refused.
    let e = s
        .redeem_token(&sign(&s.claims(), "b", Key::B))
        .await
        .unwrap_err();
    assert_id_token(e, "unknown kid b");
    assert_eq!(s.stand_in.jwks_fetches(), 2);

    // Another unknown kid right away: no request to the issuer.
    for kid in ["c", "d", "e"] {
        let e = s
            .redeem_token(&sign(&s.claims(), kid, Key::B))
            .await
            .unwrap_err();
        assert_id_token(e, kid);
    }
    assert_eq!(s.stand_in.jwks_fetches(), 2);

    // The issuer rotates in key B; inside the interval it is still refused…
    s.stand_in
        .with(|st| st.jwks = jwks(&[(Key::A, "a"), (Key::B, "b")]));
    s.clock.advance_seconds(REFETCH_INTERVAL_SECONDS - 1);
    let fresh = claims(&s.issuer, s.clock.seconds());
    assert_id_token(
        s.redeem_token(&sign(&fresh, "b", Key::B))
            .await
            .unwrap_err(),
        "inside the interval",
    );
    assert_eq!(s.stand_in.jwks_fetches(), 2);
    // …and once the interval has passed, the refetch finds it.
    s.clock.advance_seconds(1);
    let id = s.redeem_token(&sign(&fresh, "b", Key::B)).await.unwrap();
    assert_eq!(id.subject, "248289761001");
    assert_eq!(s.stand_in.jwks_fetches(), 3);
    // Now cached: no further fetch.
    s.redeem_token(&sign(&fresh, "b", Key::B)).await.unwrap();
    s.redeem_token(&sign(&fresh, "a", Key::A)).await.unwrap();
    assert_eq!(s.stand_in.jwks_fetches(), 3);
}

#[tokio::test]
async fn a_key_rotated_in_after_the_first_fetch_is_found_by_the_first_refetch() {
    let s = setup().await;
    s.redeem_token(&sign(&s.claims(), "a", Key::A))
        .await
        .unwrap();
    s.stand_in.with(|st| st.jwks = jwks(&[(Key::B, "b")]));
    s.redeem_token(&sign(&s.claims(), "b", Key::B))
        .await
        .unwrap();
    assert_eq!(s.stand_in.jwks_fetches(), 2);
    // The set now lacks "a": a token under it is refused (no refetch yet).
    assert_id_token(
        s.redeem_token(&sign(&s.claims(), "a", Key::A))
            .await
            .unwrap_err(),
        "rotated out",
    );
}

#[tokio::test]
async fn email_verified_counts_only_as_the_boolean_true() {
    let s = setup().await;
    for (value, expected) in [
        (Some(json!(true)), true),
        (Some(json!(false)), false),
        (Some(json!("true")), false),
        (None, false),
    ] {
        let mut c = s.claims();
        match &value {
            Some(v) => c["email_verified"] = v.clone(),
            None => {
                c.as_object_mut().unwrap().remove("email_verified");
            }
        }
        let id = s.redeem_token(&sign(&c, "a", Key::A)).await.unwrap();
        assert_eq!(id.email_verified, expected, "email_verified = {value:?}");
        assert_eq!(id.email.as_deref(), Some("jane@example.com"));
    }
}

#[tokio::test]
async fn hs256_only_with_the_flag_and_only_if_advertised() {
    // Advertised, flag on: accepted.
    let s = setup_with(
        json!(["RS256", "HS256"]),
        json!(["client_secret_basic"]),
        true,
    )
    .await;
    let id = s
        .redeem_token(&sign_hs256(&s.claims(), CLIENT_SECRET))
        .await
        .unwrap();
    assert_eq!(id.subject, "248289761001");
    // …but not under another secret.
    assert_id_token(
        s.redeem_token(&sign_hs256(&s.claims(), "guess"))
            .await
            .unwrap_err(),
        "HS256, wrong secret",
    );
    // Advertised, flag off: refused.
    let s = setup_with(
        json!(["RS256", "HS256"]),
        json!(["client_secret_basic"]),
        false,
    )
    .await;
    assert_id_token(
        s.redeem_token(&sign_hs256(&s.claims(), CLIENT_SECRET))
            .await
            .unwrap_err(),
        "HS256 without the flag",
    );
    // Flag on, not advertised: refused.
    let s = setup_with(json!(["RS256"]), json!(["client_secret_basic"]), true).await;
    assert_id_token(
        s.redeem_token(&sign_hs256(&s.claims(), CLIENT_SECRET))
            .await
            .unwrap_err(),
        "HS256 not advertised",
    );
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer_and_is_not_redirected() {
    let s = setup().await;
    s.stand_in.with(|st| {
        let doc = st
            .documents
            .get_mut("/.well-known/openid-configuration")
            .unwrap();
        doc["issuer"] = json!("https://evil.example.com");
    });
    let e = authorize(s.provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Other(_)), "{e:?}");
    assert!(e.to_string().contains("issuer"), "{e}");

    // A redirect is an answer, not a detour.
    let s = setup().await;
    let moved = format!("{}/elsewhere", s.issuer);
    s.stand_in.with(|st| {
        let doc = st
            .documents
            .remove("/.well-known/openid-configuration")
            .unwrap();
        st.documents.insert("/elsewhere".into(), doc);
        st.redirects
            .insert("/.well-known/openid-configuration".into(), moved);
    });
    let e = authorize(s.provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Other(_)), "{e:?}");
    assert!(e.to_string().contains("302"), "{e}");
    assert_eq!(s.stand_in.with(|st| st.discovery_fetches), 0);
}

#[tokio::test]
async fn a_failed_discovery_is_retried_on_the_next_flow() {
    let s = setup().await;
    let doc = s.stand_in.with(|st| {
        st.documents
            .remove("/.well-known/openid-configuration")
            .unwrap()
    });
    let e = authorize(s.provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Other(_)), "{e:?}");
    s.stand_in.with(|st| {
        st.documents
            .insert("/.well-known/openid-configuration".into(), doc)
    });
    authorize(s.provider.as_ref()).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_key_set_is_a_provider_failure() {
    let s = setup().await;
    s.stand_in.with(|st| {
        let doc = st
            .documents
            .get_mut("/.well-known/openid-configuration")
            .unwrap();
        doc["jwks_uri"] = json!(format!("{}/missing-keys-here", s.issuer));
    });
    let e = s
        .redeem_token(&sign(&s.claims(), "a", Key::A))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Other(_)), "{e:?}");
}

#[tokio::test]
async fn a_redirect_naming_another_issuer_is_refused_before_the_code_is_sent() {
    let s = setup().await;
    let token = sign(&s.claims(), "a", Key::A);
    s.stand_in.answer_id_token(&token);
    let err = redeem_with_iss(s.provider.as_ref(), "https://other-idp.example")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Other(_)), "{err:?}");
    // Mix-up defence: the code never reached this provider's token endpoint.
    assert!(s.stand_in.token_requests().is_empty());
    // The right issuer passes, as does no `iss` from a provider that does
    // not promise one.
    redeem_with_iss(s.provider.as_ref(), &s.issuer)
        .await
        .unwrap();
    redeem(s.provider.as_ref()).await.unwrap();
}

#[tokio::test]
async fn a_provider_that_promises_iss_on_its_redirects_must_send_it() {
    let s = setup().await;
    let issuer = s.issuer.clone();
    s.stand_in.with(|st| {
        let mut doc = document(&issuer, json!(["RS256"]), json!(["client_secret_basic"]));
        doc["authorization_response_iss_parameter_supported"] = json!(true);
        st.documents
            .insert("/.well-known/openid-configuration".into(), doc);
    });
    let token = sign(&s.claims(), "a", Key::A);
    s.stand_in.answer_id_token(&token);
    let err = redeem(s.provider.as_ref()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Other(_)), "{err:?}");
    assert!(s.stand_in.token_requests().is_empty());
    redeem_with_iss(s.provider.as_ref(), &s.issuer)
        .await
        .unwrap();
}
