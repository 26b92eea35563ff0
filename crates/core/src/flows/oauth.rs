//! OAuth / OpenID Connect sign-in, sign-up and linking: the callback that
//! learns who signed in and decides which account that is, and the
//! exchange that turns the decision into a session — through the gate.
//!
//! ```text
//! Callback:
//! Received ──Arrived(ok)──▶ Claiming ──Claimed(flow, same browser)──▶ Redeeming ──Redeemed(identity)──▶ Finding
//!    └─Arrived(error / no code / unknown provider)─▶ Failed        └─Expired / Unknown / other browser─▶ Failed   └─Redeemed(err)─▶ Failed
//! Finding ──Found(identity)── sign-in ──▶ LoadingOwner ──Loaded(active)──▶ Completing
//!    │                      └ link ─────▶ Failed(identity_in_use | already_linked)
//!    └─Found(none)── link ──▶ LoadingTarget ──Loaded(active)──▶ Linking ──Linked──▶ Completing
//!                  └ sign-in, email ──▶ SearchingEmail ──ByEmail(account)── auto-link allowed ──▶ Linking
//!                  │                          │                           └ otherwise ──▶ Rechecking ──Found(identity)──▶ LoadingOwner
//!                  │                          │                                           └─Found(none)──▶ Failed(email_in_use)
//!                  │                          └─ByEmail(none)──▶ Creating ──Created──▶ Completing
//!                  └ sign-in, no email ────────────────────────▶ Creating └─IdentityInUse──▶ Finding (once)
//! Completing ──Completed(true)──▶ Done (the browser goes to `oauth-complete?id=<exchange id>`)
//!
//! Exchange:
//! Presented ──▶ Redeeming ──Redeemed(flow, result)──▶ Loading ──Loaded(same epoch, active)──▶ gate
//!                  └─Expired / Unknown─▶ Expired / Unknown      └─else─▶ Unknown
//! gate: Cleared ──▶ Passed ──SessionStarted──▶ SignedIn · a second factor due ──▶ Challenging ──Opened──▶ SecondFactorRequired
//! ```
//!
//! The rules are regstack's, without its holes (the OA-n tags below name
//! each rule):
//! - the flow is bound to the browser that started it: the callback and the
//!   exchange must bring the binding cookie whose hash is on the row (OA-1);
//! - `state` is spent at the callback — a replayed callback finds nothing —
//!   and its provider must be the callback's (OA-3);
//! - identities are keyed by `(issuer, subject)`; a link never takes an
//!   identity from another account (OA-10);
//! - an existing account with the provider's address is linked only when
//!   the operator allowed it, the provider asserted the address verified,
//!   *and* the account's own address is verified (OA-11); otherwise
//!   `email_in_use`;
//! - a new account takes the provider's address only if the provider
//!   verified it; otherwise it gets a `.invalid` placeholder, so an
//!   attacker cannot pre-claim a victim's address through a provider that
//!   does not check it (OA-12);
//! - a registration mode other than `open` stops OAuth sign-up too (OA-15);
//! - the row never holds a credential: the callback records whose account
//!   and the credential epoch it read, the exchange — by a separate,
//!   single-use id with a short life (OA-13) — starts the session through
//!   [`Cleared`], so an account with a second factor is asked for it here
//!   as on every path (OA-14).
//!
//! Invariants (property-tested below): no identity write, account creation
//! or completion before a claimed flow of the same browser and a verified
//! identity; a link-mode flow never touches another account than the one
//! that started it, and never creates one; an account is created only when
//! registration is allowed; the exchange starts a session only from an
//! active account whose credential epoch is the callback's, and only
//! through the gate.

use chrono::TimeDelta;
use regstack_ports::{
    Claim, Creation, Email, ExternalIdentity, FlowMode, FlowResult, Linking, OAuthFlow,
    OAuthIdentity, ProviderError, Redemption, Timestamp, TokenHash, User, UserId,
};

use super::gate::{Cleared, FirstFactor, Missing};
use super::Machine;

