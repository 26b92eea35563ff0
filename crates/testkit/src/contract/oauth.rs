//! OAuth: the flow rows that carry a sign-in through the provider and back
//! (begin → claim once → complete once → redeem once, each dead from its
//! expiry on), and the identities linked to accounts, keyed by
//! `(issuer, subject)`, one per provider name per account, never the last
//! way into an account.

use regstack_ports::{
    Claim, Creation, FlowMode, FlowResult, Linking, NewUser, OAuthFlow, OAuthIdentity, Redemption,
    StoreError, Stores, Timestamp, TokenHash, Unlinking, User, UserId,
};

use crate::fixtures::{self, at, micro, t0};

use super::support::*;
use super::RACERS;

const GOOGLE: &str = "https://accounts.google.com";
const CORP: &str = "https://sso.corp.example";

/// A flow of `provider` started at [`t0`] that is live for ten minutes and
/// one microsecond (so its end has a microsecond digit of its own).
fn flow(provider: &str, mode: FlowMode) -> OAuthFlow {
    fixtures::oauth_flow(provider, mode, at(minutes(10)) + micro())
}

/// What a callback decided for `user`, with a credential epoch that has
/// microsecond digits.
fn result_for(user: &UserId) -> FlowResult {
    FlowResult {
        user_id: user.clone(),
        was_new: false,
        credential_epoch: Some(at(-hours(2)) + micro()),
    }
}

/// A user who can sign in only through other parties: no password.
async fn add_passwordless_user(stores: &Stores, raw_email: &str) -> User {
    stores
        .users
        .insert(NewUser {
            password_hash: None,
            ..fixtures::new_user(raw_email)
        })
        .await
        .unwrap_or_else(|e| panic!("insert user {raw_email}: {e:?}"))
}

async fn begin(stores: &Stores, f: &OAuthFlow) {
    stores.oauth.begin(f.clone()).await.expect("oauth.begin");
}

async fn claim(stores: &Stores, id: &TokenHash, provider: &str, now: Timestamp) -> Claim {
    stores
        .oauth
        .claim(id, provider, now)
        .await
        .expect("oauth.claim")
}

/// The exchange id's hash the cases complete flow `id` under: distinct per
/// flow and never the flow's own id (the exchange is redeemed by it, not by
/// the `state`).
fn exchange_of(id: &TokenHash) -> TokenHash {
    let mut hex: Vec<u8> = id.as_str().bytes().rev().collect();
    // Reversed, and one digit changed so a palindrome cannot map to itself.
    hex[0] = if hex[0] == b'e' { b'f' } else { b'e' };
    TokenHash::from_hex(String::from_utf8(hex).expect("hex")).expect("a digest")
}

async fn complete(
    stores: &Stores,
    id: &TokenHash,
    result: &FlowResult,
    expires_at: Timestamp,
) -> bool {
    stores
        .oauth
        .complete(id, &exchange_of(id), result, expires_at)
        .await
        .expect("oauth.complete")
}

/// Redeems the flow `id` completed under [`exchange_of`].
async fn redeem(
    stores: &Stores,
    id: &TokenHash,
    browser: &TokenHash,
    now: Timestamp,
) -> Redemption {
    stores
        .oauth
        .redeem(&exchange_of(id), browser, now)
        .await
        .expect("oauth.redeem")
}

/// Begins `f`, claims it and completes it for `user` with a completion
/// window ending at `window_end`: a flow waiting for its exchange.
async fn completed_flow(
    stores: &Stores,
    f: &OAuthFlow,
    user: &UserId,
    window_end: Timestamp,
) -> FlowResult {
    begin(stores, f).await;
    assert_eq!(
        claim(stores, &f.id, &f.provider, at(minutes(1))).await,
        Claim::Claimed(Box::new(f.clone()))
    );
    let result = result_for(user);
    assert!(complete(stores, &f.id, &result, window_end).await);
    result
}

async fn find(stores: &Stores, issuer: &str, subject: &str) -> Option<OAuthIdentity> {
    stores
        .oauth
        .find_identity(issuer, subject)
        .await
        .expect("oauth.find_identity")
}

async fn identities_of(stores: &Stores, user: &UserId) -> Vec<OAuthIdentity> {
    stores
        .oauth
        .identities_of(user)
        .await
        .expect("oauth.identities_of")
}

async fn link(stores: &Stores, identity: &OAuthIdentity) -> Linking {
    stores
        .oauth
        .link_identity(identity)
        .await
        .expect("oauth.link_identity")
}

async fn unlink(stores: &Stores, user: &UserId, provider: &str) -> Unlinking {
    stores
        .oauth
        .unlink_identity(user, provider)
        .await
        .expect("oauth.unlink_identity")
}

/// The user `create_user_with_identity` and `UserStore::insert` make of
/// `new`: active, no factors, no sign-in yet.
fn user_from(new: &NewUser) -> User {
    User {
        id: new.id.clone(),
        email: new.email.clone(),
        password_hash: new.password_hash.clone(),
        is_active: true,
        is_verified: new.is_verified,
        is_superuser: new.is_superuser,
        full_name: new.full_name.clone(),
        phone_number: None,
        is_mfa_enabled: false,
        must_change_password: false,
        created_at: new.created_at,
        updated_at: new.created_at,
        last_login: None,
        tokens_invalidated_after: None,
        disabled_reason: None,
        disabled_until: None,
    }
}

