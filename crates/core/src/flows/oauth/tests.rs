//! The OAuth machines' rules, one transition at a time and as properties
//! over random event sequences.

use super::*;
use chrono::{DateTime, TimeDelta};
use proptest::prelude::*;

fn now() -> Timestamp {
    DateTime::UNIX_EPOCH + TimeDelta::days(20_000)
}

fn hash(n: u8) -> TokenHash {
    TokenHash::from_hex(format!("{n:02x}").repeat(32)).unwrap()
}

fn uid(n: u8) -> UserId {
    UserId::parse(&format!("{n:02x}").repeat(16)).unwrap()
}

fn flow(mode: FlowMode) -> OAuthFlow {
    OAuthFlow {
        id: hash(1),
        provider: "corp".into(),
        pkce_verifier: "v".repeat(64),
        nonce: "n".repeat(22),
        mode,
        redirect_to: "/account/me".into(),
        browser: hash(2),
        created_at: now(),
        expires_at: now() + TimeDelta::minutes(5),
    }
}

fn external(email: Option<&str>, verified: bool) -> ExternalIdentity {
    ExternalIdentity {
        issuer: "https://idp.example".into(),
        subject: "sub-1".into(),
        email: email.map(str::to_owned),
        email_verified: verified,
        full_name: Some("Ada".into()),
    }
}

fn account(n: u8, verified: bool) -> Box<User> {
    Box::new(User {
        id: uid(n),
        email: Email::parse("ada@example.com").unwrap(),
        password_hash: None,
        is_active: true,
        is_verified: verified,
        is_superuser: false,
        full_name: None,
        phone_number: None,
        is_mfa_enabled: false,
        created_at: now(),
        updated_at: now(),
        last_login: None,
        tokens_invalidated_after: Some(now() - TimeDelta::days(1)),
        disabled_reason: None,
        disabled_until: None,
        must_change_password: false,
    })
}

fn linked(n: u8) -> OAuthIdentity {
    OAuthIdentity {
        user_id: uid(n),
        provider: "corp".into(),
        issuer: "https://idp.example".into(),
        subject: "sub-1".into(),
        email: None,
        linked_at: now(),
        last_used_at: None,
    }
}

const POLICY: CallbackPolicy = CallbackPolicy {
    auto_link_verified_emails: false,
    allow_registration: true,
    completion_ttl: TimeDelta::seconds(30),
};

fn arrived() -> CallbackEvent {
    CallbackEvent::Arrived(Arrival {
        provider_error: false,
        code_and_state: true,
        provider_known: true,
        browser: Some(hash(2)),
    })
}

/// Runs the callback through `events`, collecting every effect.
fn run(policy: &CallbackPolicy, events: Vec<CallbackEvent>) -> (Callback, Vec<CallbackEffect>) {
    let mut state = Callback::Received;
    let mut all = Vec::new();
    for e in events {
        let (next, effects) = state.step(e, now(), policy);
        state = next;
        all.extend(effects);
    }
    (state, all)
}

/// The prefix every callback that gets as far as the identity shares.
fn to_identity(mode: FlowMode, id: ExternalIdentity) -> Vec<CallbackEvent> {
    vec![
        arrived(),
        CallbackEvent::Claimed(Claim::Claimed(Box::new(flow(mode)))),
        CallbackEvent::Redeemed(Ok(id)),
    ]
}

fn failed(state: &Callback) -> Option<&'static str> {
    match state {
        Callback::Failed(e) => Some(e.code()),
        _ => None,
    }
}

#[test]
fn the_provider_error_missing_parameters_and_unknown_provider_fail_before_any_store_call() {
    for (arrival, code) in [
        ((true, true, true), "oauth_failed"),
        ((false, false, true), "missing_code_or_state"),
        ((false, true, false), "unknown_provider"),
    ] {
        let (state, effects) = run(
            &POLICY,
            vec![CallbackEvent::Arrived(Arrival {
                provider_error: arrival.0,
                code_and_state: arrival.1,
                provider_known: arrival.2,
                browser: Some(hash(2)),
            })],
        );
        assert_eq!(failed(&state), Some(code));
        assert!(effects.is_empty());
    }
}

