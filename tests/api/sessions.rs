//! Sessions: rotating refresh tokens with reuse detection, revocation on
//! every trigger, the session list, lifetimes, and the cookie transport.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::TimeDelta;
use futures::future::join_all;
use regstack_ports::{Rotation, SessionId, SessionStore, StoreError, Stores, Timestamp, TokenHash};
use regstack_testkit::forward::{forwarding, SessionStoreForward};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const BAD_REFRESH: &str = "Invalid or expired refresh token.";

struct Pair {
    access: String,
    refresh: String,
}

fn pair(body: &Value) -> Pair {
    Pair {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn sign_in(app: &TestApp, email: &str) -> Pair {
    let r = app.login(email, PW).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    pair(&r.body)
}

async fn refresh(app: &TestApp, token: &str) -> Reply {
    app.post("/refresh", json!({ "refresh_token": token }))
        .await
}

#[tokio::test]
async fn login_returns_a_refresh_token_and_refresh_rotates_it() {
    let app = spawn_app().await;
    app.create_user("rot@example.com", PW).await;
    let r = app.login("rot@example.com", PW).await;
    assert_eq!(r.body["refresh_expires_in"], 1_209_600);
    assert_eq!(r.body["token_type"], "bearer");
    let first = pair(&r.body);
    // `<session id>.<256-bit secret>.<128-bit tag>`, all URL-safe.
    let parts: Vec<&str> = first.refresh.split('.').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [32, 43, 22],
        "{}",
        first.refresh
    );
    assert!(first
        .refresh
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));

    let r = refresh(&app, &first.refresh).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let second = pair(&r.body);
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(r.body["expires_in"], 7200);
    assert_eq!(app.me(&second.access).await.status, 200);
    // Both access tokens name the same session: still alive.
    assert_eq!(app.me(&first.access).await.status, 200);
    let r = refresh(&app, &second.refresh).await;
    assert_eq!(r.status, 200);
    assert!(app.event_names().contains(&"session_started"));
}