/// Why a callback sent the browser back to the login page: regstack's
/// `?error=` codes, a fixed set (nothing the provider said reaches the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackError {
    /// The provider answered with `error=` (the user declined, say).
    OAuthFailed,
    /// No `code` or no `state`.
    MissingCodeOrState,
    /// The callback path names no configured provider.
    UnknownProvider,
    /// No flow waits under that state for that provider and this browser.
    BadState,
    /// The flow took too long.
    StateExpired,
    /// The provider refused the code or could not be reached.
    TokenExchangeFailed,
    /// The ID token failed a check.
    IdTokenFailed,
    /// The identity belongs to another account.
    IdentityInUse,
    /// The identity, or another of the same provider, is already on this
    /// account.
    AlreadyLinked,
    /// An account has the provider's address and may not be linked
    /// automatically.
    EmailInUse,
    /// The account is disabled or gone.
    UserInactive,
    /// Sign-up is closed.
    RegistrationDisabled,
}

impl CallbackError {
    /// The `?error=` value.
    pub fn code(self) -> &'static str {
        match self {
            Self::OAuthFailed => "oauth_failed",
            Self::MissingCodeOrState => "missing_code_or_state",
            Self::UnknownProvider => "unknown_provider",
            Self::BadState => "bad_state",
            Self::StateExpired => "state_expired",
            Self::TokenExchangeFailed => "token_exchange_failed",
            Self::IdTokenFailed => "id_token_failed",
            Self::IdentityInUse => "identity_in_use",
            Self::AlreadyLinked => "already_linked",
            Self::EmailInUse => "email_in_use",
            Self::UserInactive => "user_inactive",
            Self::RegistrationDisabled => "registration_disabled",
        }
    }
}

/// The operator's choices a callback decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackPolicy {
    /// `oauth.auto_link_verified_emails`.
    pub auto_link_verified_emails: bool,
    /// Whether a first sign-in may create an account: only when
    /// `registration_mode = "open"` (closed and invite-only both refuse).
    pub allow_registration: bool,
    /// How long the browser has to exchange a completed flow.
    pub completion_ttl: TimeDelta,
}

/// What the callback's request brought.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// The provider sent `error=`.
    pub provider_error: bool,
    /// Both `code` and `state` are present.
    pub code_and_state: bool,
    /// The path's provider is configured.
    pub provider_known: bool,
    /// Hash of the binding cookie this browser presented, if any.
    pub browser: Option<TokenHash>,
}

/// What a completed callback hands the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The flow as started (mode, redirect target).
    pub flow: Box<OAuthFlow>,
    /// Whose account, and whether it was created.
    pub result: FlowResult,
    /// The callback linked a new identity to an existing account.
    pub linked: bool,
}

/// Where a callback stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Callback {
    /// The request arrived.
    Received,
    /// Waiting to claim the flow.
    Claiming {
        /// The binding cookie's hash, if the browser sent one.
        browser: Option<TokenHash>,
    },
    /// Waiting for the provider to say who signed in.
    Redeeming(Box<OAuthFlow>),
    /// Waiting for the identity's link.
    Finding {
        /// The flow.
        flow: Box<OAuthFlow>,
        /// Who signed in.
        identity: Box<ExternalIdentity>,
        /// A first sign-in already lost a race once in this run.
        retried: bool,
    },
    /// Sign-in with a linked identity: waiting for its account.
    LoadingOwner(Box<OAuthFlow>, Box<ExternalIdentity>),
    /// Link: waiting for the account that started the flow.
    LoadingTarget(Box<OAuthFlow>, Box<ExternalIdentity>),
    /// First sign-in: waiting for the account holding the address, if any.
    SearchingEmail(Box<OAuthFlow>, Box<ExternalIdentity>),
    /// First sign-in that met an account it may not take (its address is
    /// held, or the link found the identity taken): looking the identity
    /// up once more, because a concurrent first sign-in of the same
    /// identity may have just created that account. Found: sign in to its
    /// owner; still none: fail with `otherwise`.
    Rechecking {
        /// The flow.
        flow: Box<OAuthFlow>,
        /// Who signed in.
        identity: Box<ExternalIdentity>,
        /// The answer when the identity is still unlinked.
        otherwise: CallbackError,
    },
    /// Waiting for the identity to be linked to this account.
    Linking(Box<OAuthFlow>, Box<ExternalIdentity>, Box<User>),
    /// Waiting for the new account and its identity.
    Creating(Box<OAuthFlow>, Box<ExternalIdentity>),
    /// Waiting for the flow's completion to be recorded.
    Completing(Completion),
    /// Completed: the exchange can redeem it.
    Done(Completion),
    /// Refused.
    Failed(CallbackError),
}

