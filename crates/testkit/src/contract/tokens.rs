//! One-time tokens: reset and email-change links, spent once.

use regstack_ports::{EmailChangeOutcome, PasswordHash, RevokeReason, Stores, TokenKind, User};

use crate::fixtures::{self, at, email, hash_of, micro, t0};

use super::support::*;
use super::RACERS;

/// 20 simultaneous submissions of one reset link with 20 different new
/// passwords: exactly one is applied, and it is the one stored.
pub async fn complete_password_reset_is_single_use_under_20_parallel_attempts(stores: Stores) {
    let user = add_user(&stores, "reset-race@example.com").await;
    let token = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let hashes: Vec<PasswordHash> = (0..RACERS)
        .map(|i| hash_of(&format!("new password {i}")))
        .collect();
    let now = at(minutes(10));
    let users = stores.users.clone();
    let results = race(|i| {
        let users = users.clone();
        let token = token.hash.clone();
        let new = hashes[i].clone();
        async move { users.complete_password_reset(&token, &new, now).await }
    })
    .await;
    let results = all_ok("complete_password_reset", results);

    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one reset applies: winners {winners:?}"
    );
    assert_eq!(
        get_user(&stores, &user.id).await.password_hash,
        Some(hashes[winners[0]].clone()),
        "the stored hash is the winner's"
    );
}

/// A completed reset: new hash, cutoff at `now`, live sessions revoked with
/// `PasswordReset` (dead ones keep their reason), every other token of the
/// user gone, the address's lockout counter cleared; nobody else touched.
pub async fn reset_revokes_sessions_and_moves_the_cutoff(stores: Stores) {
    let user = add_user(&stores, "reset-me@example.com").await;
    let other = add_user(&stores, "not-me@example.com").await;
    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s2 = start_session(&stores, &user.id, at(minutes(1)), at(days(1))).await;
    let s_old = start_session(&stores, &user.id, t0(), at(days(1))).await;
    assert!(stores
        .sessions
        .revoke(&s_old, RevokeReason::Logout, at(minutes(10)))
        .await
        .expect("revoke"));
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;

    let window = hours(1);
    assert_eq!(
        admit(&stores, &user.email, at(minutes(5)), window, 5).await,
        admitted(1)
    );
    assert_eq!(
        admit(&stores, &user.email, at(minutes(6)), window, 5).await,
        admitted(2)
    );
    assert_eq!(
        admit(&stores, &other.email, at(minutes(6)), window, 5).await,
        admitted(1)
    );

    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "reset-me-new@example.com", at(hours(2))),
    )
    .await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(2)))).await;

    let now = at(minutes(30));
    let new_hash = hash_of("the new password");
    let done = stores
        .users
        .complete_password_reset(&reset.hash, &new_hash, now)
        .await
        .expect("complete_password_reset")
        .expect("the token is live");
    assert_eq!(done.id, user.id);
    assert_eq!(done.password_hash, Some(new_hash));
    assert_eq!(
        done.tokens_invalidated_after,
        Some(now),
        "the cutoff moved to now"
    );
    assert_eq!(done.updated_at, now);
    assert_eq!(
        get_user(&stores, &user.id).await,
        done,
        "get sees the reset"
    );

    for sid in [&s1, &s2] {
        assert_revoked(
            &session(&stores, sid).await,
            now,
            RevokeReason::PasswordReset,
            "live sessions are revoked with PasswordReset",
        );
    }
    assert_revoked(
        &session(&stores, &s_old).await,
        at(minutes(10)),
        RevokeReason::Logout,
        "a session that was already dead keeps its own reason and time",
    );
    assert_live(
        &session(&stores, &s_other).await,
        "another user's session is untouched",
    );

    assert_eq!(
        peek(&stores, &reset, now).await,
        None,
        "the reset token is spent"
    );
    assert_eq!(
        peek(&stores, &change, now).await,
        None,
        "other tokens of the user are gone"
    );
    assert_eq!(
        stores
            .users
            .complete_password_reset(&reset.hash, &hash_of("again"), now)
            .await
            .expect("complete_password_reset"),
        None,
        "the link works once"
    );

    assert_eq!(
        admit(&stores, &user.email, now, window, 5).await,
        admitted(1),
        "the lockout counter of the address was cleared"
    );
    assert_eq!(
        admit(&stores, &other.email, now, window, 5).await,
        admitted(2),
        "another address's counter is untouched"
    );
}

