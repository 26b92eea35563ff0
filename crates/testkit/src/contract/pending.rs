//! Pending registrations: put, resend, promote.

use regstack_ports::{Promotion, Stores, User, UserId};

use crate::fixtures::{self, at, email, hash_of, micro, t0};

use super::support::*;
use super::RACERS;

/// `promote` turns the live pending row into a verified user with the
/// given id, carrying its hash and name, created at `now`; the row is gone
/// and the token is spent.
pub async fn promote_creates_a_verified_user_and_removes_the_pending_row(stores: Stores) {
    let token = fixtures::token_hash();
    let mut pending = fixtures::pending("grace@example.com", &token, at(hours(24)));
    pending.full_name = Some("Grace Hopper".to_owned());
    pending.password_hash = hash_of("grace's password");
    stores.pending.put(pending.clone()).await.expect("put");

    let id = UserId::generate();
    let now = at(minutes(5));
    let expected = User {
        id: id.clone(),
        email: pending.email.clone(),
        password_hash: Some(pending.password_hash.clone()),
        is_active: true,
        is_verified: true,
        is_superuser: false,
        full_name: Some("Grace Hopper".to_owned()),
        phone_number: None,
        is_mfa_enabled: false,
        must_change_password: false,
        created_at: now,
        updated_at: now,
        last_login: None,
        tokens_invalidated_after: None,
        disabled_reason: None,
        disabled_until: None,
    };
    assert_eq!(
        stores
            .pending
            .promote(&token, &id, now)
            .await
            .expect("promote"),
        Promotion::Promoted(expected.clone())
    );
    assert_eq!(
        stores.users.get(&id).await.expect("get"),
        Some(expected.clone())
    );
    assert_eq!(
        stores
            .users
            .find_by_email(&pending.email)
            .await
            .expect("find_by_email"),
        Some(expected)
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&pending.email, now)
            .await
            .expect("find_by_email"),
        None,
        "the pending row is gone"
    );
    assert_eq!(
        stores
            .pending
            .promote(&token, &UserId::generate(), now)
            .await
            .expect("promote"),
        Promotion::InvalidToken,
        "the token is spent"
    );
}

/// 20 simultaneous clicks on one verification link: one user, 19
/// `InvalidToken`, no error.
pub async fn promote_is_single_use_under_20_parallel_attempts(stores: Stores) {
    let token = fixtures::token_hash();
    let pending = fixtures::pending("clicky@example.com", &token, at(hours(24)));
    stores.pending.put(pending.clone()).await.expect("put");

    let ids: Vec<UserId> = (0..RACERS).map(|_| UserId::generate()).collect();
    let now = at(minutes(1));
    let store = stores.pending.clone();
    let results = race(|i| {
        let store = store.clone();
        let token = token.clone();
        let id = ids[i].clone();
        async move { store.promote(&token, &id, now).await }
    })
    .await;
    let results = all_ok("promote", results);

    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Promotion::Promoted(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one promotion: {results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Promotion::Promoted(_) | Promotion::InvalidToken)),
        "the losers see InvalidToken: {results:?}"
    );
    let user = stores
        .users
        .find_by_email(&pending.email)
        .await
        .expect("find_by_email")
        .expect("the user exists");
    assert_eq!(user.id, ids[winners[0]], "the one user is the winner's");
    for (i, id) in ids.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(
                stores.users.get(id).await.expect("get"),
                None,
                "loser {i} made a user"
            );
        }
    }
}