#[test]
fn a_flow_finished_in_another_browser_or_none_is_a_bad_state_and_never_redeemed() {
    for browser in [None, Some(hash(9))] {
        let (state, effects) = run(
            &POLICY,
            vec![
                CallbackEvent::Arrived(Arrival {
                    provider_error: false,
                    code_and_state: true,
                    provider_known: true,
                    browser,
                }),
                CallbackEvent::Claimed(Claim::Claimed(Box::new(flow(FlowMode::SignIn)))),
            ],
        );
        assert_eq!(failed(&state), Some("bad_state"));
        assert_eq!(effects, vec![CallbackEffect::Claim]);
    }
}

#[test]
fn provider_failures_map_to_their_codes() {
    for (err, code) in [
        (
            ProviderError::TokenExchange("x".into()),
            "token_exchange_failed",
        ),
        (ProviderError::IdToken("x".into()), "id_token_failed"),
        (ProviderError::Other("x".into()), "oauth_failed"),
    ] {
        let (state, _) = run(
            &POLICY,
            vec![
                arrived(),
                CallbackEvent::Claimed(Claim::Claimed(Box::new(flow(FlowMode::SignIn)))),
                CallbackEvent::Redeemed(Err(err)),
            ],
        );
        assert_eq!(failed(&state), Some(code));
    }
}

#[test]
fn a_returning_identity_signs_in_to_its_account() {
    let mut events = to_identity(FlowMode::SignIn, external(None, false));
    events.push(CallbackEvent::Found(Some(linked(7))));
    events.push(CallbackEvent::Loaded(Some(account(7, true))));
    events.push(CallbackEvent::Completed(true));
    let (state, effects) = run(&POLICY, events);
    let Callback::Done(c) = state else {
        panic!("{state:?}")
    };
    assert_eq!(c.result.user_id, uid(7));
    assert!(!c.result.was_new);
    assert_eq!(c.result.credential_epoch, Some(now() - TimeDelta::days(1)));
    assert!(effects.contains(&CallbackEffect::Complete(
        c.result.clone(),
        now() + TimeDelta::seconds(30)
    )));
}

#[test]
fn a_returning_identity_of_a_disabled_account_is_refused() {
    let mut events = to_identity(FlowMode::SignIn, external(None, false));
    events.push(CallbackEvent::Found(Some(linked(7))));
    let mut off = account(7, true);
    off.is_active = false;
    events.push(CallbackEvent::Loaded(Some(off)));
    assert_eq!(failed(&run(&POLICY, events).0), Some("user_inactive"));
}

#[test]
fn a_timed_disabling_refuses_a_returning_identity_until_its_end_only() {
    let sign_in = |until| {
        let mut events = to_identity(FlowMode::SignIn, external(None, false));
        events.push(CallbackEvent::Found(Some(linked(7))));
        let mut off = account(7, true);
        off.is_active = false;
        off.disabled_until = Some(until);
        events.push(CallbackEvent::Loaded(Some(off)));
        failed(&run(&POLICY, events).0).map(str::to_owned)
    };
    assert_eq!(
        sign_in(now() + TimeDelta::microseconds(1)).as_deref(),
        Some("user_inactive")
    );
    assert_eq!(sign_in(now()), None, "from its end on the account signs in");
}

#[test]
fn linking_an_identity_already_linked_is_refused_with_which_account_has_it() {
    for (owner, code) in [(3, "already_linked"), (4, "identity_in_use")] {
        let mut events = to_identity(FlowMode::Link(uid(3)), external(None, false));
        events.push(CallbackEvent::Found(Some(linked(owner))));
        let (state, effects) = run(&POLICY, events);
        assert_eq!(failed(&state), Some(code));
        assert!(!effects
            .iter()
            .any(|e| matches!(e, CallbackEffect::Link(_) | CallbackEffect::Complete(..))));
    }
}

