//! Sign-in through another party: the in-flight flow rows, the identities
//! linked to accounts, and the identity provider itself.
//!
//! An OAuth flow crosses three requests that share nothing but a random
//! `state` value in a URL: `start` (which writes a [`OAuthFlow`]), the
//! provider's redirect to `callback` (which claims it, asks the
//! [`IdentityProvider`] who signed in, and completes it with a
//! [`FlowResult`]), and the browser's `POST /oauth/exchange` (which redeems
//! it, once). Each hand-over is one atomic [`OAuthStore`] step, so a replayed
//! callback or a second exchange finds nothing. The row never holds a
//! session token: the exchange starts the session, through the MFA gate.
//!
//! Identities are keyed by `(issuer, subject)` — what the provider
//! guarantees stable — never by email; an account holds at most one
//! identity per provider name.

use std::fmt;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::types::{NewUser, TokenHash, User, UserId};

/// What a flow is for, fixed when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlowMode {
    /// `GET /oauth/{p}/start`: sign in, or sign up on first use.
    SignIn,
    /// `POST /oauth/{p}/link/start`: attach the identity to this account,
    /// whose bearer started the flow.
    Link(UserId),
}

/// One in-flight flow (`oauth_states`), from `start` until it is redeemed
/// or expires.
#[derive(Clone, PartialEq)]
pub struct OAuthFlow {
    /// SHA-256 of the `state` value the browser carries: a database reader
    /// cannot finish someone's flow with what the row holds.
    pub id: TokenHash,
    /// Provider name, as configured (`google`, `corp-sso`, …).
    pub provider: String,
    /// The PKCE pre-image (RFC 7636, S256). It never leaves the server.
    pub pkce_verifier: String,
    /// Echoed in the ID token: binds the token to this flow.
    pub nonce: String,
    /// Sign-in or link.
    pub mode: FlowMode,
    /// Where the browser lands afterwards; validated same-origin at start.
    pub redirect_to: String,
    /// SHA-256 of the browser-binding cookie set by `start`: the callback
    /// and the exchange must come from the browser that began the flow.
    pub browser: TokenHash,
    /// When `start` ran.
    pub created_at: Timestamp,
    /// The round trip through the provider must end before this instant.
    pub expires_at: Timestamp,
}

impl fmt::Debug for OAuthFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthFlow")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("pkce_verifier", &"[redacted]")
            .field("mode", &self.mode)
            .field("redirect_to", &self.redirect_to)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What a completed callback decided, waiting for the exchange: whose
/// account, and nothing that could be replayed as a credential.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowResult {
    /// The account signed in (or linked to).
    pub user_id: UserId,
    /// Whether the callback created the account.
    pub was_new: bool,
    /// The account's credential epoch ([`User::tokens_invalidated_after`])
    /// as the callback read it: a password change or revocation between
    /// callback and exchange makes the exchange's session start stale.
    pub credential_epoch: Option<Timestamp>,
}

/// Outcome of [`OAuthStore::claim`].
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The flow was waiting for its callback and is now claimed by this
    /// one, no other callback can claim it.
    Claimed(Box<OAuthFlow>),
    /// The flow existed but its time ran out; it is deleted.
    Expired,
    /// No flow waits under that id for that provider: never started,
    /// already claimed, or finished.
    Unknown,
}

/// Outcome of [`OAuthStore::redeem`].
#[derive(Clone, Debug, PartialEq)]
pub enum Redemption {
    /// The completed flow is deleted and handed to this caller alone.
    Redeemed {
        /// The flow as started.
        flow: Box<OAuthFlow>,
        /// What its callback decided.
        result: FlowResult,
    },
    /// A completed flow of this browser existed but its completion window
    /// closed; it is deleted.
    Expired,
    /// Nothing to redeem: unknown id, not completed, already redeemed, or
    /// started by another browser (which changes nothing, so a stranger
    /// who learnt the id cannot burn the owner's flow either).
    Unknown,
}

