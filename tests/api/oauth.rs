//! OAuth / OpenID Connect end to end, against a real OpenID Provider we
//! did not write (npm `oidc-provider`, `scripts/services/oidc.sh`), on
//! every backend: our server driven like a browser — its own cookie (the
//! flow's browser binding), redirects followed by hand — through sign-up,
//! sign-in, link, unlink, every refusal code, tampered ID tokens, the
//! second factor, and races on the single-use steps.
//!
//! Without `TEST_OIDC_URL` these tests skip, except under `CI=true`, where
//! they fail.

use std::sync::Arc;

use regstack::{ProviderConfig, ProviderKind};
use regstack_testkit::oidc::{EmailVerified, OidcProvider, OidcUser, Tamper};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::*;

const PROVIDER: &str = "op";

/// A server whose provider `op` is the test OpenID Provider, with a client
/// registered for the server's own callback URL.
struct OAuthApp {
    app: TestApp,
    op: OidcProvider,
    /// Follows no redirect: each hop is the test's to make.
    raw: reqwest::Client,
}

async fn spawn_oauth(tweak: impl FnOnce(&mut regstack::Settings)) -> Option<OAuthApp> {
    spawn_oauth_clocked(tweak, false).await
}

/// [`spawn_oauth`], on a clock the test moves when `fixed_clock`.
async fn spawn_oauth_clocked(
    tweak: impl FnOnce(&mut regstack::Settings),
    fixed_clock: bool,
) -> Option<OAuthApp> {
    let op = OidcProvider::from_env("oauth")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = op
        .register_client(&format!("{base}/api/auth/oauth/{PROVIDER}/callback"))
        .await;
    let (stores, backend) = fresh_backend().await;
    let issuer = op.issuer().to_owned();
    let app = spawn_app_listening(
        listener,
        stores,
        backend,
        move |s| {
            s.config.base_url = base;
            s.oauth.enabled = true;
            let mut p = ProviderConfig::new(
                PROVIDER,
                ProviderKind::Oidc,
                client.client_id,
                client.client_secret.into(),
            );
            p.issuer = Some(issuer);
            s.oauth.providers = vec![p];
            tweak(s);
        },
        fixed_clock,
    )
    .await;
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Some(OAuthApp { app, op, raw })
}

/// One browser: the cookie our server set to bind its flows.
#[derive(Default, Clone)]
struct Browser {
    binding: Option<String>,
}

impl Browser {
    fn remember(&mut self, headers: &reqwest::header::HeaderMap) {
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            if let Some(rest) = c.strip_prefix("__Host-regstack_oauth=") {
                let value = rest.split(';').next().unwrap();
                self.binding = Some(value.to_owned());
            }
        }
    }

    fn cookie(&self) -> Option<String> {
        self.binding
            .as_ref()
            .map(|b| format!("__Host-regstack_oauth={b}"))
    }
}

/// Where a callback sent the browser: the exchange id, or the error code.
#[derive(Debug, PartialEq)]
enum Landed {
    Complete(String),
    Error(String),
}