#[test]
fn a_link_attaches_the_identity_to_the_account_that_started_the_flow() {
    let mut events = to_identity(FlowMode::Link(uid(3)), external(Some("x@y.z"), true));
    events.push(CallbackEvent::Found(None));
    events.push(CallbackEvent::Loaded(Some(account(3, true))));
    events.push(CallbackEvent::Linked(Linking::Linked));
    events.push(CallbackEvent::Completed(true));
    let (state, effects) = run(&POLICY, events);
    let Callback::Done(c) = state else {
        panic!("{state:?}")
    };
    assert!(c.linked);
    assert_eq!(c.result.user_id, uid(3));
    let link = effects
        .iter()
        .find_map(|e| match e {
            CallbackEffect::Link(l) => Some(l),
            _ => None,
        })
        .unwrap();
    assert_eq!(link.user_id, uid(3));
    assert_eq!(
        (link.issuer.as_str(), link.subject.as_str()),
        ("https://idp.example", "sub-1")
    );
    // The address is never looked up in link mode.
    assert!(!effects
        .iter()
        .any(|e| matches!(e, CallbackEffect::FindByEmail(_))));
}

#[test]
fn an_existing_address_is_linked_only_when_allowed_verified_by_the_provider_and_verified_here() {
    let auto = CallbackPolicy {
        auto_link_verified_emails: true,
        ..POLICY
    };
    for (policy, provider_verified, local_verified, linked) in [
        (&POLICY, true, true, false),
        (&auto, false, true, false),
        (&auto, true, false, false),
        (&auto, true, true, true),
    ] {
        let mut events = to_identity(
            FlowMode::SignIn,
            external(Some("Ada@Example.com"), provider_verified),
        );
        events.push(CallbackEvent::Found(None));
        events.push(CallbackEvent::ByEmail(Some(account(5, local_verified))));
        let (state, effects) = run(policy, events);
        assert!(effects.contains(&CallbackEffect::FindByEmail(
            Email::parse("ada@example.com").unwrap()
        )));
        if linked {
            assert!(matches!(state, Callback::Linking(..)), "{state:?}");
        } else {
            // The identity is looked up once more (a concurrent first
            // sign-in may own the address now); still unlinked: refused.
            assert!(matches!(state, Callback::Rechecking { .. }), "{state:?}");
            let (state, _) = state.step(CallbackEvent::Found(None), now(), policy);
            assert_eq!(failed(&state), Some("email_in_use"));
        }
    }
}

/// A first sign-in that lost the race to a concurrent one of the same
/// identity finds the winner's account holding the address: it signs in
/// to that account instead of failing with `email_in_use`.
#[test]
fn a_first_sign_in_that_finds_the_address_taken_by_its_own_identity_signs_in() {
    for (policy, identity_on_link) in [
        (&POLICY, false),
        (
            &CallbackPolicy {
                auto_link_verified_emails: true,
                ..POLICY
            },
            true,
        ),
    ] {
        let mut events = to_identity(FlowMode::SignIn, external(Some("ada@example.com"), true));
        events.push(CallbackEvent::Found(None));
        events.push(CallbackEvent::ByEmail(Some(account(5, true))));
        if identity_on_link {
            events.push(CallbackEvent::Linked(Linking::IdentityInUse));
        }
        let (state, _) = run(policy, events);
        assert!(matches!(state, Callback::Rechecking { .. }), "{state:?}");
        let winner = OAuthIdentity {
            user_id: uid(5),
            provider: "corp".into(),
            issuer: "https://idp.example".into(),
            subject: "sub-1".into(),
            email: None,
            linked_at: now(),
            last_used_at: None,
        };
        let (state, effects) = state.step(CallbackEvent::Found(Some(winner)), now(), policy);
        assert!(matches!(state, Callback::LoadingOwner(..)), "{state:?}");
        assert_eq!(effects, vec![CallbackEffect::LoadUser(uid(5))]);
    }
}