/// A flow comes back from its claim exactly as it was begun — every field,
/// instants to the microsecond, a link flow with its account — and only
/// once. A second begin with the same id is a conflict; a link flow for an
/// account that is gone is not stored, and that is no error.
pub async fn begin_and_claim_round_trip_every_field_once(stores: Stores) {
    let user = add_user(&stores, "oauth-linker@example.com").await;
    let sign_in = flow("google", FlowMode::SignIn);
    let linking = OAuthFlow {
        redirect_to: "https://app.example/settings/accounts".to_owned(),
        created_at: at(micro()),
        ..flow("corp-sso", FlowMode::Link(user.id.clone()))
    };
    begin(&stores, &sign_in).await;
    begin(&stores, &linking).await;
    let now = at(minutes(1));
    assert_eq!(
        claim(&stores, &sign_in.id, "google", now).await,
        Claim::Claimed(Box::new(sign_in.clone())),
        "a sign-in flow, every field as begun"
    );
    assert_eq!(
        claim(&stores, &linking.id, "corp-sso", now).await,
        Claim::Claimed(Box::new(linking.clone())),
        "a link flow, with its account"
    );
    for f in [&sign_in, &linking] {
        assert_eq!(
            claim(&stores, &f.id, &f.provider, now).await,
            Claim::Unknown,
            "a claimed flow cannot be claimed again"
        );
    }

    let clash = OAuthFlow {
        id: sign_in.id.clone(),
        ..flow("github", FlowMode::SignIn)
    };
    assert!(
        matches!(
            stores.oauth.begin(clash).await,
            Err(StoreError::Conflict(_))
        ),
        "a second flow with the same id is refused"
    );
    assert_eq!(
        claim(&stores, &sign_in.id, "github", now).await,
        Claim::Unknown,
        "the refused flow was not stored"
    );

    let orphan = flow("google", FlowMode::Link(UserId::generate()));
    stores
        .oauth
        .begin(orphan.clone())
        .await
        .expect("a link flow for an account that is gone is no error");
    assert_eq!(
        claim(&stores, &orphan.id, "google", now).await,
        Claim::Unknown,
        "and it was not stored"
    );
    assert_eq!(
        claim(&stores, &fixtures::token_hash(), "google", now).await,
        Claim::Unknown
    );
}

/// A callback for another provider finds nothing and changes nothing: the
/// flow's own provider still claims it afterwards, even once it has
/// expired (then it is `Expired`, not a silent leftover).
pub async fn claim_with_another_provider_is_unknown_and_changes_nothing(stores: Stores) {
    let f = flow("google", FlowMode::SignIn);
    begin(&stores, &f).await;
    for provider in ["github", "Google", ""] {
        assert_eq!(
            claim(&stores, &f.id, provider, at(minutes(1))).await,
            Claim::Unknown,
            "claimed as {provider:?}"
        );
    }
    assert_eq!(
        claim(&stores, &f.id, "google", at(minutes(1))).await,
        Claim::Claimed(Box::new(f.clone()))
    );

    let late = flow("google", FlowMode::SignIn);
    begin(&stores, &late).await;
    assert_eq!(
        claim(&stores, &late.id, "github", late.expires_at).await,
        Claim::Unknown,
        "another provider's callback neither claims nor deletes an expired flow"
    );
    assert_eq!(
        claim(&stores, &late.id, "google", late.expires_at).await,
        Claim::Expired
    );
}

/// A flow is live while `expires_at > now`: one microsecond before, it is
/// claimed; at `expires_at` it answers `Expired` and is deleted — asked
/// again, even about an earlier instant, it is `Unknown`.
pub async fn a_flow_is_dead_from_its_expiry_on_and_claiming_it_deletes_it(stores: Stores) {
    let alive = flow("google", FlowMode::SignIn);
    let dead = flow("google", FlowMode::SignIn);
    let later = flow("google", FlowMode::SignIn);
    for f in [&alive, &dead, &later] {
        begin(&stores, f).await;
    }
    assert_eq!(
        claim(&stores, &alive.id, "google", alive.expires_at - micro()).await,
        Claim::Claimed(Box::new(alive.clone()))
    );
    assert_eq!(
        claim(&stores, &dead.id, "google", dead.expires_at).await,
        Claim::Expired
    );
    assert_eq!(
        claim(&stores, &dead.id, "google", dead.expires_at - micro()).await,
        Claim::Unknown,
        "an expired flow is deleted when a claim finds it"
    );
    assert_eq!(
        claim(&stores, &later.id, "google", later.expires_at + hours(1)).await,
        Claim::Expired
    );
    assert_eq!(
        stores
            .oauth
            .purge_expired(at(days(1)))
            .await
            .expect("oauth.purge_expired"),
        1,
        "only the claimed flow is left to purge"
    );
}

