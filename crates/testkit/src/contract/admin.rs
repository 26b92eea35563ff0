//! What the administrator's routes ask of the stores: counts, a page of
//! accounts in one stable order, a flag change that ends every session of
//! a disabled account in the same step, and promoting a pending
//! registration by its address.

use regstack_ports::{
    AdminChange, NewSession, Promotion, RevokeReason, SessionStart, Stores, UserCounts, UserCursor,
    UserFilter, UserId,
};

use crate::fixtures::{self, at, t0};

use super::support::*;
use super::RACERS;

/// A live pending row for `email` carrying `hash`, with a fresh token.
fn pending_with(
    email: &str,
    hash: &regstack_ports::PasswordHash,
    expires_at: regstack_ports::Timestamp,
) -> regstack_ports::PendingRegistration {
    regstack_ports::PendingRegistration {
        password_hash: hash.clone(),
        ..fixtures::pending(email, &fixtures::token_hash(), expires_at)
    }
}

fn disable() -> AdminChange {
    AdminChange {
        is_active: Some(false),
        ..AdminChange::default()
    }
}

/// `count_users` counts every account and each flag apart; `count_live`
/// counts only pending registrations that are live at `now`.
pub async fn count_users_and_live_pending_registrations(stores: Stores) {
    assert_eq!(
        stores.users.count_users().await.expect("count_users"),
        UserCounts::default()
    );
    let plain = add_user(&stores, "plain@example.com").await;
    let admin = stores
        .users
        .insert(regstack_ports::NewUser {
            is_superuser: true,
            ..fixtures::new_user("admin@example.com")
        })
        .await
        .expect("insert admin");
    stores
        .users
        .insert(regstack_ports::NewUser {
            is_verified: false,
            ..fixtures::new_user("unproven@example.com")
        })
        .await
        .expect("insert unverified");
    stores
        .users
        .admin_update(&plain.id, &disable(), t0())
        .await
        .expect("admin_update")
        .expect("the user exists");
    assert_eq!(
        stores.users.count_users().await.expect("count_users"),
        UserCounts {
            total: 3,
            active: 2,
            verified: 2,
            superusers: 1,
        }
    );
    assert!(admin.is_superuser);

    for (n, ttl) in [(1, hours(1)), (2, hours(2)), (3, hours(3))] {
        let put = stores
            .pending
            .put(fixtures::pending(
                &format!("pending{n}@example.com"),
                &fixtures::token_hash(),
                at(ttl),
            ))
            .await
            .expect("put");
        assert!(put);
    }
    let live = |now| {
        let stores = stores.clone();
        async move { stores.pending.count_live(now).await.expect("count_live") }
    };
    assert_eq!(live(t0()).await, 3);
    assert_eq!(live(at(hours(1))).await, 2, "a row is dead at its expiry");
    assert_eq!(live(at(hours(1)) - fixtures::micro()).await, 3);
    assert_eq!(live(at(hours(3))).await, 0);
}

/// `list_users` pages newest first, equal creation times ordered by id
/// descending, the same order on every call; `skip` past the end is an
/// empty page.
pub async fn list_users_pages_newest_first_in_one_stable_order(stores: Stores) {
    let mut made = Vec::new();
    for (n, minute) in [(0, 5), (1, 1), (2, 3), (3, 3), (4, 3), (5, 0)] {
        let user = stores
            .users
            .insert(regstack_ports::NewUser {
                created_at: at(minutes(minute)),
                ..fixtures::new_user(&format!("lister{n}@example.com"))
            })
            .await
            .expect("insert");
        made.push(user);
    }
    made.sort_by(|a, b| (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str())));
    let expected: Vec<UserId> = made.iter().map(|u| u.id.clone()).collect();

    let all = stores.users.list_users(0, 100).await.expect("list_users");
    assert_eq!(
        all.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(all, made, "listed accounts carry every field");

    let mut paged = Vec::new();
    for skip in (0..6).step_by(2) {
        let page = stores.users.list_users(skip, 2).await.expect("list_users");
        assert_eq!(page.len(), 2, "page at {skip}");
        paged.extend(page.into_iter().map(|u| u.id));
    }
    assert_eq!(paged, expected, "pages of two add up to the whole list");
    assert_eq!(
        stores
            .users
            .list_users(5, 10)
            .await
            .expect("list_users")
            .len(),
        1
    );
    assert!(stores
        .users
        .list_users(6, 10)
        .await
        .expect("list_users")
        .is_empty());
}