#[test]
fn a_new_account_takes_the_providers_address_only_if_it_was_verified() {
    for verified in [true, false] {
        let mut events = to_identity(
            FlowMode::SignIn,
            external(Some("new@example.com"), verified),
        );
        events.push(CallbackEvent::Found(None));
        events.push(CallbackEvent::ByEmail(None));
        let (state, effects) = run(&POLICY, events);
        assert!(matches!(state, Callback::Creating(..)));
        let Some(CallbackEffect::Create(signup, _)) = effects.last() else {
            panic!("{effects:?}")
        };
        assert_eq!(signup.is_verified, verified);
        if verified {
            assert_eq!(signup.email.as_str(), "new@example.com");
        } else {
            assert!(
                signup.email.as_str().ends_with("@oauth.invalid"),
                "{}",
                signup.email.as_str()
            );
        }
    }
}

#[test]
fn no_address_at_all_gets_a_placeholder_unique_to_the_identity() {
    let mut events = to_identity(FlowMode::SignIn, external(None, true));
    events.push(CallbackEvent::Found(None));
    let (_, effects) = run(&POLICY, events);
    let Some(CallbackEffect::Create(signup, _)) = effects.last() else {
        panic!("{effects:?}")
    };
    let mut other = external(None, true);
    other.subject = "sub-2".into();
    assert_ne!(
        placeholder_email("corp", &other),
        Some(signup.email.clone())
    );
    assert!(signup.email.as_str().starts_with("corp-"));
    assert!(!signup.is_verified);
}

#[test]
fn sign_up_is_refused_when_registration_is_closed() {
    let closed = CallbackPolicy {
        allow_registration: false,
        ..POLICY
    };
    let mut events = to_identity(FlowMode::SignIn, external(Some("new@example.com"), true));
    events.push(CallbackEvent::Found(None));
    events.push(CallbackEvent::ByEmail(None));
    let (state, effects) = run(&closed, events);
    assert_eq!(failed(&state), Some("registration_disabled"));
    assert!(!effects
        .iter()
        .any(|e| matches!(e, CallbackEffect::Create(..))));
}

#[test]
fn a_first_sign_in_that_lost_the_race_signs_in_to_the_winners_account() {
    let mut events = to_identity(FlowMode::SignIn, external(None, false));
    events.push(CallbackEvent::Found(None));
    events.push(CallbackEvent::Created(Creation::IdentityInUse));
    events.push(CallbackEvent::Found(Some(linked(8))));
    events.push(CallbackEvent::Loaded(Some(account(8, false))));
    events.push(CallbackEvent::Completed(true));
    let (state, _) = run(&POLICY, events);
    let Callback::Done(c) = state else {
        panic!("{state:?}")
    };
    assert_eq!(c.result.user_id, uid(8));
    assert!(!c.result.was_new);
}

type Ex = Exchange<&'static str, &'static str>;
type ExEvent = ExchangeEvent<&'static str, &'static str>;

fn redeemed(user: u8, epoch: Option<Timestamp>) -> ExEvent {
    ExchangeEvent::Redeemed(Redemption::Redeemed {
        flow: Box::new(flow(FlowMode::SignIn)),
        result: FlowResult {
            user_id: uid(user),
            was_new: true,
            credential_epoch: epoch,
        },
    })
}

fn exchange(enforce: bool, events: Vec<ExEvent>) -> (Ex, Vec<ExchangeEffect>) {
    let mut state = Ex::Presented;
    let mut all = Vec::new();
    let policy = ExchangePolicy {
        enforce_mfa: enforce,
    };
    for e in events {
        let (next, effects) = state.step(e, now(), &policy);
        state = next;
        all.extend(effects);
    }
    (state, all)
}

#[test]
fn an_exchange_signs_in_an_account_without_a_second_factor() {
    let epoch = Some(now() - TimeDelta::days(1));
    let (state, effects) = exchange(
        true,
        vec![
            ExchangeEvent::Presented,
            redeemed(4, epoch),
            ExchangeEvent::Loaded(Some(account(4, true))),
            ExchangeEvent::SessionStarted("session"),
        ],
    );
    assert_eq!(
        state,
        Ex::SignedIn {
            session: "session",
            redirect_to: "/account/me".into(),
            was_new: true
        }
    );
    assert!(effects
        .iter()
        .any(|e| matches!(e, ExchangeEffect::StartSession(c) if c.user().id == uid(4))));
}

