//! SMS as a second factor over HTTP, on every backend, with regstack's
//! wire shapes (its `/phone` routes and answers, as in `docs/api.md`): proving
//! a number, signing in with a texted code, removing the number — and the
//! daily caps that keep the texting routes from being a toll-fraud pump.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

/// A number libphonenumber holds valid (regstack's example, +15555550100, is a
/// fictional 555 number, which a real parser refuses).
const PHONE: &str = "+442079460958";

/// The code in the newest text to `PHONE`, waiting for `count` texts.
async fn texted_code(app: &TestApp, count: usize) -> String {
    let texts = app
        .sms
        .wait_for(PHONE, count, Duration::from_secs(10))
        .await;
    assert!(
        texts.len() >= count,
        "expected {count} texts, got {}",
        texts.len()
    );
    let body = &texts[count - 1].body;
    let code: String = body
        .split("code: ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(
        body,
        &format!("RegStack verification code: {code}. Expires in 5 minutes."),
        "regstack's message"
    );
    assert_eq!(code.len(), 6);
    code
}

/// `POST /phone/start` for `PHONE` as the holder of `access`.
async fn start(app: &TestApp, access: &str) -> Reply {
    app.post_auth(
        "/phone/start",
        access,
        json!({ "phone_number": PHONE, "current_password": PW }),
    )
    .await
}

async fn sms_app() -> TestApp {
    spawn_app_with(|s| s.config.mfa.enable_sms_2fa = true, false).await
}

