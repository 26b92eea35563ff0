//! Sessions: start (bound to the credential epoch), authenticate, revoke.

use regstack_ports::{
    EmailChangeOutcome, NewSession, RevokeReason, Session, SessionId, SessionStart, StoreError,
    Stores, Timestamp, User, UserId,
};

use crate::fixtures::{self, at, hash_of, micro, t0};

use super::support::*;
use super::RACERS;

/// `start` records the session with its idle end and first refresh token
/// and stamps the user's `last_login`; `authenticate` returns session and
/// user together, including expired sessions (the caller words the
/// refusal); a duplicate id is refused and changes nothing.
pub async fn sessions_start_and_authenticate_in_one_lookup(stores: Stores) {
    let user = add_user(&stores, "signer@example.com").await;
    let created = at(minutes(5));
    let new = NewSession {
        idle_expires_at: at(days(1)),
        ..fixtures::new_session(&user.id, created, at(days(14)))
    };
    assert_eq!(
        stores.sessions.start(new.clone()).await.expect("start"),
        SessionStart::Started
    );

    let (s, u) = stores
        .sessions
        .authenticate(&new.id)
        .await
        .expect("authenticate")
        .expect("the session exists");
    assert_eq!(
        s,
        Session {
            id: new.id.clone(),
            user_id: user.id.clone(),
            created_at: created,
            last_used_at: created,
            expires_at: at(days(14)),
            idle_expires_at: at(days(1)),
            user_agent: new.user_agent.clone(),
            ip: new.ip.clone(),
            revoked_at: None,
            revoked_reason: None,
        }
    );
    let expected_user = User {
        last_login: Some(created),
        ..user.clone()
    };
    assert_eq!(
        u, expected_user,
        "the user comes with it, last_login stamped"
    );
    assert_eq!(get_user(&stores, &user.id).await, expected_user);

    let later = at(hours(2));
    let second = start_session(&stores, &user.id, later, at(days(14))).await;
    assert_eq!(
        get_user(&stores, &user.id).await.last_login,
        Some(later),
        "each sign-in stamps last_login"
    );
    assert_eq!(session(&stores, &second).await.user_id, user.id);

    // No `now` in authenticate: an expired session is returned as stored.
    let expired = start_session(&stores, &user.id, t0(), t0() + micro()).await;
    assert_eq!(session(&stores, &expired).await.expires_at, t0() + micro());

    let mut duplicate = fixtures::new_session(&user.id, later, at(days(14)));
    duplicate.id = new.id.clone();
    match stores.sessions.start(duplicate).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("a duplicate session id must be refused with Conflict, got {other:?}"),
    }
    assert_eq!(
        session(&stores, &new.id).await.created_at,
        created,
        "the refused start overwrote nothing"
    );

    let first = Tok {
        sid: new.id.clone(),
        hash: new.refresh_hash.clone(),
    };
    let (rotated_session, _) = rotated(
        rotate(&stores, &first, &next(&first), at(hours(4))).await,
        "the first refresh token is the session's live one",
    );
    assert_eq!(rotated_session.id, new.id);

    assert_eq!(
        stores
            .sessions
            .authenticate(&SessionId::generate())
            .await
            .expect("authenticate"),
        None
    );
}