/// Issuing a token deletes the user's earlier tokens of the same kind —
/// not of the other kind, not of other users.
pub async fn a_newer_reset_token_supersedes_the_older(stores: Stores) {
    let user = add_user(&stores, "forgetful@example.com").await;
    let other = add_user(&stores, "other@example.com").await;
    let first = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "forgetful-new@example.com", at(hours(1))),
    )
    .await;
    let other_reset = issue(&stores, fixtures::reset_token(&other.id, at(hours(1)))).await;
    let second = issue(&stores, fixtures::reset_token(&user.id, at(hours(2)))).await;

    let now = at(minutes(5));
    assert_eq!(
        peek(&stores, &first, now).await,
        None,
        "the older reset link is dead"
    );
    assert_eq!(peek(&stores, &second, now).await, Some(second.clone()));
    assert_eq!(
        peek(&stores, &change, now).await,
        Some(change.clone()),
        "a reset token does not supersede an email-change token"
    );
    assert_eq!(
        peek(&stores, &other_reset, now).await,
        Some(other_reset),
        "nor another user's reset token"
    );

    assert_eq!(
        stores
            .users
            .complete_password_reset(&first.hash, &hash_of("via old link"), now)
            .await
            .expect("complete_password_reset"),
        None
    );
    assert_eq!(
        get_user(&stores, &user.id).await.password_hash,
        Some(fixtures::password_hash()),
        "the old link changed nothing"
    );

    let second_change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "forgetful-newer@example.com", at(hours(1))),
    )
    .await;
    assert_eq!(
        peek(&stores, &change, now).await,
        None,
        "the older change link is dead"
    );
    assert_eq!(
        peek(&stores, &second_change, now).await,
        Some(second_change)
    );

    assert!(stores
        .users
        .complete_password_reset(&second.hash, &hash_of("via new link"), now)
        .await
        .expect("complete_password_reset")
        .is_some());
}

/// A token is bound to its kind: a reset token cannot be peeked or spent
/// as an email-change token, nor the reverse, and a wrong-kind attempt
/// leaves both tokens usable for their own purpose.
pub async fn reset_token_is_not_an_email_change_token(stores: Stores) {
    let user = add_user(&stores, "kinds@example.com").await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "kinds-new@example.com", at(hours(1))),
    )
    .await;
    let now = at(minutes(1));

    assert_eq!(
        stores
            .tokens
            .peek(TokenKind::EmailChange, &reset.hash, now)
            .await
            .expect("peek"),
        None
    );
    assert_eq!(
        stores
            .tokens
            .peek(TokenKind::PasswordReset, &change.hash, now)
            .await
            .expect("peek"),
        None
    );
    assert_eq!(
        stores
            .users
            .confirm_email_change(&reset.hash, now)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::InvalidToken
    );
    assert_eq!(
        stores
            .users
            .complete_password_reset(&change.hash, &hash_of("smuggled"), now)
            .await
            .expect("complete_password_reset"),
        None
    );
    assert_eq!(get_user(&stores, &user.id).await, user, "nothing changed");

    assert_eq!(
        peek(&stores, &reset, now).await,
        Some(reset),
        "still a valid reset token"
    );
    assert_eq!(
        peek(&stores, &change, now).await,
        Some(change),
        "still a valid change token"
    );
}

