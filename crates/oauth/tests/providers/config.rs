//! The configuration as the server reads it: `[oauth.providers.<name>]`
//! TOML tables, unknown keys refused, and the kind's rules applied by
//! `build`.

use std::collections::BTreeMap;

use regstack_oauth::{build, ProviderConfig, ProviderKind};
use serde::Deserialize;

use crate::support::*;

#[derive(Deserialize)]
struct File {
    oauth: OAuth,
}

#[derive(Deserialize)]
struct OAuth {
    providers: BTreeMap<String, ProviderConfig>,
}

fn providers(text: &str) -> Result<Vec<ProviderConfig>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    Ok(file
        .oauth
        .providers
        .into_iter()
        .map(|(name, mut c)| {
            c.name = name;
            c
        })
        .collect())
}

#[test]
fn the_servers_tables_build_every_kind() {
    let list = providers(
        r#"
        [oauth.providers.google]
        kind = "google"
        client_id = "1234.apps.googleusercontent.com"
        client_secret = "GOCSPX-secret"
        redirect_uri = "https://app.example.com/api/oauth/google/callback"

        [oauth.providers.microsoft]
        kind = "microsoft"
        client_id = "00001111-aaaa-2222-bbbb-3333cccc4444"
        client_secret = "ms~secret"
        tenant = "organizations"

        [oauth.providers.corp-sso]
        kind = "oidc"
        issuer = "https://sso.corp.example/realms/main"
        client_id = "regstack"
        client_secret = "kc-secret"
        scopes = ["openid", "email"]

        [oauth.providers.github]
        kind = "github"
        client_id = "Iv1.0123456789abcdef"
        client_secret = "gh-secret"
        "#,
    )
    .unwrap();
    let kinds: Vec<(String, ProviderKind)> =
        list.iter().map(|c| (c.name.clone(), c.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("corp-sso".to_owned(), ProviderKind::Oidc),
            ("github".to_owned(), ProviderKind::Github),
            ("google".to_owned(), ProviderKind::Google),
            ("microsoft".to_owned(), ProviderKind::Microsoft),
        ]
    );
    for c in &list {
        build(c, TestClock::at(T0), http()).unwrap();
        let shown = format!("{c:?}");
        for secret in ["GOCSPX-secret", "ms~secret", "kc-secret", "gh-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}

#[test]
fn unknown_keys_and_misplaced_keys_are_refused() {
    let e = providers(
        r#"
        [oauth.providers.google]
        kind = "google"
        client_id = "x"
        client_secret = "y"
        clientsecret = "typo"
        "#,
    )
    .err()
    .unwrap();
    assert!(e.contains("clientsecret"), "{e}");

    let list = providers(
        r#"
        [oauth.providers.google]
        kind = "google"
        client_id = "x"
        client_secret = "y"
        tenant = "common"
        "#,
    )
    .unwrap();
    let e = build(&list[0], TestClock::at(T0), http()).err().unwrap();
    assert_eq!(e.key, "oauth.providers.google.tenant");

    let list = providers(
        r#"
        [oauth.providers.sso]
        kind = "oidc"
        client_id = "x"
        client_secret = "y"
        "#,
    )
    .unwrap();
    let e = build(&list[0], TestClock::at(T0), http()).err().unwrap();
    assert_eq!(e.key, "oauth.providers.sso.issuer");
}

#[test]
fn a_zero_timeout_is_refused() {
    assert!(regstack_oauth::HttpClient::new(std::time::Duration::ZERO).is_err());
}