/// A session starts only on the credential epoch its sign-in read: after
/// a password change, a reset or an email change, a start carrying the
/// old `tokens_invalidated_after` is `Stale` and writes nothing (no
/// session, no `last_login` stamp). The epoch moves strictly forward on
/// every change — also for two changes at the same instant, and for a
/// change whose `now` is behind the last one (an instance with a slow
/// clock) — so an old value never matches again. An unknown user is
/// `Stale` too.
pub async fn a_session_starts_only_on_the_credential_epoch_it_checked(stores: Stores) {
    let user = add_user(&stores, "epoch@example.com").await;
    let first_login = at(minutes(1));
    let before = start_session(&stores, &user.id, first_login, at(days(1))).await;
    let start_on = |epoch: Option<Timestamp>, created_at: Timestamp| {
        let stores = stores.clone();
        let new = NewSession {
            credential_epoch: epoch,
            ..fixtures::new_session(&user.id, created_at, at(days(2)))
        };
        async move {
            let id = new.id.clone();
            let outcome = stores.sessions.start(new).await.expect("sessions.start");
            (outcome, id)
        }
    };
    let refused = |outcome: (SessionStart, SessionId), what: &str| {
        assert_eq!(outcome.0, SessionStart::Stale, "{what}");
        outcome.1
    };

    // A password change.
    let changed_at = at(hours(1));
    let e0 = user.tokens_invalidated_after;
    let changed = stores
        .users
        .change_password(
            &user.id,
            &hash_of("changed once"),
            RevokeReason::PasswordChanged,
            changed_at,
        )
        .await
        .expect("change_password")
        .expect("the user exists");
    let e1 = changed.tokens_invalidated_after;
    assert_eq!(
        e1,
        Some(changed_at),
        "the first change moves the epoch to now"
    );
    let stale = refused(
        start_on(e0, at(hours(2))).await,
        "a start with the epoch from before the change",
    );
    assert_eq!(
        stores
            .sessions
            .authenticate(&stale)
            .await
            .expect("authenticate"),
        None,
        "a stale start writes no session"
    );
    assert_eq!(
        get_user(&stores, &user.id).await.last_login,
        Some(first_login),
        "a stale start stamps no last_login"
    );
    assert_revoked(
        &session(&stores, &before).await,
        changed_at,
        RevokeReason::PasswordChanged,
        "the session from before the change",
    );

    // A second change at the very same instant still moves the epoch.
    let again = stores
        .users
        .change_password(
            &user.id,
            &hash_of("changed twice"),
            RevokeReason::PasswordChanged,
            changed_at,
        )
        .await
        .expect("change_password")
        .expect("the user exists");
    let e2 = again.tokens_invalidated_after;
    assert!(e2 > e1, "same-instant changes: {e2:?} must be after {e1:?}");
    refused(
        start_on(e1, at(hours(2))).await,
        "the epoch of the first change",
    );

    // A reset.
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(days(1)))).await;
    let after_reset = stores
        .users
        .complete_password_reset(&reset.hash, &hash_of("reset"), changed_at)
        .await
        .expect("complete_password_reset")
        .expect("the token is live");
    let e3 = after_reset.tokens_invalidated_after;
    assert!(e3 > e2, "a reset moves the epoch: {e3:?} after {e2:?}");
    refused(
        start_on(e2, at(hours(2))).await,
        "the epoch from before the reset",
    );

    // An email change from an instance whose clock is an hour behind.
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "epoch-new@example.com", at(days(1))),
    )
    .await;
    match stores
        .users
        .confirm_email_change(&change.hash, changed_at - hours(1))
        .await
        .expect("confirm_email_change")
    {
        EmailChangeOutcome::Changed(u) => {
            let e4 = u.tokens_invalidated_after;
            assert!(
                e4 > e3,
                "a change behind the clock still moves the epoch forward"
            );
            refused(
                start_on(e3, at(hours(2))).await,
                "the epoch from before the email change",
            );
            let (outcome, live) = start_on(e4, at(hours(3))).await;
            assert_eq!(outcome, SessionStart::Started, "the current epoch starts");
            assert_live(
                &session(&stores, &live).await,
                "the session on the current epoch",
            );
            assert_eq!(
                get_user(&stores, &user.id).await.last_login,
                Some(at(hours(3)))
            );
        }
        other => panic!("the email change must succeed, got {other:?}"),
    }
    assert_eq!(
        listed(&stores, &user.id, at(hours(4))).await.len(),
        1,
        "only the start on the current epoch left a session"
    );

    let stranger = NewSession {
        credential_epoch: None,
        ..fixtures::new_session(&UserId::generate(), at(hours(1)), at(days(1)))
    };
    assert_eq!(
        stores
            .sessions
            .start(stranger)
            .await
            .expect("sessions.start"),
        SessionStart::Stale,
        "an unknown user gets no session"
    );
}

/// Sign-ins that checked the old password race a password change: of
/// [`RACERS`] − 1 parallel starts on the old epoch and one change, every
/// start either lands before the change (and the change revokes it) or
/// is `Stale` — never a live session once the change has returned. Run
/// for several rounds, each on a fresh user, so the change lands at
/// different points of the burst.
pub async fn starts_racing_a_password_change_leave_no_session_of_the_old_credential(
    stores: Stores,
) {
    enum Step {
        Start(SessionStart),
        Changed,
    }
    for round in 0..5 {
        let user = add_user(&stores, &format!("racer-{round}@example.com")).await;
        let epoch = user.tokens_invalidated_after;
        let changed_at = at(hours(1));
        let outcomes = race(|i| {
            let stores = stores.clone();
            let id = user.id.clone();
            async move {
                if i == RACERS / 2 {
                    stores
                        .users
                        .change_password(
                            &id,
                            &hash_of("the new password"),
                            RevokeReason::PasswordChanged,
                            changed_at,
                        )
                        .await
                        .map(|_| Step::Changed)
                } else {
                    let new = NewSession {
                        credential_epoch: epoch,
                        ..fixtures::new_session(&id, at(minutes(30)), at(days(1)))
                    };
                    stores.sessions.start(new).await.map(Step::Start)
                }
            }
        })
        .await;
        let outcomes = all_ok("starts racing a password change", outcomes);
        assert!(outcomes.iter().any(|o| matches!(o, Step::Changed)));
        let started = outcomes
            .iter()
            .filter(|o| matches!(o, Step::Start(SessionStart::Started)))
            .count();
        let live = listed(&stores, &user.id, at(minutes(90))).await;
        assert!(
            live.is_empty(),
            "round {round}: {} of the {started} session(s) started from the old password \
             survived the change",
            live.len()
        );
    }
}