/// `admin_update` changes only what it is given, stamps `updated_at`,
/// leaves the sessions and the credential epoch alone unless the account
/// is disabled, answers an empty change with the account unchanged and an
/// unknown id with `None`.
pub async fn admin_update_changes_only_what_is_given(stores: Stores) {
    let user = add_user(&stores, "managed@example.com").await;
    let sid = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let user = get_user(&stores, &user.id).await;

    let same = stores
        .users
        .admin_update(&user.id, &AdminChange::default(), at(minutes(1)))
        .await
        .expect("admin_update")
        .expect("the user exists");
    assert_eq!(same, user, "an empty change changes nothing");

    let named = stores
        .users
        .admin_update(
            &user.id,
            &AdminChange {
                full_name: Some("Set By Admin".into()),
                is_superuser: Some(true),
                ..AdminChange::default()
            },
            at(minutes(2)),
        )
        .await
        .expect("admin_update")
        .expect("the user exists");
    assert_eq!(named.full_name.as_deref(), Some("Set By Admin"));
    assert!(named.is_superuser && named.is_active);
    assert_eq!(named.updated_at, at(minutes(2)));
    assert_eq!(
        named.tokens_invalidated_after,
        user.tokens_invalidated_after
    );
    assert_eq!(
        get_user(&stores, &user.id).await,
        named,
        "stored as answered"
    );
    assert_eq!(listed(&stores, &user.id, at(minutes(3))).await, vec![sid]);

    let enabled = stores
        .users
        .admin_update(
            &user.id,
            &AdminChange {
                is_active: Some(true),
                is_superuser: Some(false),
                ..AdminChange::default()
            },
            at(minutes(4)),
        )
        .await
        .expect("admin_update")
        .expect("the user exists");
    assert!(enabled.is_active && !enabled.is_superuser);
    assert_eq!(enabled.full_name.as_deref(), Some("Set By Admin"));
    assert_eq!(
        enabled.tokens_invalidated_after, user.tokens_invalidated_after,
        "enabling is no credential change"
    );

    assert_eq!(
        stores
            .users
            .admin_update(&UserId::generate(), &disable(), t0())
            .await
            .expect("admin_update"),
        None
    );
}

/// Disabling revokes every live session of the account (reason
/// `Disabled`) and none of anyone else's, moves the credential epoch
/// strictly forward — also when it was already at or past `now` — so a
/// sign-in that read the old epoch cannot start a session; enabling again
/// revives nothing.
pub async fn disabling_revokes_every_session_and_moves_the_epoch(stores: Stores) {
    let user = add_user(&stores, "disabled@example.com").await;
    let other = add_user(&stores, "bystander@example.com").await;
    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s2 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;
    let when = at(hours(1));

    let disabled = stores
        .users
        .admin_update(&user.id, &disable(), when)
        .await
        .expect("admin_update")
        .expect("the user exists");
    assert!(!disabled.is_active);
    assert_eq!(disabled.tokens_invalidated_after, Some(when));
    assert_eq!(disabled.updated_at, when);
    for sid in [&s1, &s2] {
        let s = session(&stores, sid).await;
        assert_eq!(s.revoked_at, Some(when), "{sid} revoked at once");
        assert_eq!(s.revoked_reason, Some(RevokeReason::Disabled));
    }
    assert_eq!(
        listed(&stores, &other.id, when).await,
        vec![s_other],
        "another account's session lives on"
    );

    let stale = NewSession {
        credential_epoch: user.tokens_invalidated_after,
        ..fixtures::new_session(&user.id, when, at(days(1)))
    };
    assert_eq!(
        stores.sessions.start(stale).await.expect("start"),
        SessionStart::Stale,
        "a sign-in that read the epoch before the disabling starts nothing"
    );

    // Disabled again at the same instant: the epoch still moves forward.
    let again = stores
        .users
        .admin_update(&user.id, &disable(), when)
        .await
        .expect("admin_update")
        .expect("the user exists");
    assert_eq!(
        again.tokens_invalidated_after,
        Some(when + fixtures::micro())
    );

    let enabled = stores
        .users
        .admin_update(
            &user.id,
            &AdminChange {
                is_active: Some(true),
                ..AdminChange::default()
            },
            at(hours(2)),
        )
        .await
        .expect("admin_update")
        .expect("the user exists");
    assert!(enabled.is_active);
    assert!(
        listed(&stores, &user.id, at(hours(2))).await.is_empty(),
        "enabling revives no session"
    );
}