/// 20 callbacks claim one flow at once (a replayed redirect): exactly one
/// gets it.
pub async fn claim_has_one_winner_among_20_parallel_callbacks(stores: Stores) {
    let f = flow("google", FlowMode::SignIn);
    begin(&stores, &f).await;
    let outcomes = all_ok(
        "oauth.claim",
        race(|_| {
            let (stores, id) = (stores.clone(), f.id.clone());
            async move { stores.oauth.claim(&id, "google", at(minutes(1))).await }
        })
        .await,
    );
    let claimed: Vec<_> = outcomes
        .iter()
        .filter(|c| matches!(c, Claim::Claimed(_)))
        .collect();
    assert_eq!(
        claimed,
        vec![&Claim::Claimed(Box::new(f.clone()))],
        "exactly one callback claims the flow: {outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|c| **c == Claim::Unknown).count(),
        RACERS - 1
    );
}

/// Only a claimed flow can be completed, and only once: completing an
/// unclaimed or unknown flow is `false`, a second completion is `false` and
/// changes nothing — the exchange gets the first result, with the life the
/// first completion gave the flow.
pub async fn complete_needs_a_claimed_uncompleted_flow(stores: Stores) {
    let user = add_user(&stores, "oauth-complete@example.com").await;
    let other = add_user(&stores, "oauth-complete-other@example.com").await;
    let f = flow("google", FlowMode::SignIn);
    begin(&stores, &f).await;
    let first = FlowResult {
        was_new: true,
        ..result_for(&user.id)
    };
    let window_end = at(minutes(3)) + micro();
    assert!(
        !complete(&stores, &f.id, &first, window_end).await,
        "an unclaimed flow cannot be completed"
    );
    assert!(!complete(&stores, &fixtures::token_hash(), &first, window_end).await);
    assert_eq!(
        claim(&stores, &f.id, "google", at(minutes(1))).await,
        Claim::Claimed(Box::new(f.clone())),
        "the refused completion changed nothing"
    );
    assert!(complete(&stores, &f.id, &first, window_end).await);
    assert!(
        !complete(&stores, &f.id, &result_for(&other.id), at(hours(1))).await,
        "a completed flow cannot be completed again"
    );
    assert_eq!(
        redeem(&stores, &f.id, &f.browser, at(minutes(2))).await,
        Redemption::Redeemed {
            flow: Box::new(OAuthFlow {
                expires_at: window_end,
                ..f.clone()
            }),
            result: first,
        }
    );
    assert!(
        !complete(&stores, &f.id, &result_for(&user.id), at(hours(1))).await,
        "nor a redeemed one"
    );
}

/// The exchange gets a completed flow once, and only from the browser that
/// began it: before completion (begun or claimed) it is `Unknown`; another
/// browser gets `Unknown` and changes nothing, so the owner still redeems
/// it afterwards; after the redemption it is `Unknown`.
pub async fn redeem_hands_a_completed_flow_once_to_the_browser_that_began_it(stores: Stores) {
    let user = add_user(&stores, "oauth-redeem@example.com").await;
    let f = flow("corp-sso", FlowMode::Link(user.id.clone()));
    let now = at(minutes(2));
    begin(&stores, &f).await;
    assert_eq!(
        redeem(&stores, &f.id, &f.browser, now).await,
        Redemption::Unknown,
        "a flow that is only begun"
    );
    assert_eq!(
        claim(&stores, &f.id, "corp-sso", at(minutes(1))).await,
        Claim::Claimed(Box::new(f.clone()))
    );
    assert_eq!(
        redeem(&stores, &f.id, &f.browser, now).await,
        Redemption::Unknown,
        "a claimed flow the callback has not completed"
    );
    let window_end = at(minutes(5));
    let result = result_for(&user.id);
    assert!(complete(&stores, &f.id, &result, window_end).await);

    assert_eq!(
        stores
            .oauth
            .redeem(&f.id, &f.browser, now)
            .await
            .expect("oauth.redeem"),
        Redemption::Unknown,
        "the state (which travelled through the provider's URLs) is no exchange id"
    );
    let stranger = fixtures::token_hash();
    for _ in 0..3 {
        assert_eq!(
            redeem(&stores, &f.id, &stranger, now).await,
            Redemption::Unknown,
            "another browser"
        );
    }
    assert_eq!(
        redeem(&stores, &f.id, &f.browser, now).await,
        Redemption::Redeemed {
            flow: Box::new(OAuthFlow {
                expires_at: window_end,
                ..f.clone()
            }),
            result,
        },
        "the owner still redeems it after a stranger tried"
    );
    assert_eq!(
        redeem(&stores, &f.id, &f.browser, now).await,
        Redemption::Unknown,
        "once"
    );
    assert_eq!(
        redeem(&stores, &fixtures::token_hash(), &f.browser, now).await,
        Redemption::Unknown
    );
}