/// What the callback's runner observed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackEvent {
    /// The first event of a run.
    Arrived(Arrival),
    /// The store's answer to the claim.
    Claimed(Claim),
    /// The provider's answer.
    Redeemed(Result<ExternalIdentity, ProviderError>),
    /// The identity's link, if any.
    Found(Option<OAuthIdentity>),
    /// An account (`None`: gone).
    Loaded(Option<Box<User>>),
    /// The account holding the provider's address, if any.
    ByEmail(Option<Box<User>>),
    /// The store's answer to the link.
    Linked(Linking),
    /// The store's answer to the creation.
    Created(Creation),
    /// Whether the completion was recorded.
    Completed(bool),
}

/// The account a first sign-in creates (the runner picks its id and time).
#[derive(Debug, Clone, PartialEq)]
pub struct Signup {
    /// The provider's address if it verified it, else a placeholder.
    pub email: Email,
    /// Whether `email` is proven.
    pub is_verified: bool,
    /// The provider's display name, if any.
    pub full_name: Option<String>,
}

/// What the callback's runner must do.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackEffect {
    /// Claim the flow (reports `Claimed`).
    Claim,
    /// Ask the provider who signed in (reports `Redeemed`).
    RedeemCode(Box<OAuthFlow>),
    /// Look the identity up (reports `Found`).
    FindIdentity {
        /// Issuer.
        issuer: String,
        /// Subject.
        subject: String,
    },
    /// Read an account (reports `Loaded`).
    LoadUser(UserId),
    /// Read the account holding an address (reports `ByEmail`).
    FindByEmail(Email),
    /// Link an identity to an account (reports `Linked`); the runner stamps
    /// `linked_at`.
    Link(Box<OAuthIdentity>),
    /// Create an account with this identity linked (reports `Created`);
    /// the runner picks the account's id and stamps both records.
    Create(Box<Signup>, Box<ExternalIdentity>),
    /// Stamp the identity's last use (reports nothing).
    Touch {
        /// Issuer.
        issuer: String,
        /// Subject.
        subject: String,
    },
    /// Record the decision, with the exchange window closing at
    /// `expires_at` (reports `Completed`).
    Complete(FlowResult, Timestamp),
}

/// The `.invalid` address of an account whose provider gave no verified
/// one: unique per identity, deliverable nowhere, and not an address a
/// person could later want to register. The subject is hashed in: it may
/// hold characters an address cannot.
fn placeholder_email(provider: &str, identity: &ExternalIdentity) -> Option<Email> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\n{}", identity.issuer, identity.subject));
    let tag: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    let name: String = provider
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    let name = if name.is_empty() { "oauth" } else { &name };
    Email::parse(&format!("{name}-{tag}@oauth.invalid"))
        .or_else(|_| Email::parse(&format!("oauth-{tag}@oauth.invalid")))
        .ok()
}

fn identity_record(
    flow: &OAuthFlow,
    identity: &ExternalIdentity,
    user_id: UserId,
    now: Timestamp,
) -> OAuthIdentity {
    OAuthIdentity {
        user_id,
        provider: flow.provider.clone(),
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
        email: identity.email.clone(),
        linked_at: now,
        last_used_at: Some(now),
    }
}

fn complete(
    flow: Box<OAuthFlow>,
    user: &User,
    was_new: bool,
    linked: bool,
    now: Timestamp,
    policy: &CallbackPolicy,
) -> (Callback, Vec<CallbackEffect>) {
    let result = FlowResult {
        user_id: user.id.clone(),
        was_new,
        credential_epoch: user.tokens_invalidated_after,
    };
    let expires_at = now + policy.completion_ttl;
    (
        Callback::Completing(Completion {
            flow,
            result: result.clone(),
            linked,
        }),
        vec![CallbackEffect::Complete(result, expires_at)],
    )
}

impl Machine for Callback {
    type Event = CallbackEvent;
    type Effect = CallbackEffect;
    type Policy = CallbackPolicy;

    fn is_terminal(&self) -> bool {
        matches!(self, Self::Done(_) | Self::Failed(_))
    }