/// At `expires_at` exactly a token is dead for `peek` and for spending; a
/// microsecond earlier it is alive.
pub async fn expired_token_is_refused(stores: Stores) {
    let expires_at = at(hours(1));
    let user = add_user(&stores, "slow@example.com").await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, expires_at)).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "slow-new@example.com", expires_at),
    )
    .await;

    assert_eq!(
        peek(&stores, &reset, expires_at - micro()).await,
        Some(reset.clone())
    );
    assert_eq!(
        peek(&stores, &change, expires_at - micro()).await,
        Some(change.clone())
    );
    assert_eq!(peek(&stores, &reset, expires_at).await, None);
    assert_eq!(peek(&stores, &change, expires_at).await, None);

    assert_eq!(
        stores
            .users
            .complete_password_reset(&reset.hash, &hash_of("too late"), expires_at)
            .await
            .expect("complete_password_reset"),
        None
    );
    assert_eq!(
        stores
            .users
            .confirm_email_change(&change.hash, expires_at)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::InvalidToken
    );
    assert_eq!(get_user(&stores, &user.id).await, user, "nothing changed");

    // The same boundary from the spending side, with a fresh user.
    let punctual = add_user(&stores, "punctual@example.com").await;
    let on_time = issue(&stores, fixtures::reset_token(&punctual.id, expires_at)).await;
    assert!(stores
        .users
        .complete_password_reset(
            &on_time.hash,
            &hash_of("just in time"),
            expires_at - micro()
        )
        .await
        .expect("complete_password_reset")
        .is_some());
}

/// 20 simultaneous confirmations of one email-change link: the address is
/// switched once, 19 callers see `InvalidToken`, no error.
pub async fn confirm_email_change_switches_the_address_once_under_20_parallel_attempts(
    stores: Stores,
) {
    let user = add_user(&stores, "old-address@example.com").await;
    let token = issue(
        &stores,
        fixtures::email_change_token(&user.id, "new-address@example.com", at(hours(1))),
    )
    .await;
    let now = at(minutes(1));
    let users = stores.users.clone();
    let results = race(|_| {
        let users = users.clone();
        let token = token.hash.clone();
        async move { users.confirm_email_change(&token, now).await }
    })
    .await;
    let results = all_ok("confirm_email_change", results);

    let changed: Vec<&User> = results
        .iter()
        .filter_map(|r| match r {
            EmailChangeOutcome::Changed(u) => Some(u),
            _ => None,
        })
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "exactly one confirmation applies: {results:?}"
    );
    assert!(
        results.iter().all(|r| matches!(
            r,
            EmailChangeOutcome::Changed(_) | EmailChangeOutcome::InvalidToken
        )),
        "the losers see InvalidToken: {results:?}"
    );
    assert_eq!(changed[0].email, email("new-address@example.com"));
    assert_eq!(
        stores
            .users
            .find_by_email(&email("old-address@example.com"))
            .await
            .expect("find_by_email"),
        None
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&email("new-address@example.com"))
            .await
            .expect("find_by_email")
            .map(|u| u.id),
        Some(user.id)
    );
}