/// `revoke` ends a live session once: `true` the first time, `false` after,
/// for unknown ids, and for sessions already past their end; a dead
/// session keeps the reason and time it died with.
pub async fn revoke_is_idempotent_and_reports_liveness(stores: Stores) {
    let user = add_user(&stores, "leaver@example.com").await;
    let sid = start_session(&stores, &user.id, t0(), at(days(1))).await;

    assert!(stores
        .sessions
        .revoke(&sid, RevokeReason::Logout, at(minutes(1)))
        .await
        .expect("revoke"));
    let (s, u) = stores
        .sessions
        .authenticate(&sid)
        .await
        .expect("authenticate")
        .expect("a revoked session is still returned");
    assert_revoked(&s, at(minutes(1)), RevokeReason::Logout, "revoked");
    assert_eq!(u.id, user.id);

    assert!(
        !stores
            .sessions
            .revoke(&sid, RevokeReason::Revoked, at(minutes(2)))
            .await
            .expect("revoke"),
        "a second revoke reports the session was already dead"
    );
    assert_revoked(
        &session(&stores, &sid).await,
        at(minutes(1)),
        RevokeReason::Logout,
        "the second revoke overwrote nothing",
    );

    assert!(!stores
        .sessions
        .revoke(&SessionId::generate(), RevokeReason::Logout, t0())
        .await
        .expect("revoke"));

    let expired = start_session(&stores, &user.id, t0(), at(hours(1))).await;
    assert!(
        !stores
            .sessions
            .revoke(&expired, RevokeReason::Logout, at(hours(1)))
            .await
            .expect("revoke"),
        "a session at its expires_at is already dead"
    );
    assert_live(
        &session(&stores, &expired).await,
        "an expired session is not marked revoked after the fact",
    );
}

/// `revoke_all` revokes exactly the user's live sessions and counts them;
/// dead ones keep their reason; other users' sessions are untouched.
pub async fn revoke_all_touches_only_that_users_live_sessions(stores: Stores) {
    let user = add_user(&stores, "everywhere@example.com").await;
    let other = add_user(&stores, "elsewhere@example.com").await;
    let live1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let live2 = start_session(&stores, &user.id, at(minutes(1)), at(days(1))).await;
    let old = start_session(&stores, &user.id, t0(), at(days(1))).await;
    assert!(stores
        .sessions
        .revoke(&old, RevokeReason::Logout, at(minutes(2)))
        .await
        .expect("revoke"));
    let expired = start_session(&stores, &user.id, t0(), at(minutes(30))).await;
    let others = start_session(&stores, &other.id, t0(), at(days(1))).await;

    let now = at(hours(1));
    assert_eq!(
        stores
            .sessions
            .revoke_all(&user.id, RevokeReason::LogoutAll, now)
            .await
            .expect("revoke_all"),
        2,
        "two sessions were live"
    );
    for sid in [&live1, &live2] {
        assert_revoked(
            &session(&stores, sid).await,
            now,
            RevokeReason::LogoutAll,
            "live → revoked",
        );
    }
    assert_revoked(
        &session(&stores, &old).await,
        at(minutes(2)),
        RevokeReason::Logout,
        "a revoked session keeps its reason",
    );
    assert_live(
        &session(&stores, &expired).await,
        "an expired session is not revoked after the fact",
    );
    assert_live(
        &session(&stores, &others).await,
        "another user's session is untouched",
    );

    assert_eq!(
        stores
            .sessions
            .revoke_all(&user.id, RevokeReason::LogoutAll, now)
            .await
            .expect("revoke_all"),
        0,
        "nothing left to revoke"
    );
}