    /// Advances the callback. Pure; terminal states and out-of-order events
    /// leave the state unchanged and do nothing.
    fn step(
        self,
        event: CallbackEvent,
        now: Timestamp,
        policy: &CallbackPolicy,
    ) -> (Self, Vec<CallbackEffect>) {
        use Callback as C;
        use CallbackEffect as F;
        use CallbackError as X;
        use CallbackEvent as E;
        match (self, event) {
            (C::Received, E::Arrived(a)) => {
                if a.provider_error {
                    (C::Failed(X::OAuthFailed), vec![])
                } else if !a.code_and_state {
                    (C::Failed(X::MissingCodeOrState), vec![])
                } else if !a.provider_known {
                    (C::Failed(X::UnknownProvider), vec![])
                } else {
                    (C::Claiming { browser: a.browser }, vec![F::Claim])
                }
            }
            (C::Claiming { browser }, E::Claimed(Claim::Claimed(flow))) => {
                // Claimed — and so spent — whoever brought it: a flow that
                // reached the wrong browser must not stay open for a retry.
                if browser.as_ref() == Some(&flow.browser) {
                    (C::Redeeming(flow.clone()), vec![F::RedeemCode(flow)])
                } else {
                    (C::Failed(X::BadState), vec![])
                }
            }
            (C::Claiming { .. }, E::Claimed(Claim::Expired)) => {
                (C::Failed(X::StateExpired), vec![])
            }
            (C::Claiming { .. }, E::Claimed(Claim::Unknown)) => (C::Failed(X::BadState), vec![]),
            (C::Redeeming(flow), E::Redeemed(Ok(identity))) => {
                if identity.subject.is_empty() || identity.issuer.is_empty() {
                    return (C::Failed(X::IdTokenFailed), vec![]);
                }
                let find = F::FindIdentity {
                    issuer: identity.issuer.clone(),
                    subject: identity.subject.clone(),
                };
                (
                    C::Finding {
                        flow,
                        identity: Box::new(identity),
                        retried: false,
                    },
                    vec![find],
                )
            }
            (C::Redeeming(_), E::Redeemed(Err(e))) => (
                C::Failed(match e {
                    ProviderError::TokenExchange(_) => X::TokenExchangeFailed,
                    ProviderError::IdToken(_) => X::IdTokenFailed,
                    ProviderError::Other(_) => X::OAuthFailed,
                }),
                vec![],
            ),
            (
                C::Finding {
                    flow, identity: id, ..
                },
                E::Found(Some(linked)),
            ) => match &flow.mode {
                FlowMode::Link(user) if *user == linked.user_id => {
                    (C::Failed(X::AlreadyLinked), vec![])
                }
                FlowMode::Link(_) => (C::Failed(X::IdentityInUse), vec![]),
                FlowMode::SignIn => (C::LoadingOwner(flow, id), vec![F::LoadUser(linked.user_id)]),
            },
            (
                C::Finding {
                    flow,
                    identity: id,
                    retried,
                },
                E::Found(None),
            ) => match (&flow.mode, id.email.as_deref().map(Email::parse)) {
                (FlowMode::Link(user), _) => {
                    let user = user.clone();
                    (C::LoadingTarget(flow, id), vec![F::LoadUser(user)])
                }
                // A first sign-in that lost its race found the winner's
                // identity above; finding none twice means the winner's
                // account is gone again — nothing sane to retry.
                _ if retried => (C::Failed(X::IdentityInUse), vec![]),
                (FlowMode::SignIn, Some(Ok(email))) => {
                    (C::SearchingEmail(flow, id), vec![F::FindByEmail(email)])
                }
                (FlowMode::SignIn, _) => create(flow, id, None, policy),
            },
            (C::LoadingOwner(flow, id), E::Loaded(Some(user))) if user.is_active_at(now) => {
                let mut effects = vec![F::Touch {
                    issuer: id.issuer.clone(),
                    subject: id.subject.clone(),
                }];
                let (state, more) = complete(flow, &user, false, false, now, policy);
                effects.extend(more);
                (state, effects)
            }
            (C::LoadingOwner(..), E::Loaded(_)) => (C::Failed(X::UserInactive), vec![]),
            (C::LoadingTarget(flow, id), E::Loaded(Some(user)))
                if user.is_active_at(now) && flow.mode == FlowMode::Link(user.id.clone()) =>
            {
                let link = identity_record(&flow, &id, user.id.clone(), now);
                (C::Linking(flow, id, user), vec![F::Link(Box::new(link))])
            }
            (C::LoadingTarget(..), E::Loaded(_)) => (C::Failed(X::UserInactive), vec![]),
            (C::SearchingEmail(flow, id), E::ByEmail(Some(user))) => {
                let may_link =
                    policy.auto_link_verified_emails && id.email_verified && user.is_verified;
                if !may_link {
                    recheck(flow, id, X::EmailInUse)
                } else if !user.is_active_at(now) {
                    (C::Failed(X::UserInactive), vec![])
                } else {
                    let link = identity_record(&flow, &id, user.id.clone(), now);
                    (C::Linking(flow, id, user), vec![F::Link(Box::new(link))])
                }
            }
            (C::SearchingEmail(flow, id), E::ByEmail(None)) => {
                let email = id.email.as_deref().and_then(|e| Email::parse(e).ok());
                create(flow, id, email, policy)
            }
            (C::Linking(flow, _, user), E::Linked(Linking::Linked)) => {
                complete(flow, &user, false, true, now, policy)
            }
            (C::Linking(flow, id, _), E::Linked(Linking::IdentityInUse))
                if flow.mode == FlowMode::SignIn =>
            {
                recheck(flow, id, X::IdentityInUse)
            }
            (C::Linking(..), E::Linked(Linking::IdentityInUse)) => {
                (C::Failed(X::IdentityInUse), vec![])
            }
            (C::Rechecking { flow, identity, .. }, E::Found(Some(linked))) => (
                C::LoadingOwner(flow, identity),
                vec![F::LoadUser(linked.user_id)],
            ),
            (C::Rechecking { otherwise, .. }, E::Found(None)) => (C::Failed(otherwise), vec![]),
            (C::Linking(..), E::Linked(Linking::ProviderTaken)) => {
                (C::Failed(X::AlreadyLinked), vec![])
            }
            (C::Linking(..), E::Linked(Linking::NoUser)) => (C::Failed(X::UserInactive), vec![]),
            (C::Creating(flow, _), E::Created(Creation::Created(user))) => {
                complete(flow, &user, true, false, now, policy)
            }
            (C::Creating(..), E::Created(Creation::EmailTaken)) => {
                (C::Failed(X::EmailInUse), vec![])
            }
            (C::Creating(flow, id), E::Created(Creation::IdentityInUse)) => {
                // A concurrent first sign-in of the same identity won: this
                // one signs in to the account it created.
                let find = F::FindIdentity {
                    issuer: id.issuer.clone(),
                    subject: id.subject.clone(),
                };
                (
                    C::Finding {
                        flow,
                        identity: id,
                        retried: true,
                    },
                    vec![find],
                )
            }
            (C::Completing(c), E::Completed(true)) => (C::Done(c), vec![]),
            (C::Completing(_), E::Completed(false)) => (C::Failed(X::BadState), vec![]),
            (state, _) => (state, vec![]),
        }
    }
}