/// The completion window is live while `expires_at > now`: one microsecond
/// before its end the flow is redeemed; at its end the owner gets `Expired`
/// (and the flow is deleted: `Unknown` after), while another browser still
/// gets `Unknown` and deletes nothing.
pub async fn redeem_past_the_completion_window_is_expired_then_unknown(stores: Stores) {
    let user = add_user(&stores, "oauth-window@example.com").await;
    let window_end = at(minutes(4)) + micro();
    let on_time = flow("google", FlowMode::SignIn);
    let late = flow("google", FlowMode::SignIn);
    let on_time_result = completed_flow(&stores, &on_time, &user.id, window_end).await;
    completed_flow(&stores, &late, &user.id, window_end).await;
    assert_eq!(
        redeem(&stores, &on_time.id, &on_time.browser, window_end - micro()).await,
        Redemption::Redeemed {
            flow: Box::new(OAuthFlow {
                expires_at: window_end,
                ..on_time.clone()
            }),
            result: on_time_result,
        }
    );
    assert_eq!(
        redeem(&stores, &late.id, &fixtures::token_hash(), window_end).await,
        Redemption::Unknown,
        "another browser learns nothing, even of an expired flow"
    );
    assert_eq!(
        redeem(&stores, &late.id, &late.browser, window_end).await,
        Redemption::Expired
    );
    assert_eq!(
        redeem(&stores, &late.id, &late.browser, window_end - micro()).await,
        Redemption::Unknown,
        "an expired flow is deleted when its owner finds it"
    );
}

/// 20 exchanges of one completed flow at once (a double-clicked button, a
/// replayed request): exactly one gets it.
pub async fn redeem_has_one_winner_among_20_parallel_exchanges(stores: Stores) {
    let user = add_user(&stores, "oauth-redeem-race@example.com").await;
    let f = flow("google", FlowMode::SignIn);
    let result = completed_flow(&stores, &f, &user.id, at(minutes(5))).await;
    let outcomes = all_ok(
        "oauth.redeem",
        race(|_| {
            let (stores, id, browser) = (stores.clone(), f.id.clone(), f.browser.clone());
            async move {
                stores
                    .oauth
                    .redeem(&exchange_of(&id), &browser, at(minutes(2)))
                    .await
            }
        })
        .await,
    );
    let redeemed: Vec<_> = outcomes
        .iter()
        .filter(|r| matches!(r, Redemption::Redeemed { .. }))
        .collect();
    assert_eq!(
        redeemed,
        vec![&Redemption::Redeemed {
            flow: Box::new(OAuthFlow {
                expires_at: at(minutes(5)),
                ..f.clone()
            }),
            result,
        }],
        "exactly one exchange gets the flow: {outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|r| **r == Redemption::Unknown)
            .count(),
        RACERS - 1
    );
}

/// An identity is its `(issuer, subject)`: one subject under two issuers is
/// two identities (of two accounts here), each found by its own pair with
/// every field as linked; a subject under an issuer that never vouched for
/// it finds nothing.
pub async fn identities_are_keyed_by_issuer_and_subject(stores: Stores) {
    let alice = add_user(&stores, "oauth-alice@example.com").await;
    let bob = add_user(&stores, "oauth-bob@example.com").await;
    let at_google = OAuthIdentity {
        linked_at: at(micro()),
        last_used_at: Some(at(minutes(1)) + micro()),
        ..fixtures::oauth_identity(&alice.id, "google", GOOGLE, "10769150350006150715113082367")
    };
    let at_corp = OAuthIdentity {
        email: None,
        ..fixtures::oauth_identity(&bob.id, "corp-sso", CORP, "10769150350006150715113082367")
    };
    assert_eq!(link(&stores, &at_google).await, Linking::Linked);
    assert_eq!(
        link(&stores, &at_corp).await,
        Linking::Linked,
        "the same subject under another issuer is another identity"
    );
    assert_eq!(
        find(&stores, GOOGLE, &at_google.subject).await,
        Some(at_google.clone())
    );
    assert_eq!(
        find(&stores, CORP, &at_corp.subject).await,
        Some(at_corp.clone())
    );
    assert_eq!(find(&stores, GOOGLE, "someone-else").await, None);
    assert_eq!(
        find(&stores, "https://accounts.google.com/", &at_google.subject).await,
        None,
        "issuers compare exactly"
    );
    assert_eq!(identities_of(&stores, &alice.id).await, vec![at_google]);
    assert_eq!(identities_of(&stores, &bob.id).await, vec![at_corp]);
}

