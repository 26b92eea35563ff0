//! The account pages (`{ui_prefix}`, here `/account`) driven as a browser
//! without JavaScript would: GET a page, read its form, POST it with the
//! cookies the server set, follow 303s by hand. Each flow runs the same
//! engine as the JSON API, so what is checked here is the page layer:
//! sessions in cookies, CSRF, wording, templates.

use std::collections::HashMap;
use std::time::Duration;

use regstack_testkit::totp::{base32_decode, code_for_step, step_of};
use reqwest::header::{HeaderMap, HeaderValue, COOKIE, LOCATION, SET_COOKIE};

use crate::support::{spawn_app_with, token_in, TestApp, PW};

/// A cookie-keeping client that does not follow redirects.
struct Browser<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    jar: HashMap<String, String>,
}

#[derive(Debug)]
struct Page {
    status: u16,
    location: String,
    body: String,
    set_cookies: Vec<String>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            jar: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> Option<HeaderValue> {
        if self.jar.is_empty() {
            return None;
        }
        let v = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        Some(HeaderValue::from_str(&v).unwrap())
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match self.cookie_header() {
            Some(c) => req.header(COOKIE, c),
            None => req,
        };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let set_cookies: Vec<String> = res
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for c in &set_cookies {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        let body = res.text().await.unwrap();
        Page {
            status,
            location,
            body,
            set_cookies,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.app.base));
        self.send(req).await
    }

    /// Posts `fields` with this browser's CSRF token.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self
            .jar
            .get("__Host-regstack_csrf")
            .cloned()
            .unwrap_or_default();
        self.post_with(path, fields, &csrf, HeaderMap::new()).await
    }

    async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: &str,
        headers: HeaderMap,
    ) -> Page {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf", csrf));
        let req = self
            .http
            .post(format!("{}{path}", self.app.base))
            .headers(headers)
            .form(&form);
        self.send(req).await
    }
}

/// The value of the `name` input in `body`.
fn input_value(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} input in:\n{body}"))
        + marker.len();
    body[start..].split('"').next().unwrap().to_owned()
}

async fn pages_app() -> TestApp {
    spawn_app_with(|s| s.config.enable_ui_router = true, false).await
}

/// The path and query of the newest mailed link to `to` containing `path`.
async fn mailed_path(app: &TestApp, to: &str, count: usize, path: &str) -> String {
    let token = app.mailed_token(to, count, path).await;
    format!("{path}?token={token}")
}

/// Registers through the pages and follows the mailed link to verify.
async fn register_and_verify(b: &mut Browser<'_>, email: &str) {
    let p = b.get("/account/register").await;
    assert_eq!(p.status, 200);
    let p = b
        .post(
            "/account/register",
            &[
                ("email", email),
                ("password", PW),
                ("full_name", "Page User"),
            ],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("Check your inbox"), "{}", p.body);
    let mails = b
        .app
        .mailer
        .wait_for(email, 1, Duration::from_secs(10))
        .await;
    assert!(
        mails[0]
            .text
            .contains("http://app.test/account/verify?token="),
        "the mailed link opens the verify page: {}",
        mails[0].text
    );
    let link = mailed_path(b.app, email, 1, "/account/verify").await;
    let p = b.get(&link).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let token = input_value(&p.body, "token");
    let p = b.post("/account/verify", &[("token", &token)]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(p.location, "/account/login?notice=verified");
}

async fn sign_in(b: &mut Browser<'_>, email: &str, password: &str) -> Page {
    b.get("/account/login").await;
    b.post(
        "/account/login",
        &[("email", email), ("password", password)],
    )
    .await
}

#[tokio::test]
async fn register_verify_sign_in_and_see_the_account_page() {
    let app = pages_app().await;
    let mut b = Browser::new(&app);
    register_and_verify(&mut b, "page@example.com").await;
    let p = b.get("/account/login?notice=verified").await;
    assert!(p.body.contains("Your address is confirmed"), "{}", p.body);
    // Before signing in, the account page sends the browser to sign-in.
    let p = b.get("/account/me").await;
    assert_eq!((p.status, p.location.as_str()), (303, "/account/login"));

    let p = sign_in(&mut b, "page@example.com", PW).await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/account/me"),
        "{}",
        p.body
    );
    // The session is in HttpOnly, Secure, SameSite=Strict cookies scoped to
    // the pages; no token is in a body.
    for name in ["__Secure-regstack_page=", "__Secure-regstack_page_access="] {
        let c = p.set_cookies.iter().find(|c| c.starts_with(name)).unwrap();
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/account"] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
    }
    let p = b.get("/account/me").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("page@example.com"), "{}", p.body);

    // With only the refresh cookie (the access token expired), the page
    // refreshes the session and sets fresh cookies.
    b.jar.remove("__Secure-regstack_page_access");
    let p = b.get("/account/me").await;
    assert_eq!(p.status, 200);
    assert!(p
        .set_cookies
        .iter()
        .any(|c| c.starts_with("__Secure-regstack_page_access=")));

    let p = b.post("/account/logout", &[]).await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/account/login?notice=signed-out")
    );
    let p = b.get("/account/me").await;
    assert_eq!(p.status, 303, "signed out: {}", p.body);
}