/// Sign-ins racing a disabling leave no live session: each either started
/// before it (and is revoked with the rest) or read the old epoch and
/// starts nothing.
pub async fn disabling_racing_sign_ins_leaves_no_session(stores: Stores) {
    for round in 0..5 {
        let user = add_user(&stores, &format!("disable-racer-{round}@example.com")).await;
        let epoch = user.tokens_invalidated_after;
        let outcomes = race(|i| {
            let stores = stores.clone();
            let id = user.id.clone();
            async move {
                if i == RACERS / 2 {
                    stores
                        .users
                        .admin_update(&id, &disable(), at(hours(1)))
                        .await
                        .map(|_| None)
                } else {
                    let new = NewSession {
                        credential_epoch: epoch,
                        ..fixtures::new_session(&id, at(minutes(30)), at(days(1)))
                    };
                    stores.sessions.start(new).await.map(Some)
                }
            }
        })
        .await;
        all_ok("sign-ins racing a disabling", outcomes);
        let live = listed(&stores, &user.id, at(minutes(90))).await;
        assert!(
            live.is_empty(),
            "round {round}: {} session(s) outlived the disabling",
            live.len()
        );
    }
}

/// `promote_email` turns the live pending row of an address into a
/// verified account with the row's password hash and name, once among 20
/// parallel callers; no row, or an expired one, is `InvalidToken`; an
/// address that became an account is `EmailTaken` and the row goes.
pub async fn promote_email_creates_the_verified_account_once(stores: Stores) {
    let email = fixtures::email("invited@example.com");
    assert_eq!(
        stores
            .pending
            .promote_email(&email, &UserId::generate(), t0())
            .await
            .expect("promote_email"),
        Promotion::InvalidToken
    );

    let mut row = fixtures::pending("invited@example.com", &fixtures::token_hash(), at(hours(1)));
    row.full_name = Some("Invited".into());
    assert!(stores.pending.put(row.clone()).await.expect("put"));
    assert_eq!(
        stores
            .pending
            .promote_email(&email, &UserId::generate(), at(hours(1)))
            .await
            .expect("promote_email"),
        Promotion::InvalidToken,
        "an expired row is no registration"
    );

    let when = at(minutes(10));
    let outcomes = race(|_| {
        let stores = stores.clone();
        let email = email.clone();
        async move {
            stores
                .pending
                .promote_email(&email, &UserId::generate(), when)
                .await
        }
    })
    .await;
    let outcomes = all_ok("parallel promote_email", outcomes);
    let promoted: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Promotion::Promoted(u) => Some(u.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(promoted.len(), 1, "one promotion: {outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Promotion::Promoted(_) | Promotion::InvalidToken)));
    let user = &promoted[0];
    assert_eq!(user.email, email);
    assert!(user.is_verified && user.is_active && !user.is_superuser);
    assert_eq!(user.password_hash, Some(row.password_hash.clone()));
    assert_eq!(user.full_name.as_deref(), Some("Invited"));
    assert_eq!(user.created_at, when);
    assert_eq!(get_user(&stores, &user.id).await, *user);
    assert_eq!(
        stores
            .pending
            .find_by_email(&email, when)
            .await
            .expect("find_by_email"),
        None
    );

    let taken = add_user(&stores, "taken@example.com").await;
    assert!(stores
        .pending
        .put(fixtures::pending(
            "taken@example.com",
            &fixtures::token_hash(),
            at(hours(1))
        ))
        .await
        .expect("put"));
    assert_eq!(
        stores
            .pending
            .promote_email(&taken.email, &UserId::generate(), when)
            .await
            .expect("promote_email"),
        Promotion::EmailTaken
    );
    assert_eq!(
        stores.pending.count_live(when).await.expect("count_live"),
        0,
        "the row for a taken address is gone"
    );
}

/// A pending row with the same password hash as the unverified account at
/// its address (what an administrator's resend makes) verifies that
/// account on `promote` — same id, nothing else changed; a row with
/// another hash, or for a verified account, is `EmailTaken`.
pub async fn promote_verifies_the_unverified_account_its_row_was_made_for(stores: Stores) {
    let unproven = stores
        .users
        .insert(regstack_ports::NewUser {
            is_verified: false,
            ..fixtures::new_user("unproven@example.com")
        })
        .await
        .expect("insert");
    let stranger = pending_with(
        "unproven@example.com",
        &fixtures::hash_of("someone else's password"),
        at(hours(1)),
    );
    assert!(stores.pending.put(stranger.clone()).await.expect("put"));
    assert_eq!(
        stores
            .pending
            .promote(&stranger.token_hash, &UserId::generate(), at(minutes(1)))
            .await
            .expect("promote"),
        Promotion::EmailTaken,
        "another password's row verifies nothing"
    );
    assert!(!get_user(&stores, &unproven.id).await.is_verified);

    let own = pending_with(
        "unproven@example.com",
        &fixtures::password_hash(),
        at(hours(1)),
    );
    assert!(stores.pending.put(own.clone()).await.expect("put"));
    let when = at(minutes(2));
    let Promotion::Promoted(user) = stores
        .pending
        .promote(&own.token_hash, &UserId::generate(), when)
        .await
        .expect("promote")
    else {
        panic!("the account's own row verifies it");
    };
    assert_eq!(user.id, unproven.id, "the same account");
    assert!(user.is_verified);
    assert_eq!(user.updated_at, when);
    assert_eq!(user.created_at, unproven.created_at);
    assert_eq!(get_user(&stores, &unproven.id).await, user);
    assert_eq!(
        stores.users.count_users().await.expect("count_users").total,
        1
    );

    let verified = add_user(&stores, "proven@example.com").await;
    let again = pending_with(
        "proven@example.com",
        &fixtures::password_hash(),
        at(hours(1)),
    );
    assert!(stores.pending.put(again.clone()).await.expect("put"));
    assert_eq!(
        stores
            .pending
            .promote(&again.token_hash, &UserId::generate(), when)
            .await
            .expect("promote"),
        Promotion::EmailTaken
    );
    assert_eq!(get_user(&stores, &verified.id).await, verified);
}

/// `search_users` keeps only the accounts every given filter admits — the
/// address part matched literally (`_` and `%` are characters, not
/// wildcards) — and `count_matching` counts the same set.
pub async fn search_users_filters_by_address_part_and_flags(stores: Stores) {
    let plain = add_user(&stores, "under_score@example.com").await;
    let lookalike = add_user(&stores, "underxscore@example.com").await;
    let admin = stores
        .users
        .insert(regstack_ports::NewUser {
            is_superuser: true,
            ..fixtures::new_user("boss@example.org")
        })
        .await
        .expect("insert");
    let unproven = stores
        .users
        .insert(regstack_ports::NewUser {
            is_verified: false,
            ..fixtures::new_user("new@example.org")
        })
        .await
        .expect("insert");
    stores
        .users
        .admin_update(&lookalike.id, &disable(), t0())
        .await
        .expect("admin_update");
    assert!(stores
        .mfa
        .enable_totp(&admin.id, "sealed", &[], None, t0())
        .await
        .expect("enable_totp"));

    let search = |f: UserFilter| {
        let stores = stores.clone();
        async move {
            let found = stores
                .users
                .search_users(&f, None, 0, 100)
                .await
                .expect("search_users");
            let n = stores
                .users
                .count_matching(&f)
                .await
                .expect("count_matching");
            assert_eq!(n, found.len() as u64, "count_matching agrees: {f:?}");
            let mut ids: Vec<UserId> = found.into_iter().map(|u| u.id).collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<UserId>| {
        v.sort();
        v
    };
    let part = |p: &str| UserFilter {
        email_contains: Some(p.into()),
        ..UserFilter::default()
    };
    assert_eq!(search(UserFilter::default()).await.len(), 4);
    assert_eq!(
        search(part("r_s")).await,
        vec![plain.id.clone()],
        "`_` is literal"
    );
    assert_eq!(search(part("%")).await, vec![], "`%` is literal");
    assert_eq!(
        search(part(".org")).await,
        sorted(vec![admin.id.clone(), unproven.id.clone()])
    );
    assert_eq!(search(part("x.org")).await, vec![], "`.` is literal");
    assert_eq!(
        search(UserFilter {
            is_active: Some(false),
            ..UserFilter::default()
        })
        .await,
        vec![lookalike.id.clone()]
    );
    assert_eq!(
        search(UserFilter {
            is_verified: Some(false),
            ..UserFilter::default()
        })
        .await,
        vec![unproven.id.clone()]
    );
    assert_eq!(
        search(UserFilter {
            is_superuser: Some(true),
            has_mfa: Some(true),
            ..UserFilter::default()
        })
        .await,
        vec![admin.id.clone()]
    );
    assert_eq!(
        search(UserFilter {
            email_contains: Some("example.com".into()),
            is_active: Some(true),
            has_mfa: Some(false),
            ..UserFilter::default()
        })
        .await,
        vec![plain.id.clone()]
    );
}

/// Paging by cursor walks the whole list once, in order, while accounts
/// are added between pages (they are newer, so they sort before the
/// cursor); `skip` and filters combine with it.
pub async fn search_users_pages_by_cursor_while_accounts_are_added(stores: Stores) {
    let mut made = Vec::new();
    for (n, minute) in [(0, 1), (1, 2), (2, 2), (3, 2), (4, 3), (5, 4), (6, 5)] {
        let user = stores
            .users
            .insert(regstack_ports::NewUser {
                created_at: at(minutes(minute)),
                ..fixtures::new_user(&format!("pager{n}@example.com"))
            })
            .await
            .expect("insert");
        made.push(user);
    }
    made.sort_by(|a, b| (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str())));
    let expected: Vec<UserId> = made.iter().map(|u| u.id.clone()).collect();

    let all = UserFilter::default();
    let mut walked = Vec::new();
    let mut cursor: Option<UserCursor> = None;
    for page in 0.. {
        let items = stores
            .users
            .search_users(&all, cursor.as_ref(), 0, 2)
            .await
            .expect("search_users");
        let Some(last) = items.last() else { break };
        cursor = Some(UserCursor {
            created_at: last.created_at,
            id: last.id.clone(),
        });
        walked.extend(items.iter().map(|u| u.id.clone()));
        // Someone signs up between two pages.
        add_user(&stores, &format!("late{page}@example.com")).await;
        stores
            .users
            .insert(regstack_ports::NewUser {
                created_at: at(minutes(10 + page)),
                ..fixtures::new_user(&format!("later{page}@example.com"))
            })
            .await
            .expect("insert");
        assert!(page < 10, "the walk ends");
    }
    // `add_user` creates at t0, before every account above: those rows
    // sort after the cursor and are walked too — exactly once each.
    let late: Vec<UserId> = walked.iter().skip(expected.len()).cloned().collect();
    assert_eq!(
        &walked[..expected.len()],
        &expected[..],
        "in order, none twice"
    );
    let mut unique = walked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), walked.len(), "no account is listed twice");
    assert!(late.iter().all(|id| !expected.contains(id)));

    let after_first = UserCursor {
        created_at: made[0].created_at,
        id: made[0].id.clone(),
    };
    let skipped = stores
        .users
        .search_users(&all, Some(&after_first), 1, 2)
        .await
        .expect("search_users");
    assert_eq!(
        skipped.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        expected[2..4].to_vec(),
        "skip counts from the cursor"
    );
}

/// A disabling until `until`, with `reason`.
fn disable_with(reason: Option<&str>, until: Option<regstack_ports::Timestamp>) -> AdminChange {
    AdminChange {
        is_active: Some(false),
        disabled_reason: reason.map(str::to_owned),
        disabled_until: until,
        ..AdminChange::default()
    }
}

async fn admin(
    stores: &Stores,
    id: &UserId,
    change: &AdminChange,
    now: regstack_ports::Timestamp,
) -> regstack_ports::User {
    stores
        .users
        .admin_update(id, change, now)
        .await
        .expect("admin_update")
        .expect("the user exists")
}

/// A disabling stores its reason and end with the flag, in the step that
/// revokes every session; a change without `is_active` keeps them; a new
/// disabling states them afresh (none given: none kept); enabling clears
/// both without moving the credential epoch. A reason that reads as an
/// operator or a field path is stored as text.
pub async fn disabling_with_a_reason_and_an_end_round_trips_and_enabling_clears_them(
    stores: Stores,
) {
    let user = add_user(&stores, "timed@example.com").await;
    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s2 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let when = at(hours(1));
    let until = at(days(3)) + fixtures::micro();

    let disabled = admin(
        &stores,
        &user.id,
        &disable_with(Some("Chargeback fraud — ticket #42"), Some(until)),
        when,
    )
    .await;
    assert!(!disabled.is_active);
    assert_eq!(
        disabled.disabled_reason.as_deref(),
        Some("Chargeback fraud — ticket #42")
    );
    assert_eq!(disabled.disabled_until, Some(until));
    assert_eq!(disabled.tokens_invalidated_after, Some(when));
    assert_eq!(
        get_user(&stores, &user.id).await,
        disabled,
        "stored as answered"
    );
    for sid in [&s1, &s2] {
        let s = session(&stores, sid).await;
        assert_eq!(s.revoked_at, Some(when), "{sid} revoked with the disabling");
        assert_eq!(s.revoked_reason, Some(RevokeReason::Disabled));
    }

    let renamed = admin(
        &stores,
        &user.id,
        &AdminChange {
            full_name: Some("Renamed".into()),
            ..AdminChange::default()
        },
        at(hours(2)),
    )
    .await;
    assert_eq!(
        (renamed.disabled_reason.as_deref(), renamed.disabled_until),
        (Some("Chargeback fraud — ticket #42"), Some(until)),
        "a change without is_active keeps the disabling as it is"
    );
    assert!(!renamed.is_active);

    let operator = admin(
        &stores,
        &user.id,
        &disable_with(Some("$set {\"is_active\": true}"), None),
        at(hours(3)),
    )
    .await;
    assert_eq!(
        operator.disabled_reason.as_deref(),
        Some("$set {\"is_active\": true}")
    );
    assert_eq!(operator.disabled_until, None, "a new disabling without end");
    assert!(!operator.is_active);

    let bare = admin(&stores, &user.id, &disable(), at(hours(4))).await;
    assert_eq!((bare.disabled_reason, bare.disabled_until), (None, None));

    let timed_again = admin(
        &stores,
        &user.id,
        &disable_with(Some("again"), Some(until)),
        at(hours(5)),
    )
    .await;
    let enabled = admin(
        &stores,
        &user.id,
        &AdminChange {
            is_active: Some(true),
            ..AdminChange::default()
        },
        at(hours(6)),
    )
    .await;
    assert!(enabled.is_active);
    assert_eq!(
        (enabled.disabled_reason.clone(), enabled.disabled_until),
        (None, None)
    );
    assert_eq!(
        enabled.tokens_invalidated_after, timed_again.tokens_invalidated_after,
        "enabling is no credential change"
    );
    assert_eq!(get_user(&stores, &user.id).await, enabled);
}

/// `reenable_expired(now)` enables exactly the accounts disabled until an
/// instant at or before `now` — one microsecond earlier it leaves them —
/// clearing reason and end, `updated_at = now`, the epoch unmoved and no
/// session revived; an open-ended disabling, a later end and active
/// accounts stay as they are; a second sweep finds nothing.
pub async fn reenable_expired_ends_timed_disablings_at_their_instant_exactly(stores: Stores) {
    let end = at(hours(5));
    let due = add_user(&stores, "due@example.com").await;
    let sid = start_session(&stores, &due.id, t0(), at(days(1))).await;
    let forever = add_user(&stores, "forever@example.com").await;
    let later = add_user(&stores, "later@example.com").await;
    let active = add_user(&stores, "active@example.com").await;
    let when = at(hours(1));
    let due = admin(
        &stores,
        &due.id,
        &disable_with(Some("cool-off"), Some(end)),
        when,
    )
    .await;
    let forever = admin(
        &stores,
        &forever.id,
        &disable_with(Some("banned"), None),
        when,
    )
    .await;
    let later = admin(
        &stores,
        &later.id,
        &disable_with(None, Some(end + fixtures::micro())),
        when,
    )
    .await;

    let sweep = |now| {
        let stores = stores.clone();
        async move {
            stores
                .users
                .reenable_expired(now)
                .await
                .expect("reenable_expired")
        }
    };
    assert_eq!(sweep(end - fixtures::micro()).await, 0, "not yet");
    assert_eq!(get_user(&stores, &due.id).await, due);

    assert_eq!(sweep(end).await, 1, "due at its end exactly");
    let back = get_user(&stores, &due.id).await;
    assert!(back.is_active);
    assert_eq!(
        (back.disabled_reason.clone(), back.disabled_until),
        (None, None)
    );
    assert_eq!(back.updated_at, end);
    assert_eq!(back.tokens_invalidated_after, due.tokens_invalidated_after);
    assert!(
        listed(&stores, &due.id, end).await.is_empty(),
        "no session revives"
    );
    assert_eq!(
        session(&stores, &sid).await.revoked_reason,
        Some(RevokeReason::Disabled)
    );
    assert_eq!(
        get_user(&stores, &forever.id).await,
        forever,
        "open-ended stays"
    );
    assert_eq!(
        get_user(&stores, &later.id).await,
        later,
        "a later end stays"
    );
    assert_eq!(get_user(&stores, &active.id).await, active);
    assert_eq!(sweep(end).await, 0, "nothing left at that instant");

    let filter = UserFilter {
        is_active: Some(false),
        ..UserFilter::default()
    };
    assert_eq!(
        stores.users.count_matching(&filter).await.expect("count"),
        2
    );
    assert_eq!(
        stores
            .users
            .count_users()
            .await
            .expect("count_users")
            .active,
        2
    );
    assert_eq!(sweep(end + fixtures::micro()).await, 1, "the later one");
    assert!(get_user(&stores, &later.id).await.is_active);
}

/// A sweep racing a new open-ended disabling of an account whose timed
/// disabling just ended never overwrites it: whichever lands first, the
/// account ends up disabled without an end.
pub async fn reenable_expired_racing_a_new_disabling_never_overwrites_it(stores: Stores) {
    let end = at(hours(2));
    for round in 0..5 {
        let user = add_user(&stores, &format!("resweep-{round}@example.com")).await;
        admin(
            &stores,
            &user.id,
            &disable_with(None, Some(end)),
            at(hours(1)),
        )
        .await;
        let outcomes = race(|i| {
            let stores = stores.clone();
            let id = user.id.clone();
            async move {
                if i == RACERS / 2 {
                    stores
                        .users
                        .admin_update(&id, &disable_with(Some("for good"), None), at(hours(3)))
                        .await
                        .map(drop)
                } else {
                    stores.users.reenable_expired(at(hours(3))).await.map(drop)
                }
            }
        })
        .await;
        all_ok("sweeps racing a disabling", outcomes);
        let after = get_user(&stores, &user.id).await;
        assert!(
            !after.is_active,
            "round {round}: the new disabling was undone"
        );
        assert_eq!(after.disabled_until, None, "round {round}");
        assert_eq!(
            after.disabled_reason.as_deref(),
            Some("for good"),
            "round {round}"
        );
    }
}