/// `link_identity` links an identity to an existing account, and refuses —
/// changing nothing — an identity already linked (to this account or
/// another: `IdentityInUse`, which wins over a taken provider name), a
/// second identity of one provider name (`ProviderTaken`) and an account
/// that is gone (`NoUser`).
pub async fn link_identity_refuses_what_is_taken(stores: Stores) {
    let user = add_user(&stores, "oauth-link@example.com").await;
    let other = add_user(&stores, "oauth-link-other@example.com").await;
    let mine = fixtures::oauth_identity(&user.id, "google", GOOGLE, "sub-mine");
    assert_eq!(link(&stores, &mine).await, Linking::Linked);

    assert_eq!(
        link(&stores, &mine).await,
        Linking::IdentityInUse,
        "linked twice to the same account"
    );
    let stolen = OAuthIdentity {
        user_id: other.id.clone(),
        ..mine.clone()
    };
    assert_eq!(
        link(&stores, &stolen).await,
        Linking::IdentityInUse,
        "an identity of another account"
    );
    let renamed = OAuthIdentity {
        provider: "google-workspace".to_owned(),
        ..mine.clone()
    };
    assert_eq!(
        link(&stores, &renamed).await,
        Linking::IdentityInUse,
        "the same identity under another provider name"
    );
    let second_google = fixtures::oauth_identity(&user.id, "google", GOOGLE, "sub-second");
    assert_eq!(
        link(&stores, &second_google).await,
        Linking::ProviderTaken,
        "one identity per provider name per account"
    );
    let ghost = fixtures::oauth_identity(&UserId::generate(), "google", GOOGLE, "sub-ghost");
    assert_eq!(link(&stores, &ghost).await, Linking::NoUser);
    let ghost_in_use = OAuthIdentity {
        user_id: UserId::generate(),
        ..mine.clone()
    };
    assert_eq!(
        link(&stores, &ghost_in_use).await,
        Linking::NoUser,
        "a gone account is reported first"
    );

    assert_eq!(identities_of(&stores, &user.id).await, vec![mine.clone()]);
    assert_eq!(identities_of(&stores, &other.id).await, vec![]);
    assert_eq!(find(&stores, GOOGLE, "sub-second").await, None);
    assert_eq!(find(&stores, GOOGLE, "sub-ghost").await, None);
    assert_eq!(find(&stores, GOOGLE, "sub-mine").await, Some(mine));

    let corp = fixtures::oauth_identity(&other.id, "google", CORP, "sub-mine");
    assert_eq!(
        link(&stores, &corp).await,
        Linking::Linked,
        "the provider name is taken per account, not across accounts"
    );
}

/// `create_user_with_identity` writes the account (its fields as given,
/// active, unverified or verified as asked) and its identity together; a
/// taken address writes neither (`EmailTaken`), an identity in use writes
/// neither (`IdentityInUse`), and when both are taken the identity is what
/// the answer names.
pub async fn create_user_with_identity_writes_both_or_neither(stores: Stores) {
    let new = NewUser {
        password_hash: None,
        full_name: Some("Ada Lovelace".to_owned()),
        is_verified: false,
        created_at: at(micro()),
        ..fixtures::new_user("oauth-created@example.com")
    };
    let identity = OAuthIdentity {
        linked_at: at(micro()),
        ..fixtures::oauth_identity(&new.id, "google", GOOGLE, "sub-created")
    };
    let expected = user_from(&new);
    assert_eq!(
        stores
            .oauth
            .create_user_with_identity(new.clone(), &identity)
            .await
            .expect("oauth.create_user_with_identity"),
        Creation::Created(expected.clone())
    );
    assert_eq!(get_user(&stores, &new.id).await, expected);
    assert_eq!(
        find(&stores, GOOGLE, "sub-created").await,
        Some(identity.clone())
    );
    assert_eq!(
        identities_of(&stores, &new.id).await,
        vec![identity.clone()]
    );

    // A taken address: no account, no identity.
    let taken = add_user(&stores, "oauth-taken@example.com").await;
    let second = NewUser {
        password_hash: None,
        ..fixtures::new_user("oauth-taken@example.com")
    };
    let fresh = fixtures::oauth_identity(&second.id, "google", GOOGLE, "sub-fresh");
    assert_eq!(
        stores
            .oauth
            .create_user_with_identity(second.clone(), &fresh)
            .await
            .expect("oauth.create_user_with_identity"),
        Creation::EmailTaken
    );
    assert_eq!(
        find(&stores, GOOGLE, "sub-fresh").await,
        None,
        "no identity"
    );
    assert_eq!(stores.users.get(&second.id).await.expect("get"), None);
    assert_eq!(get_user(&stores, &taken.id).await, taken);
    assert_eq!(identities_of(&stores, &taken.id).await, vec![]);

    // An identity in use: no account.
    let third = fixtures::new_user("oauth-third@example.com");
    let reused = fixtures::oauth_identity(&third.id, "google", GOOGLE, "sub-created");
    assert_eq!(
        stores
            .oauth
            .create_user_with_identity(third.clone(), &reused)
            .await
            .expect("oauth.create_user_with_identity"),
        Creation::IdentityInUse
    );
    assert_eq!(stores.users.get(&third.id).await.expect("get"), None);
    assert_eq!(
        stores
            .users
            .find_by_email(&third.email)
            .await
            .expect("find_by_email"),
        None,
        "no account"
    );
    assert_eq!(
        find(&stores, GOOGLE, "sub-created").await,
        Some(identity),
        "the identity still belongs to its account"
    );

    // Both taken: the identity is what the loser of a first sign-in learns.
    let fourth = fixtures::new_user("oauth-created@example.com");
    let both = fixtures::oauth_identity(&fourth.id, "google", GOOGLE, "sub-created");
    assert_eq!(
        stores
            .oauth
            .create_user_with_identity(fourth.clone(), &both)
            .await
            .expect("oauth.create_user_with_identity"),
        Creation::IdentityInUse
    );
    assert_eq!(stores.users.get(&fourth.id).await.expect("get"), None);

    // The address and identity that were refused are free to use.
    let fifth = fixtures::new_user("oauth-third@example.com");
    let free = fixtures::oauth_identity(&fifth.id, "github", GOOGLE, "sub-fresh");
    assert_eq!(
        stores
            .oauth
            .create_user_with_identity(fifth.clone(), &free)
            .await
            .expect("oauth.create_user_with_identity"),
        Creation::Created(user_from(&fifth))
    );
}

