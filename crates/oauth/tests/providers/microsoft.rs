//! The Microsoft preset against recorded v2.0 discovery documents (one per
//! tenancy), served by a stand-in with their endpoints pointed at it and
//! their issuers untouched: `common` admits any tenant through the
//! `{tenantid}` template, `consumers` only the personal-account tenant,
//! `organizations` anything but it, a single tenant only itself; the
//! `email` claim is never taken as verified.

use std::sync::Arc;

use regstack_oauth::{build, ProviderKind};
use regstack_ports::{ExternalIdentity, IdentityProvider, ProviderError};
use serde_json::{json, Value};

use crate::support::*;

const CONSUMERS_TID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const CONTOSO_TID: &str = "4f7c2b1e-8d3a-4e6b-9c21-5a0d7e3f1b42";
const FABRIKAM_TID: &str = "b3a7d9e2-1c4f-4a8b-8e6d-2f0c5a9b7e31";
const KID: &str = "JYhAcTPMZ_LX6DBlOWQ7Hn0NeXE";
const MS: &str = "https://login.microsoftonline.com";

fn recorded(tenancy: &str) -> Value {
    let raw = match tenancy {
        "common" => include_str!("fixtures/microsoft-common-openid-configuration.json"),
        "organizations" => {
            include_str!("fixtures/microsoft-organizations-openid-configuration.json")
        }
        "consumers" => include_str!("fixtures/microsoft-consumers-openid-configuration.json"),
        _ => include_str!("fixtures/microsoft-tenant-openid-configuration.json"),
    };
    serde_json::from_str(raw).unwrap()
}

struct Setup {
    stand_in: StandIn,
    provider: Arc<dyn IdentityProvider>,
}

/// A provider for `tenant`, reading the recorded document for `fixture`
/// from the stand-in (its endpoints moved there, its issuer as recorded).
async fn setup(tenant: Option<&str>, fixture: &str) -> Setup {
    let stand_in = StandIn::start().await;
    let mut doc = recorded(fixture);
    for key in ["authorization_endpoint", "token_endpoint", "jwks_uri"] {
        let moved = doc[key].as_str().unwrap().replace(MS, &stand_in.base);
        doc[key] = json!(moved);
    }
    let path = format!(
        "/{}/v2.0/.well-known/openid-configuration",
        tenant.unwrap_or("common")
    );
    stand_in.with(|s| {
        s.documents.insert(path, doc);
        // Microsoft's keys carry x5t, x5c and an issuer of their own.
        let mut key = Key::A.jwk(KID);
        key["x5t"] = json!(KID);
        key["x5c"] = json!(["MIIC/TCCAeWgAwIBAgII"]);
        key["issuer"] = json!(format!("{MS}/{{tenantid}}/v2.0"));
        s.jwks = json!({"keys": [key]});
    });
    let mut cfg = config("microsoft", ProviderKind::Microsoft);
    cfg.tenant = tenant.map(str::to_owned);
    cfg.authority = Some(stand_in.base.clone());
    let provider = build(&cfg, TestClock::at(T0), http()).unwrap();
    Setup { stand_in, provider }
}

fn ms_claims(iss_tid: &str, tid: Option<&str>) -> Value {
    let mut c = json!({
        "ver": "2.0",
        "iss": format!("{MS}/{iss_tid}/v2.0"),
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "aud": CLIENT_ID,
        "exp": T0 + 3600,
        "iat": T0,
        "nbf": T0,
        "name": "Jane Doe",
        "preferred_username": "jane@contoso.example",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "email": "jane@contoso.example",
        "email_verified": true,
        "nonce": NONCE,
        "aio": "Df2UVXL1ix!lMCWMSOJBcFatzcGfvFGhjKv8q5g0x732dR5MB5BisvGQO7YWByjd8iQDLq!eGbIDakyp5mnOrcdqHeYSnltepQmRp6AIZ8jY",
    });
    if let Some(tid) = tid {
        c["tid"] = json!(tid);
    }
    c
}

impl Setup {
    async fn redeem(&self, claims: &Value) -> Result<ExternalIdentity, ProviderError> {
        self.stand_in.answer_id_token(&sign(claims, KID, Key::A));
        redeem(self.provider.as_ref()).await
    }
}