/// An external account linked to one of ours (`oauth_identities`).
#[derive(Clone, Debug, PartialEq)]
pub struct OAuthIdentity {
    /// Our account.
    pub user_id: UserId,
    /// Provider name, as configured; unique per account.
    pub provider: String,
    /// The issuer that vouches for `subject` (the ID token's `iss`; for
    /// plain OAuth 2.0 providers, a fixed URL naming the provider).
    pub issuer: String,
    /// The provider's stable, opaque account id. Never an email.
    pub subject: String,
    /// The address the provider reported when linked: informative only.
    pub email: Option<String>,
    /// When it was linked.
    pub linked_at: Timestamp,
    /// Last sign-in through it.
    pub last_used_at: Option<Timestamp>,
}

/// Outcome of [`OAuthStore::link_identity`].
#[derive(Clone, Debug, PartialEq)]
pub enum Linking {
    /// The identity now belongs to the account.
    Linked,
    /// The `(issuer, subject)` already belongs to an account — this one or
    /// another; nothing changed.
    IdentityInUse,
    /// The account already has an identity of this provider name.
    ProviderTaken,
    /// The account is gone.
    NoUser,
}

/// Outcome of [`OAuthStore::create_user_with_identity`].
#[derive(Clone, Debug, PartialEq)]
// One store step's answer, moved once to its caller and never kept in bulk:
// boxing the account would cost an allocation per call for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Creation {
    /// The account and its identity exist, both or neither.
    Created(User),
    /// The address belongs to an account already; nothing was written.
    EmailTaken,
    /// The identity was linked meanwhile (a concurrent first sign-in won);
    /// nothing was written.
    IdentityInUse,
}

/// Outcome of [`OAuthStore::unlink_identity`].
#[derive(Clone, Debug, PartialEq)]
pub enum Unlinking {
    /// The identity is gone from the account.
    Unlinked(OAuthIdentity),
    /// The account has no identity of that provider.
    NotLinked,
    /// It is the account's only way to sign in (no password, no other
    /// identity); nothing changed.
    LastSignInMethod,
}