/// A confirmed change: the address switches (the old one is free again),
/// the cutoff moves, live sessions are revoked with `EmailChanged`, every
/// other token of the user is gone; the password and other users stay.
pub async fn confirm_email_change_revokes_sessions_and_burns_other_tokens(stores: Stores) {
    let user = add_user(&stores, "mover@example.com").await;
    let other = add_user(&stores, "stayer@example.com").await;
    let s_live = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s_old = start_session(&stores, &user.id, t0(), at(days(1))).await;
    assert!(stores
        .sessions
        .revoke(&s_old, RevokeReason::Logout, at(minutes(1)))
        .await
        .expect("revoke"));
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let other_reset = issue(&stores, fixtures::reset_token(&other.id, at(hours(1)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "Moved@Example.com", at(hours(1))),
    )
    .await;

    let now = at(minutes(10));
    let moved = match stores
        .users
        .confirm_email_change(&change.hash, now)
        .await
        .expect("confirm_email_change")
    {
        EmailChangeOutcome::Changed(u) => u,
        other => panic!("expected Changed, got {other:?}"),
    };
    assert_eq!(moved.id, user.id);
    assert_eq!(moved.email, email("moved@example.com"));
    assert_eq!(moved.tokens_invalidated_after, Some(now));
    assert_eq!(moved.updated_at, now);
    assert_eq!(
        moved.password_hash, user.password_hash,
        "the password is unchanged"
    );
    assert_eq!(
        get_user(&stores, &user.id).await,
        moved,
        "get sees the change"
    );

    assert_revoked(
        &session(&stores, &s_live).await,
        now,
        RevokeReason::EmailChanged,
        "live sessions are revoked with EmailChanged",
    );
    assert_revoked(
        &session(&stores, &s_old).await,
        at(minutes(1)),
        RevokeReason::Logout,
        "a dead session keeps its own reason",
    );
    assert_live(
        &session(&stores, &s_other).await,
        "another user's session is untouched",
    );
    assert_eq!(
        peek(&stores, &reset, now).await,
        None,
        "the user's reset token is gone"
    );
    assert_eq!(peek(&stores, &other_reset, now).await, Some(other_reset));
    assert_eq!(
        stores
            .users
            .confirm_email_change(&change.hash, now)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::InvalidToken,
        "the link works once"
    );

    // The old address is free for a new account.
    stores
        .users
        .insert(fixtures::new_user("mover@example.com"))
        .await
        .expect("the old address can be registered again");
    assert_eq!(
        get_user(&stores, &user.id).await.email,
        email("moved@example.com")
    );
}

/// Confirming a change to an address taken meanwhile reports `EmailTaken`,
/// spends the token and changes nothing else: both accounts keep their
/// addresses, no session is revoked.
pub async fn confirm_email_change_reports_a_taken_address(stores: Stores) {
    let user = add_user(&stores, "wants-it@example.com").await;
    let holder = add_user(&stores, "has-it@example.com").await;
    let sid = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "has-it@example.com", at(hours(1))),
    )
    .await;

    let user = get_user(&stores, &user.id).await;
    let now = at(minutes(1));
    assert_eq!(
        stores
            .users
            .confirm_email_change(&change.hash, now)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::EmailTaken
    );
    assert_eq!(
        get_user(&stores, &user.id).await,
        user,
        "the requester is unchanged"
    );
    assert_eq!(
        get_user(&stores, &holder.id).await,
        holder,
        "the holder is unchanged"
    );
    assert_live(
        &session(&stores, &sid).await,
        "nothing changed, so nothing is revoked",
    );
    assert_eq!(
        stores
            .users
            .confirm_email_change(&change.hash, now)
            .await
            .expect("confirm_email_change"),
        EmailChangeOutcome::InvalidToken,
        "the token is spent"
    );
}

/// A revert link of an email change: issued at `created_at`, restoring
/// `restore`.
fn revert_token(
    user: &regstack_ports::UserId,
    restore: &str,
    created_at: regstack_ports::Timestamp,
    expires_at: regstack_ports::Timestamp,
) -> regstack_ports::OneTimeToken {
    regstack_ports::OneTimeToken {
        kind: TokenKind::EmailChangeRevert,
        new_email: Some(email(restore)),
        created_at,
        ..fixtures::reset_token(user, expires_at)
    }
}

