//! Account deletion: every row of the user goes, including what a sign-in
//! or a link issue racing the deletion wrote.

use regstack_ports::{
    Claim, FlowMode, Linking, NewSession, Promotion, RevokeReason, Rotation, SessionStart,
    StoreError, Stores, UserId,
};

use crate::fixtures::{self, at, t0};

use super::support::*;
use super::RACERS;

/// `delete_account` removes the user and everything of it — sessions,
/// tokens, lockout attempts, rate-limit hits keyed `…:{email}`, a pending
/// row for the address, linked OAuth identities and the OAuth flows it
/// began to link one — and nothing of anyone else, including a user
/// whose address differs only where a SQL `LIKE` pattern would match
/// (`_` is a wildcard there).
pub async fn delete_account_removes_every_row_of_the_user(stores: Stores) {
    let user = add_user(&stores, "del_me@example.com").await;
    let other = add_user(&stores, "delxme@example.com").await;
    let user_key = format!("mail:{}", user.email);
    let other_key = format!("mail:{}", other.email);
    let window = hours(1);

    let s1 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s2 = start_session(&stores, &user.id, t0(), at(days(1))).await;
    let s_other = start_session(&stores, &other.id, t0(), at(days(1))).await;
    let reset = issue(&stores, fixtures::reset_token(&user.id, at(hours(2)))).await;
    let change = issue(
        &stores,
        fixtures::email_change_token(&user.id, "del_me.new@example.com", at(hours(2))),
    )
    .await;
    let other_reset = issue(&stores, fixtures::reset_token(&other.id, at(hours(2)))).await;
    for n in 1..=2 {
        assert_eq!(
            admit(&stores, &user.email, t0(), window, 5).await,
            admitted(n)
        );
        assert_eq!(
            admit(&stores, &other.email, t0(), window, 5).await,
            admitted(n)
        );
    }
    for key in [&user_key, &other_key] {
        for _ in 0..3 {
            assert!(hit(&stores, key, t0(), window, 3).await);
        }
        assert!(
            !hit(&stores, key, t0(), window, 3).await,
            "{key} is at its limit"
        );
    }
    let pending_token = fixtures::token_hash();
    stores
        .pending
        .put(fixtures::pending(
            "del_me@example.com",
            &pending_token,
            at(days(1)),
        ))
        .await
        .expect("put");
    let issuer = "https://accounts.google.com";
    let mut link_flows = Vec::new();
    for who in [&user, &other] {
        let identity = fixtures::oauth_identity(&who.id, "google", issuer, who.id.as_str());
        assert_eq!(
            stores
                .oauth
                .link_identity(&identity)
                .await
                .expect("link_identity"),
            Linking::Linked
        );
        let flow = fixtures::oauth_flow("google", FlowMode::Link(who.id.clone()), at(hours(1)));
        stores.oauth.begin(flow.clone()).await.expect("begin");
        link_flows.push(flow);
    }

    let removed = stores
        .users
        .delete_account(&user.id)
        .await
        .expect("delete_account")
        .expect("the user existed");
    assert_eq!(removed.id, user.id);
    assert_eq!(removed.email, user.email);

    let now = at(minutes(1));
    assert_eq!(stores.users.get(&user.id).await.expect("get"), None);
    assert_eq!(
        stores
            .users
            .find_by_email(&user.email)
            .await
            .expect("find_by_email"),
        None
    );
    // Not `authenticate`: it joins the user, who is gone whatever became
    // of the session rows. These read or write the session rows alone, so
    // a row left behind answers (backends count raw rows in their own
    // tests: `deleting_an_account_removes_every_row_keyed_by_it`).
    assert_eq!(
        listed(&stores, &user.id, now).await,
        vec![],
        "the user's sessions are gone from its list"
    );
    assert_eq!(
        stores
            .sessions
            .revoke_all(&user.id, RevokeReason::LogoutAll, now)
            .await
            .expect("revoke_all"),
        0,
        "no session of the user is left to revoke"
    );
    for sid in [&s1, &s2] {
        assert!(
            !stores
                .sessions
                .revoke(sid, RevokeReason::Logout, now)
                .await
                .expect("revoke"),
            "the user's session {sid:?} is gone"
        );
        let stale = Tok {
            sid: sid.clone(),
            hash: fixtures::token_hash(),
        };
        assert_eq!(
            rotate(&stores, &stale, &next(&stale), now).await,
            Rotation::Unknown,
            "the user's session {sid:?} has no family left"
        );
    }
    assert_eq!(peek(&stores, &reset, now).await, None);
    assert_eq!(peek(&stores, &change, now).await, None);
    assert_eq!(
        stores
            .pending
            .find_by_email(&user.email, now)
            .await
            .expect("find_by_email"),
        None,
        "a pending row for the address is gone"
    );
    assert_eq!(
        stores
            .pending
            .promote(&pending_token, &UserId::generate(), now)
            .await
            .expect("promote"),
        Promotion::InvalidToken
    );
    assert_eq!(
        admit(&stores, &user.email, now, window, 5).await,
        admitted(1),
        "the lockout counter starts fresh"
    );
    for _ in 0..3 {
        assert!(
            hit(&stores, &user_key, now, window, 3).await,
            "the address's rate-limit hits are gone"
        );
    }
    assert!(!hit(&stores, &user_key, now, window, 3).await);
    assert_eq!(
        stores
            .oauth
            .find_identity(issuer, user.id.as_str())
            .await
            .expect("find_identity"),
        None,
        "the user's OAuth identity is gone"
    );
    assert_eq!(
        stores
            .oauth
            .claim(&link_flows[0].id, "google", now)
            .await
            .expect("claim"),
        Claim::Unknown,
        "the OAuth flow the user began to link an identity is gone"
    );

    // The neighbour is untouched.
    assert_eq!(get_user(&stores, &other.id).await, {
        let mut o = other.clone();
        o.last_login = Some(t0());
        o
    });
    assert_live(
        &session(&stores, &s_other).await,
        "another user's session survives",
    );
    assert_eq!(peek(&stores, &other_reset, now).await, Some(other_reset));
    assert_eq!(
        admit(&stores, &other.email, now, window, 5).await,
        admitted(3),
        "another address keeps its attempts"
    );
    assert!(
        !hit(&stores, &other_key, now, window, 3).await,
        "another address keeps its rate-limit hits"
    );
    assert_eq!(
        stores
            .oauth
            .identities_of(&other.id)
            .await
            .expect("identities_of")
            .len(),
        1,
        "another user keeps its OAuth identity"
    );
    assert_eq!(
        stores
            .oauth
            .claim(&link_flows[1].id, "google", now)
            .await
            .expect("claim"),
        Claim::Claimed(Box::new(link_flows[1].clone())),
        "and its link flow"
    );

    assert_eq!(
        stores
            .users
            .delete_account(&user.id)
            .await
            .expect("delete_account"),
        None,
        "deleting twice finds nothing"
    );
    stores
        .users
        .insert(fixtures::new_user("del_me@example.com"))
        .await
        .expect("the address is free again");
}