#[tokio::test]
async fn a_retry_inside_the_grace_window_gets_the_same_successor() {
    let app = spawn_app_with(|_| {}, true).await;
    let clock = app.clock.clone().unwrap();
    app.create_user("grace@example.com", PW).await;
    let p = sign_in(&app, "grace@example.com").await;
    let a = refresh(&app, &p.refresh).await;
    clock.advance(TimeDelta::seconds(4));
    let b = refresh(&app, &p.refresh).await;
    assert_eq!(b.status, 200);
    assert_eq!(a.body["refresh_token"], b.body["refresh_token"]);
    assert_eq!(
        refresh(&app, b.body["refresh_token"].as_str().unwrap())
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn reuse_outside_the_grace_window_revokes_the_whole_family() {
    let app = spawn_app_with(|_| {}, true).await;
    let clock = app.clock.clone().unwrap();
    app.create_user("thief@example.com", PW).await;
    let other = sign_in(&app, "thief@example.com").await;
    let p = sign_in(&app, "thief@example.com").await;
    let next = pair(&refresh(&app, &p.refresh).await.body);
    clock.advance(TimeDelta::seconds(6));
    let r = refresh(&app, &p.refresh).await;
    assert_eq!((r.status.as_u16(), r.detail()), (401, BAD_REFRESH));
    // Every token of the family is dead at once …
    assert_eq!(refresh(&app, &next.refresh).await.detail(), BAD_REFRESH);
    assert_eq!(app.me(&next.access).await.status, 401);
    assert_eq!(app.me(&p.access).await.status, 401);
    // … and only that family: the other sign-in is untouched.
    assert_eq!(app.me(&other.access).await.status, 200);
    assert_eq!(refresh(&app, &other.refresh).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(app.event_names().contains(&"refresh_token_reused"));
}

/// A refresh token names its session, so a forger who knows a session id
/// (it is in every access token and in logs) could try to get the family
/// revoked "for reuse" with a made-up token. The tag refuses every token
/// this server did not mint, before the store is asked: the victim's
/// session goes on, and no theft is reported.
#[tokio::test]
async fn a_forged_token_naming_a_live_session_revokes_nothing() {
    let app = spawn_app().await;
    app.create_user("forged@example.com", PW).await;
    let p = sign_in(&app, "forged@example.com").await;
    let sid = p.refresh.split('.').next().unwrap().to_owned();
    let (secret, tag) = (&p.refresh[33..76], &p.refresh[77..]);
    let mut flipped_tag = tag.to_owned().into_bytes();
    flipped_tag[0] = if flipped_tag[0] == b'A' { b'B' } else { b'A' };
    let flipped_tag = String::from_utf8(flipped_tag).unwrap();
    let forgeries = [
        format!("{sid}.{}.{tag}", "A".repeat(43)),
        format!("{sid}.{secret}.{flipped_tag}"),
        format!("{sid}.{secret}"),
        format!("{sid}.{}.{}", "x".repeat(43), "y".repeat(22)),
        sid.clone(),
    ];
    for forged in &forgeries {
        let r = refresh(&app, forged).await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (401, BAD_REFRESH),
            "{forged}"
        );
    }
    assert_eq!(app.me(&p.access).await.status, 200, "the session lives on");
    assert_eq!(refresh(&app, &p.refresh).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(!app.event_names().contains(&"refresh_token_reused"));
}

/// A stolen token several generations old is still recognised as the
/// family's: presenting it revokes the family though the store keeps only
/// the live token and the previous one.
#[tokio::test]
async fn a_token_three_generations_old_is_still_caught_as_reuse() {
    let app = spawn_app().await;
    app.create_user("old-theft@example.com", PW).await;
    let p = sign_in(&app, "old-theft@example.com").await;
    let mut live = p.refresh.clone();
    for _ in 0..3 {
        live = pair(&refresh(&app, &live).await.body).refresh;
    }
    let r = refresh(&app, &p.refresh).await;
    assert_eq!((r.status.as_u16(), r.detail()), (401, BAD_REFRESH));
    assert_eq!(
        refresh(&app, &live).await.detail(),
        BAD_REFRESH,
        "the live token died"
    );
    assert_eq!(app.me(&p.access).await.status, 401);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(app.event_names().contains(&"refresh_token_reused"));
}

/// The real session store, recording every `rotate` it is asked and what
/// it answered; the first 20 calls wait at a [`Gate`] until all have come.
struct RecordedRotations {
    inner: Stores,
    gate: Gate,
    answers: Mutex<Vec<(TokenHash, TokenHash, Rotation)>>,
}

#[async_trait]
impl SessionStoreForward for RecordedRotations {
    fn sessions(&self) -> &dyn SessionStore {
        &*self.inner.sessions
    }
    async fn rotate(
        &self,
        session: &SessionId,
        presented: &TokenHash,
        successor: &TokenHash,
        now: Timestamp,
        idle: TimeDelta,
    ) -> Result<Rotation, StoreError> {
        self.gate.pass().await;
        let answer = self
            .sessions()
            .rotate(session, presented, successor, now, idle)
            .await?;
        self.answers
            .lock()
            .unwrap()
            .push((presented.clone(), successor.clone(), answer.clone()));
        Ok(answer)
    }
}

/// 20 presentations of one refresh token at one instant, all reaching the
/// store's `rotate` together: the store rotates the family exactly once —
/// one `Rotated`, and 19 misses that report the family as that rotation
/// left it (the successor live, the presented token its spent one) — and
/// every client gets 200 with that same successor, the misses being
/// replays inside the grace window. The successor then rotates once more.
/// The successor is derived from the presented token, so a store that
/// rotated one token many times would hand out the same token as one that
/// rotated once: only the store's own answers can tell, hence the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_refreshes_rotate_once_and_never_fork_the_family() {
    let (inner, backend) = fresh_backend().await;
    let recorded = forwarding(RecordedRotations {
        inner: inner.clone(),
        gate: Gate::new(20),
        answers: Mutex::default(),
    });
    let stores = Stores {
        sessions: recorded.clone(),
        ..inner
    };
    let app = Arc::new(spawn_app_on(stores, backend, |_| {}, true).await);
    app.create_user("fork@example.com", PW).await;
    let p = sign_in(&app, "fork@example.com").await;
    let tasks = (0..20).map(|_| {
        let (app, t) = (app.clone(), p.refresh.clone());
        tokio::spawn(async move { refresh(&app, &t).await })
    });
    let replies: Vec<Reply> = join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        recorded.0.gate.arrived(),
        20,
        "every refresh reached rotate"
    );
    let handed_out: std::collections::HashSet<&str> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body["refresh_token"].as_str().unwrap()
        })
        .collect();
    assert_eq!(handed_out.len(), 1, "one successor for all: {handed_out:?}");

    let answers = recorded.0.answers.lock().unwrap().clone();
    let (presented, successor) = (&answers[0].0, &answers[0].1);
    let mut rotations = 0;
    for (p, s, answer) in &answers {
        assert_eq!((p, s), (presented, successor), "one token, one successor");
        match answer {
            Rotation::Rotated { .. } => rotations += 1,
            Rotation::NotLive(family) => assert_eq!(
                (family.live.as_ref(), family.previous.as_ref()),
                (Some(successor), Some(presented)),
                "a miss reports the family the one rotation left"
            ),
            Rotation::Unknown => panic!("the session is known"),
        }
    }
    assert_eq!(
        (rotations, answers.len()),
        (1, 20),
        "the store rotated the family exactly once among 20 presentations"
    );

    let next = handed_out.into_iter().next().unwrap().to_owned();
    assert_eq!(refresh(&app, &next).await.status, 200);
    let answers = recorded.0.answers.lock().unwrap();
    assert!(
        matches!(answers.last(), Some((p, _, Rotation::Rotated { .. })) if p == successor),
        "the successor rotates: {:?}",
        answers.last()
    );
}