#[tokio::test]
async fn a_wrong_password_says_what_to_do_and_ties_nothing_to_the_address() {
    let app = pages_app().await;
    app.create_user("known@example.com", PW).await;
    let mut b = Browser::new(&app);
    let known = sign_in(&mut b, "known@example.com", "wrong-password-1").await;
    let unknown = sign_in(&mut b, "nobody@example.com", "wrong-password-1").await;
    assert_eq!(known.status, 401);
    assert_eq!(unknown.status, 401);
    let message = |body: &str| {
        let start = body.find("role=\"alert\"").unwrap();
        body[start..].split("</p>").next().unwrap().to_owned()
    };
    assert!(message(&known.body).contains("The email or password is not right"));
    // Attempts left differ only by what the address has been through; the
    // unknown address's answer counts the same way.
    assert_eq!(
        message(&known.body).replace(char::is_numeric, ""),
        message(&unknown.body).replace(char::is_numeric, "")
    );
}

#[tokio::test]
async fn register_and_forgot_answer_the_same_for_a_taken_and_a_new_address() {
    let app = pages_app().await;
    app.create_user("taken@example.com", PW).await;
    let mut b = Browser::new(&app);
    b.get("/account/register").await;
    let csrf = b.jar["__Host-regstack_csrf"].clone();
    let strip = |body: &str, email: &str| body.replace(&csrf, "").replace(email, "EMAIL");
    let taken = b
        .post(
            "/account/register",
            &[("email", "taken@example.com"), ("password", PW)],
        )
        .await;
    let fresh = b
        .post(
            "/account/register",
            &[("email", "fresh@example.com"), ("password", PW)],
        )
        .await;
    assert_eq!(taken.status, fresh.status);
    assert_eq!(
        strip(&taken.body, "taken@example.com"),
        strip(&fresh.body, "fresh@example.com")
    );

    let known = b
        .post("/account/forgot", &[("email", "taken@example.com")])
        .await;
    let unknown = b
        .post("/account/forgot", &[("email", "ghost@example.com")])
        .await;
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(known.body, unknown.body);
    assert!(known.body.contains("If an account uses this address"));
}

#[tokio::test]
async fn a_cross_site_or_tokenless_form_post_is_refused_and_changes_nothing() {
    let app = pages_app().await;
    app.create_user("victim@example.com", PW).await;
    let mut b = Browser::new(&app);
    b.get("/account/login").await;
    let good = b.jar["__Host-regstack_csrf"].clone();
    let fields = [("email", "victim@example.com"), ("password", PW)];
    let mut attempts: Vec<(&str, String, HeaderMap)> = Vec::new();
    attempts.push(("no token", String::new(), HeaderMap::new()));
    attempts.push(("wrong token", "0".repeat(64), HeaderMap::new()));
    let mut foreign = HeaderMap::new();
    foreign.insert("origin", HeaderValue::from_static("https://evil.example"));
    attempts.push(("foreign origin", good.clone(), foreign));
    let mut cross = HeaderMap::new();
    cross.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    attempts.push(("cross-site fetch", good.clone(), cross));
    for (what, csrf, headers) in attempts {
        let p = b.post_with("/account/login", &fields, &csrf, headers).await;
        assert_eq!(p.status, 403, "{what}: {}", p.body);
        assert!(p.body.contains("reload the page"), "{what}: {}", p.body);
        assert!(
            !p.set_cookies
                .iter()
                .any(|c| c.starts_with("__Secure-regstack_page")),
            "{what} started a session"
        );
    }
    // A browser without the cookie at all (a forged form on another site
    // that cannot read ours) is refused too.
    let mut stranger = Browser::new(&app);
    let p = stranger
        .post_with("/account/login", &fields, &good, HeaderMap::new())
        .await;
    assert_eq!(p.status, 403);
    // The same post from our own page works.
    let p = b.post("/account/login", &fields).await;
    assert_eq!(p.status, 303, "{}", p.body);
}