impl OAuthApp {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.api)
    }

    async fn get(&self, browser: &mut Browser, url: &str) -> reqwest::Response {
        let mut req = self.raw.get(url);
        if let Some(c) = browser.cookie() {
            req = req.header(COOKIE, c);
        }
        let res = req.send().await.unwrap();
        browser.remember(res.headers());
        res
    }

    /// `GET /oauth/op/start`: the provider's authorization URL.
    async fn start(&self, browser: &mut Browser, redirect_to: Option<&str>) -> String {
        let mut url = self.url(&format!("/oauth/{PROVIDER}/start"));
        if let Some(r) = redirect_to {
            url = format!(
                "{url}?redirect_to={}",
                url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
            );
        }
        let res = self.get(browser, &url).await;
        assert_eq!(res.status(), StatusCode::FOUND);
        location(&res)
    }

    /// The provider's part, up to its redirect to our callback.
    async fn at_provider(&self, authorization_url: &str, user: &OidcUser) -> String {
        self.op
            .authorize(authorization_url, user)
            .await
            .unwrap()
            .to_string()
    }

    /// Our callback, as the browser follows the provider's redirect.
    async fn callback(&self, browser: &mut Browser, callback_url: &str) -> Landed {
        let res = self.get(browser, callback_url).await;
        assert_eq!(res.status(), StatusCode::FOUND);
        let to = location(&res);
        if let Some(id) = to.strip_prefix("/account/oauth-complete?id=") {
            Landed::Complete(id.to_owned())
        } else if let Some(code) = to.strip_prefix("/account/login?error=") {
            Landed::Error(code.to_owned())
        } else {
            panic!("the callback sent the browser to {to}")
        }
    }

    /// `POST /oauth/exchange` from `browser`.
    async fn exchange(&self, browser: &Browser, id: &str) -> Reply {
        let mut req = self
            .raw
            .post(self.url("/oauth/exchange"))
            .json(&json!({ "id": id }));
        if let Some(c) = browser.cookie() {
            req = req.header(COOKIE, c);
        }
        reply(req.send().await.unwrap()).await
    }

    /// A whole sign-in flow from a fresh browser up to the callback.
    async fn flow(&self, user: &OidcUser) -> (Browser, Landed) {
        let mut browser = Browser::default();
        let auth = self.start(&mut browser, None).await;
        let back = self.at_provider(&auth, user).await;
        let landed = self.callback(&mut browser, &back).await;
        (browser, landed)
    }

    /// A whole sign-in, exchanged: the exchange's answer.
    async fn sign_in(&self, user: &OidcUser) -> Reply {
        let (browser, landed) = self.flow(user).await;
        let Landed::Complete(id) = landed else {
            panic!("sign-in refused: {landed:?}")
        };
        self.exchange(&browser, &id).await
    }

    /// `POST /oauth/op/link/start` for the bearer, then the provider and
    /// our callback, in `browser`.
    async fn link(&self, browser: &mut Browser, access: &str, user: &OidcUser) -> Landed {
        let mut req = self
            .raw
            .post(self.url(&format!("/oauth/{PROVIDER}/link/start")))
            .bearer_auth(access);
        if let Some(c) = browser.cookie() {
            req = req.header(COOKIE, c);
        }
        let res = req.send().await.unwrap();
        browser.remember(res.headers());
        let r = reply(res).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let auth = r.body["authorization_url"].as_str().unwrap().to_owned();
        let back = self.at_provider(&auth, user).await;
        self.callback(browser, &back).await
    }

    /// Accounts created so far (password sign-ups and OAuth ones alike
    /// fire `user_registered` once, when the row is written). Handlers run
    /// in tasks of their own, so the count is read once the bus has had a
    /// moment to deliver.
    async fn accounts_created(&self) -> usize {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.app
            .event_names()
            .iter()
            .filter(|n| **n == "user_registered")
            .count()
    }
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get(LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

async fn reply(res: reqwest::Response) -> Reply {
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    Reply {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn access_of(r: &Reply) -> String {
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["mfa_required"], false, "{:?}", r.body);
    r.body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn first_sign_in_creates_the_account_and_its_session_refreshes_like_a_password_ones() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let user = OidcUser::fresh().name("Ada Lovelace");
    let r = t.sign_in(&user).await;
    let access = access_of(&r);
    assert_eq!(r.body["was_new_account"], true);
    assert_eq!(r.body["token_type"], "bearer");
    assert_eq!(r.body["redirect_to"], "/account/me");
    assert!(r.body["mfa_pending_token"].is_null());
    assert_eq!(
        r.headers.get("cache-control").unwrap(),
        "no-store",
        "a token answer is never cached"
    );
    let me = t.app.me(&access).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], user.email.clone().unwrap());
    assert_eq!(me.body["is_verified"], true);
    assert_eq!(me.body["full_name"], "Ada Lovelace");
    // The refresh token was stored: it rotates now, and its successor too.
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r1 = t
        .app
        .post("/refresh", json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r1.status, 200, "{:?}", r1.body);
    let next = r1.body["refresh_token"].as_str().unwrap().to_owned();
    let r2 = t
        .app
        .post("/refresh", json!({ "refresh_token": next }))
        .await;
    assert_eq!(r2.status, 200, "{:?}", r2.body);
    let names = t.app.event_names();
    for e in [
        "oauth_signin_started",
        "user_registered",
        "oauth_signin_completed",
        "session_started",
    ] {
        assert!(names.contains(&e), "{e} not in {names:?}");
    }
}