/// 20 first sign-ins with one identity at once, each with its own address:
/// exactly one creates an account, the rest learn `IdentityInUse`, and one
/// account exists with the one identity. Then 20 more with one identity and
/// one shared address: the same, and the losers still learn
/// `IdentityInUse`.
pub async fn create_user_with_identity_has_one_winner_among_20_parallel_first_sign_ins(
    stores: Stores,
) {
    for (round, shared_address) in [(0, false), (1, true)] {
        let subject = format!("sub-race-{round}");
        let news: Vec<NewUser> = (0..RACERS)
            .map(|i| {
                let address = if shared_address {
                    format!("oauth-race{round}@example.com")
                } else {
                    format!("oauth-race{round}-{i}@example.com")
                };
                NewUser {
                    password_hash: None,
                    ..fixtures::new_user(&address)
                }
            })
            .collect();
        let outcomes = all_ok(
            "oauth.create_user_with_identity",
            race(|i| {
                let stores = stores.clone();
                let new = news[i].clone();
                let identity = fixtures::oauth_identity(&new.id, "google", GOOGLE, &subject);
                async move { stores.oauth.create_user_with_identity(new, &identity).await }
            })
            .await,
        );
        let created: Vec<&User> = outcomes
            .iter()
            .filter_map(|c| match c {
                Creation::Created(user) => Some(user),
                _ => None,
            })
            .collect();
        assert_eq!(
            created.len(),
            1,
            "round {round}: exactly one account: {outcomes:?}"
        );
        let winner = created[0].clone();
        assert_eq!(
            outcomes
                .iter()
                .filter(|c| **c == Creation::IdentityInUse)
                .count(),
            RACERS - 1,
            "round {round}: every loser learns the identity is in use: {outcomes:?}"
        );
        let mut accounts = 0;
        for new in &news {
            if let Some(user) = stores.users.get(&new.id).await.expect("get") {
                assert_eq!(user, winner, "round {round}: only the winner's account");
                accounts += 1;
            }
        }
        assert_eq!(accounts, 1, "round {round}");
        let found = find(&stores, GOOGLE, &subject)
            .await
            .expect("the identity is linked");
        assert_eq!(found.user_id, winner.id, "round {round}");
        assert_eq!(identities_of(&stores, &winner.id).await, vec![found]);
    }
}

/// An identity cannot be unlinked when it is the account's last way to
/// sign in — no password and no other identity — and the refusal changes
/// nothing; with a password, or with another identity, it goes. Unlinking a
/// provider the account does not have (or an account that is gone) is
/// `NotLinked`.
pub async fn unlink_identity_never_removes_the_last_way_to_sign_in(stores: Stores) {
    let only = add_passwordless_user(&stores, "oauth-only@example.com").await;
    let sole = fixtures::oauth_identity(&only.id, "google", GOOGLE, "sub-only");
    assert_eq!(link(&stores, &sole).await, Linking::Linked);
    assert_eq!(
        unlink(&stores, &only.id, "google").await,
        Unlinking::LastSignInMethod
    );
    assert_eq!(identities_of(&stores, &only.id).await, vec![sole.clone()]);
    assert_eq!(get_user(&stores, &only.id).await, only, "nothing changed");
    assert_eq!(
        unlink(&stores, &only.id, "github").await,
        Unlinking::NotLinked
    );

    let with_password = add_user(&stores, "oauth-password@example.com").await;
    let kept = fixtures::oauth_identity(&with_password.id, "google", GOOGLE, "sub-password");
    assert_eq!(link(&stores, &kept).await, Linking::Linked);
    assert_eq!(
        unlink(&stores, &with_password.id, "google").await,
        Unlinking::Unlinked(kept.clone()),
        "the password is still a way in"
    );
    assert_eq!(identities_of(&stores, &with_password.id).await, vec![]);
    assert_eq!(find(&stores, GOOGLE, "sub-password").await, None);
    assert_eq!(
        unlink(&stores, &with_password.id, "google").await,
        Unlinking::NotLinked,
        "unlinked already"
    );

    let two = add_passwordless_user(&stores, "oauth-two@example.com").await;
    let first = fixtures::oauth_identity(&two.id, "google", GOOGLE, "sub-two");
    let second = OAuthIdentity {
        linked_at: at(minutes(1)),
        ..fixtures::oauth_identity(&two.id, "corp-sso", CORP, "sub-two")
    };
    assert_eq!(link(&stores, &first).await, Linking::Linked);
    assert_eq!(link(&stores, &second).await, Linking::Linked);
    assert_eq!(
        unlink(&stores, &two.id, "google").await,
        Unlinking::Unlinked(first),
        "another identity is still a way in"
    );
    assert_eq!(
        unlink(&stores, &two.id, "corp-sso").await,
        Unlinking::LastSignInMethod
    );
    assert_eq!(identities_of(&stores, &two.id).await, vec![second]);

    assert_eq!(
        unlink(&stores, &UserId::generate(), "google").await,
        Unlinking::NotLinked
    );
}

