//! Every route of the account lifecycle, with regstack's wire shapes.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn register_verify_login_me_logout_round_trip() {
    let app = spawn_app().await;
    let r = app.register("Alice@Example.COM", PW).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["status"], "pending_verification");
    assert_eq!(r.body["email"], "alice@example.com");
    assert!(r.body["expires_at"].as_str().unwrap().ends_with("+00:00"));

    // No user until the address is proven: login is the generic 401.
    let r = app.login("alice@example.com", PW).await;
    assert_eq!(r.status, 401);

    let token = app.mailed_token("alice@example.com", 1, "/verify").await;
    assert_eq!(token.len(), 43);
    let mail = &app.mailer.sent_to("alice@example.com")[0];
    assert!(mail
        .text
        .contains(&format!("http://app.test/verify?token={token}")));
    let r = app.post("/verify", json!({ "token": token })).await;
    assert_eq!(r.status, 200);
    let keys: Vec<&str> = r
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "id",
        "email",
        "is_active",
        "is_verified",
        "is_superuser",
        "full_name",
        "phone_number",
        "is_mfa_enabled",
        "created_at",
        "updated_at",
        "last_login",
        "tokens_invalidated_after",
    ] {
        assert!(keys.contains(&k), "UserPublic lacks {k}");
    }
    assert_eq!(r.body["is_verified"], true);
    assert_eq!(r.body["full_name"], "Test User");
    assert_eq!(r.body["id"].as_str().unwrap().len(), 32);

    let r = app.post("/verify", json!({ "token": token })).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.detail(),
        "Verification link is invalid or has expired. Request a new one."
    );

    let r = app.login("ALICE@example.com", PW).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["token_type"], "bearer");
    assert_eq!(r.body["expires_in"], 7200);
    assert_eq!(r.headers["cache-control"], "no-store");
    let access = r.body["access_token"].as_str().unwrap().to_owned();

    let r = app.me(&access).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["email"], "alice@example.com");
    assert!(r.body["last_login"].is_string());

    let r = app.call(Method::POST, "/logout", Some(&access), None).await;
    assert_eq!(
        (r.status.as_u16(), r.body["message"].as_str()),
        (200, Some("Logged out."))
    );
    let r = app.me(&access).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Token has been revoked.")
    );

    for name in [
        "verification_requested",
        "user_verified",
        "user_registered",
        "user_logged_in",
        "user_logged_out",
    ] {
        assert!(
            app.event_names().contains(&name),
            "no {name} event in {:?}",
            app.event_names()
        );
    }
}

/// Pre-account hijacking, tried as a new user would meet it: the owner
/// registers, someone else registers the same address with a password of
/// their own, and the owner clicks the newest link in the inbox. The
/// account must have the owner's password, never the other one; the second
/// registration gets the very answer a first one gets, costs no password
/// hash, and only re-sends the link.
#[tokio::test]
async fn a_second_registration_cannot_choose_the_password_of_a_pending_account() {
    let app = spawn_app().await;
    let first = app.register("bob@example.com", PW).await;
    assert_eq!(first.status, 201);
    app.mailed_token("bob@example.com", 1, "/verify").await;
    let hashes = app.hasher.hashes();
    let second = app
        .post(
            "/register",
            json!({ "email": "bob@example.com", "password": "the-attackers-password", "full_name": "Mallory" }),
        )
        .await;
    assert_eq!(second.status, 201, "{:?}", second.body);
    assert_eq!(second.body["status"], first.body["status"]);
    assert_eq!(second.body["email"], first.body["email"]);
    assert_eq!(
        app.hasher.hashes(),
        hashes,
        "a repeat registration hashes nothing"
    );
    let newest = app.mailed_token("bob@example.com", 2, "/verify").await;
    let verified = app.post("/verify", json!({ "token": newest })).await;
    assert_eq!(verified.status, 200, "{:?}", verified.body);
    assert_eq!(
        verified.body["full_name"], "Test User",
        "the owner's name, not Mallory's"
    );
    assert_eq!(
        app.login("bob@example.com", "the-attackers-password")
            .await
            .status,
        401
    );
    assert_eq!(app.login("bob@example.com", PW).await.status, 200);
}