#[tokio::test]
async fn a_template_from_the_override_directory_replaces_the_built_in_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("login.html"),
        "{% extends \"base.html\" %}{% block content %}<h1>Acme sign-in</h1>\
         <form method=\"post\" action=\"{{ ui_prefix }}/login\"><input type=\"hidden\" name=\"csrf\" value=\"{{ csrf }}\"></form>{% endblock %}",
    )
    .unwrap();
    let template_dir = dir.path().display().to_string();
    let app = spawn_app_with(
        |s| {
            s.config.enable_ui_router = true;
            s.http.pages.template_dir = Some(template_dir);
            s.http.pages.brand_color = Some("#aa0055".into());
            s.http.pages.brand_tagline = Some("Accounts for Acme".into());
        },
        false,
    )
    .await;
    let mut b = Browser::new(&app);
    let p = b.get("/account/login").await;
    assert_eq!(p.status, 200);
    assert!(p.body.contains("Acme sign-in"), "{}", p.body);
    assert!(
        p.body.contains("Accounts for Acme"),
        "the base is still ours"
    );
    // Other pages keep the built-in template.
    let p = b.get("/account/forgot").await;
    assert!(p.body.contains("Reset your password"));
    let css = b.get("/regstack-static/regstack.css").await;
    assert_eq!(css.status, 200);
    assert!(css.body.contains("--rs-brand: #aa0055"));
    assert!(css.body.contains("prefers-color-scheme: dark"));
}

#[tokio::test]
async fn a_broken_override_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("me.html"),
        "{% block content %}{% endfor %}",
    )
    .unwrap();
    let mut s = crate::support::test_settings();
    s.config.enable_ui_router = true;
    s.http.pages.template_dir = Some(dir.path().display().to_string());
    let (stores, _backend) = crate::support::fresh_backend().await;
    let err = regstack::RegStack::builder(s)
        .stores(stores)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ui.template_dir"), "{err}");
}

#[tokio::test]
async fn totp_enrolment_shows_a_qr_and_backup_codes_once_then_sign_in_asks_for_a_code() {
    let app = pages_app().await;
    app.create_user("totp@example.com", PW).await;
    let mut b = Browser::new(&app);
    assert_eq!(sign_in(&mut b, "totp@example.com", PW).await.status, 303);
    let p = b.get("/account/totp").await;
    assert!(p.body.contains("Set up the authenticator app"));
    let p = b
        .post("/account/totp/setup", &[("current_password", PW)])
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("<svg role=\"img\""), "an inline QR code");
    assert!(!p.body.contains("<?xml"));
    let secret = p.body.split("class=\"rs-secret\">").nth(1).unwrap();
    let secret = base32_decode(secret.split('<').next().unwrap());
    let pending = input_value(&p.body, "pending_token");
    let step = step_of(chrono::Utc::now());
    let code = code_for_step(&secret, step);
    let p = b
        .post(
            "/account/totp/confirm",
            &[("pending_token", &pending), ("code", &code)],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("only time they are shown"));
    assert!(p.body.matches("<li><code>").count() >= 8, "{}", p.body);

    b.post("/account/logout", &[]).await;
    let p = sign_in(&mut b, "totp@example.com", PW).await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/account/mfa-confirm"),
        "{}",
        p.body
    );
    let p = b.get("/account/mfa-confirm").await;
    assert!(p.body.contains("Enter your code"));
    let p = b
        .post(
            "/account/mfa-confirm",
            &[("method", "totp"), ("code", "000000")],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(
        p.body.contains("aria-describedby=\"code-error\""),
        "{}",
        p.body
    );
    // The step after the one enrolment used (a used step is refused).
    let code = code_for_step(&secret, step + 1);
    let p = b
        .post(
            "/account/mfa-confirm",
            &[("method", "totp"), ("code", &code)],
        )
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/account/me"),
        "{}",
        p.body
    );
    assert_eq!(b.get("/account/me").await.status, 200);
}

#[tokio::test]
async fn sessions_page_ends_another_device_and_everywhere() {
    let app = pages_app().await;
    app.create_user("multi@example.com", PW).await;
    let mut laptop = Browser::new(&app);
    let mut phone = Browser::new(&app);
    assert_eq!(
        sign_in(&mut laptop, "multi@example.com", PW).await.status,
        303
    );
    assert_eq!(
        sign_in(&mut phone, "multi@example.com", PW).await.status,
        303
    );
    let p = laptop.get("/account/sessions").await;
    assert_eq!(
        p.body.matches("name=\"session_id\"").count(),
        2,
        "{}",
        p.body
    );
    assert!(p.body.contains("This device"));
    // The phone's session is the row without the "This device" badge.
    let other = p
        .body
        .split("<li class=\"rs-session\">")
        .skip(1)
        .find(|row| !row.contains("This device"))
        .map(|row| input_value(row, "session_id"))
        .unwrap();
    let p = laptop
        .post("/account/sessions/revoke", &[("session_id", &other)])
        .await;
    assert_eq!(
        p.location, "/account/sessions?notice=session-ended",
        "{}",
        p.body
    );
    assert_eq!(
        phone.get("/account/me").await.status,
        303,
        "the phone is signed out"
    );
    assert_eq!(
        laptop.get("/account/me").await.status,
        200,
        "the laptop is not"
    );
    let p = laptop.post("/account/sessions/revoke-all", &[]).await;
    assert_eq!(
        p.location, "/account/login?notice=signed-out-everywhere",
        "{}",
        p.body
    );
    assert_eq!(laptop.get("/account/me").await.status, 303);
    assert_eq!(phone.get("/account/me").await.status, 303);
}