/// What one racer of [`deletion_racing_sign_ins_and_link_issues_leaves_nothing`]
/// did.
enum Raced {
    Deleted(Result<bool, StoreError>),
    Started(Result<SessionStart, StoreError>),
    Issued(Result<(), StoreError>),
    Began(Result<(), StoreError>),
    Linked(Result<Linking, StoreError>),
}

/// Sign-ins and link issues racing the deletion of their user leave
/// nothing of it, and none of them fails: 20 racers, one deleting the
/// user, the others in turn starting a session for it (with the epoch
/// the sign-in read), issuing it a reset link, beginning an OAuth flow to
/// link an identity to it, and linking one. Every start answers
/// `Started` (it came first; the deletion removes the session) or `Stale`
/// (the user was gone), every issue and begin `Ok`, every link `Linked`
/// or `NoUser` — never an error such as a foreign-key violation — and
/// afterwards no session, token, flow or identity of the user exists.
/// Several rounds, a fresh user each, so the deletion lands at different
/// points among the others.
pub async fn deletion_racing_sign_ins_and_link_issues_leaves_nothing(stores: Stores) {
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        let user = add_user(&stores, &format!("deleted{round}@example.com")).await;
        let epoch = user.tokens_invalidated_after;
        let deleter = (round * 7 + RACERS / 2) % RACERS;
        let sessions: Vec<NewSession> = (0..RACERS)
            .map(|_| NewSession {
                credential_epoch: epoch,
                ..fixtures::new_session(&user.id, t0(), at(days(1)))
            })
            .collect();
        let tokens: Vec<_> = (0..RACERS)
            .map(|_| fixtures::reset_token(&user.id, at(hours(2))))
            .collect();
        let flows: Vec<_> = (0..RACERS)
            .map(|_| fixtures::oauth_flow("google", FlowMode::Link(user.id.clone()), at(hours(1))))
            .collect();
        let identities: Vec<_> = (0..RACERS)
            .map(|i| {
                fixtures::oauth_identity(
                    &user.id,
                    &format!("provider{i}"),
                    "https://issuer.example",
                    &format!("deleted{round}-{i}"),
                )
            })
            .collect();
        let outcomes = race(|i| {
            let stores = stores.clone();
            let id = user.id.clone();
            let session = sessions[i].clone();
            let token = tokens[i].clone();
            let flow = flows[i].clone();
            let identity = identities[i].clone();
            async move {
                if i == deleter {
                    return Raced::Deleted(
                        stores.users.delete_account(&id).await.map(|u| u.is_some()),
                    );
                }
                match i % 4 {
                    0 => Raced::Started(stores.sessions.start(session).await),
                    1 => Raced::Issued(stores.tokens.issue(token).await),
                    2 => Raced::Began(stores.oauth.begin(flow).await),
                    _ => Raced::Linked(stores.oauth.link_identity(&identity).await),
                }
            }
        })
        .await;
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Raced::Deleted(r) => assert!(
                    r.as_ref().is_ok_and(|existed| *existed),
                    "round {round}: the deletion found the user: {r:?}"
                ),
                Raced::Started(r) => assert!(
                    r.is_ok(),
                    "round {round}, racer {i}: a start racing the deletion must answer \
                     Started or Stale, not {r:?}"
                ),
                Raced::Issued(r) => assert!(
                    r.is_ok(),
                    "round {round}, racer {i}: an issue racing the deletion must answer Ok, \
                     not {r:?}"
                ),
                Raced::Began(r) => assert!(
                    r.is_ok(),
                    "round {round}, racer {i}: an OAuth link flow begun racing the deletion \
                     must answer Ok, not {r:?}"
                ),
                Raced::Linked(r) => assert!(
                    matches!(r, Ok(Linking::Linked | Linking::NoUser)),
                    "round {round}, racer {i}: a link racing the deletion must answer Linked \
                     or NoUser, not {r:?}"
                ),
            }
        }
        let now = at(minutes(1));
        assert_eq!(stores.users.get(&user.id).await.expect("get"), None);
        for s in &sessions {
            assert_eq!(
                stores
                    .sessions
                    .authenticate(&s.id)
                    .await
                    .expect("authenticate"),
                None,
                "round {round}: a session started during the deletion survived it"
            );
        }
        assert_eq!(listed(&stores, &user.id, now).await, vec![]);
        for t in &tokens {
            assert_eq!(
                peek(&stores, t, now).await,
                None,
                "round {round}: a link issued during the deletion survived it"
            );
        }
        for f in &flows {
            assert_eq!(
                stores
                    .oauth
                    .claim(&f.id, "google", now)
                    .await
                    .expect("claim"),
                Claim::Unknown,
                "round {round}: an OAuth link flow begun during the deletion survived it"
            );
        }
        for identity in &identities {
            assert_eq!(
                stores
                    .oauth
                    .find_identity(&identity.issuer, &identity.subject)
                    .await
                    .expect("find_identity"),
                None,
                "round {round}: an identity linked during the deletion survived it"
            );
        }
    }
}