#[test]
fn an_exchange_asks_for_the_second_factor_unless_the_operator_waived_it() {
    let epoch = Some(now() - TimeDelta::days(1));
    let mut mfa = account(4, true);
    mfa.is_mfa_enabled = true;
    let (state, effects) = exchange(
        true,
        vec![
            ExchangeEvent::Presented,
            redeemed(4, epoch),
            ExchangeEvent::Loaded(Some(mfa.clone())),
            ExchangeEvent::ChallengeOpened("pending"),
        ],
    );
    assert!(matches!(
        state,
        Ex::SecondFactorRequired {
            pending: "pending",
            ..
        }
    ));
    assert!(!effects
        .iter()
        .any(|e| matches!(e, ExchangeEffect::StartSession(_))));
    let (_, effects) = exchange(
        false,
        vec![
            ExchangeEvent::Presented,
            redeemed(4, epoch),
            ExchangeEvent::Loaded(Some(mfa)),
        ],
    );
    assert!(matches!(
        effects.last(),
        Some(ExchangeEffect::StartSession(_))
    ));
}

#[test]
fn an_account_changed_since_the_callback_is_not_signed_in() {
    let epoch = Some(now() - TimeDelta::days(1));
    let mut moved = account(4, true);
    moved.tokens_invalidated_after = Some(now());
    let mut off = account(4, true);
    off.is_active = false;
    for loaded in [None, Some(moved), Some(off), Some(account(5, true))] {
        let (state, effects) = exchange(
            true,
            vec![
                ExchangeEvent::Presented,
                redeemed(4, epoch),
                ExchangeEvent::Loaded(loaded),
            ],
        );
        assert_eq!(state, Ex::Unknown);
        assert!(!effects.iter().any(|e| matches!(
            e,
            ExchangeEffect::StartSession(_) | ExchangeEffect::OpenChallenge(_)
        )));
    }
}

// ---- properties ----

fn arb_callback_event() -> impl Strategy<Value = CallbackEvent> {
    let mode = prop_oneof![
        Just(FlowMode::SignIn),
        (3u8..5).prop_map(|n| FlowMode::Link(uid(n)))
    ];
    prop_oneof![
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::option::of(1u8..3)
        )
            .prop_map(|(e, c, k, b)| CallbackEvent::Arrived(Arrival {
                provider_error: e,
                code_and_state: c,
                provider_known: k,
                browser: b.map(hash),
            })),
        mode.prop_map(|m| CallbackEvent::Claimed(Claim::Claimed(Box::new(flow(m))))),
        Just(CallbackEvent::Claimed(Claim::Unknown)),
        (any::<bool>(), any::<bool>()).prop_map(|(mail, v)| CallbackEvent::Redeemed(Ok(external(
            mail.then_some("ada@example.com"),
            v
        )))),
        Just(CallbackEvent::Redeemed(Err(ProviderError::IdToken(
            "x".into()
        )))),
        prop::option::of(3u8..6).prop_map(|n| CallbackEvent::Found(n.map(linked))),
        (prop::option::of(3u8..6), any::<bool>())
            .prop_map(|(n, v)| CallbackEvent::Loaded(n.map(|n| account(n, v)))),
        (prop::option::of(3u8..6), any::<bool>())
            .prop_map(|(n, v)| CallbackEvent::ByEmail(n.map(|n| account(n, v)))),
        prop_oneof![
            Just(Linking::Linked),
            Just(Linking::IdentityInUse),
            Just(Linking::ProviderTaken),
            Just(Linking::NoUser)
        ]
        .prop_map(CallbackEvent::Linked),
        prop_oneof![
            (3u8..6).prop_map(|n| Creation::Created(*account(n, true))),
            Just(Creation::EmailTaken),
            Just(Creation::IdentityInUse)
        ]
        .prop_map(CallbackEvent::Created),
        any::<bool>().prop_map(CallbackEvent::Completed),
    ]
}