/// Looks the identity up once more before failing with `otherwise`.
fn recheck(
    flow: Box<OAuthFlow>,
    identity: Box<ExternalIdentity>,
    otherwise: CallbackError,
) -> (Callback, Vec<CallbackEffect>) {
    let find = CallbackEffect::FindIdentity {
        issuer: identity.issuer.clone(),
        subject: identity.subject.clone(),
    };
    (
        Callback::Rechecking {
            flow,
            identity,
            otherwise,
        },
        vec![find],
    )
}

/// A first sign-in's account: refused when sign-up is closed; the
/// provider's address only if it verified it and it was free.
fn create(
    flow: Box<OAuthFlow>,
    id: Box<ExternalIdentity>,
    verified_free_email: Option<Email>,
    policy: &CallbackPolicy,
) -> (Callback, Vec<CallbackEffect>) {
    if !policy.allow_registration {
        return (
            Callback::Failed(CallbackError::RegistrationDisabled),
            vec![],
        );
    }
    let (email, is_verified) = match verified_free_email {
        Some(email) if id.email_verified => (email, true),
        _ => match placeholder_email(&flow.provider, &id) {
            Some(email) => (email, false),
            None => return (Callback::Failed(CallbackError::OAuthFailed), vec![]),
        },
    };
    let signup = Signup {
        email,
        is_verified,
        full_name: id.full_name.clone(),
    };
    (
        Callback::Creating(flow, id.clone()),
        vec![CallbackEffect::Create(Box::new(signup), id)],
    )
}