/// 20 simultaneous presentations of one revert link (`revert_email_change`):
/// one wins and restores the address; 19 see `None`, none an error. The
/// winner's password is the lockout hash, every live session is revoked,
/// a pending change and reset links are gone.
pub async fn revert_email_change_applies_once_under_20_parallel_attempts(stores: Stores) {
    let user = add_user(&stores, "owner@example.com").await;
    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let revert = issue(
        &stores,
        revert_token(&user.id, "owner@example.com", t0(), at(days(7))),
    )
    .await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "thief@example.net", at(hours(1))),
    )
    .await;
    // The intruder confirms: the revert link survives the change.
    let now = at(minutes(1));
    assert!(matches!(
        stores
            .users
            .confirm_email_change(&change.hash, now)
            .await
            .expect("confirm"),
        EmailChangeOutcome::Changed(_)
    ));
    // And a reset link to the address it now holds, and a password change:
    // the revert link survives those too.
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(1)))).await;
    let s2 = start_session(&stores, &user.id, now, at(days(1))).await;
    let lockout = hash_of("nobody knows this one");
    let later = at(minutes(2));
    let users = stores.users.clone();
    let results = race(|_| {
        let users = users.clone();
        let token = revert.hash.clone();
        let lockout = lockout.clone();
        async move { users.revert_email_change(&token, &lockout, later).await }
    })
    .await;
    let results = all_ok("revert_email_change", results);
    let winners: Vec<&User> = results.iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one revert applies: {results:?}");
    let reverted = get_user(&stores, &user.id).await;
    assert_eq!(reverted.email, email("owner@example.com"));
    assert_eq!(reverted.password_hash, Some(lockout));
    assert!(reverted
        .tokens_invalidated_after
        .is_some_and(|t| t >= later));
    assert_eq!(
        stores
            .users
            .find_by_email(&email("thief@example.net"))
            .await
            .expect("find_by_email"),
        None
    );
    for id in [s1, s2] {
        assert!(
            session(&stores, &id).await.revoked_at.is_some(),
            "every session ends"
        );
    }
    for token in [&reset, &revert] {
        assert_eq!(peek(&stores, token, later).await, None);
    }
}

/// The earliest revert link wins: redeeming a link deletes the user's
/// revert links issued at or after it, never an earlier one; and a newer
/// revert link supersedes nothing, while credential changes keep them all.
pub async fn revert_email_change_spares_earlier_links_and_kills_later_ones(stores: Stores) {
    let user = add_user(&stores, "first@example.com").await;
    let owners = issue(
        &stores,
        revert_token(&user.id, "first@example.com", t0(), at(days(7))),
    )
    .await;
    let intruders = issue(
        &stores,
        revert_token(&user.id, "evil@example.net", at(minutes(5)), at(days(7))),
    )
    .await;
    let now = at(minutes(10));
    assert!(
        peek(&stores, &owners, now).await.is_some(),
        "a newer revert link supersedes nothing"
    );
    stores
        .users
        .change_password(&user.id, &hash_of("p2"), RevokeReason::PasswordChanged, now)
        .await
        .expect("change_password")
        .expect("user");
    // The intruder's (later) link first: it spends itself only.
    let lockout = hash_of("void");
    assert!(stores
        .users
        .revert_email_change(&intruders.hash, &lockout, now)
        .await
        .expect("revert")
        .is_some());
    assert!(
        peek(&stores, &owners, now).await.is_some(),
        "the earlier link lives"
    );
    let reverted = stores
        .users
        .revert_email_change(&owners.hash, &lockout, now)
        .await
        .expect("revert")
        .expect("applies");
    assert_eq!(reverted.email, email("first@example.com"));
    // The other way round: the earlier link kills the later one.
    let a = issue(
        &stores,
        revert_token(&user.id, "first@example.com", at(minutes(20)), at(days(7))),
    )
    .await;
    let b = issue(
        &stores,
        revert_token(&user.id, "first@example.com", at(minutes(30)), at(days(7))),
    )
    .await;
    let later = at(minutes(40));
    assert!(stores
        .users
        .revert_email_change(&a.hash, &lockout, later)
        .await
        .expect("revert")
        .is_some());
    assert_eq!(
        stores
            .users
            .revert_email_change(&b.hash, &lockout, later)
            .await
            .expect("revert"),
        None
    );
    // Expired: refused.
    let c = issue(
        &stores,
        revert_token(&user.id, "first@example.com", later, at(hours(1))),
    )
    .await;
    assert_eq!(
        stores
            .users
            .revert_email_change(&c.hash, &lockout, at(hours(1)))
            .await
            .expect("revert"),
        None
    );
}
