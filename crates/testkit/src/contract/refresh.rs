//! Refresh-token families: one conditional rotation, and on a miss the
//! family exactly as stored (telling a replay from reuse is `core`'s rule;
//! ending a reused family is the conditional `revoke`, true once).

use regstack_ports::{
    RefreshFamily, RevokeReason, Rotation, Session, SessionId, Stores, Timestamp, TokenHash, UserId,
};

use crate::fixtures::{self, at, hash_of, micro, t0};

use super::support::*;
use super::RACERS;

/// Unwraps a missed rotation's report.
fn missed(outcome: Rotation, what: &str) -> RefreshFamily {
    match outcome {
        Rotation::NotLive(family) => family,
        other => panic!("{what}: expected NotLive, got {other:?}"),
    }
}

/// Unwraps the report of a rotation refused because the session is dead
/// at `now`.
fn dead(outcome: Rotation, now: Timestamp, what: &str) -> RefreshFamily {
    let family = missed(outcome, what);
    assert!(
        !family.session.is_live(now),
        "{what}: the reported session is dead: {:?}",
        family.session
    );
    family
}

/// A family's refresh facts: the live hash, the last spent one and when.
fn facts(f: &RefreshFamily) -> (Option<&TokenHash>, Option<&TokenHash>, Option<Timestamp>) {
    (f.live.as_ref(), f.previous.as_ref(), f.rotated_at)
}