#[tokio::test]
async fn a_registered_email_is_409_in_any_spelling() {
    let app = spawn_app().await;
    app.create_user("carol@example.com", PW).await;
    let r = app.register("  Carol@EXAMPLE.com ", PW).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (409, "An account with that email already exists.")
    );
}

#[tokio::test]
async fn resend_verification_is_uniform_and_mails_only_pending_addresses() {
    let app = spawn_app().await;
    app.register("dave@example.com", PW).await;
    let first = app.mailed_token("dave@example.com", 1, "/verify").await;
    let pending = app
        .post(
            "/resend-verification",
            json!({ "email": "dave@example.com" }),
        )
        .await;
    let unknown = app
        .post(
            "/resend-verification",
            json!({ "email": "nobody@example.com" }),
        )
        .await;
    assert_eq!(pending.status, 202);
    assert_eq!(
        (pending.status, &pending.body),
        (unknown.status, &unknown.body)
    );
    assert_eq!(
        pending.body["message"],
        "If a pending registration exists, a new email has been sent."
    );
    let second = app.mailed_token("dave@example.com", 2, "/verify").await;
    assert_eq!(
        app.post("/verify", json!({ "token": first })).await.status,
        400
    );
    assert_eq!(
        app.post("/verify", json!({ "token": second })).await.status,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.mailer.sent_to("nobody@example.com").is_empty());
}

#[tokio::test]
async fn without_required_verification_register_returns_the_user() {
    let app = spawn_app_with(|c| c.config.require_verification = false, false).await;
    let r = app.register("erin@example.com", PW).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["email"], "erin@example.com");
    assert_eq!(r.body["is_verified"], true);
    assert_eq!(app.login("erin@example.com", PW).await.status, 200);
}

#[tokio::test]
async fn closed_registration_is_403_and_creates_nothing() {
    let app = spawn_app_with(
        |c| c.config.registration_mode = regstack_core::RegistrationMode::Closed,
        false,
    )
    .await;
    let r = app.register("frank@example.com", PW).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (403, "Registration is disabled.")
    );
    assert_eq!(app.hasher.hashes(), 0);
}

#[tokio::test]
async fn patch_me_sets_and_clears_the_name_and_refuses_other_fields() {
    let app = spawn_app().await;
    app.create_user("gina@example.com", PW).await;
    let t = app.access_token("gina@example.com", PW).await;
    let r = app
        .call(
            Method::PATCH,
            "/me",
            Some(&t),
            Some(json!({ "full_name": "Gina Renamed" })),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["full_name"].as_str()),
        (200, Some("Gina Renamed"))
    );
    let r = app
        .call(Method::PATCH, "/me", Some(&t), Some(json!({})))
        .await;
    assert_eq!(r.body["full_name"], "Gina Renamed");
    let r = app
        .call(
            Method::PATCH,
            "/me",
            Some(&t),
            Some(json!({ "full_name": null })),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), &r.body["full_name"]),
        (200, &json!(null))
    );
    for body in [
        json!({ "email": "x@example.com" }),
        json!({ "is_superuser": true }),
        json!({ "hashed_password": "x" }),
    ] {
        let r = app.call(Method::PATCH, "/me", Some(&t), Some(body)).await;
        assert_eq!(r.status, 422);
        assert_eq!(r.body["detail"][0]["type"], "extra_forbidden");
    }
    assert_eq!(app.me(&t).await.body["is_superuser"], false);
}

#[tokio::test]
async fn change_password_ends_every_session_and_swaps_the_password() {
    let app = spawn_app().await;
    app.create_user("hank@example.com", PW).await;
    let t1 = app.access_token("hank@example.com", PW).await;
    let t2 = app.access_token("hank@example.com", PW).await;
    let r = app
        .post_auth(
            "/change-password",
            &t1,
            json!({ "current_password": "nope-nope-nope", "new_password": "another-password-1" }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "Current password is incorrect.")
    );
    let r = app
        .post_auth(
            "/change-password",
            &t1,
            json!({ "current_password": PW, "new_password": PW }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "New password must differ from the current password.")
    );
    let r = app
        .post_auth(
            "/change-password",
            &t1,
            json!({ "current_password": PW, "new_password": "another-password-1" }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["message"].as_str()),
        (
            200,
            Some("Password changed. Existing sessions have been signed out.")
        )
    );
    for t in [&t1, &t2] {
        let r = app.me(t).await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (401, "Session was invalidated; please sign in again.")
        );
    }
    assert_eq!(app.login("hank@example.com", PW).await.status, 401);
    let t3 = app
        .access_token("hank@example.com", "another-password-1")
        .await;
    let r = app.me(&t3).await;
    assert_eq!(r.status, 200);
    assert!(r.body["tokens_invalidated_after"].is_string());
}