#[tokio::test]
async fn forgot_reset_through_the_mailed_link_then_sign_in_with_the_new_password() {
    let app = pages_app().await;
    app.create_user("reset@example.com", PW).await;
    let mut b = Browser::new(&app);
    b.get("/account/forgot").await;
    b.post("/account/forgot", &[("email", "reset@example.com")])
        .await;
    let mails = app
        .mailer
        .wait_for("reset@example.com", 2, Duration::from_secs(10))
        .await;
    let token = token_in(&mails[1].text, "/account/reset-password").expect("mailed reset link");
    let p = b
        .get(&format!("/account/reset-password?token={token}"))
        .await;
    assert_eq!(p.status, 200);
    let p = b
        .post(
            "/account/reset",
            &[("token", &token), ("new_password", "short")],
        )
        .await;
    assert_eq!(p.status, 400);
    assert!(
        p.body
            .contains("aria-describedby=\"new_password-hint new_password-error\""),
        "{}",
        p.body
    );
    let p = b
        .post(
            "/account/reset",
            &[("token", &token), ("new_password", "a-new-long-passphrase")],
        )
        .await;
    assert_eq!(
        p.location, "/account/login?notice=password-reset",
        "{}",
        p.body
    );
    assert_eq!(sign_in(&mut b, "reset@example.com", PW).await.status, 401);
    assert_eq!(
        sign_in(&mut b, "reset@example.com", "a-new-long-passphrase")
            .await
            .status,
        303
    );
    // Delete the account from the account page.
    let p = b
        .post(
            "/account/delete",
            &[("delete_password", "a-new-long-passphrase")],
        )
        .await;
    assert_eq!(p.location, "/account/login?notice=deleted", "{}", p.body);
    assert_eq!(
        sign_in(&mut b, "reset@example.com", "a-new-long-passphrase")
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn every_page_labels_its_inputs_and_the_pages_are_off_by_default() {
    let app = pages_app().await;
    let mut b = Browser::new(&app);
    for path in [
        "/account/login",
        "/account/register",
        "/account/forgot",
        "/account/reset?token=x",
        "/account/verify?token=x",
        "/account/confirm-email-change?token=x",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        for id in p.body.split("<input id=\"").skip(1) {
            let id = id.split('"').next().unwrap();
            assert!(
                p.body.contains(&format!("<label for=\"{id}\">")),
                "{path}: input {id} has no label"
            );
        }
        assert!(p.body.contains("<html lang=\"en\">"));
        assert!(p.body.contains("name=\"viewport\""));
    }
    let off = spawn_app_with(|_| {}, false).await;
    let r = reqwest::get(format!("{}/account/login", off.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "no pages unless enable_ui_router");
}

#[tokio::test]
async fn an_email_change_from_the_account_page_is_confirmed_through_the_mailed_link() {
    let app = pages_app().await;
    app.create_user("old@example.com", PW).await;
    app.create_user("other@example.com", PW).await;
    let mut b = Browser::new(&app);
    assert_eq!(sign_in(&mut b, "old@example.com", PW).await.status, 303);
    b.get("/account/me").await;
    // A taken address gets the same notice as a free one.
    let taken = b
        .post(
            "/account/email",
            &[("new_email", "other@example.com"), ("email_password", PW)],
        )
        .await;
    assert_eq!(taken.location, "/account/me?notice=email-change-sent");
    let wrong = b
        .post(
            "/account/email",
            &[
                ("new_email", "new@example.com"),
                ("email_password", "not-it-at-all"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(
        wrong
            .body
            .contains("aria-describedby=\"email_password-error\""),
        "{}",
        wrong.body
    );
    let p = b
        .post(
            "/account/email",
            &[("new_email", "new@example.com"), ("email_password", PW)],
        )
        .await;
    assert_eq!(p.location, "/account/me?notice=email-change-sent");
    let link = mailed_path(&app, "new@example.com", 1, "/account/confirm-email-change").await;
    let p = b.get(&link).await;
    assert_eq!(p.status, 200);
    let token = input_value(&p.body, "token");
    let p = b
        .post("/account/confirm-email-change", &[("token", &token)])
        .await;
    assert_eq!(
        p.location, "/account/login?notice=email-changed",
        "{}",
        p.body
    );
    assert_eq!(sign_in(&mut b, "new@example.com", PW).await.status, 303);
    let p = b.get("/account/me").await;
    assert!(p.body.contains("new@example.com"));
}

#[tokio::test]
async fn the_mailed_stop_link_opens_a_page_that_undoes_the_change_and_signs_out_everywhere() {
    let app = spawn_app_with(
        |s| {
            s.config.enable_ui_router = true;
            s.config.notices.email_changed = true;
        },
        false,
    )
    .await;
    app.create_user("owner@example.com", PW).await;
    let mut intruder = Browser::new(&app);
    assert_eq!(
        sign_in(&mut intruder, "owner@example.com", PW).await.status,
        303
    );
    intruder.get("/account/me").await;
    let p = intruder
        .post(
            "/account/email",
            &[("new_email", "moved@example.com"), ("email_password", PW)],
        )
        .await;
    assert_eq!(p.location, "/account/me?notice=email-change-sent");
    let confirm = mailed_path(
        &app,
        "moved@example.com",
        1,
        "/account/confirm-email-change",
    )
    .await;
    let p = intruder.get(&confirm).await;
    let token = input_value(&p.body, "token");
    let p = intruder
        .post("/account/confirm-email-change", &[("token", &token)])
        .await;
    assert_eq!(p.location, "/account/login?notice=email-changed");
    assert_eq!(
        sign_in(&mut intruder, "moved@example.com", PW).await.status,
        303
    );

    // The owner opens the link the old address got, in another browser.
    let stop = mailed_path(&app, "owner@example.com", 2, "/account/revert-email-change").await;
    let mut owner = Browser::new(&app);
    let p = owner.get(&stop).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("Stop the change"), "{}", p.body);
    let token = input_value(&p.body, "token");
    let p = owner
        .post("/account/revert-email-change", &[("token", &token)])
        .await;
    assert_eq!(
        p.location, "/account/login?notice=email-change-reverted",
        "{}",
        p.body
    );
    // The intruder's page session is over, and the old password opens
    // neither address.
    let p = intruder.get("/account/me").await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert!(p.location.starts_with("/account/login"), "{}", p.location);
    for address in ["owner@example.com", "moved@example.com"] {
        assert_eq!(sign_in(&mut owner, address, PW).await.status, 401);
    }
    // Spent: the same link a second time says so, and changes nothing.
    let p = owner
        .post("/account/revert-email-change", &[("token", &token)])
        .await;
    assert_eq!(p.status, 400);
    assert!(p.body.contains("already used"), "{}", p.body);
}

#[tokio::test]
async fn page_posts_share_the_route_limits_of_their_api_routes() {
    let app = spawn_app_with(
        |s| {
            s.config.enable_ui_router = true;
            let mut l = regstack::RouteLimits::none();
            l.forgot_password = "2/minute".into();
            s.http.route_limits = l;
        },
        false,
    )
    .await;
    let mut b = Browser::new(&app);
    b.get("/account/forgot").await;
    // One JSON request and one page post use the shared budget of two...
    let r = app
        .post(
            "/forgot-password",
            serde_json::json!({ "email": "a@example.com" }),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let p = b
        .post("/account/forgot", &[("email", "b@example.com")])
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    // ...so the next page post from this IP is refused.
    let p = b
        .post("/account/forgot", &[("email", "c@example.com")])
        .await;
    assert_eq!(p.status, 429, "{}", p.body);
}

#[tokio::test]
async fn a_forced_password_change_is_asked_for_before_the_account_page() {
    let app = pages_app().await;
    app.create_user("forced@example.com", PW).await;
    let email = regstack_ports::Email::parse("forced@example.com").unwrap();
    let id = app
        .stores
        .users
        .find_by_email(&email)
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(app
        .rs
        .engine()
        .require_password_change(&id, true)
        .await
        .unwrap());
    let mut b = Browser::new(&app);
    let p = sign_in(&mut b, "forced@example.com", PW).await;
    assert_eq!(p.location, "/account/change-password", "{}", p.body);
    // No session yet: the account page still sends to sign-in.
    assert_eq!(b.get("/account/me").await.status, 303);
    let p = b.get("/account/change-password").await;
    assert!(p.body.contains("must be changed"), "{}", p.body);
    let p = b
        .post("/account/change-password", &[("new_password", PW)])
        .await;
    assert_eq!(p.status, 400, "the same password is refused: {}", p.body);
    assert!(p.body.contains("new_password-error"));
    let p = b
        .post(
            "/account/change-password",
            &[("new_password", "a-changed-passphrase")],
        )
        .await;
    assert_eq!(p.location, "/account/me", "{}", p.body);
    assert_eq!(b.get("/account/me").await.status, 200);
    // The step cookie is gone: the page cannot be replayed.
    let p = b.get("/account/change-password").await;
    assert_eq!(p.status, 303);
}

/// A GET sent byte for byte as written (no client normalising `..` or
/// re-encoding): status and body.
async fn raw_get(app: &TestApp, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn extra_static_files_are_served_and_nothing_outside_their_directory_is() {
    let root = tempfile::tempdir().unwrap();
    let public = root.path().join("public");
    std::fs::create_dir_all(public.join("sub")).unwrap();
    std::fs::write(public.join("logo.txt"), "public logo").unwrap();
    std::fs::write(public.join("sub/app.css"), "body { color: red }").unwrap();
    std::fs::write(public.join(".env"), "TOP-SECRET hidden").unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET outside").unwrap();
    // Links: one to a file inside (fine), two that lead outside.
    std::os::unix::fs::symlink(public.join("logo.txt"), public.join("alias.txt")).unwrap();
    std::os::unix::fs::symlink(&secret, public.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(root.path(), public.join("up")).unwrap();
    let dir = public.display().to_string();
    let app = spawn_app_with(
        |s| {
            s.config.enable_ui_router = true;
            s.http.pages.extra_static_dirs = vec![dir];
        },
        false,
    )
    .await;

    let res = app
        .http
        .get(format!("{}/regstack-static/logo.txt", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(res.text().await.unwrap(), "public logo");
    let (status, body) = raw_get(&app, "/regstack-static/sub/app.css").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("text/css") && body.contains("color: red"),
        "{body}"
    );
    let (status, body) = raw_get(&app, "/regstack-static/alias.txt").await;
    assert_eq!(status, 200, "a link to a file inside is served: {body}");
    assert!(body.ends_with("public logo"), "{body}");
    // Our own stylesheet is still ours.
    let (status, _) = raw_get(&app, "/regstack-static/regstack.css").await;
    assert_eq!(status, 200);

    let abs = secret.display().to_string();
    let abs_encoded = abs.replace('/', "%2F");
    let attempts = [
        "/regstack-static/../secret.txt".to_owned(),
        "/regstack-static/sub/../../secret.txt".to_owned(),
        "/regstack-static/%2e%2e/secret.txt".to_owned(),
        "/regstack-static/%2E%2E%2Fsecret.txt".to_owned(),
        "/regstack-static/sub%2f..%2f..%2fsecret.txt".to_owned(),
        "/regstack-static/sub/%2e%2e%2f%2e%2e%2fsecret.txt".to_owned(),
        "/regstack-static/..%5csecret.txt".to_owned(),
        "/regstack-static/%252e%252e/secret.txt".to_owned(),
        format!("/regstack-static/{abs}"),
        format!("/regstack-static{abs}"),
        format!("/regstack-static/{abs_encoded}"),
        "/regstack-static/.env".to_owned(),
        "/regstack-static/escape.txt".to_owned(),
        "/regstack-static/up/secret.txt".to_owned(),
        "/regstack-static/logo.txt%00.png".to_owned(),
    ];
    for target in &attempts {
        let (status, body) = raw_get(&app, target).await;
        assert!(
            status == 404 || status == 400,
            "{target} answered {status}:\n{body}"
        );
        assert!(!body.contains("TOP-SECRET"), "{target} leaked:\n{body}");
    }
}

/// Sets up the authenticator app from `/totp`: the secret, the step the
/// confirmation used and the backup codes shown.
async fn enrol_totp(b: &mut Browser<'_>) -> (Vec<u8>, u64, Vec<String>) {
    b.get("/account/totp").await;
    let p = b
        .post("/account/totp/setup", &[("current_password", PW)])
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let secret = p.body.split("class=\"rs-secret\">").nth(1).unwrap();
    let secret = base32_decode(secret.split('<').next().unwrap());
    let pending = input_value(&p.body, "pending_token");
    let step = step_of(chrono::Utc::now());
    let code = code_for_step(&secret, step);
    let p = b
        .post(
            "/account/totp/confirm",
            &[("pending_token", &pending), ("code", &code)],
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    (secret, step, shown_codes(&p.body))
}

/// The backup codes a page lists.
fn shown_codes(body: &str) -> Vec<String> {
    let codes: Vec<String> = body
        .split("<li><code>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap().to_owned())
        .collect();
    assert!(codes.len() >= 8, "{body}");
    codes
}

#[tokio::test]
async fn new_backup_codes_are_shown_once_and_the_old_ones_stop_working() {
    let app = pages_app().await;
    app.create_user("codes@example.com", PW).await;
    let mut b = Browser::new(&app);
    assert_eq!(sign_in(&mut b, "codes@example.com", PW).await.status, 303);
    let (_secret, _step, old) = enrol_totp(&mut b).await;

    // A wrong password regenerates nothing.
    let p = b
        .post(
            "/account/totp/backup-codes",
            &[("current_password", "not-my-password")],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("current_password-error"), "{}", p.body);
    assert!(!p.body.contains("<li><code>"));

    let p = b
        .post("/account/totp/backup-codes", &[("current_password", PW)])
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.body.contains("only time they are shown"), "{}", p.body);
    let new = shown_codes(&p.body);
    assert!(new.iter().all(|c| !old.contains(c)), "{old:?} / {new:?}");
    // Shown once: the page does not list them again.
    let p = b.get("/account/totp").await;
    assert!(!p.body.contains(&new[0]), "{}", p.body);

    b.post("/account/logout", &[]).await;
    let p = sign_in(&mut b, "codes@example.com", PW).await;
    assert_eq!(p.location, "/account/mfa-confirm", "{}", p.body);
    let p = b
        .post(
            "/account/mfa-confirm",
            &[("method", "backup_code"), ("code", &old[0])],
        )
        .await;
    assert_eq!(p.status, 400, "an old code is refused: {}", p.body);
    let p = b
        .post(
            "/account/mfa-confirm",
            &[("method", "backup_code"), ("code", &new[0])],
        )
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/account/me"),
        "{}",
        p.body
    );
    assert_eq!(b.get("/account/me").await.status, 200);
}

#[tokio::test]
async fn removing_the_authenticator_app_needs_the_password_and_ends_the_second_step() {
    let app = pages_app().await;
    app.create_user("untotp@example.com", PW).await;
    let mut b = Browser::new(&app);
    assert_eq!(sign_in(&mut b, "untotp@example.com", PW).await.status, 303);
    enrol_totp(&mut b).await;
    let p = b.get("/account/totp").await;
    assert!(
        p.body.contains("Remove the authenticator app"),
        "{}",
        p.body
    );

    let p = b
        .post(
            "/account/totp/disable",
            &[("current_password", "not-my-password")],
        )
        .await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("current_password-error"), "{}", p.body);
    // Still on: a new sign-in asks for the second step.
    let mut other = Browser::new(&app);
    let p = sign_in(&mut other, "untotp@example.com", PW).await;
    assert_eq!(p.location, "/account/mfa-confirm");

    let p = b
        .post("/account/totp/disable", &[("current_password", PW)])
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/account/totp?notice=totp-disabled"),
        "{}",
        p.body
    );
    let p = b.get("/account/totp?notice=totp-disabled").await;
    assert_eq!(p.status, 200);
    assert!(
        p.body.contains("The authenticator app was removed"),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("Set up the authenticator app"),
        "{}",
        p.body
    );
    let mut again = Browser::new(&app);
    let p = sign_in(&mut again, "untotp@example.com", PW).await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/account/me"),
        "no second step any more: {}",
        p.body
    );
}

/// The name stored for `named@example.com`.
async fn stored_name(app: &TestApp) -> Option<String> {
    let email = regstack_ports::Email::parse("named@example.com").unwrap();
    app.stores
        .users
        .find_by_email(&email)
        .await
        .unwrap()
        .unwrap()
        .full_name
}

#[tokio::test]
async fn the_name_saved_on_the_account_page_is_kept_and_shown_escaped() {
    let app = pages_app().await;
    app.create_user("named@example.com", PW).await;
    let mut b = Browser::new(&app);
    assert_eq!(sign_in(&mut b, "named@example.com", PW).await.status, 303);
    b.get("/account/me").await;
    let p = b
        .post("/account/profile", &[("full_name", "  Ada <Lovelace>  ")])
        .await;
    assert_eq!(
        (p.status, p.location.as_str()),
        (303, "/account/me?notice=profile-saved"),
        "{}",
        p.body
    );
    let p = b.get("/account/me?notice=profile-saved").await;
    assert!(p.body.contains("Your name was saved."), "{}", p.body);
    assert!(
        p.body.contains("value=\"Ada &lt;Lovelace&gt;\""),
        "{}",
        p.body
    );
    assert_eq!(stored_name(&app).await.as_deref(), Some("Ada <Lovelace>"));

    // Too long: refused at the field, the saved name kept.
    let long = "x".repeat(201);
    let p = b.post("/account/profile", &[("full_name", &long)]).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("full_name-error"), "{}", p.body);
    assert_eq!(stored_name(&app).await.as_deref(), Some("Ada <Lovelace>"));

    // Empty clears it.
    let p = b.post("/account/profile", &[("full_name", "")]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(stored_name(&app).await, None);
}

#[tokio::test]
async fn the_pages_provider_start_and_link_count_against_the_oauth_start_limit() {
    let app = spawn_app_with(
        |s| {
            s.config.enable_ui_router = true;
            let mut l = regstack::RouteLimits::none();
            l.oauth_start = "2/minute".into();
            l.login = "1/minute".into();
            s.http.route_limits = l;
            // Google's endpoints are fixed: a start needs no network.
            s.oauth.enabled = true;
            s.oauth.providers = vec![regstack::ProviderConfig::new(
                "google",
                regstack::ProviderKind::Google,
                "client-id".to_owned(),
                "client-secret".to_owned().into(),
            )];
        },
        false,
    )
    .await;
    let mut b = Browser::new(&app);
    // Showing a form is not counted (the sign-in form's limit is one).
    for _ in 0..3 {
        assert_eq!(b.get("/account/login").await.status, 200);
    }
    // The page's sign-in link and the API's start share one budget.
    let r = b.get("/api/auth/oauth/google/start").await;
    assert_eq!(r.status, 302, "{r:?}");
    let p = b.get("/account/oauth/google/start").await;
    assert_eq!(p.status, 303, "{}", p.body);
    let p = b.get("/account/oauth/google/start").await;
    assert_eq!(p.status, 429, "{}", p.body);
    assert!(p.body.contains("Too many requests"), "{}", p.body);
    let r = b.get("/api/auth/oauth/google/start").await;
    assert_eq!(r.status, 429, "{r:?}");

    // The link form on /methods shares the API's link start's budget.
    let p = b
        .post("/account/methods/link", &[("provider", "google")])
        .await;
    assert_ne!(p.status, 429, "{}", p.body);
    let r = app
        .call(
            reqwest::Method::POST,
            "/oauth/google/link/start",
            None,
            None,
        )
        .await;
    assert_ne!(r.status, 429, "{:?}", r.body);
    let p = b
        .post("/account/methods/link", &[("provider", "google")])
        .await;
    assert_eq!(p.status, 429, "{}", p.body);
}

#[tokio::test]
async fn linking_a_provider_from_the_methods_page_goes_to_the_provider_and_back_to_methods() {
    use regstack_testkit::oidc::{OidcProvider, OidcUser};
    let Some(op) = OidcProvider::from_env("pages_link") else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = op
        .register_client(&format!("{base}/api/auth/oauth/op/callback"))
        .await;
    let (stores, backend) = crate::support::fresh_backend().await;
    let issuer = op.issuer().to_owned();
    let app = crate::support::spawn_app_listening(
        listener,
        stores,
        backend,
        move |s| {
            s.config.base_url = base;
            s.config.enable_ui_router = true;
            s.oauth.enabled = true;
            let mut p = regstack::ProviderConfig::new(
                "op",
                regstack::ProviderKind::Oidc,
                client.client_id,
                client.client_secret.into(),
            );
            p.issuer = Some(issuer);
            s.oauth.providers = vec![p];
        },
        false,
    )
    .await;
    app.create_user("linker@example.com", PW).await;
    let mut b = Browser::new(&app);
    assert_eq!(sign_in(&mut b, "linker@example.com", PW).await.status, 303);
    let p = b.get("/account/methods").await;
    assert!(p.body.contains("value=\"op\""), "{}", p.body);

    let p = b.post("/account/methods/link", &[("provider", "op")]).await;
    assert_eq!(p.status, 303, "{}", p.body);
    let authorize = op.discovery().await["authorization_endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        p.location.starts_with(&format!("{authorize}?")),
        "{} is not {authorize}",
        p.location
    );
    assert!(p.location.contains("code_challenge="), "{}", p.location);
    let binding = p
        .set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-regstack_oauth="))
        .unwrap_or_else(|| panic!("no binding cookie: {:?}", p.set_cookies));
    assert!(binding.contains("HttpOnly") && binding.contains("Secure"));

    // At the provider, then back through our callback.
    let user = OidcUser::fresh();
    let back = op.authorize(&p.location, &user).await.unwrap();
    let path = format!("{}?{}", back.path(), back.query().unwrap_or(""));
    let p = b.get(&path).await;
    assert!(
        p.location.starts_with("/account/oauth-complete?id="),
        "{p:?}"
    );
    let p = b.get(&p.location.clone()).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("methods?notice=linked") && !p.body.contains("&#x2f;me\""),
        "the completion page goes back to the methods page: {}",
        p.body
    );
    let p = b.get("/account/methods?notice=linked").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        p.body.contains("The provider was linked to your account."),
        "{}",
        p.body
    );
    assert!(p.body.contains("Unlink Op"), "{}", p.body);
}