/// `rotate` spends the family's live token and makes the successor the
/// live one. The answer carries the session as updated (`last_used_at =
/// now`, idle end `now + idle`, absolute end unchanged) and its user; the
/// spent token is no longer live: presenting it again changes nothing and
/// reports the family (the successor live, the spent token and when it was
/// spent); the successor rotates in turn; a token of an unknown session is
/// `Unknown`.
pub async fn rotate_spends_the_token_and_makes_the_successor_live(stores: Stores) {
    let user = add_user(&stores, "rotor@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(hours(1))).await;
    let (r1, r2) = (next(&r0), next(&r0));
    let before = session(&stores, &sid).await;

    let now = at(minutes(30));
    let (s, u) = rotated(
        rotate(&stores, &r0, &r1, now).await,
        "the first token rotates",
    );
    let expected = Session {
        last_used_at: now,
        idle_expires_at: now + idle(),
        ..before
    };
    assert_eq!(s, expected, "the answer is the session as rotated");
    assert_eq!(
        session(&stores, &sid).await,
        expected,
        "authenticate sees the rotation"
    );
    assert_eq!(
        u,
        get_user(&stores, &user.id).await,
        "the user comes with it"
    );

    let f = missed(
        rotate(&stores, &r0, &r1, now + seconds(1)).await,
        "the spent token presented again",
    );
    assert_eq!(
        facts(&f),
        (Some(&r1.hash), Some(&r0.hash), Some(now)),
        "the report names the live token, the spent one and when it was spent"
    );
    assert_eq!(f.session, expected, "a miss changes nothing");
    assert_eq!(f.user, u, "the user comes with it");
    assert_eq!(session(&stores, &sid).await, expected);

    let later = at(minutes(50));
    let (s, _) = rotated(
        rotate(&stores, &r1, &r2, later).await,
        "the successor is the family's live token",
    );
    assert_eq!(
        (s.last_used_at, s.idle_expires_at, s.expires_at),
        (later, later + idle(), at(days(30)))
    );

    let stranger = Tok {
        sid: SessionId::generate(),
        hash: fixtures::token_hash(),
    };
    assert_eq!(
        rotate(&stores, &stranger, &next(&stranger), later).await,
        Rotation::Unknown,
        "a token of an unknown session"
    );
    assert_live(&session(&stores, &sid).await, "and it revoked nothing");
}

/// 20 simultaneous presentations of one live token (a client retrying, a
/// tab racing another) at one instant: exactly one `Rotated`; the other 19
/// miss and report the family as that rotation left it (the successor
/// live, the presented token spent at that instant) — no `Err`, no
/// revocation. The successor then rotates normally.
pub async fn rotate_with_20_parallel_presentations_yields_one_rotation_and_reports_it_to_the_rest(
    stores: Stores,
) {
    let user = add_user(&stores, "retrying@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let r1 = next(&r0);
    let now = at(hours(1));
    let sessions = stores.sessions.clone();
    let results = race(|_| {
        let sessions = sessions.clone();
        let (r0, r1) = (r0.clone(), r1.clone());
        async move {
            sessions
                .rotate(&r0.sid, &r0.hash, &r1.hash, now, idle())
                .await
        }
    })
    .await;

    let mut rotations = Vec::new();
    let mut misses = Vec::new();
    for (i, outcome) in all_ok("rotate", results).into_iter().enumerate() {
        match outcome {
            Rotation::Rotated { session, user } => rotations.push((session, user)),
            Rotation::NotLive(family) => misses.push(family),
            other => panic!("parallel rotate {i}: expected Rotated or NotLive, got {other:?}"),
        }
    }
    assert_eq!(
        (rotations.len(), misses.len()),
        (1, RACERS - 1),
        "exactly one presentation rotates, the others miss (Rotated, NotLive)"
    );
    let (winner, _) = &rotations[0];
    assert_eq!(
        (&winner.id, winner.last_used_at),
        (&sid, now),
        "the rotation is of this session, at now"
    );
    for f in &misses {
        assert_eq!(
            &f.session, winner,
            "a miss reports the session as the rotation left it"
        );
        assert_eq!(facts(f), (Some(&r1.hash), Some(&r0.hash), Some(now)));
        assert_eq!(f.user.id, user.id);
    }
    assert_live(&session(&stores, &sid).await, "no miss revoked the family");

    rotated(
        rotate(&stores, &r1, &next(&r1), now + seconds(1)).await,
        "the successor rotates after the race",
    );
}

/// A spent token presented again, at any time — inside the grace window,
/// at its end, ten minutes later — misses and reports the same record: the
/// rotation's instant stays the spend's, and nothing is written. Ending
/// the family is the caller's `revoke` (`RefreshReuse`), after which its
/// live successor is dead too, the stolen token changes nothing more, and
/// the user's other sessions, separate families, keep rotating.
pub async fn a_spent_token_misses_with_the_same_report_at_any_time(stores: Stores) {
    let user = add_user(&stores, "victim@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let (other_sid, other_r0) =
        start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let (r1, r2) = (next(&r0), next(&r0));

    let spent = at(hours(1));
    let (rotated_session, _) = rotated(rotate(&stores, &r0, &r1, spent).await, "r0 → r1");
    for when in [
        spent + grace() - micro(),
        spent + grace(),
        spent + minutes(10),
    ] {
        let f = missed(rotate(&stores, &r0, &r1, when).await, "r0 again");
        assert_eq!(
            facts(&f),
            (Some(&r1.hash), Some(&r0.hash), Some(spent)),
            "at {when}: the same record"
        );
        assert_eq!(f.session, rotated_session, "at {when}: nothing written");
    }

    let stolen = spent + minutes(10);
    assert!(
        stores
            .sessions
            .revoke(&sid, RevokeReason::RefreshReuse, stolen)
            .await
            .expect("revoke"),
        "the caller ends the family"
    );
    let revoked = session(&stores, &sid).await;
    assert_revoked(
        &revoked,
        stolen,
        RevokeReason::RefreshReuse,
        "the family is revoked",
    );
    dead(
        rotate(&stores, &r1, &r2, stolen + micro()).await,
        stolen + micro(),
        "the successor died with its family",
    );
    let f = dead(
        rotate(&stores, &r0, &r1, stolen + seconds(1)).await,
        stolen + seconds(1),
        "the stolen token again: the family is already dead",
    );
    assert_eq!(f.session, revoked, "the report says what it died of");
    assert_eq!(
        session(&stores, &sid).await,
        revoked,
        "and it still died when and of what it first did"
    );

    assert_live(
        &session(&stores, &other_sid).await,
        "another session of the user is another family",
    );
    rotated(
        rotate(&stores, &other_r0, &next(&other_r0), stolen + seconds(1)).await,
        "and keeps rotating",
    );
}

/// An older token — spent two rotations ago, still inside its grace —
/// misses and reports the family as it now stands: the newest successor
/// live and the token the *last* rotation spent, so the report shows that
/// the presented one is neither (which `core` judges reuse). Nothing is
/// written.
pub async fn an_older_token_is_reported_against_the_family_as_it_now_stands(stores: Stores) {
    let user = add_user(&stores, "careless@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let (r1, r2) = (next(&r0), next(&r0));
    let t = at(hours(1));
    rotated(rotate(&stores, &r0, &r1, t).await, "r0 → r1");
    let (after, _) = rotated(rotate(&stores, &r1, &r2, t + seconds(1)).await, "r1 → r2");

    let now = t + seconds(2);
    assert!(now < t + grace(), "the case presents r0 inside its grace");
    let f = missed(rotate(&stores, &r0, &r1, now).await, "r0 after r1 was used");
    assert_eq!(
        facts(&f),
        (Some(&r2.hash), Some(&r1.hash), Some(t + seconds(1))),
        "the family as it stands: r2 live, r1 the last spent"
    );
    assert_eq!(f.session, after, "nothing written");
    assert_live(&session(&stores, &sid).await, "nothing revoked");
}

/// 20 callers at once find a stolen token two generations old (each
/// rotation misses, none rotates) and each ends the family as `core` does,
/// with `revoke(RefreshReuse)`: exactly one `true` (one theft event, one
/// revocation), and the session died of `RefreshReuse` at that instant.
pub async fn a_reused_family_is_revoked_once_among_20_racers(stores: Stores) {
    let user = add_user(&stores, "robbed@example.com").await;
    let (sid, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let (r1, r2) = (next(&r0), next(&r0));
    rotated(rotate(&stores, &r0, &r1, at(minutes(10))).await, "r0 → r1");
    rotated(rotate(&stores, &r1, &r2, at(minutes(20))).await, "r1 → r2");

    let now = at(minutes(30));
    let sessions = stores.sessions.clone();
    let results = race(|_| {
        let sessions = sessions.clone();
        let (r0, r1) = (r0.clone(), r1.clone());
        async move {
            let outcome = sessions
                .rotate(&r0.sid, &r0.hash, &r1.hash, now, idle())
                .await?;
            let revoked = sessions
                .revoke(&r0.sid, RevokeReason::RefreshReuse, now)
                .await?;
            Ok::<_, regstack_ports::StoreError>((outcome, revoked))
        }
    })
    .await;
    let outcomes = all_ok("rotate + revoke", results);
    for (outcome, _) in &outcomes {
        assert!(
            matches!(outcome, Rotation::NotLive(_)),
            "a stolen token never rotates: {outcome:?}"
        );
    }
    let revokes = outcomes.iter().filter(|(_, revoked)| *revoked).count();
    assert_eq!(revokes, 1, "exactly one revoke ends the family");
    assert_revoked(
        &session(&stores, &sid).await,
        now,
        RevokeReason::RefreshReuse,
        "the family is revoked",
    );
    dead(
        rotate(&stores, &r2, &next(&r2), now + micro()).await,
        now + micro(),
        "the live token died with it",
    );
}

/// Rotation moves the idle end to `now + idle` but never past
/// `expires_at`, and never moves `expires_at`: one microsecond before it a
/// token still rotates, at it the live token misses with the session
/// reported dead (and so does a spent one). The session is not marked
/// revoked for it.
pub async fn rotation_never_extends_the_absolute_lifetime(stores: Stores) {
    let user = add_user(&stores, "mortal@example.com").await;
    let end = at(hours(2));
    let (sid, r0) = start_family(&stores, &user.id, t0(), end, at(hours(1))).await;
    let r: Vec<Tok> = (0..4).map(|_| next(&r0)).collect();

    let (s, _) = rotated(rotate(&stores, &r0, &r[0], at(minutes(30))).await, "early");
    assert_eq!(
        (s.idle_expires_at, s.expires_at),
        (at(minutes(90)), end),
        "the idle end moves forward; the absolute end stays"
    );
    let (s, _) = rotated(
        rotate(&stores, &r[0], &r[1], at(minutes(90)) - micro()).await,
        "late",
    );
    assert_eq!(
        (s.idle_expires_at, s.expires_at),
        (end, end),
        "now + idle is past the absolute end: capped at it"
    );
    let (s, _) = rotated(
        rotate(&stores, &r[1], &r[2], end - micro()).await,
        "one microsecond before the absolute end",
    );
    assert_eq!((s.idle_expires_at, s.expires_at), (end, end));

    dead(
        rotate(&stores, &r[2], &r[3], end).await,
        end,
        "at expires_at the live token is dead",
    );
    dead(
        rotate(&stores, &r[1], &r[2], end).await,
        end,
        "a spent token of an ended session",
    );
    let s = session(&stores, &sid).await;
    assert_eq!(s.expires_at, end);
    assert_live(&s, "an expired session is not marked revoked");
    assert_eq!(
        listed(&stores, &user.id, end).await,
        Vec::<SessionId>::new()
    );
}

/// A session whose idle end has come (`idle_expires_at <= now`) is dead
/// although its absolute end is far: its live token misses with the
/// session reported dead (one microsecond earlier a token rotates), so does
/// a spent token of it, and it is neither listed nor revocable — nor marked
/// revoked after the fact.
pub async fn an_idle_session_cannot_rotate(stores: Stores) {
    let user = add_user(&stores, "idler@example.com").await;
    let idle_end = at(hours(1));
    let (idle_sid, idle_r0) = start_family(&stores, &user.id, t0(), at(days(30)), idle_end).await;
    let (busy_sid, busy_r0) = start_family(&stores, &user.id, t0(), at(days(30)), idle_end).await;
    let busy_r1 = next(&busy_r0);

    let (s, _) = rotated(
        rotate(&stores, &busy_r0, &busy_r1, idle_end - micro()).await,
        "one microsecond before its idle end a session rotates",
    );
    let busy_end = idle_end - micro() + idle();
    assert_eq!(s.idle_expires_at, busy_end);

    dead(
        rotate(&stores, &idle_r0, &next(&idle_r0), idle_end).await,
        idle_end,
        "at idle_expires_at the live token is dead",
    );
    assert_eq!(
        listed(&stores, &user.id, idle_end).await,
        std::slice::from_ref(&busy_sid),
        "an idle session is not listed"
    );
    assert!(
        !stores
            .sessions
            .revoke(&idle_sid, RevokeReason::Logout, idle_end)
            .await
            .expect("revoke"),
        "an idle session is already dead to revoke"
    );
    assert!(
        !stores
            .sessions
            .revoke_owned(&idle_sid, &user.id, RevokeReason::Revoked, idle_end)
            .await
            .expect("revoke_owned"),
        "and to revoke_owned"
    );
    assert_eq!(
        stores
            .sessions
            .revoke_all(&user.id, RevokeReason::LogoutAll, busy_end)
            .await
            .expect("revoke_all"),
        0,
        "and to revoke_all, once the other one idled out too"
    );
    dead(
        rotate(&stores, &busy_r0, &busy_r1, busy_end).await,
        busy_end,
        "a spent token of an idle session",
    );
    for sid in [&idle_sid, &busy_sid] {
        assert_live(
            &session(&stores, sid).await,
            "an idled-out session is not marked revoked after the fact",
        );
    }
}

/// However a session was revoked — `revoke`, `revoke_all`,
/// `change_password` — its tokens miss with the session reported dead; a
/// spent token of a revoked session too, and nothing overwrites the reason.
pub async fn revoked_sessions_refuse_rotation(stores: Stores) {
    let alice = add_user(&stores, "alice-refresh@example.com").await;
    let bob = add_user(&stores, "bob-refresh@example.com").await;
    let family = |user: UserId| {
        let stores = stores.clone();
        async move { start_family(&stores, &user, t0(), at(days(30)), at(days(1))).await }
    };
    let (logged_out, lo_r0) = family(alice.id.clone()).await;
    let (all1, all1_r0) = family(alice.id.clone()).await;
    let (all2, all2_r0) = family(alice.id.clone()).await;
    let (changed, ch_r0) = family(bob.id.clone()).await;

    let lo_r1 = next(&lo_r0);
    rotated(
        rotate(&stores, &lo_r0, &lo_r1, at(minutes(1))).await,
        "lo_r0 → lo_r1",
    );
    let t = at(minutes(2));
    assert!(stores
        .sessions
        .revoke(&logged_out, RevokeReason::Logout, t)
        .await
        .expect("revoke"));
    dead(
        rotate(&stores, &lo_r1, &next(&lo_r1), t).await,
        t,
        "after revoke, the live token",
    );
    dead(
        rotate(&stores, &lo_r0, &lo_r1, t + minutes(1)).await,
        t + minutes(1),
        "after revoke, a spent token outside its grace",
    );
    assert_revoked(
        &session(&stores, &logged_out).await,
        t,
        RevokeReason::Logout,
        "the session still died of the logout",
    );

    let t = at(minutes(3));
    assert_eq!(
        stores
            .sessions
            .revoke_all(&alice.id, RevokeReason::LogoutAll, t)
            .await
            .expect("revoke_all"),
        2
    );
    for token in [&all1_r0, &all2_r0] {
        dead(
            rotate(&stores, token, &next(token), t).await,
            t,
            "after revoke_all",
        );
    }
    for sid in [&all1, &all2] {
        assert_revoked(
            &session(&stores, sid).await,
            t,
            RevokeReason::LogoutAll,
            "revoke_all",
        );
    }

    stores
        .users
        .change_password(&bob.id, &hash_of("new"), RevokeReason::PasswordChanged, t)
        .await
        .expect("change_password")
        .expect("bob exists");
    dead(
        rotate(&stores, &ch_r0, &next(&ch_r0), t).await,
        t,
        "after change_password",
    );
    assert_revoked(
        &session(&stores, &changed).await,
        t,
        RevokeReason::PasswordChanged,
        "change_password",
    );
}

/// `list` returns exactly the user's live sessions — not revoked, not
/// expired, not idled out, nobody else's — newest `created_at` first
/// (rotation does not reorder them), each as `authenticate` returns it.
pub async fn list_shows_only_live_sessions_of_that_user_newest_first(stores: Stores) {
    let user = add_user(&stores, "lister@example.com").await;
    let other = add_user(&stores, "not-listed@example.com").await;
    let now = at(hours(2));
    let (oldest, oldest_r0) = start_family(&stores, &user.id, t0(), at(days(1)), at(days(1))).await;
    let newest = start_session(&stores, &user.id, at(minutes(2)), at(days(1))).await;
    let middle = start_session(&stores, &user.id, at(minutes(1)), at(days(1))).await;
    let revoked = start_session(&stores, &user.id, at(minutes(3)), at(days(1))).await;
    assert!(stores
        .sessions
        .revoke(&revoked, RevokeReason::Logout, at(minutes(4)))
        .await
        .expect("revoke"));
    let expired = start_session(&stores, &user.id, at(minutes(4)), now).await;
    start_family(&stores, &user.id, at(minutes(5)), at(days(1)), at(hours(1))).await;
    let others = start_session(&stores, &other.id, at(minutes(6)), at(days(1))).await;
    rotated(
        rotate(&stores, &oldest_r0, &next(&oldest_r0), at(minutes(90))).await,
        "the oldest session was used most recently",
    );

    let live = stores
        .sessions
        .list(&user.id, now)
        .await
        .expect("sessions.list");
    let mut expected = Vec::new();
    for sid in [&newest, &middle, &oldest] {
        expected.push(session(&stores, sid).await);
    }
    assert_eq!(live, expected, "live sessions, newest created first");
    assert_eq!(
        listed(&stores, &user.id, now - micro()).await,
        [expired, newest, middle, oldest],
        "one microsecond before its end the expired one was live"
    );
    assert_eq!(listed(&stores, &other.id, now).await, [others]);
    assert_eq!(
        listed(&stores, &UserId::generate(), now).await,
        Vec::<SessionId>::new()
    );
}

/// `revoke_owned` revokes a live session only for its owner: another
/// user's id gets `false` and changes nothing; the owner gets `true` once,
/// with the given reason, after which the session's tokens are dead;
/// unknown and already-ended sessions get `false`.
pub async fn revoke_owned_refuses_another_users_session(stores: Stores) {
    let alice = add_user(&stores, "owner@example.com").await;
    let mallory = add_user(&stores, "mallory@example.com").await;
    let (sid, r0) = start_family(&stores, &alice.id, t0(), at(days(30)), at(days(1))).await;
    let expired = start_session(&stores, &alice.id, t0(), at(minutes(5))).await;
    let revoke_owned = |id: SessionId, owner: UserId, reason: RevokeReason, now: Timestamp| {
        let stores = stores.clone();
        async move {
            stores
                .sessions
                .revoke_owned(&id, &owner, reason, now)
                .await
                .expect("revoke_owned")
        }
    };

    let t = at(minutes(10));
    assert!(
        !revoke_owned(sid.clone(), mallory.id.clone(), RevokeReason::Revoked, t).await,
        "another user cannot end alice's session"
    );
    assert_live(
        &session(&stores, &sid).await,
        "the refused call changed nothing",
    );

    assert!(revoke_owned(sid.clone(), alice.id.clone(), RevokeReason::Revoked, t).await);
    assert_revoked(
        &session(&stores, &sid).await,
        t,
        RevokeReason::Revoked,
        "the owner ended it",
    );
    assert!(
        !revoke_owned(
            sid.clone(),
            alice.id.clone(),
            RevokeReason::Logout,
            t + minutes(1)
        )
        .await,
        "a second time it is already dead"
    );
    assert_revoked(
        &session(&stores, &sid).await,
        t,
        RevokeReason::Revoked,
        "and keeps its reason",
    );
    dead(
        rotate(&stores, &r0, &next(&r0), t + minutes(1)).await,
        t + minutes(1),
        "its token is dead",
    );

    assert!(
        !revoke_owned(
            SessionId::generate(),
            alice.id.clone(),
            RevokeReason::Revoked,
            t
        )
        .await
    );
    assert!(
        !revoke_owned(expired.clone(), alice.id.clone(), RevokeReason::Revoked, t).await,
        "an expired session is already dead"
    );
    assert_live(
        &session(&stores, &expired).await,
        "and is not marked revoked after the fact",
    );
}

/// `delete_account` takes the user's refresh tokens along, live and spent:
/// presenting either is `Unknown` (there is no family left to revoke).
pub async fn delete_account_removes_refresh_tokens_too(stores: Stores) {
    let user = add_user(&stores, "gone-refresh@example.com").await;
    let stayer = add_user(&stores, "stays-refresh@example.com").await;
    let (_, r0) = start_family(&stores, &user.id, t0(), at(days(30)), at(days(1))).await;
    let r1 = next(&r0);
    rotated(rotate(&stores, &r0, &r1, at(minutes(1))).await, "r0 → r1");

    stores
        .users
        .delete_account(&user.id)
        .await
        .expect("delete_account")
        .expect("the user existed");

    let now = at(minutes(1)) + seconds(1);
    assert_eq!(
        rotate(&stores, &r1, &next(&r1), now).await,
        Rotation::Unknown,
        "the live token of a deleted account"
    );
    assert_eq!(
        rotate(&stores, &r0, &r1, now).await,
        Rotation::Unknown,
        "a spent token of a deleted account (inside its grace)"
    );
    assert_live(
        &session(
            &stores,
            &start_session(&stores, &stayer.id, now, at(days(1))).await,
        )
        .await,
        "other users sign in as before",
    );
}

/// `purge_expired` deletes sessions that expired, idled out or were
/// revoked before `before` together with all their refresh tokens, and
/// keeps a session that ended exactly at
/// `before` and every token of a live family — a spent one included, so a
/// later theft is still caught as reuse.
pub async fn refresh_tokens_are_purged_with_their_session(stores: Stores) {
    let user = add_user(&stores, "purged-refresh@example.com").await;
    let now = at(days(1));

    let (expired, e0) = start_family(
        &stores,
        &user.id,
        now - days(2),
        now - hours(1),
        now - hours(1),
    )
    .await;
    let e1 = next(&e0);
    rotated(rotate(&stores, &e0, &e1, now - hours(2)).await, "e0 → e1");
    let (idled, i0) = start_family(
        &stores,
        &user.id,
        now - hours(3),
        now + days(1),
        now - hours(2),
    )
    .await;
    let (revoked, v0) = start_family(
        &stores,
        &user.id,
        now - hours(3),
        now + days(1),
        now + days(1),
    )
    .await;
    assert!(stores
        .sessions
        .revoke(&revoked, RevokeReason::Logout, now - hours(1))
        .await
        .expect("revoke"));
    let (just_idled, _) = start_family(&stores, &user.id, now - hours(3), now + days(1), now).await;
    let (live, l0) = start_family(
        &stores,
        &user.id,
        now - hours(3),
        now + days(1),
        now + hours(1),
    )
    .await;
    let l1 = next(&l0);
    rotated(
        rotate(&stores, &l0, &l1, now - minutes(30)).await,
        "l0 → l1",
    );

    assert_eq!(
        stores.sessions.purge_expired(now).await.expect("purge"),
        3,
        "expired, idled-out and revoked sessions are purged"
    );
    for sid in [&expired, &idled, &revoked] {
        assert_eq!(
            stores
                .sessions
                .authenticate(sid)
                .await
                .expect("authenticate"),
            None
        );
    }
    assert_eq!(
        session(&stores, &just_idled).await.idle_expires_at,
        now,
        "a session that idled out exactly at `before` is kept"
    );
    for hash in [&e0, &e1, &i0, &v0] {
        assert_eq!(
            rotate(&stores, hash, &next(hash), now).await,
            Rotation::Unknown,
            "a purged family's token"
        );
    }
    let f = missed(
        rotate(&stores, &l0, &l1, now).await,
        "a spent token of a live family",
    );
    assert_eq!(
        (&f.session.id, facts(&f)),
        (
            &live,
            (Some(&l1.hash), Some(&l0.hash), Some(now - minutes(30)))
        ),
        "survives the purge, so a later theft is still seen as one"
    );
}