#[tokio::test]
async fn a_returning_identity_signs_in_to_the_same_account() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let user = OidcUser::fresh();
    let first = access_of(&t.sign_in(&user).await);
    let r = t.sign_in(&user).await;
    let second = access_of(&r);
    assert_eq!(r.body["was_new_account"], false);
    let a = t.app.me(&first).await.body["id"].clone();
    let b = t.app.me(&second).await.body["id"].clone();
    assert_eq!(a, b);
    assert_eq!(t.accounts_created().await, 1);
    let r = t
        .app
        .call(Method::GET, "/oauth/providers", Some(&second), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["available"], json!([PROVIDER]));
    assert_eq!(r.body["linked"][0]["provider"], PROVIDER);
    assert!(r.body["linked"][0]["last_used_at"].is_string());
}

#[tokio::test]
async fn an_unverified_provider_address_is_not_claimed_and_the_owner_can_still_register() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let victim = "victim-oa12@example.com";
    let user =
        OidcUser::new(format!("s-{}", uuid_like()), victim).email_verified(EmailVerified::False);
    let access = access_of(&t.sign_in(&user).await);
    let me = t.app.me(&access).await;
    assert_eq!(me.body["is_verified"], false);
    assert_ne!(me.body["email"], victim, "{:?}", me.body);
    assert!(me.body["email"]
        .as_str()
        .unwrap()
        .ends_with("@oauth.invalid"));
    // The address's owner registers it as usual.
    t.app.create_user(victim, PW).await;
}

#[tokio::test]
async fn an_existing_address_is_email_in_use_unless_auto_link_and_both_verified() {
    for (auto, verified, linked) in [
        (false, EmailVerified::True, false),
        (true, EmailVerified::False, false),
        (true, EmailVerified::StringTrue, false),
        (true, EmailVerified::Absent, false),
        (true, EmailVerified::True, true),
    ] {
        let Some(t) = spawn_oauth(|s| s.config.oauth.auto_link_verified_emails = auto).await else {
            return;
        };
        let email = format!("owner-{}@example.com", uuid_like());
        t.app.create_user(&email, PW).await;
        let user =
            OidcUser::new(format!("s-{}", uuid_like()), email.clone()).email_verified(verified);
        let (browser, landed) = t.flow(&user).await;
        if linked {
            let Landed::Complete(id) = landed else {
                panic!("{landed:?}")
            };
            let access = access_of(&t.exchange(&browser, &id).await);
            assert_eq!(t.app.me(&access).await.body["email"], email);
            assert!(t.app.event_names().contains(&"oauth_account_linked"));
        } else {
            assert_eq!(
                landed,
                Landed::Error("email_in_use".into()),
                "auto={auto} {verified:?}"
            );
        }
        assert_eq!(t.accounts_created().await, 1);
    }
}

#[tokio::test]
async fn sign_up_through_a_provider_obeys_allow_registration() {
    let Some(t) =
        spawn_oauth(|s| s.config.registration_mode = regstack_core::RegistrationMode::Closed).await
    else {
        return;
    };
    let (_, landed) = t.flow(&OidcUser::fresh()).await;
    assert_eq!(landed, Landed::Error("registration_disabled".into()));
    assert_eq!(t.accounts_created().await, 0);
}