/// A password-less account with two identities; 20 unlinks at once, ten of
/// each: exactly one identity goes and one stays — the check "is it the
/// last way in?" and the removal are one step. Several rounds, a fresh
/// account each.
pub async fn concurrent_unlinks_of_the_last_two_identities_leave_one(stores: Stores) {
    const ROUNDS: usize = 3;
    for round in 0..ROUNDS {
        let user =
            add_passwordless_user(&stores, &format!("oauth-unlink{round}@example.com")).await;
        let providers = ["google", "corp-sso"];
        for (provider, issuer) in providers.into_iter().zip([GOOGLE, CORP]) {
            let identity =
                fixtures::oauth_identity(&user.id, provider, issuer, &format!("sub-u{round}"));
            assert_eq!(link(&stores, &identity).await, Linking::Linked);
        }
        let outcomes = all_ok(
            "oauth.unlink_identity",
            race(|i| {
                let (stores, id) = (stores.clone(), user.id.clone());
                async move { stores.oauth.unlink_identity(&id, providers[i % 2]).await }
            })
            .await,
        );
        let unlinked = outcomes
            .iter()
            .filter(|u| matches!(u, Unlinking::Unlinked(_)))
            .count();
        assert_eq!(unlinked, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes.iter().all(|u| matches!(
                u,
                Unlinking::Unlinked(_) | Unlinking::LastSignInMethod | Unlinking::NotLinked
            )),
            "round {round}: {outcomes:?}"
        );
        assert_eq!(
            identities_of(&stores, &user.id).await.len(),
            1,
            "round {round}: one way in is left"
        );
    }
}

/// `touch_identity` stamps `last_used_at` (to the microsecond) on that
/// identity alone; an identity that is not linked answers `false`.
pub async fn touch_identity_stamps_last_used_at(stores: Stores) {
    let user = add_user(&stores, "oauth-touch@example.com").await;
    let touched = fixtures::oauth_identity(&user.id, "google", GOOGLE, "sub-touch");
    let untouched = fixtures::oauth_identity(&user.id, "corp-sso", CORP, "sub-touch");
    for identity in [&touched, &untouched] {
        assert_eq!(link(&stores, identity).await, Linking::Linked);
    }
    for when in [at(minutes(5)) + micro(), at(hours(1))] {
        assert!(stores
            .oauth
            .touch_identity(GOOGLE, "sub-touch", when)
            .await
            .expect("oauth.touch_identity"));
        assert_eq!(
            find(&stores, GOOGLE, "sub-touch").await,
            Some(OAuthIdentity {
                last_used_at: Some(when),
                ..touched.clone()
            })
        );
    }
    assert_eq!(
        find(&stores, CORP, "sub-touch").await,
        Some(untouched),
        "another identity of the account is untouched"
    );
    assert!(!stores
        .oauth
        .touch_identity(GOOGLE, "sub-nobody", at(hours(1)))
        .await
        .expect("oauth.touch_identity"));
}

/// `identities_of` lists the account's identities oldest link first, and
/// only the account's; an account without any (or gone) has none.
pub async fn identities_of_lists_the_oldest_link_first(stores: Stores) {
    let user = add_user(&stores, "oauth-order@example.com").await;
    let other = add_user(&stores, "oauth-order-other@example.com").await;
    let linked: Vec<OAuthIdentity> = [
        ("google", GOOGLE, minutes(2)),
        ("corp-sso", CORP, minutes(1)),
        ("github", "https://github.com", minutes(3)),
    ]
    .into_iter()
    .map(|(provider, issuer, when)| OAuthIdentity {
        linked_at: at(when),
        ..fixtures::oauth_identity(&user.id, provider, issuer, "sub-order")
    })
    .collect();
    for identity in &linked {
        assert_eq!(link(&stores, identity).await, Linking::Linked);
    }
    let theirs = OAuthIdentity {
        linked_at: t0(),
        ..fixtures::oauth_identity(&other.id, "google", GOOGLE, "sub-other")
    };
    assert_eq!(link(&stores, &theirs).await, Linking::Linked);
    assert_eq!(
        identities_of(&stores, &user.id).await,
        vec![linked[1].clone(), linked[0].clone(), linked[2].clone()]
    );
    assert_eq!(identities_of(&stores, &other.id).await, vec![theirs]);
    assert_eq!(identities_of(&stores, &UserId::generate()).await, vec![]);
}