#[tokio::test]
async fn a_phone_is_proven_by_a_texted_code_then_signs_in_and_can_be_removed() {
    let app = sms_app().await;
    app.create_user("phone@example.com", PW).await;
    let access = app.access_token("phone@example.com", PW).await;
    let start = |number: &'static str, token: Option<String>| {
        let app = &app;
        async move {
            let body = json!({ "phone_number": number, "current_password": PW });
            app.call(
                reqwest::Method::POST,
                "/phone/start",
                token.as_deref(),
                Some(body),
            )
            .await
        }
    };
    let r = start(PHONE, None).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Authentication required.")
    );
    let r = start("5555550100", Some(access.clone())).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (
            400,
            "Phone number must be in E.164 format (e.g. +14155552671)."
        )
    );
    let r = start(PHONE, Some(access.clone())).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "code_sent");
    assert_eq!(r.body["expires_in"], 300);
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let code = texted_code(&app, 1).await;

    let r = app
        .post(
            "/phone/confirm",
            json!({ "pending_token": pending, "code": "000000" }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "Wrong code; 4 attempts remaining.")
    );
    let r = app
        .post(
            "/phone/confirm",
            json!({ "pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["phone_number"], PHONE);
    assert_eq!(r.body["is_mfa_enabled"], true);

    // Sign-in: the password alone texts a code and starts no session.
    let r = app.login("phone@example.com", PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "mfa_required");
    assert_eq!(r.body["delivery"], "sms");
    assert!(r.body.get("access_token").is_none());
    let pending = r.body["mfa_pending_token"].as_str().unwrap().to_owned();
    let code = texted_code(&app, 2).await;
    let confirm = |code: String| {
        let (app, pending) = (&app, pending.clone());
        async move {
            app.post(
                "/login/mfa-confirm",
                json!({ "mfa_pending_token": pending, "code": code }),
            )
            .await
        }
    };
    let r = confirm(code.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    assert!(r.body["refresh_token"].is_string());
    // The code and its challenge are spent.
    assert_eq!(confirm(code).await.status, 400);

    // Removal needs the password; then the password alone signs in.
    let r = app
        .call(
            reqwest::Method::DELETE,
            "/phone",
            Some(&access),
            Some(json!({ "current_password": "wrong-password-9" })),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .call(
            reqwest::Method::DELETE,
            "/phone",
            Some(&access),
            Some(json!({ "current_password": PW })),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), &r.body["message"]),
        (200, &json!("SMS 2FA disabled."))
    );
    let me = app.me(&access).await;
    assert_eq!(
        (
            me.body["phone_number"].is_null(),
            &me.body["is_mfa_enabled"]
        ),
        (true, &json!(false))
    );
    assert!(app.login("phone@example.com", PW).await.body["access_token"].is_string());
}

#[tokio::test]
async fn the_daily_caps_stop_texts_before_anything_is_sent() {
    let app = spawn_app_with(
        |s| {
            s.config.mfa.enable_sms_2fa = true;
            s.config.mfa.sms_max_per_number_per_day = 2;
        },
        false,
    )
    .await;
    app.create_user("toll@example.com", PW).await;
    let access = app.access_token("toll@example.com", PW).await;
    for _ in 0..2 {
        let r = start(&app, &access).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
    }
    let r = start(&app, &access).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (429, "Too many text messages today. Try again tomorrow.")
    );
    app.sms.wait_for(PHONE, 2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.sms.sent_to(PHONE).len(), 2, "nothing sent over the cap");
}

#[tokio::test]
async fn with_sms_off_the_phone_routes_do_not_exist() {
    let app = spawn_app().await;
    app.create_user("nosms@example.com", PW).await;
    let access = app.access_token("nosms@example.com", PW).await;
    let r = start(&app, &access).await;
    assert_eq!((r.status.as_u16(), r.detail()), (404, "Not Found"));
    assert!(app.sms.sent().is_empty());
}

#[tokio::test]
async fn a_number_chosen_before_a_password_change_is_not_committed_after_it() {
    let app = sms_app().await;
    app.create_user("reset-phone@example.com", PW).await;
    let access = app.access_token("reset-phone@example.com", PW).await;
    let r = start(&app, &access).await;
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let code = texted_code(&app, 1).await;
    // The owner changes the password (say, to lock out whoever started
    // this); the texted code must no longer set the number.
    let r = app
        .post_auth(
            "/change-password",
            &access,
            json!({ "current_password": PW, "new_password": "locked-out-thief-7" }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .post(
            "/phone/confirm",
            json!({ "pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "Setup session is invalid or has expired. Start again.")
    );
    let r = app
        .login("reset-phone@example.com", "locked-out-thief-7")
        .await;
    assert!(
        r.body["access_token"].is_string(),
        "no factor was added: {:?}",
        r.body
    );
}

#[tokio::test]
async fn strangers_texting_a_number_cannot_stop_its_owner_signing_in_nor_outlast_a_purge() {
    let app = spawn_app_with(
        |s| {
            s.config.mfa.enable_sms_2fa = true;
            s.config.mfa.sms_max_per_number_per_day = 2;
        },
        true,
    )
    .await;
    // The owner proves the number (one enrolment text).
    app.create_user("owner-phone@example.com", PW).await;
    let access = app.access_token("owner-phone@example.com", PW).await;
    let r = start(&app, &access).await;
    let pending = r.body["pending_token"].as_str().unwrap().to_owned();
    let code = texted_code(&app, 1).await;
    let r = app
        .post(
            "/phone/confirm",
            json!({ "pending_token": pending, "code": code }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A stranger uses up the number's enrolment texts.
    app.create_user("stranger@example.com", PW).await;
    let theirs = app.access_token("stranger@example.com", PW).await;
    let start = || start(&app, &theirs);
    assert_eq!(start().await.status, 202);
    assert_eq!(start().await.status, 429);
    // The owner still gets the sign-in text.
    let r = app.login("owner-phone@example.com", PW).await;
    assert_eq!(r.body["status"], "mfa_required", "{:?}", r.body);
    assert_eq!(r.body["delivery"], "sms");
    // An hour and a half and a purge later (the mail quota's hour is
    // long gone), the day's count still stands.
    app.clock
        .as_ref()
        .unwrap()
        .advance(chrono::TimeDelta::minutes(90));
    app.rs.engine().purge_expired().await.unwrap();
    assert_eq!(start().await.status, 429);
}
