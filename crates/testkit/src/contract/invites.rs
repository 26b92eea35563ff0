//! Invitations: single use under contention, the exact expiry microsecond,
//! address binding, revocation, release, listing and purge.

use regstack_ports::{Invite, InviteId, InviteRedemption, StoreError, Stores, Timestamp};

use crate::fixtures::{self, at, email, micro, t0};

use super::support::*;
use super::RACERS;

async fn create(stores: &Stores, bound: Option<&str>, expires_at: Timestamp) -> Invite {
    let invite = fixtures::invite(&fixtures::token_hash(), bound, expires_at);
    stores
        .invites
        .create(invite.clone())
        .await
        .expect("create an invite");
    invite
}

async fn redeem(stores: &Stores, invite: &Invite, who: &str, now: Timestamp) -> InviteRedemption {
    stores
        .invites
        .redeem(&invite.code_hash, &email(who), now)
        .await
        .expect("redeem")
}

/// 20 registrations racing with one code, each for its own address:
/// exactly one redeems it; every other racer is told it is spent.
pub async fn invite_is_single_use_under_20_parallel_redemptions(stores: Stores) {
    let invite = create(&stores, None, at(days(7))).await;
    let now = at(minutes(5));
    let invites = stores.invites.clone();
    let results = race(|i| {
        let invites = invites.clone();
        let code = invite.code_hash.clone();
        async move {
            invites
                .redeem(&code, &email(&format!("racer{i}@example.com")), now)
                .await
        }
    })
    .await;
    let results = all_ok("redeem", results);
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, InviteRedemption::Redeemed(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one redemption: {results:?}");
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == InviteRedemption::Spent)
            .count(),
        RACERS - 1,
        "every loser is told the invite is spent: {results:?}"
    );
    let InviteRedemption::Redeemed(spent) = &results[winners[0]] else {
        unreachable!("a winner was found above")
    };
    let winner = email(&format!("racer{}@example.com", winners[0]));
    assert_eq!(spent.used_by.as_ref(), Some(&winner), "spent by the winner");
    assert_eq!(spent.used_at, Some(now), "spent at now, to the microsecond");
    let listed = stores.invites.list(true, 10, now).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].used_by.as_ref(), Some(&winner), "as stored");
}

/// An invite admits at `expires_at - 1µs` and not at `expires_at`; a miss
/// changes nothing.
pub async fn invite_expires_at_its_exact_microsecond(stores: Stores) {
    let expires = at(hours(1));
    let late = create(&stores, None, expires).await;
    assert_eq!(
        redeem(&stores, &late, "late@example.com", expires).await,
        InviteRedemption::Expired,
        "dead at expires_at exactly"
    );
    assert_eq!(
        redeem(&stores, &late, "late@example.com", expires + micro()).await,
        InviteRedemption::Expired
    );
    let on_time = create(&stores, None, expires).await;
    assert!(
        matches!(
            redeem(&stores, &on_time, "on-time@example.com", expires - micro()).await,
            InviteRedemption::Redeemed(_)
        ),
        "alive one microsecond before"
    );
    let open = stores
        .invites
        .list(false, 10, expires - micro())
        .await
        .expect("list");
    assert_eq!(
        open.iter().map(|i| &i.id).collect::<Vec<_>>(),
        vec![&late.id],
        "open at expires_at - 1µs: the unspent one only"
    );
    assert!(
        stores
            .invites
            .list(false, 10, expires)
            .await
            .expect("list")
            .is_empty(),
        "nothing is open at expires_at"
    );
    assert_eq!(
        redeem(&stores, &late, "late@example.com", expires).await,
        InviteRedemption::Expired,
        "a miss wrote nothing"
    );
}

/// An invite bound to an address admits that address only (canonical
/// form: case and surrounding space do not matter), and a refused address
/// does not spend it. Unknown codes are `Unknown`.
pub async fn invite_bound_to_an_address_admits_only_that_address(stores: Stores) {
    let invite = create(&stores, Some("Invited@Example.com"), at(days(1))).await;
    let now = at(minutes(1));
    assert_eq!(
        redeem(&stores, &invite, "intruder@example.com", now).await,
        InviteRedemption::WrongAddress
    );
    assert_eq!(
        stores
            .invites
            .redeem(&fixtures::token_hash(), &email("invited@example.com"), now)
            .await
            .expect("redeem"),
        InviteRedemption::Unknown
    );
    let spent = redeem(&stores, &invite, " INVITED@example.COM ", now).await;
    let InviteRedemption::Redeemed(spent) = spent else {
        panic!("the bound address redeems it: {spent:?}")
    };
    assert_eq!(spent.email, Some(email("invited@example.com")));
    assert_eq!(spent.used_by, Some(email("invited@example.com")));
    assert_eq!(
        redeem(&stores, &invite, "invited@example.com", now).await,
        InviteRedemption::Spent,
        "and only once"
    );
}

