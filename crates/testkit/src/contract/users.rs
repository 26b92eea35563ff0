//! Users: insert, lookups, profile, password change.

use regstack_ports::{RevokeReason, StoreError, Stores, User, UserId};

use crate::fixtures::{self, at, email, hash_of, micro, t0};

use super::support::*;
use super::RACERS;

/// `insert` stores every field of `NewUser`, fills the rest with the
/// documented defaults, and both lookups return exactly that row; the
/// email lookup is by canonical address.
pub async fn insert_stores_every_field_and_lookups_find_it(stores: Stores) {
    let mut new = fixtures::new_user("Ada.Lovelace@Example.COM");
    new.full_name = Some("Ada Lovelace".to_owned());
    new.is_superuser = true;
    new.is_verified = false;
    let expected = User {
        id: new.id.clone(),
        email: email("ada.lovelace@example.com"),
        password_hash: new.password_hash.clone(),
        is_active: true,
        is_verified: false,
        is_superuser: true,
        full_name: Some("Ada Lovelace".to_owned()),
        phone_number: None,
        is_mfa_enabled: false,
        must_change_password: false,
        created_at: t0(),
        updated_at: t0(),
        last_login: None,
        tokens_invalidated_after: None,
        disabled_reason: None,
        disabled_until: None,
    };
    let created = stores.users.insert(new.clone()).await.expect("insert");
    assert_eq!(created, expected, "insert returns the stored row");
    assert_eq!(
        stores.users.get(&new.id).await.expect("get"),
        Some(expected.clone()),
        "get by id"
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&email("ADA.LOVELACE@example.com"))
            .await
            .expect("find_by_email"),
        Some(expected),
        "find by canonical email"
    );

    // An account without a password (OAuth-only) is a first-class row.
    let mut oauth_only = fixtures::new_user("oauth-only@example.com");
    oauth_only.password_hash = None;
    stores
        .users
        .insert(oauth_only.clone())
        .await
        .expect("insert");
    assert_eq!(get_user(&stores, &oauth_only.id).await.password_hash, None);

    assert_eq!(
        stores.users.get(&UserId::generate()).await.expect("get"),
        None
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&email("nobody@example.com"))
            .await
            .expect("find_by_email"),
        None
    );
}

/// A second account for the same canonical address is refused with
/// `Conflict("email")`, whatever its spelling, and changes nothing.
pub async fn email_uniqueness_is_enforced_on_insert(stores: Stores) {
    let alice = add_user(&stores, "alice@example.com").await;
    let mut impostor = fixtures::new_user("ALICE@Example.com");
    impostor.full_name = Some("Impostor".to_owned());
    match stores.users.insert(impostor.clone()).await {
        Err(StoreError::Conflict("email")) => {}
        other => panic!(
            "second insert of alice@example.com: expected Conflict(\"email\"), got {other:?}"
        ),
    }
    assert_eq!(
        stores.users.get(&impostor.id).await.expect("get"),
        None,
        "the refused row must not exist under its own id"
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&alice.email)
            .await
            .expect("find_by_email"),
        Some(alice),
        "the first account is untouched"
    );
}