/// A valid link for an address that became an account meanwhile reports
/// `EmailTaken`, spends the row and leaves the account alone.
pub async fn promote_reports_a_taken_address_and_removes_the_pending_row(stores: Stores) {
    let existing = add_user(&stores, "taken@example.com").await;
    let token = fixtures::token_hash();
    let mut pending = fixtures::pending("taken@example.com", &token, at(hours(24)));
    pending.password_hash = hash_of("someone else's password");
    stores.pending.put(pending.clone()).await.expect("put");

    let id = UserId::generate();
    assert_eq!(
        stores
            .pending
            .promote(&token, &id, t0())
            .await
            .expect("promote"),
        Promotion::EmailTaken
    );
    assert_eq!(stores.users.get(&id).await.expect("get"), None);
    assert_eq!(
        get_user(&stores, &existing.id).await,
        existing,
        "the account is untouched"
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&pending.email, t0())
            .await
            .expect("find_by_email"),
        None,
        "the pending row was removed"
    );
    assert_eq!(
        stores
            .pending
            .promote(&token, &UserId::generate(), t0())
            .await
            .expect("promote"),
        Promotion::InvalidToken
    );
}

/// At `expires_at` exactly a registration is dead: it is not found and
/// cannot be promoted; a microsecond earlier it is alive.
pub async fn expired_pending_registration_cannot_be_promoted(stores: Stores) {
    let expires_at = at(hours(1));
    let late_token = fixtures::token_hash();
    let late = fixtures::pending("late@example.com", &late_token, expires_at);
    let just_in_time_token = fixtures::token_hash();
    let just_in_time =
        fixtures::pending("just-in-time@example.com", &just_in_time_token, expires_at);
    stores.pending.put(late.clone()).await.expect("put");
    stores.pending.put(just_in_time.clone()).await.expect("put");

    assert_eq!(
        stores
            .pending
            .find_by_email(&late.email, expires_at - micro())
            .await
            .expect("find_by_email"),
        Some(late.clone()),
        "alive one microsecond before expiry"
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&late.email, expires_at)
            .await
            .expect("find_by_email"),
        None,
        "dead at expires_at"
    );

    let id = UserId::generate();
    assert_eq!(
        stores
            .pending
            .promote(&late_token, &id, expires_at)
            .await
            .expect("promote"),
        Promotion::InvalidToken
    );
    assert_eq!(stores.users.get(&id).await.expect("get"), None);
    assert_eq!(
        stores
            .users
            .find_by_email(&late.email)
            .await
            .expect("find_by_email"),
        None
    );

    assert!(matches!(
        stores
            .pending
            .promote(
                &just_in_time_token,
                &UserId::generate(),
                expires_at - micro()
            )
            .await
            .expect("promote"),
        Promotion::Promoted(_)
    ));
}

/// `put` never replaces a live row: a second registration for a pending
/// address changes nothing (its password must not become the account's —
/// pre-account hijacking) and reports `false`; the first link keeps
/// working. A row that has expired is replaced (the old link stays dead).
/// Of 20 parallel puts for a new address exactly one stores its row.
pub async fn put_never_replaces_a_live_row_but_takes_the_place_of_an_expired_one(stores: Stores) {
    let old_token = fixtures::token_hash();
    let mut first = fixtures::pending("twice@example.com", &old_token, at(hours(24)));
    first.full_name = Some("First".to_owned());
    assert!(stores.pending.put(first.clone()).await.expect("put"));

    let mut second = fixtures::pending("twice@example.com", &fixtures::token_hash(), at(hours(25)));
    second.full_name = Some("Second".to_owned());
    second.password_hash = hash_of("the other person's password");
    second.created_at = at(hours(1));
    assert!(
        !stores.pending.put(second).await.expect("put"),
        "a live row is not replaced"
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&first.email, at(hours(2)))
            .await
            .expect("find_by_email"),
        Some(first.clone()),
        "the first registration is untouched"
    );

    // At its expiry exactly the first row is dead and may be replaced.
    let new_token = fixtures::token_hash();
    let mut third = fixtures::pending("twice@example.com", &new_token, at(hours(48)));
    third.full_name = Some("Third".to_owned());
    third.password_hash = hash_of("third password");
    third.created_at = at(hours(24));
    assert!(stores.pending.put(third.clone()).await.expect("put"));
    assert_eq!(
        stores
            .pending
            .promote(&old_token, &UserId::generate(), at(hours(25)))
            .await
            .expect("promote"),
        Promotion::InvalidToken,
        "the expired row's link stays dead"
    );
    match stores
        .pending
        .promote(&new_token, &UserId::generate(), at(hours(25)))
        .await
        .expect("promote")
    {
        Promotion::Promoted(user) => {
            assert_eq!(user.full_name.as_deref(), Some("Third"));
            assert_eq!(user.password_hash, Some(third.password_hash));
        }
        other => panic!("the new link promotes: got {other:?}"),
    }

    let outcomes = race(|i| {
        let stores = stores.clone();
        async move {
            let mut row =
                fixtures::pending("crowd@example.com", &fixtures::token_hash(), at(hours(24)));
            row.password_hash = hash_of(&format!("password {i}"));
            let stored = stores.pending.put(row.clone()).await;
            stored.map(|s| (s, row))
        }
    })
    .await;
    let winners: Vec<_> = all_ok("parallel puts", outcomes)
        .into_iter()
        .filter(|(stored, _)| *stored)
        .map(|(_, row)| row)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {RACERS} parallel puts stores its row"
    );
    assert_eq!(
        stores
            .pending
            .find_by_email(&winners[0].email, at(hours(1)))
            .await
            .expect("find_by_email")
            .map(|p| p.password_hash),
        Some(winners[0].password_hash.clone()),
        "the row stored is the winner's"
    );
}