#[tokio::test]
async fn change_email_confirms_by_a_link_to_the_new_address() {
    let app = spawn_app().await;
    app.create_user("ivy@example.com", PW).await;
    app.create_user("taken@example.com", PW).await;
    let t = app.access_token("ivy@example.com", PW).await;
    let r = app
        .post_auth(
            "/change-email",
            &t,
            json!({ "new_email": "IVY@example.com", "current_password": PW }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "New email is the same as the current email.")
    );
    let r = app
        .post_auth(
            "/change-email",
            &t,
            json!({ "new_email": "ivy2@example.com", "current_password": "wrong-password" }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "Current password is incorrect.")
    );

    let free = app
        .post_auth(
            "/change-email",
            &t,
            json!({ "new_email": "ivy2@example.com", "current_password": PW }),
        )
        .await;
    let taken = app
        .post_auth(
            "/change-email",
            &t,
            json!({ "new_email": "taken@example.com", "current_password": PW }),
        )
        .await;
    assert_eq!(free.status, 202);
    assert_eq!((free.status, &free.body), (taken.status, &taken.body));
    assert_eq!(
        free.body["message"],
        "If the address is available, a confirmation link has been sent. Check your email."
    );

    let token = app
        .mailed_token("ivy2@example.com", 1, "/confirm-email-change")
        .await;
    assert_eq!(app.me(&t).await.body["email"], "ivy@example.com");
    let r = app
        .post("/confirm-email-change", json!({ "token": token }))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["email"].as_str()),
        (200, Some("ivy2@example.com"))
    );
    let r = app
        .post("/confirm-email-change", json!({ "token": token }))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (
            400,
            "Email-change link is invalid or has expired. Request a new one."
        )
    );
    let r = app.me(&t).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "Session was invalidated; please sign in again.")
    );
    assert_eq!(app.login("ivy@example.com", PW).await.status, 401);
    assert_eq!(app.login("ivy2@example.com", PW).await.status, 200);
    // The taken address got no mail at all.
    assert_eq!(app.mailer.sent_to("taken@example.com").len(), 1);
    assert!(app.event_names().contains(&"email_changed"));
}