/// A sign-in that proved the old password must not keep a session once a
/// reset or a password change has replaced that password, however the two
/// interleave: logins with the old password are fired at staggered
/// offsets around the change (so some verify the old hash while the
/// change commits), and afterwards every token any of them received is
/// refused — access and refresh alike. Round by round, alternating reset
/// and change, each on a fresh account (so the lockout never interferes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_with_the_old_password_racing_a_reset_or_change_keep_no_session() {
    const ROUNDS: usize = 8;
    const LOGINS: u64 = 4;
    let app = Arc::new(spawn_app().await);
    let mut signed_in = 0;
    for round in 0..ROUNDS {
        let by_reset = round % 2 == 0;
        let email = format!("race-{round}@example.com");
        app.create_user(&email, PW).await;
        // Everything but the request that replaces the password happens
        // first, so only that request races the logins.
        let (path, token, body) = if by_reset {
            app.post("/forgot-password", json!({ "email": email }))
                .await;
            let reset = app.mailed_token(&email, 2, "/reset-password").await;
            (
                "/reset-password",
                None,
                json!({ "token": reset, "new_password": "the-new-password-1" }),
            )
        } else {
            (
                "/change-password",
                Some(app.access_token(&email, PW).await),
                json!({ "current_password": PW, "new_password": "the-new-password-1" }),
            )
        };
        let logins: Vec<_> = (0..LOGINS)
            .map(|i| {
                let app = app.clone();
                let email = email.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(i * 15)).await;
                    app.login(&email, PW).await
                })
            })
            .collect();
        let changed = app
            .call(Method::POST, path, token.as_deref(), Some(body))
            .await;
        assert_eq!(changed.status, 200, "round {round}: {:?}", changed.body);
        let mut pairs = Vec::new();
        for login in logins {
            let r = login.await.unwrap();
            match r.status.as_u16() {
                200 => pairs.push(pair(&r.body)),
                401 => {}
                other => panic!(
                    "round {round}: a racing login answered {other}: {:?}",
                    r.body
                ),
            }
        }
        signed_in += pairs.len();
        for p in pairs {
            let me = app.me(&p.access).await;
            assert_eq!(
                me.status, 401,
                "round {round} ({path}): an access token from the old password still works"
            );
            let r = refresh(&app, &p.refresh).await;
            assert_eq!(
                r.status, 401,
                "round {round} ({path}): a refresh token from the old password still works: {:?}",
                r.body
            );
        }
        // The new password works; the old one no longer does.
        assert_eq!(app.login(&email, "the-new-password-1").await.status, 200);
        assert_eq!(app.login(&email, PW).await.status, 401);
    }
    eprintln!(
        "{signed_in} of {} racing logins got tokens",
        ROUNDS as u64 * LOGINS
    );
}