proptest! {
    #[test]
    fn the_callback_writes_nothing_before_a_claimed_flow_of_this_browser_and_a_verified_identity(
        events in prop::collection::vec(arb_callback_event(), 0..14),
        auto in any::<bool>(),
        registration in any::<bool>(),
    ) {
        let policy = CallbackPolicy {
            auto_link_verified_emails: auto,
            allow_registration: registration,
            ..POLICY
        };
        let mut state = Callback::Received;
        let mut claimed: Option<OAuthFlow> = None;
        let mut identity = false;
        let mut browser: Option<TokenHash> = None;
        for ev in events {
            match (&state, &ev) {
                (Callback::Received, CallbackEvent::Arrived(a)) => browser = a.browser.clone(),
                (Callback::Claiming { .. }, CallbackEvent::Claimed(Claim::Claimed(f))) => claimed = Some((**f).clone()),
                (Callback::Redeeming(_), CallbackEvent::Redeemed(Ok(_))) => identity = true,
                _ => {}
            }
            let (next, effects) = state.step(ev, now(), &policy);
            for e in &effects {
                match e {
                    CallbackEffect::RedeemCode(f) => {
                        prop_assert_eq!(Some(&f.browser), browser.as_ref());
                    }
                    CallbackEffect::Link(l) => {
                        let f = claimed.as_ref().unwrap();
                        prop_assert!(identity);
                        prop_assert_eq!(Some(&f.browser), browser.as_ref());
                        if let FlowMode::Link(u) = &f.mode {
                            prop_assert_eq!(&l.user_id, u);
                        } else {
                            prop_assert!(auto);
                        }
                    }
                    CallbackEffect::Create(..) => {
                        let f = claimed.as_ref().unwrap();
                        prop_assert!(identity && registration);
                        prop_assert_eq!(&f.mode, &FlowMode::SignIn);
                        prop_assert_eq!(Some(&f.browser), browser.as_ref());
                    }
                    CallbackEffect::Complete(result, expires_at) => {
                        let f = claimed.as_ref().unwrap();
                        prop_assert!(identity);
                        prop_assert_eq!(*expires_at, now() + policy.completion_ttl);
                        if let FlowMode::Link(u) = &f.mode {
                            prop_assert_eq!(&result.user_id, u);
                            prop_assert!(!result.was_new);
                        }
                    }
                    _ => {}
                }
            }
            state = next;
        }
    }

    #[test]
    fn the_exchange_starts_a_session_only_through_the_gate_for_the_callbacks_account(
        mfa in any::<bool>(),
        enforce in any::<bool>(),
        active in any::<bool>(),
        same_epoch in any::<bool>(),
        same_user in any::<bool>(),
        redeemable in 0u8..3,
    ) {
        let epoch = Some(now() - TimeDelta::days(1));
        let mut user = account(if same_user { 4 } else { 5 }, true);
        user.is_mfa_enabled = mfa;
        user.is_active = active;
        if !same_epoch {
            user.tokens_invalidated_after = None;
        }
        let redemption = match redeemable {
            0 => redeemed(4, epoch),
            1 => ExchangeEvent::Redeemed(Redemption::Expired),
            _ => ExchangeEvent::Redeemed(Redemption::Unknown),
        };
        let (state, effects) = exchange(enforce, vec![
            ExchangeEvent::Presented,
            redemption,
            ExchangeEvent::Loaded(Some(user)),
            ExchangeEvent::SessionStarted("s"),
            ExchangeEvent::ChallengeOpened("p"),
        ]);
        let valid = redeemable == 0 && active && same_epoch && same_user;
        let started = effects.iter().any(|e| matches!(e, ExchangeEffect::StartSession(_)));
        let challenged = effects.iter().any(|e| matches!(e, ExchangeEffect::OpenChallenge(_)));
        prop_assert_eq!(started, valid && (!mfa || !enforce));
        prop_assert_eq!(challenged, valid && mfa && enforce);
        prop_assert_eq!(matches!(state, Ex::SignedIn { .. }), started);
        prop_assert_eq!(matches!(state, Ex::SecondFactorRequired { .. }), challenged);
    }
}