/// Invite-only registration: a first sign-in cannot bring an invitation,
/// so it creates no account; an account made with one still links an
/// identity and signs in through it.
#[tokio::test]
async fn sign_up_through_a_provider_is_refused_in_invite_mode_but_linking_works() {
    let Some(t) = spawn_oauth(|s| {
        s.config.registration_mode = regstack_core::RegistrationMode::Invite;
    })
    .await
    else {
        return;
    };
    let (_, landed) = t.flow(&OidcUser::fresh()).await;
    assert_eq!(landed, Landed::Error("registration_disabled".into()));
    assert_eq!(t.accounts_created().await, 0);

    let made = t
        .app
        .rs
        .engine()
        .create_invite(regstack_core::engine::InviteSpec::default(), None)
        .await
        .unwrap();
    use secrecy::ExposeSecret;
    let r = t
        .app
        .post(
            "/register",
            serde_json::json!({
                "email": "invited@example.com",
                "password": PW,
                "invite_code": made.code.expose_secret(),
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let token = t
        .app
        .mailed_token("invited@example.com", 1, "/verify")
        .await;
    assert_eq!(
        t.app
            .post("/verify", serde_json::json!({ "token": token }))
            .await
            .status,
        200
    );
    let access = t.app.access_token("invited@example.com", PW).await;
    let identity = OidcUser::fresh();
    let mut browser = Browser::default();
    let Landed::Complete(id) = t.link(&mut browser, &access, &identity).await else {
        panic!("linking works in invite mode")
    };
    assert_eq!(
        t.exchange(&browser, &id).await.body["was_new_account"],
        false
    );
    let again = access_of(&t.sign_in(&identity).await);
    assert_eq!(t.app.me(&again).await.body["email"], "invited@example.com");
}

#[tokio::test]
async fn link_then_unlink_and_every_link_conflict() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    t.app.create_user("linker@example.com", PW).await;
    let access = t.app.access_token("linker@example.com", PW).await;
    let identity = OidcUser::fresh();
    let mut browser = Browser::default();
    let landed = t.link(&mut browser, &access, &identity).await;
    let Landed::Complete(id) = landed else {
        panic!("{landed:?}")
    };
    let r = t.exchange(&browser, &id).await;
    assert_eq!(r.body["was_new_account"], false);
    let linked_session = access_of(&r);
    assert_eq!(
        t.app.me(&linked_session).await.body["email"],
        "linker@example.com"
    );
    assert!(t.app.event_names().contains(&"oauth_account_linked"));
    // The owner is told, in case the session that linked was not theirs.
    let notice = t
        .app
        .mailer
        .wait_for("linker@example.com", 2, std::time::Duration::from_secs(10))
        .await;
    let last = notice.last().unwrap();
    assert!(
        last.subject.contains("new way to sign in"),
        "{}",
        last.subject
    );
    assert!(last.text.contains("/account/me"), "{}", last.text);
    // The identity now signs in to this account.
    let again = access_of(&t.sign_in(&identity).await);
    assert_eq!(t.app.me(&again).await.body["email"], "linker@example.com");
    // Linking it again: already linked; another identity of the same
    // provider: already linked too.
    assert_eq!(
        t.link(&mut browser, &access, &identity).await,
        Landed::Error("already_linked".into())
    );
    assert_eq!(
        t.link(&mut browser, &access, &OidcUser::fresh()).await,
        Landed::Error("already_linked".into())
    );
    // Another account linking this identity: in use.
    t.app.create_user("other@example.com", PW).await;
    let other = t.app.access_token("other@example.com", PW).await;
    assert_eq!(
        t.link(&mut Browser::default(), &other, &identity).await,
        Landed::Error("identity_in_use".into())
    );
    // Unlink: not linked is 404; linked is gone once.
    let r = t
        .app
        .call(
            Method::DELETE,
            &format!("/oauth/{PROVIDER}/link"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.detail(), "That provider is not linked to your account.");
    let r = t
        .app
        .call(
            Method::DELETE,
            &format!("/oauth/{PROVIDER}/link"),
            Some(&access),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["message"], "Unlinked op.");
    assert!(t.app.event_names().contains(&"oauth_account_unlinked"));
    // The identity is free again: a sign-in with it is a new account.
    let r = t.sign_in(&identity).await;
    assert_eq!(r.body["was_new_account"], true);
}

#[tokio::test]
async fn the_last_way_to_sign_in_cannot_be_unlinked() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let access = access_of(&t.sign_in(&OidcUser::fresh()).await);
    let r = t
        .app
        .call(
            Method::DELETE,
            &format!("/oauth/{PROVIDER}/link"),
            Some(&access),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r
        .detail()
        .starts_with("Cannot unlink your only sign-in method."));
    let r = t
        .app
        .call(Method::GET, "/oauth/providers", Some(&access), None)
        .await;
    assert_eq!(r.body["linked"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn refusals_before_the_provider_is_asked() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let mut browser = Browser::default();
    let cb = |q: &str| t.url(&format!("/oauth/{PROVIDER}/callback{q}"));
    for (query, code) in [
        ("?error=access_denied", "oauth_failed"),
        ("?error=x%0d%0aFAKE%1b[31m&state=s", "oauth_failed"),
        ("", "missing_code_or_state"),
        ("?code=abc", "missing_code_or_state"),
        ("?code=abc&state=unknown-state-value", "bad_state"),
        // A crafted query still lands on the login page, never on JSON.
        ("?code=a&code=b&state=s&state=t", "bad_state"),
        ("?error=&code=abc&state=unknown", "bad_state"),
    ] {
        assert_eq!(
            t.callback(&mut browser, &cb(query)).await,
            Landed::Error(code.into()),
            "{query}"
        );
    }
    let res = t
        .get(&mut browser, &t.url("/oauth/nope/callback?code=a&state=b"))
        .await;
    assert_eq!(location(&res), "/account/login?error=unknown_provider");
    let r = reply(t.get(&mut browser, &t.url("/oauth/github/start")).await).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.detail(), "OAuth provider 'github' is not configured.");
    let r = reply(t.raw.get(t.url("/oauth/exchange")).send().await.unwrap()).await;
    assert_eq!(r.status, 405);
    let r = t.exchange(&browser, "unknown-state-id").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.detail(), "OAuth state not found or already consumed.");
    let r = t
        .app
        .call(Method::GET, "/oauth/providers", None, None)
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn the_provider_declining_lands_on_the_login_page_with_oauth_failed() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let (_, landed) = t
        .flow(&OidcUser::fresh().tamper(Tamper::AccessDenied))
        .await;
    assert_eq!(landed, Landed::Error("oauth_failed".into()));
}

#[tokio::test]
async fn a_replayed_callback_and_a_flow_finished_in_another_browser_find_nothing() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    // Replay: the state was spent by the first callback.
    let mut browser = Browser::default();
    let auth = t.start(&mut browser, None).await;
    let back = t.at_provider(&auth, &OidcUser::fresh()).await;
    let Landed::Complete(_) = t.callback(&mut browser, &back).await else {
        panic!()
    };
    assert_eq!(
        t.callback(&mut browser, &back).await,
        Landed::Error("bad_state".into())
    );
    // The attacker starts, the victim finishes at the provider, and the
    // victim's browser (no binding, or its own) brings the callback.
    let mut attacker = Browser::default();
    let auth = t.start(&mut attacker, None).await;
    let back = t.at_provider(&auth, &OidcUser::fresh()).await;
    let mut victim = Browser::default();
    assert_eq!(
        t.callback(&mut victim, &back).await,
        Landed::Error("bad_state".into())
    );
    // A flow completed in its own browser cannot be exchanged from another.
    let (owner, landed) = t.flow(&OidcUser::fresh()).await;
    let Landed::Complete(id) = landed else {
        panic!("{landed:?}")
    };
    let mut stranger = Browser::default();
    t.start(&mut stranger, None).await; // a binding of its own
    assert_eq!(t.exchange(&stranger, &id).await.status, 404);
    assert_eq!(t.exchange(&Browser::default(), &id).await.status, 404);
    // … and that did not burn it for its owner, who exchanges it once.
    assert_eq!(t.exchange(&owner, &id).await.status, 200);
    assert_eq!(t.exchange(&owner, &id).await.status, 404);
}

#[tokio::test]
async fn every_tampered_id_token_is_refused_with_id_token_failed() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    // A first flow caches the provider's keys.
    access_of(&t.sign_in(&OidcUser::fresh()).await);
    for tamper in [
        Tamper::BadSignature,
        Tamper::WrongNonce,
        Tamper::NoNonce,
        Tamper::WrongAud,
        Tamper::WrongIss,
        Tamper::Expired,
        Tamper::ForeignKey,
        Tamper::UnknownKid,
        Tamper::AlgNone,
        Tamper::Hs256ClientSecret,
    ] {
        let (_, landed) = t.flow(&OidcUser::fresh().tamper(tamper)).await;
        assert_eq!(
            landed,
            Landed::Error("id_token_failed".into()),
            "{tamper:?}"
        );
    }
    assert_eq!(
        t.accounts_created().await,
        1,
        "no refused flow created an account"
    );
}