#[tokio::test]
async fn every_revocation_trigger_kills_access_and_refresh_tokens() {
    let app = spawn_app().await;
    let triggers = [
        "logout",
        "logout-all",
        "change-password",
        "reset",
        "change-email",
        "delete",
    ];
    for (i, trigger) in triggers.iter().enumerate() {
        let email = format!("trig{i}@example.com");
        app.create_user(&email, PW).await;
        let a = sign_in(&app, &email).await;
        let b = sign_in(&app, &email).await;
        match *trigger {
            "logout" => {
                app.call(Method::POST, "/logout", Some(&a.access), None)
                    .await;
            }
            "logout-all" => {
                let r = app
                    .call(Method::POST, "/logout-all", Some(&a.access), None)
                    .await;
                assert_eq!(
                    r.body,
                    json!({ "message": "Signed out of 2 session(s).", "revoked": 2 })
                );
            }
            "change-password" => {
                let body = json!({ "current_password": PW, "new_password": "changed-password-1" });
                assert_eq!(
                    app.post_auth("/change-password", &a.access, body)
                        .await
                        .status,
                    200
                );
            }
            "reset" => {
                app.post("/forgot-password", json!({ "email": email }))
                    .await;
                let token = app.mailed_token(&email, 2, "/reset-password").await;
                let body = json!({ "token": token, "new_password": "changed-password-1" });
                assert_eq!(app.post("/reset-password", body).await.status, 200);
            }
            "change-email" => {
                let new = format!("new{i}@example.com");
                let body = json!({ "new_email": new, "current_password": PW });
                app.post_auth("/change-email", &a.access, body).await;
                let token = app.mailed_token(&new, 1, "/confirm-email-change").await;
                assert_eq!(
                    app.post("/confirm-email-change", json!({ "token": token }))
                        .await
                        .status,
                    200
                );
            }
            "delete" => {
                let body = json!({ "current_password": PW });
                assert_eq!(
                    app.call(Method::DELETE, "/account", Some(&a.access), Some(body))
                        .await
                        .status,
                    200
                );
            }
            _ => unreachable!(),
        }
        let killed: Vec<&Pair> = if *trigger == "logout" {
            vec![&a]
        } else {
            vec![&a, &b]
        };
        for p in killed {
            assert_eq!(
                app.me(&p.access).await.status,
                401,
                "{trigger}: access token survived"
            );
            assert_eq!(
                refresh(&app, &p.refresh).await.detail(),
                BAD_REFRESH,
                "{trigger}: refresh token survived"
            );
        }
        if *trigger == "logout" {
            assert_eq!(
                app.me(&b.access).await.status,
                200,
                "logout ended another session"
            );
        }
    }
}