/// Deleting an account takes the current password, and afterwards the
/// database of the backend under test holds no row keyed by the user's id
/// or address in any table (collection) — counted in the database itself,
/// every table having held one before: the account, a stranger's pending
/// registration of the address it moved to, a reset and an email-change
/// link, a session, a failed sign-in, the address's mail quota, second
/// factors, a linked OAuth identity and an OAuth link flow. Its
/// tokens die, and the address registers afresh.
#[tokio::test]
async fn delete_account_needs_the_password_and_removes_every_row() {
    let app = spawn_app().await;
    // A stranger registers jack@ and never verifies it; Jack then moves his
    // account there, so a pending row names his address.
    assert_eq!(app.register("jack@example.com", PW).await.status, 201);
    app.create_user("jack.old@example.com", PW).await;
    let t = app.access_token("jack.old@example.com", PW).await;
    let r = app
        .post_auth(
            "/change-email",
            &t,
            json!({ "new_email": "jack@example.com", "current_password": PW }),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let change = app
        .mailed_token("jack@example.com", 2, "/confirm-email-change")
        .await;
    let r = app
        .post("/confirm-email-change", json!({ "token": change }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t = app.access_token("jack@example.com", PW).await;
    let id = app.me(&t).await.body["id"].as_str().unwrap().to_owned();
    app.post("/forgot-password", json!({ "email": "jack@example.com" }))
        .await;
    app.mailed_token("jack@example.com", 3, "/reset-password")
        .await;
    let r = app
        .post_auth(
            "/change-email",
            &t,
            json!({ "new_email": "jack.next@example.com", "current_password": PW }),
        )
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    app.login("jack@example.com", "wrong-password").await;
    // Second factors have no routes yet: their rows are written through
    // the stores — a TOTP factor with backup codes, and a challenge —
    // keeping the one live session, `t`'s.
    let user_id = regstack_ports::UserId::parse(&id).unwrap();
    let now = chrono::Utc::now();
    let live = app.stores.sessions.list(&user_id, now).await.unwrap();
    assert_eq!(live.len(), 1, "only `t`'s session is live");
    assert!(app
        .stores
        .mfa
        .enable_totp(&user_id, "sealed", &[token_hash(1)], Some(&live[0].id), now)
        .await
        .unwrap());
    app.stores
        .mfa
        .open_challenge(regstack_ports::MfaChallenge {
            id: token_hash(2),
            user_id: user_id.clone(),
            kind: regstack_ports::ChallengeKind::SignIn,
            code_hash: None,
            payload: None,
            attempts_left: 5,
            credential_epoch: None,
            created_at: now,
            expires_at: now + chrono::TimeDelta::minutes(5),
        })
        .await
        .unwrap();
    // Nor does OAuth: a linked identity and a flow begun to link another.
    assert_eq!(
        app.stores
            .oauth
            .link_identity(&regstack_ports::OAuthIdentity {
                user_id: user_id.clone(),
                provider: "google".to_owned(),
                issuer: "https://accounts.google.com".to_owned(),
                subject: "jack".to_owned(),
                email: Some("jack@example.com".to_owned()),
                linked_at: now,
                last_used_at: None,
            })
            .await
            .unwrap(),
        regstack_ports::Linking::Linked
    );
    app.stores
        .oauth
        .begin(regstack_ports::OAuthFlow {
            id: token_hash(3),
            provider: "corp-sso".to_owned(),
            pkce_verifier: "verifier".to_owned(),
            nonce: "nonce".to_owned(),
            mode: regstack_ports::FlowMode::Link(user_id.clone()),
            redirect_to: "/".to_owned(),
            browser: token_hash(4),
            created_at: now,
            expires_at: now + chrono::TimeDelta::minutes(10),
        })
        .await
        .unwrap();
    // And an invitation made for the address (an administrator's, before
    // the mode was switched to open).
    app.stores
        .invites
        .create(regstack_ports::Invite {
            id: regstack_ports::InviteId::generate(),
            code_hash: token_hash(5),
            email: Some(regstack_ports::Email::parse("jack@example.com").unwrap()),
            note: None,
            created_by: None,
            created_at: now,
            expires_at: now + chrono::TimeDelta::days(1),
            used_at: None,
            used_by: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    let before = app.rows_keyed_by(&id, "jack@example.com").await;
    assert!(
        before.iter().all(|(_, n)| *n > 0),
        "every table holds a row of Jack's before the deletion: {before:?}"
    );

    let r = app
        .call(
            Method::DELETE,
            "/account",
            Some(&t),
            Some(json!({ "current_password": "nope-nope" })),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (400, "Current password is incorrect.")
    );
    let r = app.call(Method::DELETE, "/account", Some(&t), None).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["detail"][0],
        json!({ "type": "missing", "loc": ["body"], "msg": "Field required" })
    );
    let r = app
        .call(
            Method::DELETE,
            "/account",
            Some(&t),
            Some(json!({ "current_password": PW })),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["message"].as_str()),
        (200, Some("Account deleted."))
    );

    assert_eq!(
        app.rows_keyed_by(&id, "jack@example.com").await,
        USER_TABLES.map(|table| (table, 0)),
        "no row keyed by Jack's id or address is left"
    );
    let r = app.me(&t).await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (401, "User no longer active.")
    );
    assert_eq!(app.login("jack@example.com", PW).await.status, 401);
    app.create_user("jack@example.com", "brand-new-password")
        .await;
    assert_eq!(
        app.login("jack@example.com", "brand-new-password")
            .await
            .status,
        200
    );
    assert!(app.event_names().contains(&"user_deleted"));
}

#[tokio::test]
async fn forgot_and_reset_password_through_the_mailed_link() {
    let app = spawn_app().await;
    app.create_user("kate@example.com", PW).await;
    let old = app.access_token("kate@example.com", PW).await;
    let known = app
        .post("/forgot-password", json!({ "email": "kate@example.com" }))
        .await;
    let unknown = app
        .post("/forgot-password", json!({ "email": "ghost@example.com" }))
        .await;
    assert_eq!(known.status, 202);
    assert_eq!((known.status, &known.body), (unknown.status, &unknown.body));
    assert_eq!(
        known.body["message"],
        "If the address matches an active account, a reset link has been sent. Check your email."
    );
    let token = app
        .mailed_token("kate@example.com", 2, "/reset-password")
        .await;

    let r = app
        .post(
            "/reset-password",
            json!({ "token": token, "new_password": "short" }),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["detail"][0]["loc"], json!(["body", "new_password"]));
    let r = app
        .post(
            "/reset-password",
            json!({ "token": token, "new_password": "reset-password-123" }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["message"].as_str()),
        (200, Some("Password has been reset. Please sign in."))
    );
    let r = app
        .post(
            "/reset-password",
            json!({ "token": token, "new_password": "whatever-123456" }),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (
            400,
            "Reset link is invalid or has expired. Request a new one."
        )
    );
    assert_eq!(app.me(&old).await.status, 401);
    assert_eq!(app.login("kate@example.com", PW).await.status, 401);
    assert_eq!(
        app.login("kate@example.com", "reset-password-123")
            .await
            .status,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(app.mailer.sent_to("ghost@example.com").is_empty());
    assert!(app.event_names().contains(&"password_reset_completed"));
}

#[tokio::test]
async fn disabled_features_answer_404_like_regstack() {
    let app = spawn_app_with(
        |c| {
            c.config.enable_password_reset = false;
            c.config.enable_account_deletion = false;
        },
        false,
    )
    .await;
    let r = app
        .post("/forgot-password", json!({ "email": "a@example.com" }))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (404, "Password reset is disabled for this application.")
    );
    app.create_user("lee@example.com", PW).await;
    let t = app.access_token("lee@example.com", PW).await;
    let r = app
        .call(
            Method::DELETE,
            "/account",
            Some(&t),
            Some(json!({ "current_password": PW })),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.detail()),
        (404, "Account deletion is disabled for this application.")
    );
}

#[tokio::test]
async fn links_follow_the_configured_url_templates() {
    let app = spawn_app_with(
        |c| c.config.verify_url_template = Some("{base_url}/#/verify/{token}".into()),
        false,
    )
    .await;
    app.register("mia@example.com", PW).await;
    let mail = app
        .mailer
        .wait_for("mia@example.com", 1, std::time::Duration::from_secs(10))
        .await;
    assert!(
        mail[0].text.contains("http://app.test/#/verify/"),
        "{}",
        mail[0].text
    );
    let e = app
        .events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.kind.name() == "verification_requested")
        .cloned()
        .unwrap();
    assert_eq!(
        e.url_without_token.as_deref(),
        Some("http://app.test/#/verify/[REDACTED]")
    );
}

#[tokio::test]
async fn template_directories_override_the_built_in_mail() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("verification.subject.txt"),
        "Welcome to {{ app_name }}, {{ full_name }}!",
    )
    .unwrap();
    std::fs::write(dir.path().join("verification.txt"), "Your link: {{ url }}").unwrap();
    let path = dir.path().display().to_string();
    let app = spawn_app_with(
        move |c| {
            c.config.app_name = "Acme".into();
            c.config.extra_template_dirs = vec![path];
        },
        false,
    )
    .await;
    app.register("tpl@example.com", PW).await;
    let mail = app
        .mailer
        .wait_for("tpl@example.com", 1, std::time::Duration::from_secs(10))
        .await;
    assert_eq!(mail[0].subject, "Welcome to Acme, Test User!");
    assert!(
        mail[0]
            .text
            .starts_with("Your link: http://app.test/verify?token="),
        "{}",
        mail[0].text
    );
    // Templates not overridden keep the built-in text.
    assert!(mail[0].html.contains("Acme"));
}

/// A token hash made of one repeated digit, for rows a test writes.
fn token_hash(n: u8) -> regstack_ports::TokenHash {
    regstack_ports::TokenHash::from_hex(format!("{n:064x}")).unwrap()
}