#[tokio::test]
async fn a_new_signing_key_is_fetched_once_it_is_published() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    access_of(&t.sign_in(&OidcUser::fresh()).await);
    let r = t
        .sign_in(&OidcUser::fresh().tamper(Tamper::UnknownKidPublished))
        .await;
    access_of(&r);
}

#[tokio::test]
async fn twenty_parallel_exchanges_of_one_id_give_one_session() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let (browser, landed) = t.flow(&OidcUser::fresh()).await;
    let Landed::Complete(id) = landed else {
        panic!("{landed:?}")
    };
    let t = Arc::new(t);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (t, b, id) = (t.clone(), browser.clone(), id.clone());
        tasks.push(tokio::spawn(
            async move { t.exchange(&b, &id).await.status },
        ));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 404),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn two_simultaneous_first_sign_ins_of_one_identity_make_one_account() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let user = OidcUser::fresh();
    // Both flows reach our callback before either is finished.
    let mut a = Browser::default();
    let mut b = Browser::default();
    let auth_a = t.start(&mut a, None).await;
    let auth_b = t.start(&mut b, None).await;
    let back_a = t.at_provider(&auth_a, &user).await;
    let back_b = t.at_provider(&auth_b, &user).await;
    let t = Arc::new(t);
    let (ta, tb) = (t.clone(), t.clone());
    let (a2, b2) = (a.clone(), b.clone());
    let ja = tokio::spawn(async move { ta.callback(&mut a, &back_a).await });
    let jb = tokio::spawn(async move { tb.callback(&mut b, &back_b).await });
    let (la, lb) = (ja.await.unwrap(), jb.await.unwrap());
    let (Landed::Complete(ia), Landed::Complete(ib)) = (&la, &lb) else {
        panic!("{la:?} {lb:?}")
    };
    // Both sign in, to one account, which exactly one of them created.
    let (ra, rb) = (t.exchange(&a2, ia).await, t.exchange(&b2, ib).await);
    let (aa, ab) = (access_of(&ra), access_of(&rb));
    assert_eq!(
        t.app.me(&aa).await.body["id"],
        t.app.me(&ab).await.body["id"]
    );
    let created = [&ra, &rb]
        .iter()
        .filter(|r| r.body["was_new_account"] == true)
        .count();
    assert_eq!(created, 1, "{:?} {:?}", ra.body, rb.body);
    assert_eq!(t.accounts_created().await, 1);
}