#[tokio::test]
async fn users_list_and_revoke_only_their_own_sessions() {
    let app = spawn_app().await;
    app.create_user("list@example.com", PW).await;
    app.create_user("other@example.com", PW).await;
    let login_as = |ua: &'static str| {
        let app = &app;
        async move {
            let r = app
                .http
                .post(format!("{}/login", app.api))
                .header("user-agent", ua)
                .json(&json!({ "email": "list@example.com", "password": PW }))
                .send()
                .await
                .unwrap();
            pair(&r.json().await.unwrap())
        }
    };
    let laptop = login_as("laptop-browser/1.0").await;
    let phone = login_as("phone-app/2.0").await;
    let stranger = sign_in(&app, "other@example.com").await;

    let r = app
        .call(Method::GET, "/sessions", Some(&laptop.access), None)
        .await;
    let list = r.body["sessions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["user_agent"], "phone-app/2.0", "newest first");
    assert_eq!(list[1]["current"], true);
    assert_eq!(list[0]["current"], false);
    assert_eq!(list[1]["ip"], "127.0.0.1");
    assert!(list[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let phone_id = list[0]["id"].as_str().unwrap().to_owned();

    let theirs = app
        .call(Method::GET, "/sessions", Some(&stranger.access), None)
        .await;
    let their_id = theirs.body["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [their_id.as_str(), "no-such-session", "%20"] {
        let r = app
            .call(
                Method::DELETE,
                &format!("/sessions/{id}"),
                Some(&laptop.access),
                None,
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), r.detail()),
            (404, "Session not found."),
            "{id}"
        );
    }
    assert_eq!(app.me(&stranger.access).await.status, 200);

    let r = app
        .call(
            Method::DELETE,
            &format!("/sessions/{phone_id}"),
            Some(&laptop.access),
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["message"].as_str()),
        (200, Some("Session revoked."))
    );
    assert_eq!(app.me(&phone.access).await.status, 401);
    assert_eq!(refresh(&app, &phone.refresh).await.status, 401);
    assert_eq!(app.me(&laptop.access).await.status, 200);
    let r = app
        .call(Method::GET, "/sessions", Some(&laptop.access), None)
        .await;
    assert_eq!(r.body["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_lifetime() {
    let app = spawn_app_with(
        |c| {
            c.config.sessions.refresh_idle_ttl_seconds = 3600;
            c.config.sessions.refresh_absolute_ttl_seconds = 3 * 3600;
        },
        true,
    )
    .await;
    let clock = app.clock.clone().unwrap();
    app.create_user("life@example.com", PW).await;
    let idle = sign_in(&app, "life@example.com").await;
    clock.advance(TimeDelta::seconds(3600));
    assert_eq!(refresh(&app, &idle.refresh).await.detail(), BAD_REFRESH);

    let mut p = sign_in(&app, "life@example.com").await;
    let start = clock_now(&app);
    for _ in 0..5 {
        clock.advance(TimeDelta::seconds(3000));
        let r = refresh(&app, &p.refresh).await;
        if clock_now(&app) < start + TimeDelta::hours(3) {
            assert_eq!(r.status, 200, "refresh inside the lifetimes must work");
            assert!(r.body["refresh_expires_in"].as_u64().unwrap() <= 3600);
            p = pair(&r.body);
        } else {
            assert_eq!(
                r.detail(),
                BAD_REFRESH,
                "rotation must not extend the absolute lifetime"
            );
        }
    }
}

fn clock_now(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    use regstack_ports::Clock;
    app.clock.as_ref().unwrap().now()
}

#[tokio::test]
async fn refresh_tokens_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    app.create_user("hash@example.com", PW).await;
    let p = sign_in(&app, "hash@example.com").await;
    let next = pair(&refresh(&app, &p.refresh).await.body);
    let bytes = app.database_bytes().await;
    for secret in [&p.refresh, &next.refresh] {
        assert!(!contains(&bytes, secret), "raw refresh token at rest");
    }
}

#[tokio::test]
async fn without_cookie_mode_no_route_reads_cookies() {
    let app = spawn_app().await;
    app.create_user("nocookie@example.com", PW).await;
    let p = sign_in(&app, "nocookie@example.com").await;
    let r = app
        .http
        .post(format!("{}/refresh", app.api))
        .header("cookie", format!("__Secure-regstack_refresh={}", p.refresh))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn cookie_mode_keeps_the_refresh_token_out_of_reach_of_scripts_and_other_sites() {
    let app = spawn_app_with(|c| c.config.sessions.refresh_cookie = true, false).await;
    app.create_user("cookie@example.com", PW).await;
    let r = app
        .http
        .post(format!("{}/login", app.api))
        .json(&json!({ "email": "cookie@example.com", "password": PW }))
        .send()
        .await
        .unwrap();
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(body["refresh_expires_in"].is_u64());
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/api/auth/refresh",
    ] {
        assert!(set_cookie.contains(attr), "{set_cookie} lacks {attr}");
    }
    assert!(set_cookie.starts_with("__Secure-regstack_refresh="));
    assert!(!set_cookie.to_lowercase().contains("domain="));
    let token = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    let cookie = format!("__Secure-regstack_refresh={token}");

    let cross = app
        .http
        .post(format!("{}/refresh", app.api))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let cross = app
        .http
        .post(format!("{}/refresh", app.api))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);

    let ok = app
        .http
        .post(format!("{}/refresh", app.api))
        .header("cookie", &cookie)
        .header("origin", "http://app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let rotated = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(!rotated.contains(&token));
    let body: Value = ok.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    let access = body["access_token"].as_str().unwrap().to_owned();

    let out = app
        .http
        .post(format!("{}/logout", app.api))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let cleared = out.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}