/// 20 simultaneous registrations of one address: one row, 19
/// `Conflict("email")`, no other error.
pub async fn email_uniqueness_holds_under_20_parallel_inserts(stores: Stores) {
    let users = stores.users.clone();
    let attempts: Vec<_> = (0..RACERS)
        .map(|_| fixtures::new_user("race@example.com"))
        .collect();
    let ids: Vec<UserId> = attempts.iter().map(|u| u.id.clone()).collect();
    let results = race(|i| {
        let users = users.clone();
        let new = attempts[i].clone();
        async move { users.insert(new).await }
    })
    .await;

    let mut winners = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(user) => winners.push((i, user)),
            Err(StoreError::Conflict("email")) => {}
            Err(other) => {
                panic!("parallel insert {i}: expected Ok or Conflict(\"email\"), got {other:?}")
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one insert wins: {winners:?}");
    let (winner, _) = &winners[0];
    let found = stores
        .users
        .find_by_email(&email("race@example.com"))
        .await
        .expect("find_by_email")
        .expect("the winner exists");
    assert_eq!(found.id, ids[*winner]);
}

/// Instants come back equal to the microsecond, in UTC, from every table:
/// users, pending rows, tokens, sessions, revocations and lockout answers.
pub async fn timestamps_round_trip_exactly(stores: Stores) {
    let y2k_eve = instant("1999-12-31T23:59:59.999999Z");
    let one_micro = instant("2026-01-01T00:00:00.000001Z");
    let past_2038 = instant("2038-01-19T03:14:08.654321Z");

    let mut new = fixtures::new_user("time@example.com");
    new.created_at = y2k_eve;
    let user = stores.users.insert(new).await.expect("insert");
    let stored = get_user(&stores, &user.id).await;
    assert_eq!(
        (stored.created_at, stored.updated_at),
        (y2k_eve, y2k_eve),
        "user created_at / updated_at"
    );

    let renamed = stores
        .users
        .update_full_name(&user.id, Some("T".to_owned()), one_micro)
        .await
        .expect("update_full_name")
        .expect("user exists");
    assert_eq!(renamed.updated_at, one_micro);
    assert_eq!(get_user(&stores, &user.id).await.updated_at, one_micro);

    let mut pending = fixtures::pending(
        "pending-time@example.com",
        &fixtures::token_hash(),
        past_2038,
    );
    pending.created_at = y2k_eve;
    stores.pending.put(pending.clone()).await.expect("put");
    assert_eq!(
        stores
            .pending
            .find_by_email(&pending.email, one_micro)
            .await
            .expect("find_by_email"),
        Some(pending),
        "pending row round trip"
    );

    let mut token = fixtures::reset_token(&user.id, past_2038);
    token.created_at = y2k_eve;
    let token = issue(&stores, token).await;
    assert_eq!(
        peek(&stores, &token, one_micro).await,
        Some(token),
        "token round trip"
    );

    let sid = start_session(&stores, &user.id, one_micro, past_2038).await;
    let (s, u) = stores
        .sessions
        .authenticate(&sid)
        .await
        .expect("authenticate")
        .expect("session exists");
    assert_eq!(
        (
            s.created_at,
            s.last_used_at,
            s.expires_at,
            s.idle_expires_at
        ),
        (one_micro, one_micro, past_2038, past_2038),
        "session instants"
    );
    assert_eq!(u.last_login, Some(one_micro), "last_login");

    assert!(stores
        .sessions
        .revoke(&sid, RevokeReason::Logout, t0())
        .await
        .expect("revoke"));
    assert_revoked(
        &session(&stores, &sid).await,
        t0(),
        RevokeReason::Logout,
        "revoked_at round trip",
    );

    let changed = stores
        .users
        .change_password(
            &user.id,
            &hash_of("new"),
            RevokeReason::PasswordChanged,
            t0() + micro(),
        )
        .await
        .expect("change_password")
        .expect("user exists");
    assert_eq!(changed.tokens_invalidated_after, Some(t0() + micro()));
    assert_eq!(
        get_user(&stores, &user.id).await.tokens_invalidated_after,
        Some(t0() + micro())
    );

    let who = email("time@example.com");
    assert_eq!(
        admit(&stores, &who, one_micro, minutes(15), 1).await,
        admitted(1)
    );
    assert_eq!(
        admit(&stores, &who, one_micro + micro(), minutes(15), 1).await,
        locked(one_micro + minutes(15)),
        "retry_at is computed from the stored instant, to the microsecond"
    );
}

/// `update_full_name` sets and clears the name, stamps `updated_at`, and
/// reports a missing user as `None`.
pub async fn update_full_name_sets_and_clears(stores: Stores) {
    let user = add_user(&stores, "name@example.com").await;
    assert_eq!(user.full_name, None);

    let named = stores
        .users
        .update_full_name(&user.id, Some("Zoë Ōtsuka 名前".to_owned()), at(minutes(1)))
        .await
        .expect("update_full_name")
        .expect("user exists");
    assert_eq!(named.full_name.as_deref(), Some("Zoë Ōtsuka 名前"));
    assert_eq!(named.updated_at, at(minutes(1)));
    assert_eq!(
        get_user(&stores, &user.id).await,
        named,
        "get sees the update"
    );

    let cleared = stores
        .users
        .update_full_name(&user.id, None, at(minutes(2)))
        .await
        .expect("update_full_name")
        .expect("user exists");
    assert_eq!(cleared.full_name, None);
    assert_eq!(cleared.updated_at, at(minutes(2)));
    assert_eq!(get_user(&stores, &user.id).await, cleared);

    assert_eq!(
        stores
            .users
            .update_full_name(&UserId::generate(), Some("x".to_owned()), t0())
            .await
            .expect("update_full_name"),
        None
    );
}

/// The rehash swap happens only while the stored hash is still the one the
/// caller verified against, and touches nothing else.
pub async fn upgrade_password_hash_is_conditional(stores: Stores) {
    let user = add_user(&stores, "rehash@example.com").await;
    let sid = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let current = fixtures::password_hash();
    let stronger = hash_of("same password, stronger parameters");

    assert!(
        !stores
            .users
            .upgrade_password_hash(&user.id, &hash_of("not the stored one"), &stronger)
            .await
            .expect("upgrade"),
        "a wrong `expected` must not swap"
    );
    assert_eq!(
        get_user(&stores, &user.id).await.password_hash,
        Some(current.clone())
    );

    assert!(
        stores
            .users
            .upgrade_password_hash(&user.id, &current, &stronger)
            .await
            .expect("upgrade"),
        "the matching `expected` swaps"
    );
    let after = get_user(&stores, &user.id).await;
    assert_eq!(after.password_hash, Some(stronger.clone()));
    assert_eq!(
        after.tokens_invalidated_after, None,
        "a rehash is not a password change"
    );
    assert_live(&session(&stores, &sid).await, "a rehash revokes no session");

    assert!(
        !stores
            .users
            .upgrade_password_hash(&user.id, &current, &hash_of("stale"))
            .await
            .expect("upgrade"),
        "a stale `expected` (the hash changed meanwhile) must not swap"
    );
    assert_eq!(
        get_user(&stores, &user.id).await.password_hash,
        Some(stronger)
    );

    let mut no_password = fixtures::new_user("oauth@example.com");
    no_password.password_hash = None;
    stores
        .users
        .insert(no_password.clone())
        .await
        .expect("insert");
    assert!(!stores
        .users
        .upgrade_password_hash(&no_password.id, &current, &hash_of("x"))
        .await
        .expect("upgrade"));
    assert_eq!(get_user(&stores, &no_password.id).await.password_hash, None);

    assert!(!stores
        .users
        .upgrade_password_hash(&UserId::generate(), &current, &hash_of("x"))
        .await
        .expect("upgrade"));
}

/// `change_password`: new hash, cutoff moved to `now`, the user's live
/// sessions revoked with the given reason, all its one-time tokens gone —
/// and nobody else's.
pub async fn change_password_burns_outstanding_tokens_and_revokes_sessions(stores: Stores) {
    let user = add_user(&stores, "changer@example.com").await;
    let other = add_user(&stores, "bystander@example.com").await;
    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s2 = start_session(&stores, &user.id, at(minutes(1)), at(days(1))).await;
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(2)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "changer-new@example.com", at(hours(2))),
    )
    .await;
    let other_reset = issue(&stores, fixtures::reset_token(&other.id, at(hours(2)))).await;

    let now = at(hours(1));
    let new_hash = hash_of("a new password");
    let changed = stores
        .users
        .change_password(&user.id, &new_hash, RevokeReason::PasswordChanged, now)
        .await
        .expect("change_password")
        .expect("user exists");
    assert_eq!(changed.password_hash, Some(new_hash));
    assert_eq!(changed.tokens_invalidated_after, Some(now));
    assert_eq!(changed.updated_at, now);
    assert_eq!(
        get_user(&stores, &user.id).await,
        changed,
        "get sees the change"
    );

    for sid in [&s1, &s2] {
        assert_revoked(
            &session(&stores, sid).await,
            now,
            RevokeReason::PasswordChanged,
            "the user's sessions are revoked",
        );
    }
    assert_live(
        &session(&stores, &s_other).await,
        "another user's session is untouched",
    );
    assert_eq!(peek(&stores, &reset, now).await, None, "reset token burnt");
    assert_eq!(
        peek(&stores, &change, now).await,
        None,
        "email-change token burnt"
    );
    assert_eq!(
        peek(&stores, &other_reset, now).await,
        Some(other_reset),
        "another user's token survives"
    );

    assert_eq!(
        stores
            .users
            .change_password(
                &UserId::generate(),
                &hash_of("x"),
                RevokeReason::PasswordChanged,
                now
            )
            .await
            .expect("change_password"),
        None
    );
}