#[tokio::test]
async fn redirect_to_must_stay_on_our_origin() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let mut browser = Browser::default();
    for bad in [
        "//evil.test",
        "///evil.test",
        "////evil.test",
        "/\\evil.test",
        "\\\\evil.test",
        "/\t/evil.test",
        "/\r\n/evil.test",
        "/%0d%0a/evil.test",
        "/%5cevil.test",
        "https:evil.test",
        "https://evil.test/",
        "http://127.0.0.1@evil.test/",
        "https://app.test/",
        "javascript:alert(1)",
        "data:text/html,x",
    ] {
        let url = format!(
            "{}?redirect_to={}",
            t.url(&format!("/oauth/{PROVIDER}/start")),
            url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
        );
        let r = reply(t.get(&mut browser, &url).await).await;
        assert_eq!(r.status, 400, "{bad:?}");
        assert_eq!(r.detail(), "redirect_to must be same-origin.");
    }
    // A same-origin target survives the round trip.
    let user = OidcUser::fresh();
    let auth = t.start(&mut browser, Some("/account/settings?tab=1")).await;
    let back = t.at_provider(&auth, &user).await;
    let Landed::Complete(id) = t.callback(&mut browser, &back).await else {
        panic!()
    };
    let r = t.exchange(&browser, &id).await;
    assert_eq!(r.body["redirect_to"], "/account/settings?tab=1");
}

