//! GitHub against a stand-in of its token endpoint and user API: the
//! subject is the numeric id, the address the primary one (verified only
//! when GitHub says so), and GitHub's refusals map to the port's errors.

use std::sync::Arc;

use regstack_oauth::{build, ProviderKind};
use regstack_ports::{IdentityProvider, ProviderError};
use serde_json::json;

use crate::support::*;

async fn setup(api_prefix: &str) -> (StandIn, Arc<dyn IdentityProvider>) {
    let stand_in = StandIn::start().await;
    stand_in.with(|s| {
        s.client_auth = Some(ClientAuth::Post);
        s.token_answer = (
            200,
            json!({"access_token": ACCESS_TOKEN, "token_type": "bearer", "scope": "read:user,user:email"}),
        );
        s.github_user = json!({
            "login": "octocat",
            "id": 583231,
            "node_id": "MDQ6VXNlcjU4MzIzMQ==",
            "name": "The Octocat",
            "email": "octocat@public.example",
            "type": "User",
        });
        s.github_emails = json!([
            {"email": "octo@secondary.example", "primary": false, "verified": true, "visibility": null},
            {"email": "octocat@github.com", "primary": true, "verified": true, "visibility": "public"},
        ]);
    });
    let mut cfg = config("github", ProviderKind::Github);
    // Pointed at a stand-in, it must name its issuer; it plays github.com.
    cfg.issuer = Some("https://github.com".into());
    cfg.authorization_endpoint = Some(stand_in.url("/login/oauth/authorize"));
    cfg.token_endpoint = Some(stand_in.url("/login/oauth/access_token"));
    cfg.api_url = Some(stand_in.url(api_prefix));
    let provider = build(&cfg, TestClock::at(T0), http()).unwrap();
    (stand_in, provider)
}

#[tokio::test]
async fn the_primary_verified_address_and_the_numeric_id() {
    let (stand_in, provider) = setup("").await;
    let id = redeem(provider.as_ref()).await.unwrap();
    assert_eq!(id.issuer, "https://github.com");
    assert_eq!(id.subject, "583231");
    assert_eq!(id.email.as_deref(), Some("octocat@github.com"));
    assert!(id.email_verified);
    assert_eq!(id.full_name.as_deref(), Some("The Octocat"));
    // The stand-in required client_id, secret, code, verifier and
    // redirect_uri in the form; JSON was asked for.
    let sent = stand_in.token_requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].form.get("code_verifier").unwrap(), VERIFIER);
    assert_eq!(
        sent[0].headers.get("accept").unwrap().to_str().unwrap(),
        "application/json"
    );
}

#[tokio::test]
async fn an_unverified_primary_is_not_verified_and_another_verified_one_is_not_used() {
    let (stand_in, provider) = setup("").await;
    stand_in.with(|s| {
        s.github_emails = json!([
            {"email": "verified@secondary.example", "primary": false, "verified": true, "visibility": null},
            {"email": "new@primary.example", "primary": true, "verified": false, "visibility": "private"},
        ]);
        s.github_user["name"] = json!(null);
    });
    let id = redeem(provider.as_ref()).await.unwrap();
    assert_eq!(id.email.as_deref(), Some("new@primary.example"));
    assert!(!id.email_verified);
    // No display name: the login stands in.
    assert_eq!(id.full_name.as_deref(), Some("octocat"));

    stand_in.with(|s| s.github_emails = json!([]));
    let id = redeem(provider.as_ref()).await.unwrap();
    assert_eq!(id.email, None);
    assert!(!id.email_verified);
}

#[tokio::test]
async fn an_enterprise_api_under_a_path_prefix() {
    let (_stand_in, provider) = setup("/api/v3").await;
    let id = redeem(provider.as_ref()).await.unwrap();
    assert_eq!(id.subject, "583231");
}

#[tokio::test]
async fn the_authorization_url_sends_pkce_and_no_nonce() {
    let (stand_in, provider) = setup("").await;
    let url = authorize(provider.as_ref()).await.unwrap();
    assert!(
        url.starts_with(&stand_in.url("/login/oauth/authorize?")),
        "{url}"
    );
    let expected: Vec<(String, String)> = [
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT),
        ("scope", "read:user user:email"),
        ("state", STATE),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(query(&url), expected);
}

#[tokio::test]
async fn refusals_map_to_the_ports_errors() {
    // GitHub refuses a bad code with 200 and an `error` member.
    let (stand_in, provider) = setup("").await;
    stand_in.with(|s| {
        s.token_answer = (
            200,
            json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired.", "error_uri": "https://docs.github.com/"}),
        )
    });
    let e = redeem(provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::TokenExchange(_)), "{e:?}");
    assert!(e.to_string().contains("bad_verification_code"), "{e}");
    assert_no_secrets(&e.to_string(), "bad code");

    // A token the API does not accept: the user API's 401 is "other".
    stand_in.with(|s| {
        s.token_answer = (
            200,
            json!({"access_token": "gho_revoked", "token_type": "bearer"}),
        )
    });
    let e = redeem(provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Other(_)), "{e:?}");
    assert!(!e.to_string().contains("gho_revoked"), "{e}");

    // A user without a numeric id is nonsense.
    stand_in.with(|s| {
        s.token_answer = (
            200,
            json!({"access_token": ACCESS_TOKEN, "token_type": "bearer"}),
        );
        s.github_user["id"] = json!("583231");
    });
    let e = redeem(provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Other(_)), "{e:?}");

    // Wrong client secret: the stand-in's invalid_client.
    stand_in.with(|s| s.github_user["id"] = json!(583231));
    let mut cfg = config("github", ProviderKind::Github);
    cfg.client_secret = "wrong".to_owned().into();
    cfg.issuer = Some("https://github.com".into());
    cfg.token_endpoint = Some(stand_in.url("/login/oauth/access_token"));
    cfg.api_url = Some(stand_in.base.clone());
    let provider = build(&cfg, TestClock::at(T0), http()).unwrap();
    let e = redeem(provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::TokenExchange(_)), "{e:?}");
}