#[tokio::test]
async fn common_admits_every_tenant_under_its_own_issuer() {
    let s = setup(None, "common").await;
    for tid in [CONTOSO_TID, FABRIKAM_TID, CONSUMERS_TID] {
        let id = s.redeem(&ms_claims(tid, Some(tid))).await.unwrap();
        assert_eq!(id.issuer, format!("{MS}/{tid}/v2.0"));
        assert_eq!(id.subject, "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ");
        assert_eq!(id.full_name.as_deref(), Some("Jane Doe"));
    }
    // iss must be the template filled with the token's own tid.
    assert_id_token(
        s.redeem(&ms_claims(CONTOSO_TID, Some(FABRIKAM_TID)))
            .await
            .unwrap_err(),
        "iss names another tenant than tid",
    );
    assert_id_token(
        s.redeem(&ms_claims(CONTOSO_TID, None)).await.unwrap_err(),
        "no tid",
    );
    assert_id_token(
        s.redeem(&ms_claims("{tenantid}", Some(CONTOSO_TID)))
            .await
            .unwrap_err(),
        "the template itself as iss",
    );
    // Discovery was read from the tenant path, once.
    assert_eq!(s.stand_in.with(|st| st.discovery_fetches), 1);
}

#[tokio::test]
async fn consumers_admits_personal_accounts_only() {
    let s = setup(Some("consumers"), "consumers").await;
    let id = s
        .redeem(&ms_claims(CONSUMERS_TID, Some(CONSUMERS_TID)))
        .await
        .unwrap();
    assert_eq!(id.issuer, format!("{MS}/{CONSUMERS_TID}/v2.0"));
    assert_id_token(
        s.redeem(&ms_claims(CONTOSO_TID, Some(CONTOSO_TID)))
            .await
            .unwrap_err(),
        "consumers, work tenant",
    );
    assert_id_token(
        s.redeem(&ms_claims(CONSUMERS_TID, Some(CONTOSO_TID)))
            .await
            .unwrap_err(),
        "consumers, iss right but tid another",
    );
}

#[tokio::test]
async fn organizations_refuses_personal_accounts() {
    let s = setup(Some("organizations"), "organizations").await;
    s.redeem(&ms_claims(CONTOSO_TID, Some(CONTOSO_TID)))
        .await
        .unwrap();
    assert_id_token(
        s.redeem(&ms_claims(CONSUMERS_TID, Some(CONSUMERS_TID)))
            .await
            .unwrap_err(),
        "organizations, consumer tid",
    );
}

#[tokio::test]
async fn a_single_tenant_admits_only_itself() {
    let s = setup(Some(CONTOSO_TID), "tenant").await;
    let id = s
        .redeem(&ms_claims(CONTOSO_TID, Some(CONTOSO_TID)))
        .await
        .unwrap();
    assert_eq!(id.issuer, format!("{MS}/{CONTOSO_TID}/v2.0"));
    assert_id_token(
        s.redeem(&ms_claims(FABRIKAM_TID, Some(FABRIKAM_TID)))
            .await
            .unwrap_err(),
        "another tenant",
    );
}

#[tokio::test]
async fn a_single_tenant_whose_discovery_states_a_template_is_refused() {
    // A single tenant whose document (wrongly) states the template would
    // admit anyone: discovery fails instead.
    let s = setup(Some(CONTOSO_TID), "common").await;
    let e = authorize(s.provider.as_ref()).await.unwrap_err();
    assert!(matches!(e, ProviderError::Other(_)), "{e:?}");
}

#[tokio::test]
async fn microsoft_email_is_never_verified() {
    let s = setup(None, "common").await;
    let id = s
        .redeem(&ms_claims(CONTOSO_TID, Some(CONTOSO_TID)))
        .await
        .unwrap();
    assert_eq!(id.email.as_deref(), Some("jane@contoso.example"));
    assert!(!id.email_verified);
}

#[tokio::test]
async fn the_authorization_url_is_the_tenants() {
    let s = setup(Some("organizations"), "organizations").await;
    let url = authorize(s.provider.as_ref()).await.unwrap();
    let expected = format!("{}/organizations/oauth2/v2.0/authorize?", s.stand_in.base);
    assert!(url.starts_with(&expected), "{url}");
    let q = query(&url);
    assert!(q.contains(&("nonce".into(), NONCE.into())));
    assert!(q.contains(&("code_challenge_method".into(), "S256".into())));
    assert!(!q.iter().any(|(k, _)| k == "prompt"), "{url}");
    // Basic authentication is advertised, so used.
    s.redeem(&ms_claims(CONTOSO_TID, Some(CONTOSO_TID)))
        .await
        .unwrap();
    assert!(s.stand_in.token_requests()[0]
        .headers
        .contains_key("authorization"));
}
