//! The test OpenID Provider and its client helper, proven before any
//! end-to-end test leans on them: a harness that signed in the wrong user,
//! or whose "tampered" ID tokens were in fact fine, would make every OAuth
//! test built on it lie.
//!
//! Each test plays the app by hand: registers a client, builds the
//! authorization URL (PKCE S256, state, nonce), lets
//! [`OidcProvider::authorize`] drive the provider, redeems the code at the
//! token endpoint and looks at the ID token. Needs `TEST_OIDC_URL`
//! (`scripts/services/oidc.sh up`); without it each test says SKIPPED, and
//! fails under `CI=true`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use regstack_testkit::oidc::{
    jwt_parts, param, ClientAuth, EmailVerified, OidcProvider, OidcUser, RegisteredClient, Tamper,
};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Nothing listens here: the helper returns the callback URL without
/// requesting it.
const REDIRECT_URI: &str = "http://127.0.0.1:9/oauth/callback";

/// One app's side of a flow: its client and the secrets of one request.
struct App {
    op: OidcProvider,
    client: RegisteredClient,
    discovery: Value,
    http: reqwest::Client,
}

/// What the app sent with one authorization request.
struct Request {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
}

fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl App {
    async fn new(test: &str) -> Option<Self> {
        Self::with_auth(test, ClientAuth::Basic).await
    }

    async fn with_auth(test: &str, auth: ClientAuth) -> Option<Self> {
        let op = OidcProvider::from_env(test)?;
        let client = op.register_client_with(&[REDIRECT_URI], auth).await;
        let discovery = op.discovery().await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Some(Self {
            op,
            client,
            discovery,
            http,
        })
    }

    fn endpoint(&self, name: &str) -> String {
        self.discovery[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in discovery"))
            .to_owned()
    }

    /// An authorization URL as our server would build it.
    fn authorization_request(&self) -> Request {
        let (state, nonce, verifier) = (random(), random(), random());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = Url::parse(&self.endpoint("authorization_endpoint")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client.client_id)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("scope", "openid email profile")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Request {
            url: url.into(),
            state,
            nonce,
            verifier,
        }
    }

    /// The token endpoint's answer to `code`.
    async fn redeem(&self, code: &str, verifier: &str) -> (StatusCode, Value) {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ];
        let mut req = self.http.post(self.endpoint("token_endpoint"));
        match self.client.auth {
            ClientAuth::Basic => {
                req = req.basic_auth(&self.client.client_id, Some(&self.client.client_secret));
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.client.client_id));
                form.push(("client_secret", &self.client.client_secret));
            }
        }
        let resp = req.form(&form).send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap())
    }

    /// A complete flow as `user`: the callback's code redeemed; returns the
    /// ID token and the request it answers.
    async fn sign_in(&self, user: &OidcUser) -> (String, Request) {
        let request = self.authorization_request();
        let callback = self.op.authorize(&request.url, user).await.unwrap();
        assert_eq!(param(&callback, "state").as_deref(), Some(&*request.state));
        let code = param(&callback, "code")
            .unwrap_or_else(|| panic!("no code in the callback {callback}"));
        let (status, body) = self.redeem(&code, &request.verifier).await;
        assert_eq!(status, StatusCode::OK, "token endpoint: {body}");
        let id_token = body["id_token"].as_str().unwrap().to_owned();
        (id_token, request)
    }

    /// The ID token's claims if its signature verifies with the provider's
    /// JWKS (RS256 only, audience and issuer checked), else the reason.
    async fn verify(&self, id_token: &str) -> Result<Value, String> {
        let jwks: JwkSet = serde_json::from_value(self.op.jwks().await).unwrap();
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| e.to_string())?;
        let kid = header.kid.ok_or("no kid")?;
        let jwk = jwks
            .find(&kid)
            .ok_or(format!("kid {kid} not in the JWKS"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.client.client_id]);
        validation.set_issuer(&[self.op.issuer()]);
        jsonwebtoken::decode::<Value>(id_token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn a_normal_flow_signs_in_the_hinted_user_with_a_valid_id_token() {
    let Some(app) = App::new("a_normal_flow_signs_in_the_hinted_user_with_a_valid_id_token").await
    else {
        return;
    };
    let user = OidcUser::fresh().name("Ada Lovelace");
    let request = app.authorization_request();
    let callback = app.op.authorize(&request.url, &user).await.unwrap();

    // The callback: our redirect_uri, with code, state and the RFC 9207 iss.
    assert!(callback.as_str().starts_with(REDIRECT_URI), "{callback}");
    assert_eq!(param(&callback, "state").as_deref(), Some(&*request.state));
    assert_eq!(param(&callback, "iss").as_deref(), Some(app.op.issuer()));
    let code = param(&callback, "code").unwrap();

    let (status, body) = app.redeem(&code, &request.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id_token = body["id_token"].as_str().unwrap();
    let claims = app.verify(id_token).await.unwrap();
    assert_eq!(claims["sub"], user.sub.as_str());
    assert_eq!(claims["email"], user.email.as_deref().unwrap());
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Ada Lovelace");
    assert_eq!(claims["nonce"], request.nonce.as_str());
    assert_eq!(claims["aud"], app.client.client_id.as_str());
    assert_eq!(claims["iss"], app.op.issuer());
    let (header, _) = jwt_parts(id_token);
    assert_eq!(header["alg"], "RS256");

    // The access token reads the same user at userinfo.
    let userinfo: Value = app
        .http
        .get(app.endpoint("userinfo_endpoint"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(userinfo["sub"], user.sub.as_str());
    assert_eq!(userinfo["email"], user.email.as_deref().unwrap());
}

#[tokio::test]
async fn email_verified_is_sent_exactly_as_chosen() {
    let Some(app) = App::new("email_verified_is_sent_exactly_as_chosen").await else {
        return;
    };
    for (choice, expected) in [
        (EmailVerified::False, Some(Value::Bool(false))),
        (EmailVerified::StringTrue, Some(Value::from("true"))),
        (EmailVerified::StringFalse, Some(Value::from("false"))),
        (EmailVerified::Absent, None),
    ] {
        let user = OidcUser::fresh().email_verified(choice);
        let (id_token, _) = app.sign_in(&user).await;
        let claims = app.verify(&id_token).await.unwrap();
        assert_eq!(
            claims.get("email_verified"),
            expected.as_ref(),
            "{choice:?}"
        );
        assert_eq!(claims["email"], user.email.as_deref().unwrap());
    }
    // No email at all, and no name unless asked for.
    let (id_token, _) = app.sign_in(&OidcUser::fresh().without_email()).await;
    let (_, claims) = jwt_parts(&id_token);
    assert!(claims.get("email").is_none(), "{claims}");
    assert!(claims.get("name").is_none(), "{claims}");
}

#[tokio::test]
async fn successive_flows_each_sign_in_their_own_user() {
    let Some(app) = App::new("successive_flows_each_sign_in_their_own_user").await else {
        return;
    };
    for _ in 0..3 {
        let user = OidcUser::fresh();
        let (id_token, _) = app.sign_in(&user).await;
        assert_eq!(jwt_parts(&id_token).1["sub"], user.sub.as_str());
    }
}

#[tokio::test]
async fn client_secret_post_clients_redeem_with_the_secret_in_the_body() {
    let Some(app) = App::with_auth(
        "client_secret_post_clients_redeem_with_the_secret_in_the_body",
        ClientAuth::Post,
    )
    .await
    else {
        return;
    };
    let (id_token, _) = app.sign_in(&OidcUser::fresh()).await;
    app.verify(&id_token).await.unwrap();
}

#[tokio::test]
async fn access_denied_answers_the_redirect_uri_with_the_error() {
    let Some(app) = App::new("access_denied_answers_the_redirect_uri_with_the_error").await else {
        return;
    };
    let request = app.authorization_request();
    let user = OidcUser::fresh().tamper(Tamper::AccessDenied);
    let callback = app.op.authorize(&request.url, &user).await.unwrap();
    assert!(callback.as_str().starts_with(REDIRECT_URI), "{callback}");
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&callback, "state").as_deref(), Some(&*request.state));
    assert_eq!(param(&callback, "iss").as_deref(), Some(app.op.issuer()));
    assert_eq!(param(&callback, "code"), None);
}

#[tokio::test]
async fn the_provider_refuses_replayed_codes_wrong_verifiers_and_wrong_secrets() {
    let Some(app) =
        App::new("the_provider_refuses_replayed_codes_wrong_verifiers_and_wrong_secrets").await
    else {
        return;
    };
    // A replayed code.
    let request = app.authorization_request();
    let callback = app
        .op
        .authorize(&request.url, &OidcUser::fresh())
        .await
        .unwrap();
    let code = param(&callback, "code").unwrap();
    let (first, _) = app.redeem(&code, &request.verifier).await;
    assert_eq!(first, StatusCode::OK);
    let (again, body) = app.redeem(&code, &request.verifier).await;
    assert_eq!(again, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    // A code with the wrong PKCE verifier.
    let request = app.authorization_request();
    let callback = app
        .op
        .authorize(&request.url, &OidcUser::fresh())
        .await
        .unwrap();
    let code = param(&callback, "code").unwrap();
    let (status, body) = app.redeem(&code, &random()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");

    // A wrong client secret.
    let request = app.authorization_request();
    let callback = app
        .op
        .authorize(&request.url, &OidcUser::fresh())
        .await
        .unwrap();
    let code = param(&callback, "code").unwrap();
    let wrong = App {
        op: app.op.clone(),
        client: RegisteredClient {
            client_secret: "not-the-secret".into(),
            ..app.client.clone()
        },
        discovery: app.discovery.clone(),
        http: app.http.clone(),
    };
    let (status, body) = wrong.redeem(&code, &request.verifier).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn pkce_is_required_and_redirect_uris_must_be_registered() {
    let Some(app) = App::new("pkce_is_required_and_redirect_uris_must_be_registered").await else {
        return;
    };
    // No code_challenge: the provider answers the redirect_uri with an error.
    let request = app.authorization_request();
    let mut url = Url::parse(&request.url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let callback = app
        .op
        .authorize(url.as_str(), &OidcUser::fresh())
        .await
        .unwrap();
    assert_eq!(
        param(&callback, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(param(&callback, "code"), None);

    // An unregistered redirect_uri: an error page, never a redirect.
    let request = app.authorization_request();
    let elsewhere = request.url.replace("oauth%2Fcallback", "oauth%2Felsewhere");
    let err = app
        .op
        .authorize(&elsewhere, &OidcUser::fresh())
        .await
        .unwrap_err();
    assert_eq!(err.status, Some(StatusCode::BAD_REQUEST), "{err}");
    assert!(err.body.contains("redirect_uri"), "{err}");
}

// ---------------------------------------------------------------------------
// Tampered ID tokens: each must carry exactly the intended fault.

/// Signs in a fresh user with `tamper` and returns the ID token, its header
/// and payload, and the request.
async fn tampered(app: &App, tamper: Tamper) -> (String, Value, Value, Request) {
    let (id_token, request) = app.sign_in(&OidcUser::fresh().tamper(tamper)).await;
    let (header, payload) = jwt_parts(&id_token);
    (id_token, header, payload, request)
}

#[tokio::test]
async fn tampered_tokens_re_signed_with_the_real_key_verify_but_carry_the_fault() {
    let Some(app) =
        App::new("tampered_tokens_re_signed_with_the_real_key_verify_but_carry_the_fault").await
    else {
        return;
    };
    let (token, _, payload, request) = tampered(&app, Tamper::WrongNonce).await;
    app.verify(&token).await.unwrap();
    assert_ne!(payload["nonce"], request.nonce.as_str());
    assert!(payload["nonce"].is_string());

    let (token, _, payload, _) = tampered(&app, Tamper::NoNonce).await;
    app.verify(&token).await.unwrap();
    assert!(payload.get("nonce").is_none(), "{payload}");

    // The audience and issuer checks themselves are what fails.
    let (token, _, payload, request) = tampered(&app, Tamper::WrongAud).await;
    assert_ne!(payload["aud"], app.client.client_id.as_str());
    assert_eq!(payload["nonce"], request.nonce.as_str());
    assert!(app.verify(&token).await.unwrap_err().contains("Audience"));

    let (token, _, payload, _) = tampered(&app, Tamper::WrongIss).await;
    assert_ne!(payload["iss"], app.op.issuer());
    assert!(app.verify(&token).await.unwrap_err().contains("Issuer"));

    let (token, _, payload, _) = tampered(&app, Tamper::Expired).await;
    let now = chrono::Utc::now().timestamp();
    assert!(payload["exp"].as_i64().unwrap() < now - 3000, "{payload}");
    assert!(app.verify(&token).await.unwrap_err().contains("Expired"));
}

#[tokio::test]
async fn tampered_signatures_fail_verification_for_the_intended_reason() {
    let Some(app) = App::new("tampered_signatures_fail_verification_for_the_intended_reason").await
    else {
        return;
    };
    let jwks = app.op.jwks().await;
    let listed = |kid: &Value| {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == *kid)
    };

    // One bit of the signature flipped; header and payload intact.
    let (token, header, payload, request) = tampered(&app, Tamper::BadSignature).await;
    assert!(listed(&header["kid"]));
    assert_eq!(payload["nonce"], request.nonce.as_str());
    assert!(app
        .verify(&token)
        .await
        .unwrap_err()
        .contains("InvalidSignature"));

    // Another key under the real kid.
    let (token, header, _, _) = tampered(&app, Tamper::ForeignKey).await;
    assert!(listed(&header["kid"]));
    assert!(app
        .verify(&token)
        .await
        .unwrap_err()
        .contains("InvalidSignature"));

    // A kid the JWKS never lists.
    let (token, header, _, _) = tampered(&app, Tamper::UnknownKid).await;
    assert!(!listed(&header["kid"]), "{header}");
    assert!(app
        .verify(&token)
        .await
        .unwrap_err()
        .contains("not in the JWKS"));

    // A kid absent from the JWKS fetched before, present in a refetch, and
    // the token verifies with it.
    let (token, header, _, _) = tampered(&app, Tamper::UnknownKidPublished).await;
    assert!(!listed(&header["kid"]), "{header}");
    let claims = app.verify(&token).await.unwrap();
    assert_eq!(claims["aud"], app.client.client_id.as_str());

    // alg none: no signature at all.
    let (token, header, payload, request) = tampered(&app, Tamper::AlgNone).await;
    assert_eq!(header["alg"], "none");
    assert!(token.ends_with('.'), "{token}");
    assert_eq!(payload["nonce"], request.nonce.as_str());

    // HS256 keyed with the client secret: valid as such, so only an alg
    // check refuses it.
    let (token, header, _, _) = tampered(&app, Tamper::Hs256ClientSecret).await;
    assert_eq!(header["alg"], "HS256");
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[&app.client.client_id]);
    validation.set_issuer(&[app.op.issuer()]);
    jsonwebtoken::decode::<Value>(
        &token,
        &DecodingKey::from_secret(app.client.client_secret.as_bytes()),
        &validation,
    )
    .unwrap();
}

#[tokio::test]
async fn the_login_hint_also_takes_key_value_pairs_and_refuses_bad_ones() {
    let Some(app) =
        App::new("the_login_hint_also_takes_key_value_pairs_and_refuses_bad_ones").await
    else {
        return;
    };
    let request = app.authorization_request();
    let sub = format!("kv-{}", uuid::Uuid::new_v4().simple());
    let hint = format!("sub={sub};email={sub}@example.test;email_verified=\"true\";name=K V");
    let callback = app
        .op
        .authorize_with_hint(&request.url, &hint)
        .await
        .unwrap();
    let code = param(&callback, "code").unwrap();
    let (status, body) = app.redeem(&code, &request.verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, claims) = jwt_parts(body["id_token"].as_str().unwrap());
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(claims["email"], format!("{sub}@example.test").as_str());
    assert_eq!(claims["email_verified"], "true");
    assert_eq!(claims["name"], "K V");

    // A hint the provider cannot use stops the flow with a clear error
    // instead of signing someone in.
    for (bad, why) in [
        ("", "login_hint is required"),
        ("email=a@example.test", "sub is required"),
        ("sub=x;tamper=nonsense", "unknown tamper mode"),
        ("sub=x;email_verified=maybe", "email_verified=maybe"),
        ("{\"sub\": ", "not valid JSON"),
    ] {
        let request = app.authorization_request();
        let err = app
            .op
            .authorize_with_hint(&request.url, bad)
            .await
            .unwrap_err();
        assert_eq!(err.status, Some(StatusCode::BAD_REQUEST), "{bad}: {err}");
        assert!(err.body.contains(why), "{bad}: {err}");
    }
}