/// Enrols TOTP for a password account through the API; returns the
/// secret.
async fn enrol_totp(t: &OAuthApp, access: &str) -> Vec<u8> {
    let r = t
        .app
        .post_auth("/totp/setup", access, json!({ "current_password": PW }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let secret = regstack_testkit::totp::base32_decode(r.body["secret"].as_str().unwrap());
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let code = regstack_testkit::totp::code_at(&secret, chrono::Utc::now());
    let r = t
        .app
        .post_auth(
            "/totp/confirm",
            access,
            json!({ "pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    secret
}

/// A password account with TOTP and a linked identity.
async fn enrolled_and_linked(t: &OAuthApp, email: &str) -> (OidcUser, Vec<u8>) {
    t.app.create_user(email, PW).await;
    let access = t.app.access_token(email, PW).await;
    let identity = OidcUser::fresh();
    let mut browser = Browser::default();
    let Landed::Complete(_) = t.link(&mut browser, &access, &identity).await else {
        panic!("link refused")
    };
    let secret = enrol_totp(t, &access).await;
    (identity, secret)
}

#[tokio::test]
async fn an_account_with_a_second_factor_is_asked_for_it_after_the_provider() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let (identity, secret) = enrolled_and_linked(&t, "mfa-oauth@example.com").await;
    let r = t.sign_in(&identity).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["mfa_required"], true, "{:?}", r.body);
    assert_eq!(r.body["access_token"], "");
    assert!(r.body.get("refresh_token").is_none(), "{:?}", r.body);
    let pending = r.body["mfa_pending_token"].as_str().unwrap().to_owned();
    // Enrolment spent the current step; the next one is inside the
    // server's window and later than any it accepted.
    let step = regstack_testkit::totp::step_of(chrono::Utc::now()) + 1;
    let code = regstack_testkit::totp::code_for_step(&secret, step);
    let r = t
        .app
        .post(
            "/login/mfa-confirm",
            json!({ "mfa_pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let access = r.body["access_token"].as_str().unwrap();
    assert_eq!(
        t.app.me(access).await.body["email"],
        "mfa-oauth@example.com"
    );
}

#[tokio::test]
async fn the_operator_may_waive_the_second_factor_for_oauth_sign_ins() {
    let Some(t) = spawn_oauth(|s| s.config.oauth.enforce_mfa_on_oauth_signin = false).await else {
        return;
    };
    let (identity, _) = enrolled_and_linked(&t, "waived@example.com").await;
    access_of(&t.sign_in(&identity).await);
}

#[tokio::test]
async fn a_flow_past_its_time_is_state_expired_and_an_exchange_past_its_window_expired() {
    let Some(t) = spawn_oauth_clocked(|_| {}, true).await else {
        return;
    };
    let clock = t.app.clock.clone().unwrap();
    // The round trip through the provider: five minutes.
    let mut browser = Browser::default();
    let auth = t.start(&mut browser, None).await;
    let back = t.at_provider(&auth, &OidcUser::fresh()).await;
    clock.advance(chrono::TimeDelta::seconds(300));
    assert_eq!(
        t.callback(&mut browser, &back).await,
        Landed::Error("state_expired".into())
    );
    // The exchange: thirty seconds after the callback.
    let (browser, landed) = t.flow(&OidcUser::fresh()).await;
    let Landed::Complete(id) = landed else {
        panic!("{landed:?}")
    };
    clock.advance(chrono::TimeDelta::seconds(30));
    let r = t.exchange(&browser, &id).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.detail(), "OAuth state has expired.");
    assert_eq!(
        t.exchange(&browser, &id).await.status,
        404,
        "and it is gone"
    );
    // One second less is in time.
    let (browser, landed) = t.flow(&OidcUser::fresh()).await;
    let Landed::Complete(id) = landed else {
        panic!("{landed:?}")
    };
    clock.advance(chrono::TimeDelta::seconds(29));
    access_of(&t.exchange(&browser, &id).await);
}

#[tokio::test]
async fn the_database_never_holds_a_session_token_or_the_raw_state() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let mut browser = Browser::default();
    let auth = t.start(&mut browser, None).await;
    let state = url::Url::parse(&auth)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let back = t.at_provider(&auth, &OidcUser::fresh()).await;
    let Landed::Complete(id) = t.callback(&mut browser, &back).await else {
        panic!()
    };
    let bytes = t.app.database_bytes().await;
    let text = String::from_utf8_lossy(&bytes);
    for secret in [&state, &id, browser.binding.as_ref().unwrap()] {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} is in the database"
        );
    }
    let r = t.exchange(&browser, &id).await;
    let access = access_of(&r);
    let refresh = r.body["refresh_token"].as_str().unwrap();
    let bytes = t.app.database_bytes().await;
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(&access) && !text.contains(refresh));
}

#[tokio::test]
async fn a_code_the_provider_refuses_is_token_exchange_failed_and_spends_the_flow() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let mut browser = Browser::default();
    let auth = t.start(&mut browser, None).await;
    let back = t.at_provider(&auth, &OidcUser::fresh()).await;
    let mut forged = url::Url::parse(&back).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "code" {
                "not-a-code".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(&pairs);
    assert_eq!(
        t.callback(&mut browser, forged.as_str()).await,
        Landed::Error("token_exchange_failed".into())
    );
    // The state was spent by that attempt: the real code cannot follow.
    assert_eq!(
        t.callback(&mut browser, &back).await,
        Landed::Error("bad_state".into())
    );
    assert_eq!(t.accounts_created().await, 0);
}

#[tokio::test]
async fn a_disabled_account_is_user_inactive_and_its_pending_exchange_gives_nothing() {
    let Some(t) = spawn_oauth(|_| {}).await else {
        return;
    };
    let user = OidcUser::fresh();
    let access = access_of(&t.sign_in(&user).await);
    let id = t.app.me(&access).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = regstack_ports::UserId::parse(&id).unwrap();
    // A flow completes, then the account is disabled before the exchange.
    let (browser, landed) = t.flow(&user).await;
    let Landed::Complete(exchange_id) = landed else {
        panic!("{landed:?}")
    };
    let off = regstack_ports::AdminChange {
        is_active: Some(false),
        ..Default::default()
    };
    t.app
        .stores
        .users
        .admin_update(&id, &off, chrono::Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.exchange(&browser, &exchange_id).await.status, 404);
    let (_, landed) = t.flow(&user).await;
    assert_eq!(landed, Landed::Error("user_inactive".into()));
}