/// The `oauth_states` and `oauth_identities` tables / collections.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// Records a flow that `start` began. `Err(Conflict)` on an id clash.
    /// A [`FlowMode::Link`] flow for an account that is gone (a deletion
    /// won a race) is not stored, and that is no error: as if the deletion
    /// had come after and taken the flow along (as `TokenStore::issue`).
    async fn begin(&self, flow: OAuthFlow) -> Result<(), StoreError>;
    /// Atomically claims a flow of `provider` that is waiting for its
    /// callback: of concurrent callbacks (a replayed redirect, say) exactly
    /// one gets [`Claim::Claimed`]. An unclaimed flow of `provider` that is
    /// no longer live (`expires_at <= now`) is deleted and answers
    /// [`Claim::Expired`]; a flow of another provider is
    /// [`Claim::Unknown`] and stays as it was.
    async fn claim(
        &self,
        id: &TokenHash,
        provider: &str,
        now: Timestamp,
    ) -> Result<Claim, StoreError>;
    /// Records the callback's decision on a claimed flow, files it under
    /// `exchange` — the hash of a fresh id the browser redeems it with, not
    /// the `state` that travelled through the provider's URLs — and sets
    /// its life to end at `expires_at` (the completion window). `false` if
    /// no claimed, uncompleted flow has that id: an unclaimed flow cannot
    /// be completed, and a completed one not completed again.
    async fn complete(
        &self,
        id: &TokenHash,
        exchange: &TokenHash,
        result: &FlowResult,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Atomically deletes the completed flow filed under `exchange` if
    /// `browser` started it, and hands it out if it is still live
    /// (`expires_at > now`): of concurrent redeemers exactly one gets
    /// [`Redemption::Redeemed`]. See [`Redemption`] for the rest.
    async fn redeem(
        &self,
        exchange: &TokenHash,
        browser: &TokenHash,
        now: Timestamp,
    ) -> Result<Redemption, StoreError>;
    /// The identity with this `(issuer, subject)`, if linked.
    async fn find_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<OAuthIdentity>, StoreError>;
    /// The account's identities, oldest link first.
    async fn identities_of(&self, user: &UserId) -> Result<Vec<OAuthIdentity>, StoreError>;
    /// Links an identity to an existing account, atomically against
    /// concurrent links and first sign-ins of the same identity. When
    /// several refusals apply, the first of these answers:
    /// [`Linking::NoUser`], [`Linking::IdentityInUse`],
    /// [`Linking::ProviderTaken`].
    async fn link_identity(&self, identity: &OAuthIdentity) -> Result<Linking, StoreError>;
    /// Creates the account and links its first identity as one step: two
    /// concurrent first sign-ins with one identity leave one account with
    /// one identity, and the loser learns [`Creation::IdentityInUse`];
    /// never an account without its identity, nor an identity without its
    /// account, whatever fails or is cut short in between. The identity is
    /// linked to `user.id`. An identity already linked answers
    /// [`Creation::IdentityInUse`] even when the address is taken too (the
    /// loser of two first sign-ins with one address learns what it lost
    /// to); otherwise a taken address answers [`Creation::EmailTaken`].
    async fn create_user_with_identity(
        &self,
        user: NewUser,
        identity: &OAuthIdentity,
    ) -> Result<Creation, StoreError>;
    /// Removes the account's identity of `provider`, unless it is the
    /// account's last way to sign in (no password and no other identity) —
    /// decided in the same atomic step as the removal, so two concurrent
    /// unlinks of an account's last two identities leave one.
    async fn unlink_identity(&self, user: &UserId, provider: &str)
        -> Result<Unlinking, StoreError>;
    /// Stamps `last_used_at` of the identity. `false` if it is gone.
    async fn touch_identity(
        &self,
        issuer: &str,
        subject: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Deletes flows past their expiry. Returns how many.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// Who the provider says signed in, after every check the provider kind
/// demands (for OpenID Connect: the ID token's signature, issuer, audience,
/// expiry and nonce).
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalIdentity {
    /// Issuer of the identity (see [`OAuthIdentity::issuer`]).
    pub issuer: String,
    /// The provider's stable account id.
    pub subject: String,
    /// The address the provider reports, if any.
    pub email: Option<String>,
    /// True only when the provider asserted the address verified with the
    /// boolean `true` (and the provider kind is trusted to assert it): a
    /// string `"true"` or a missing claim is `false`.
    pub email_verified: bool,
    /// Display name, if any.
    pub full_name: Option<String>,
}

/// What `start` hands the provider to build its authorization URL.
#[derive(Clone, Copy, Debug)]
pub struct AuthorizationRequest<'a> {
    /// The raw `state` value (its hash is the flow id).
    pub state: &'a str,
    /// `BASE64URL(SHA-256(verifier))`, sent with `code_challenge_method=S256`.
    pub pkce_challenge: &'a str,
    /// The raw nonce.
    pub nonce: &'a str,
    /// The absolute callback URL registered with the provider.
    pub redirect_uri: &'a str,
}

/// What the callback hands the provider to learn who signed in.
#[derive(Clone, Copy)]
pub struct CodeRedemption<'a> {
    /// The authorization code from the callback's query.
    pub code: &'a str,
    /// The flow's PKCE pre-image.
    pub pkce_verifier: &'a str,
    /// The flow's nonce, which the ID token must carry.
    pub nonce: &'a str,
    /// The same callback URL as at start.
    pub redirect_uri: &'a str,
    /// The callback's `iss` parameter (RFC 9207), if the provider sent one:
    /// it must name the provider's issuer (mix-up defence).
    pub response_issuer: Option<&'a str>,
}

/// Why a provider could not say who signed in. The variants are the
/// callback's error codes; the text is for the log only (never shown to the
/// browser) and is sanitised before it is logged.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the code, or could not be reached
    /// (`token_exchange_failed`).
    #[error("token exchange failed: {0}")]
    TokenExchange(String),
    /// The ID token failed a check (`id_token_failed`).
    #[error("ID token rejected: {0}")]
    IdToken(String),
    /// Anything else: discovery failed, the user API answered nonsense
    /// (`oauth_failed`).
    #[error("provider failed: {0}")]
    Other(String),
}

/// One configured sign-in provider. `core` drives flows through this port;
/// `regstack-oauth` implements it for OpenID Connect issuers (discovered),
/// the Google and Microsoft presets, and GitHub.
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// The authorization endpoint URL with every parameter of this flow.
    /// May fetch the issuer's metadata on first use.
    async fn authorization_url(
        &self,
        req: AuthorizationRequest<'_>,
    ) -> Result<String, ProviderError>;
    /// Trades the code for tokens and returns the verified identity.
    async fn redeem_code(&self, req: CodeRedemption<'_>)
        -> Result<ExternalIdentity, ProviderError>;
}