/// Resend gives a live row a new token and expiry (the old link dies, the
/// rest of the row stays). A missing row — or an expired one, which reads
/// as missing — reports `false` and changes nothing.
pub async fn replace_token_gives_only_a_live_row_a_new_link(stores: Stores) {
    let old_token = fixtures::token_hash();
    let mut row = fixtures::pending("resend@example.com", &old_token, at(hours(1)));
    row.full_name = Some("Resender".to_owned());
    stores.pending.put(row.clone()).await.expect("put");

    let new_token = fixtures::token_hash();
    assert!(stores
        .pending
        .replace_token(&row.email, &new_token, at(hours(3)), at(minutes(30)))
        .await
        .expect("replace_token"));
    let expected = regstack_ports::PendingRegistration {
        token_hash: new_token.clone(),
        expires_at: at(hours(3)),
        ..row.clone()
    };
    assert_eq!(
        stores
            .pending
            .find_by_email(&row.email, at(hours(2)))
            .await
            .expect("find_by_email"),
        Some(expected),
        "new token and expiry, everything else unchanged"
    );
    assert_eq!(
        stores
            .pending
            .promote(&old_token, &UserId::generate(), at(minutes(40)))
            .await
            .expect("promote"),
        Promotion::InvalidToken,
        "the old link is dead"
    );

    assert!(!stores
        .pending
        .replace_token(
            &email("nobody@example.com"),
            &fixtures::token_hash(),
            at(hours(3)),
            t0()
        )
        .await
        .expect("replace_token"));

    // An expired row cannot be revived: at expires_at exactly it is dead.
    let stale_token = fixtures::token_hash();
    let stale = fixtures::pending("stale@example.com", &stale_token, at(hours(1)));
    stores.pending.put(stale.clone()).await.expect("put");
    let revived_token = fixtures::token_hash();
    assert!(!stores
        .pending
        .replace_token(&stale.email, &revived_token, at(hours(3)), at(hours(1)))
        .await
        .expect("replace_token"));
    assert_eq!(
        stores
            .pending
            .promote(&revived_token, &UserId::generate(), at(hours(2)))
            .await
            .expect("promote"),
        Promotion::InvalidToken,
        "the refused token must not have been stored"
    );

    assert!(matches!(
        stores
            .pending
            .promote(&new_token, &UserId::generate(), at(hours(2)))
            .await
            .expect("promote"),
        Promotion::Promoted(_)
    ));
}