/// A revoked invite admits nobody; revoking is once, and a spent or
/// unknown invite cannot be revoked.
pub async fn revoked_invite_admits_nobody(stores: Stores) {
    let invite = create(&stores, None, at(days(1))).await;
    let now = at(minutes(1));
    let revoked = stores
        .invites
        .revoke(&invite.id, now)
        .await
        .expect("revoke")
        .expect("an open invite is revoked");
    assert_eq!(revoked.revoked_at, Some(now));
    assert_eq!(
        stores.invites.revoke(&invite.id, now).await.expect("again"),
        None,
        "revoked once"
    );
    assert_eq!(
        redeem(&stores, &invite, "someone@example.com", now).await,
        InviteRedemption::Revoked
    );
    assert_eq!(
        stores
            .invites
            .revoke(&InviteId::generate(), now)
            .await
            .expect("unknown"),
        None
    );
    let spent = create(&stores, None, at(days(1))).await;
    assert!(matches!(
        redeem(&stores, &spent, "user@example.com", now).await,
        InviteRedemption::Redeemed(_)
    ));
    assert_eq!(
        stores.invites.revoke(&spent.id, now).await.expect("spent"),
        None,
        "a spent invite stays spent"
    );
}

/// A redemption whose registration failed is released by its redeemer
/// only; the invite is then open again, once.
pub async fn released_invite_opens_again_for_one_more_redemption(stores: Stores) {
    let invite = create(&stores, None, at(days(1))).await;
    let now = at(minutes(1));
    assert!(matches!(
        redeem(&stores, &invite, "first@example.com", now).await,
        InviteRedemption::Redeemed(_)
    ));
    assert!(
        !stores
            .invites
            .release(&invite.id, &email("other@example.com"))
            .await
            .expect("release"),
        "only the redeemer releases"
    );
    assert!(stores
        .invites
        .release(&invite.id, &email("first@example.com"))
        .await
        .expect("release"));
    assert!(
        !stores
            .invites
            .release(&invite.id, &email("first@example.com"))
            .await
            .expect("release"),
        "released once"
    );
    let again = redeem(&stores, &invite, "second@example.com", now).await;
    let InviteRedemption::Redeemed(again) = again else {
        panic!("open again after the release: {again:?}")
    };
    assert_eq!(again.used_by, Some(email("second@example.com")));
}

/// Listing: newest first, never more than `limit`, open ones only unless
/// asked, every field back as stored (to the microsecond); a second invite
/// with the same code is a conflict; purge removes exactly the expired.
pub async fn invites_list_newest_first_and_purge_the_expired(stores: Stores) {
    let mut old = fixtures::invite(&fixtures::token_hash(), Some("a@example.com"), at(hours(1)));
    old.note = Some("for Ann".into());
    old.created_by = Some(add_user(&stores, "admin@example.com").await.id);
    stores.invites.create(old.clone()).await.expect("create");
    let mut new = fixtures::invite(&fixtures::token_hash(), None, at(days(2)));
    new.created_at = t0() + micro();
    stores.invites.create(new.clone()).await.expect("create");
    let mut spent = fixtures::invite(&fixtures::token_hash(), None, at(days(2)));
    spent.created_at = t0() + micro() + micro();
    stores.invites.create(spent.clone()).await.expect("create");
    assert!(matches!(
        redeem(&stores, &spent, "user@example.com", at(minutes(1))).await,
        InviteRedemption::Redeemed(_)
    ));
    let twin = fixtures::invite(&old.code_hash, None, at(days(1)));
    assert!(
        matches!(
            stores.invites.create(twin).await,
            Err(StoreError::Conflict(_))
        ),
        "one code, one invite"
    );

    let now = at(minutes(2));
    let open = stores.invites.list(false, 10, now).await.expect("list");
    assert_eq!(
        open,
        vec![new.clone(), old.clone()],
        "open ones, newest first"
    );
    let all = stores.invites.list(true, 10, now).await.expect("list");
    assert_eq!(
        all.iter().map(|i| &i.id).collect::<Vec<_>>(),
        vec![&spent.id, &new.id, &old.id]
    );
    assert_eq!(all[0].used_at, Some(at(minutes(1))));
    assert_eq!(
        stores.invites.list(true, 1, now).await.expect("list").len(),
        1,
        "limit"
    );

    assert_eq!(
        stores
            .invites
            .purge_expired(at(hours(1)) - micro())
            .await
            .expect("purge"),
        0
    );
    assert_eq!(
        stores
            .invites
            .purge_expired(at(hours(1)))
            .await
            .expect("purge"),
        1,
        "the one expired at that instant"
    );
    let left = stores
        .invites
        .list(true, 10, at(hours(1)))
        .await
        .expect("list");
    assert_eq!(
        left.iter().map(|i| &i.id).collect::<Vec<_>>(),
        vec![&spent.id, &new.id]
    );
}