/// Every canonical address round-trips: stored, found by any spelling that
/// canonicalises to it (precomposed or decomposed, any case), and read
/// back equal — so no accepted address can become a row that fails to
/// load.
pub async fn unicode_addresses_round_trip_and_match_every_spelling(stores: Stores) {
    let spellings = [
        ("Zo\u{e9}@example.com", "ZOE\u{301}@Example.COM"),
        (
            "\u{3b1}\u{3b2}\u{3b3}@example.com",
            "\u{391}\u{392}\u{393}@EXAMPLE.com",
        ),
        (
            "\u{43f}\u{440}\u{438}@example.com",
            "\u{41f}\u{420}\u{418}@example.com",
        ),
        (
            "j\u{fc}rgen.m\u{fc}ller@example.com",
            "JU\u{308}RGEN.MU\u{308}LLER@example.com",
        ),
    ];
    for (stored_as, looked_up_as) in spellings {
        let email = regstack_ports::Email::parse(stored_as).expect("a valid address");
        assert_eq!(
            regstack_ports::Email::parse(looked_up_as).expect("a valid address"),
            email,
            "{looked_up_as} is the same address as {stored_as}"
        );
        let user = add_user(&stores, stored_as).await;
        assert_eq!(user.email, email);
        let found = stores
            .users
            .find_by_email(&regstack_ports::Email::parse(looked_up_as).expect("valid"))
            .await
            .expect("find_by_email")
            .expect("found by the other spelling");
        assert_eq!(found.id, user.id);
        assert_eq!(
            get_user(&stores, &user.id).await.email,
            email,
            "reads back equal"
        );
    }
}
