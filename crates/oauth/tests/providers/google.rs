//! The Google preset: its fixed endpoints (no network to start a flow),
//! `prompt=select_account&access_type=online` as regstack 0.9.3 sends
//! them, both `iss` spellings recorded as one issuer, and a redemption
//! against a stand-in token endpoint and key set.

use std::sync::Arc;

use regstack_oauth::{build, ProviderKind};
use regstack_ports::IdentityProvider;
use serde_json::{json, Value};

use crate::support::*;

const RECORDED: &str = include_str!("fixtures/google-openid-configuration.json");
const KID: &str = "c7e04465649ffa606557650c7e65f0a87ae00fe8";

#[tokio::test]
async fn the_authorization_url_needs_no_network_and_matches_regstack() {
    let recorded: Value = serde_json::from_str(RECORDED).unwrap();
    // No overrides: had it tried to reach Google, this machine (no
    // internet) would have failed the call.
    let provider = build(
        &config("google", ProviderKind::Google),
        TestClock::at(T0),
        http(),
    )
    .unwrap();
    let url = authorize(provider.as_ref()).await.unwrap();
    let endpoint = recorded["authorization_endpoint"].as_str().unwrap();
    assert!(url.starts_with(&format!("{endpoint}?")), "{url}");
    let expected: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email profile"),
        ("state", STATE),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("nonce", NONCE),
        ("prompt", "select_account"),
        ("access_type", "online"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(query(&url), expected);
}

async fn google_against_stand_in() -> (StandIn, Arc<TestClock>, Arc<dyn IdentityProvider>) {
    let stand_in = StandIn::start().await;
    stand_in.with(|s| {
        // Google's key set shape: RS256 keys, use sig, hex kids.
        s.jwks = json!({"keys": [Key::A.jwk(KID), Key::B.jwk("0e345fd7e4a97271dffa991f5a893cd16b8e0827")]});
    });
    let clock = TestClock::at(T0);
    let mut cfg = config("google", ProviderKind::Google);
    cfg.token_endpoint = Some(stand_in.url("/token"));
    cfg.jwks_uri = Some(stand_in.url("/oauth2/v3/certs"));
    let provider = build(&cfg, clock.clone(), http()).unwrap();
    (stand_in, clock, provider)
}

fn google_claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "azp": CLIENT_ID,
        "aud": CLIENT_ID,
        "sub": "110169484474386276334",
        "email": "jane.doe@gmail.com",
        "email_verified": true,
        "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
        "nonce": NONCE,
        "name": "Jane Doe",
        "picture": "https://lh3.googleusercontent.com/a/photo",
        "given_name": "Jane",
        "family_name": "Doe",
        "iat": T0,
        "exp": T0 + 3600,
    })
}

#[tokio::test]
async fn both_issuer_spellings_pass_and_are_recorded_as_one() {
    let (stand_in, _clock, provider) = google_against_stand_in().await;
    for iss in ["https://accounts.google.com", "accounts.google.com"] {
        stand_in.answer_id_token(&sign(&google_claims(iss), KID, Key::A));
        let id = redeem(provider.as_ref()).await.unwrap();
        assert_eq!(id.issuer, "https://accounts.google.com", "iss {iss}");
        assert_eq!(id.subject, "110169484474386276334");
        assert_eq!(id.email.as_deref(), Some("jane.doe@gmail.com"));
        assert!(id.email_verified);
        assert_eq!(id.full_name.as_deref(), Some("Jane Doe"));
    }
    // Basic client authentication and the verifier reached the token endpoint.
    let sent = stand_in.token_requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].form.get("code_verifier").unwrap(), VERIFIER);
    assert_eq!(stand_in.jwks_fetches(), 1);
}

#[tokio::test]
async fn other_issuers_and_audiences_are_refused() {
    let (stand_in, _clock, provider) = google_against_stand_in().await;
    for iss in [
        "http://accounts.google.com",
        "https://accounts.google.com/",
        "https://accounts.google.com.evil.example",
        "https://evil.example/accounts.google.com",
    ] {
        stand_in.answer_id_token(&sign(&google_claims(iss), KID, Key::A));
        assert_id_token(redeem(provider.as_ref()).await.unwrap_err(), iss);
    }
    let mut other_client = google_claims("https://accounts.google.com");
    other_client["aud"] = json!("another.apps.googleusercontent.com");
    other_client["azp"] = json!("another.apps.googleusercontent.com");
    stand_in.answer_id_token(&sign(&other_client, KID, Key::A));
    assert_id_token(
        redeem(provider.as_ref()).await.unwrap_err(),
        "another client",
    );
    // A string "true" is not a verified address.
    let mut stringly = google_claims("https://accounts.google.com");
    stringly["email_verified"] = json!("true");
    stand_in.answer_id_token(&sign(&stringly, KID, Key::A));
    assert!(!redeem(provider.as_ref()).await.unwrap().email_verified);
}