/// Where an exchange stands. `S` is what a started session gives, `P` what
/// an opened second-factor challenge gives.
#[derive(Debug, Clone, PartialEq)]
pub enum Exchange<S, P> {
    /// The exchange id and the browser's binding arrived.
    Presented,
    /// Waiting to redeem the completed flow.
    Redeeming,
    /// Waiting for the account.
    Loading(Box<OAuthFlow>, FlowResult),
    /// Cleared by the gate: a session is starting.
    Passed(Box<OAuthFlow>, FlowResult),
    /// A second factor is due: a challenge is opening.
    Challenging(Box<OAuthFlow>, FlowResult),
    /// Signed in.
    SignedIn {
        /// The session.
        session: S,
        /// Where the browser goes next.
        redirect_to: String,
        /// The callback created the account.
        was_new: bool,
    },
    /// The account's second factor is due before a session.
    SecondFactorRequired {
        /// The challenge.
        pending: P,
        /// Where the browser goes next.
        redirect_to: String,
        /// The callback created the account.
        was_new: bool,
    },
    /// The completed flow's exchange window closed.
    Expired,
    /// Nothing to exchange (unknown, already exchanged, another browser's,
    /// or its account changed since the callback).
    Unknown,
}

/// What the exchange's runner observed.
#[derive(Debug, Clone, PartialEq)]
pub enum ExchangeEvent<S, P> {
    /// The first event of a run.
    Presented,
    /// The store's answer to the redemption.
    Redeemed(Redemption),
    /// The account now.
    Loaded(Option<Box<User>>),
    /// The session started.
    SessionStarted(S),
    /// The second-factor challenge opened.
    ChallengeOpened(P),
}

/// What the exchange's runner must do.
#[derive(Debug, Clone, PartialEq)]
pub enum ExchangeEffect {
    /// Redeem the completed flow (reports `Redeemed`).
    Redeem,
    /// Read the account (reports `Loaded`).
    LoadUser(UserId),
    /// Start the session the gate cleared (reports `SessionStarted`).
    StartSession(Cleared),
    /// Open a sign-in challenge for the account (reports `ChallengeOpened`).
    OpenChallenge(Box<User>),
}

/// The operator's choice an exchange decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangePolicy {
    /// `oauth.enforce_mfa_on_oauth_signin` (default on).
    pub enforce_mfa: bool,
}

impl<S, P> Machine for Exchange<S, P> {
    type Event = ExchangeEvent<S, P>;
    type Effect = ExchangeEffect;
    type Policy = ExchangePolicy;

    fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::SignedIn { .. }
                | Self::SecondFactorRequired { .. }
                | Self::Expired
                | Self::Unknown
        )
    }

    /// Advances the exchange. Pure; terminal states and out-of-order events
    /// leave the state unchanged and do nothing.
    fn step(
        self,
        event: ExchangeEvent<S, P>,
        now: Timestamp,
        policy: &ExchangePolicy,
    ) -> (Self, Vec<ExchangeEffect>) {
        use Exchange as X;
        use ExchangeEffect as F;
        use ExchangeEvent as E;
        match (self, event) {
            (X::Presented, E::Presented) => (X::Redeeming, vec![F::Redeem]),
            (X::Redeeming, E::Redeemed(Redemption::Redeemed { flow, result })) => {
                let id = result.user_id.clone();
                (X::Loading(flow, result), vec![F::LoadUser(id)])
            }
            (X::Redeeming, E::Redeemed(Redemption::Expired)) => (X::Expired, vec![]),
            (X::Redeeming, E::Redeemed(Redemption::Unknown)) => (X::Unknown, vec![]),
            (X::Loading(flow, result), E::Loaded(Some(user)))
                if user.id == result.user_id
                    && user.is_active_at(now)
                    && user.tokens_invalidated_after == result.credential_epoch =>
            {
                let first = FirstFactor::OAuth {
                    second_factor_waived: !policy.enforce_mfa,
                };
                match Cleared::check(user.clone(), first, None) {
                    Ok(cleared) => (X::Passed(flow, result), vec![F::StartSession(cleared)]),
                    Err(Missing::SecondFactor) => {
                        (X::Challenging(flow, result), vec![F::OpenChallenge(user)])
                    }
                    Err(Missing::PasswordChange) => (X::Unknown, vec![]),
                }
            }
            (X::Loading(..), E::Loaded(_)) => (X::Unknown, vec![]),
            (X::Passed(flow, result), E::SessionStarted(session)) => (
                X::SignedIn {
                    session,
                    redirect_to: flow.redirect_to,
                    was_new: result.was_new,
                },
                vec![],
            ),
            (X::Challenging(flow, result), E::ChallengeOpened(pending)) => (
                X::SecondFactorRequired {
                    pending,
                    redirect_to: flow.redirect_to,
                    was_new: result.was_new,
                },
                vec![],
            ),
            (state, _) => (state, vec![]),
        }
    }
}

#[cfg(test)]
mod tests;