/// `purge_expired` deletes exactly the flows at or past their expiry —
/// begun, claimed or completed — reports how many, and leaves live ones
/// working.
pub async fn purge_expired_removes_only_dead_oauth_flows(stores: Stores) {
    let user = add_user(&stores, "oauth-purge@example.com").await;
    let now = at(hours(1));
    let mut dead = Vec::new();
    for expires_at in [now - minutes(30), now] {
        let f = fixtures::oauth_flow("google", FlowMode::SignIn, expires_at);
        begin(&stores, &f).await;
        dead.push(f);
    }
    let claimed_dead = fixtures::oauth_flow("google", FlowMode::SignIn, now - micro());
    begin(&stores, &claimed_dead).await;
    assert_eq!(
        claim(&stores, &claimed_dead.id, "google", t0()).await,
        Claim::Claimed(Box::new(claimed_dead.clone()))
    );
    let completed_dead = flow("google", FlowMode::Link(user.id.clone()));
    completed_flow(&stores, &completed_dead, &user.id, now).await;

    let live = fixtures::oauth_flow("google", FlowMode::SignIn, now + micro());
    begin(&stores, &live).await;
    let completed_live = flow("google", FlowMode::SignIn);
    let result = completed_flow(&stores, &completed_live, &user.id, now + minutes(1)).await;

    let purge = || async {
        stores
            .oauth
            .purge_expired(now)
            .await
            .expect("oauth.purge_expired")
    };
    assert_eq!(purge().await, 4);
    assert_eq!(purge().await, 0, "idempotent");
    assert_eq!(
        claim(&stores, &live.id, "google", now).await,
        Claim::Claimed(Box::new(live))
    );
    assert_eq!(
        redeem(&stores, &completed_live.id, &completed_live.browser, now).await,
        Redemption::Redeemed {
            flow: Box::new(OAuthFlow {
                expires_at: now + minutes(1),
                ..completed_live
            }),
            result,
        }
    );
    for f in &dead {
        assert_eq!(
            claim(&stores, &f.id, "google", t0()).await,
            Claim::Unknown,
            "a purged flow is gone, even asked about before its expiry"
        );
    }
    assert_eq!(
        redeem(&stores, &completed_dead.id, &completed_dead.browser, t0()).await,
        Redemption::Unknown
    );
}

/// `delete_account` takes the account's identities and its link flows
/// along (begun or completed): an identity of it no longer finds anyone,
/// and a new account may take the identity. Another account's identities
/// and flows, and sign-in flows, stay. Afterwards a link flow or a link for
/// the deleted account stores nothing.
pub async fn delete_account_removes_identities_and_link_flows(stores: Stores) {
    let user = add_user(&stores, "oauth-deleted@example.com").await;
    let other = add_user(&stores, "oauth-kept@example.com").await;
    let mine = [
        fixtures::oauth_identity(&user.id, "google", GOOGLE, "sub-deleted"),
        fixtures::oauth_identity(&user.id, "corp-sso", CORP, "sub-deleted"),
    ];
    let theirs = fixtures::oauth_identity(&other.id, "google", GOOGLE, "sub-kept");
    for identity in mine.iter().chain([&theirs]) {
        assert_eq!(link(&stores, identity).await, Linking::Linked);
    }
    let begun = flow("google", FlowMode::Link(user.id.clone()));
    begin(&stores, &begun).await;
    let completed = flow("corp-sso", FlowMode::Link(user.id.clone()));
    completed_flow(&stores, &completed, &user.id, at(minutes(5))).await;
    let their_link = flow("google", FlowMode::Link(other.id.clone()));
    begin(&stores, &their_link).await;
    let sign_in = flow("google", FlowMode::SignIn);
    begin(&stores, &sign_in).await;

    stores
        .users
        .delete_account(&user.id)
        .await
        .expect("delete_account")
        .expect("the user existed");

    let now = at(minutes(2));
    for identity in &mine {
        assert_eq!(
            find(&stores, &identity.issuer, &identity.subject).await,
            None,
            "an identity of the deleted account finds no one"
        );
    }
    assert_eq!(identities_of(&stores, &user.id).await, vec![]);
    assert_eq!(
        claim(&stores, &begun.id, "google", now).await,
        Claim::Unknown,
        "a link flow it began is gone"
    );
    assert_eq!(
        redeem(&stores, &completed.id, &completed.browser, now).await,
        Redemption::Unknown,
        "a completed link flow is gone"
    );
    assert_eq!(
        link(&stores, &mine[0]).await,
        Linking::NoUser,
        "no identity can be linked to a deleted account"
    );
    let late = flow("google", FlowMode::Link(user.id.clone()));
    stores
        .oauth
        .begin(late.clone())
        .await
        .expect("a link flow for a deleted account is no error");
    assert_eq!(
        claim(&stores, &late.id, "google", now).await,
        Claim::Unknown
    );

    assert_eq!(identities_of(&stores, &other.id).await, vec![theirs]);
    assert_eq!(
        claim(&stores, &their_link.id, "google", now).await,
        Claim::Claimed(Box::new(their_link))
    );
    assert_eq!(
        claim(&stores, &sign_in.id, "google", now).await,
        Claim::Claimed(Box::new(sign_in))
    );

    // The account's id and identity are free again; the new account does
    // not inherit the old one's other identity.
    let reborn = NewUser {
        id: user.id.clone(),
        ..fixtures::new_user("oauth-deleted@example.com")
    };
    assert_eq!(
        stores
            .oauth
            .create_user_with_identity(reborn.clone(), &mine[0])
            .await
            .expect("oauth.create_user_with_identity"),
        Creation::Created(user_from(&reborn))
    );
    assert_eq!(
        identities_of(&stores, &user.id).await,
        vec![mine[0].clone()]
    );
}
