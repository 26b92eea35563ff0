//! OAuth / OpenID Connect runners: start (sign-in and link), callback,
//! exchange, unlink and the providers list, over [`OAuthStore`] and the
//! configured [`IdentityProvider`]s. The rules are the machines in
//! [`crate::flows::oauth`]; this module moves data, mints the random values
//! (state, PKCE verifier, nonce, browser binding, exchange id) and turns the
//! machines' ends into answers.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use regstack_ports::{
    AuthorizationRequest, CodeRedemption, Creation, FlowMode, IdentityProvider, NewUser, OAuthFlow,
    OAuthIdentity, Timestamp, TokenHash, User, UserId,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::mfa::MfaPending;
use super::sign_in::SignedIn;
use super::{secs, ClientContext, Engine};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::flows::oauth::{
    Arrival, Callback, CallbackEffect, CallbackError, CallbackEvent, CallbackPolicy, Completion,
    Exchange, ExchangeEffect, ExchangeEvent, ExchangePolicy,
};
use crate::flows::{drive, Effects};
use crate::mail::MailKind;
use crate::redirect;
use crate::tokens;

/// One configured provider and the callback URL registered with it.
#[derive(Clone)]
pub struct OAuthProvider {
    /// Who answers for it.
    pub provider: Arc<dyn IdentityProvider>,
    /// The exact callback URL registered with the provider, built from
    /// configuration — never from a request's `Host`, which an attacker
    /// chooses.
    pub redirect_uri: String,
}

/// The configured providers by name (the order `GET /oauth/providers`
/// lists them in). Empty unless the host configured some.
#[derive(Clone, Default)]
pub struct OAuthProviders(BTreeMap<String, OAuthProvider>);

impl OAuthProviders {
    /// No providers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the provider `name`.
    pub fn insert(&mut self, name: impl Into<String>, provider: OAuthProvider) {
        self.0.insert(name.into(), provider);
    }

    /// The provider `name`, if configured.
    pub fn get(&self, name: &str) -> Option<&OAuthProvider> {
        self.0.get(name)
    }

    /// Every configured name, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for OAuthProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// What `start` and `link/start` hand back.
#[derive(Debug)]
pub struct OAuthStart {
    /// Where to send the browser.
    pub authorization_url: String,
    /// The browser-binding value for the `HttpOnly` cookie: the one the
    /// browser presented if it had one, else a new one.
    pub browser_binding: SecretString,
}

/// The callback's request, as it came.
#[derive(Debug, Default)]
pub struct CallbackQuery<'a> {
    /// `code`.
    pub code: Option<&'a str>,
    /// `state`.
    pub state: Option<&'a str>,
    /// `error`: logged sanitised, never echoed.
    pub error: Option<&'a str>,
    /// `iss` (RFC 9207).
    pub iss: Option<&'a str>,
}

/// The exchange's answer.
#[derive(Debug)]
pub enum ExchangeOutcome {
    /// A session started.
    SignedIn {
        /// The session.
        session: Box<SignedIn>,
        /// Where the browser goes next.
        redirect_to: String,
        /// The callback created the account.
        was_new: bool,
    },
    /// The account's second factor is due (`/login/mfa-confirm` next).
    MfaRequired {
        /// The challenge.
        pending: MfaPending,
        /// Where the browser goes next.
        redirect_to: String,
        /// The callback created the account.
        was_new: bool,
    },
}

/// How many bytes of randomness each value carries.
const PKCE_VERIFIER_BYTES: usize = 64;
const NONCE_BYTES: usize = 32;

fn random_b64<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(tokens::random_bytes::<N>())
}

/// `BASE64URL(SHA-256(verifier))` (RFC 7636 §4.2).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A provider's `error` text as it may be logged: no control characters
/// (no forged lines, no terminal escapes), at most 200 characters: the
/// provider's redirect carries it, so anyone can put text there.
pub fn sanitize_for_log(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect()
}

/// A binding value the browser presented, if it looks like one of ours
/// (anything else is replaced, never trusted or stored).
fn presented_binding(cookie: Option<&SecretString>) -> Option<&SecretString> {
    cookie.filter(|c| {
        let v = c.expose_secret();
        v.len() == 43
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

impl Engine {
    /// The providers this engine signs in with.
    pub fn oauth_providers(&self) -> &OAuthProviders {
        &self.oauth
    }

    fn oauth_provider(&self, name: &str) -> Result<&OAuthProvider, AuthError> {
        self.oauth
            .get(name)
            .ok_or_else(|| AuthError::UnknownOAuthProvider(name.to_owned()))
    }

    /// `GET /oauth/{p}/start` (no `link`) and `POST /oauth/{p}/link/start`
    /// (`link` = the bearer's account): records the flow and returns the
    /// provider's authorization URL with the binding for the browser.
    pub async fn oauth_start(
        &self,
        provider_name: &str,
        redirect_to: Option<&str>,
        link: Option<&UserId>,
        browser: Option<&SecretString>,
        client: &ClientContext,
    ) -> Result<OAuthStart, AuthError> {
        let provider = self.oauth_provider(provider_name)?;
        let redirect_to = match redirect_to {
            None | Some("") => format!("{}/me", self.cfg.ui_prefix.trim_end_matches('/')),
            Some(raw) => redirect::same_origin(self.cfg.base(), raw)
                .map_err(|_| AuthError::RedirectNotSameOrigin)?,
        };
        let binding = match presented_binding(browser) {
            Some(b) => b.clone(),
            None => tokens::issue().raw,
        };
        let state = tokens::issue();
        let verifier = random_b64::<PKCE_VERIFIER_BYTES>();
        let nonce = random_b64::<NONCE_BYTES>();
        let url = provider
            .provider
            .authorization_url(AuthorizationRequest {
                state: state.raw.expose_secret(),
                pkce_challenge: &pkce_challenge(&verifier),
                nonce: &nonce,
                redirect_uri: &provider.redirect_uri,
            })
            .await
            .map_err(|e| {
                tracing::warn!(provider = provider_name, error = %sanitize_for_log(&e.to_string()), "OAuth provider unavailable at start");
                AuthError::OAuthProviderUnavailable
            })?;
        let now = self.now();
        self.stores
            .oauth
            .begin(OAuthFlow {
                id: state.hash,
                provider: provider_name.to_owned(),
                pkce_verifier: verifier,
                nonce,
                mode: link.map_or(FlowMode::SignIn, |u| FlowMode::Link(u.clone())),
                redirect_to,
                browser: tokens::hash_presented(&binding),
                created_at: now,
                expires_at: now + secs(self.cfg.oauth.state_ttl_seconds),
            })
            .await?;
        self.emit(EventKind::OAuthSignInStarted, |e| {
            e.user_id = link.cloned();
            e.provider = Some(provider_name.to_owned());
            e.mode = Some(if link.is_some() { "link" } else { "signin" });
            e.ip.clone_from(&client.ip);
        });
        Ok(OAuthStart {
            authorization_url: url,
            browser_binding: binding,
        })
    }

    /// `GET /oauth/{p}/callback`: the provider's redirect. Answers the raw
    /// exchange id for `oauth-complete?id=…`, or the error code for
    /// `login?error=…`.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "oauth_callback", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn oauth_callback(
        &self,
        provider_name: &str,
        query: &CallbackQuery<'_>,
        browser: Option<&SecretString>,
        client: &ClientContext,
    ) -> Result<SecretString, CallbackError> {
        if let Some(error) = query.error {
            tracing::info!(
                provider = %sanitize_for_log(provider_name),
                error = %sanitize_for_log(error),
                "OAuth provider answered with an error"
            );
        }
        let provider = self.oauth.get(provider_name);
        let state = query
            .state
            .filter(|s| !s.is_empty() && s.len() <= tokens::MAX_TOKEN_CHARS);
        let code = query
            .code
            .filter(|c| !c.is_empty() && c.len() <= tokens::MAX_TOKEN_CHARS);
        let exchange = tokens::issue();
        let now = self.now();
        let mut runner = CallbackRunner {
            engine: self,
            provider_name,
            provider,
            state_hash: state.map(tokens::hash_raw),
            code: code.unwrap_or(""),
            iss: query.iss,
            exchange: &exchange.hash,
            now,
        };
        let policy = CallbackPolicy {
            auto_link_verified_emails: self.cfg.oauth.auto_link_verified_emails,
            // An invitation cannot ride along a provider's redirect: in
            // invite mode a first sign-in creates no account, as when
            // registration is closed.
            allow_registration: self.cfg.registration_mode == crate::RegistrationMode::Open,
            completion_ttl: secs(self.cfg.oauth.completion_ttl_seconds),
        };
        let arrival = Arrival {
            provider_error: query.error.is_some(),
            code_and_state: state.is_some() && code.is_some(),
            provider_known: provider.is_some(),
            browser: presented_binding(browser).map(tokens::hash_presented),
        };
        let end = drive(
            Callback::Received,
            CallbackEvent::Arrived(arrival),
            now,
            &policy,
            &mut runner,
        )
        .await;
        match end {
            Ok(Callback::Done(done)) => {
                self.completed(provider_name, &done, client).await;
                Ok(exchange.raw)
            }
            Ok(Callback::Failed(e)) => {
                tracing::info!(provider = %sanitize_for_log(provider_name), code = e.code(), "OAuth callback refused");
                Err(e)
            }
            Ok(other) => {
                tracing::error!(state = ?other, "OAuth callback rested in a state it never rests in");
                Err(CallbackError::OAuthFailed)
            }
            Err(e) => {
                tracing::error!(error = %e, "OAuth callback failed");
                Err(CallbackError::OAuthFailed)
            }
        }
    }

    /// The events of a completed callback.
    async fn completed(&self, provider: &str, done: &Completion, client: &ClientContext) {
        let user = self
            .stores
            .users
            .get(&done.result.user_id)
            .await
            .ok()
            .flatten();
        let email = user.as_ref().map(|u| u.email.clone());
        if done.result.was_new {
            self.emit(EventKind::UserRegistered, |e| {
                e.user_id = Some(done.result.user_id.clone());
                e.email.clone_from(&email);
                e.provider = Some(provider.to_owned());
                e.ip.clone_from(&client.ip);
            });
        }
        let mode = match done.flow.mode {
            FlowMode::SignIn => "signin",
            FlowMode::Link(_) => "link",
        };
        self.emit(EventKind::OAuthSignInCompleted, |e| {
            e.user_id = Some(done.result.user_id.clone());
            e.email.clone_from(&email);
            e.provider = Some(provider.to_owned());
            e.mode = Some(mode);
            e.was_new = Some(done.result.was_new);
            e.ip.clone_from(&client.ip);
        });
        if done.linked {
            self.emit(EventKind::OAuthAccountLinked, |e| {
                e.user_id = Some(done.result.user_id.clone());
                e.email.clone_from(&email);
                e.provider = Some(provider.to_owned());
                e.ip.clone_from(&client.ip);
            });
            if let Some(user) = &user {
                self.mail_identity_linked(user).await;
            }
        }
    }

    /// Tells the owner that an identity was linked to the account, within
    /// the address's mail quota. Someone who stole a session and linked an
    /// account of their own keeps a way in after the session ends; this
    /// mail is how the owner learns it. (A placeholder address is not
    /// mailed.)
    async fn mail_identity_linked(&self, user: &User) {
        if user.email.as_str().ends_with("@oauth.invalid") {
            return;
        }
        match self
            .take_mail_quota(&user.email, MailKind::OAuthLinked)
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "no linked-account notice: the mail quota could not be read");
                return;
            }
        }
        let url = format!(
            "{}{}/me",
            self.cfg.base(),
            self.cfg.ui_prefix.trim_end_matches('/')
        );
        self.send_mail(
            MailKind::OAuthLinked,
            &user.email,
            user.full_name.as_deref(),
            &url,
            0,
        );
    }

    /// `POST /oauth/exchange`: trades a completed flow's exchange id — from
    /// the browser that started the flow — for a session, or for the
    /// second-factor step the account requires.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "oauth_exchange", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn oauth_exchange(
        &self,
        id: &SecretString,
        browser: Option<&SecretString>,
        client: &ClientContext,
    ) -> Result<ExchangeOutcome, AuthError> {
        let Some(browser) = presented_binding(browser) else {
            return Err(AuthError::OAuthStateNotFound);
        };
        if id.expose_secret().len() > tokens::MAX_TOKEN_CHARS {
            return Err(AuthError::OAuthStateNotFound);
        }
        let now = self.now();
        let mut runner = ExchangeRunner {
            engine: self,
            exchange: tokens::hash_presented(id),
            browser: tokens::hash_presented(browser),
            client,
            now,
        };
        let policy = ExchangePolicy {
            enforce_mfa: self.cfg.oauth.enforce_mfa_on_oauth_signin,
        };
        let end = drive(
            Exchange::Presented,
            ExchangeEvent::Presented,
            now,
            &policy,
            &mut runner,
        )
        .await?;
        match end {
            Exchange::SignedIn {
                session,
                redirect_to,
                was_new,
            } => Ok(ExchangeOutcome::SignedIn {
                session: Box::new(session),
                redirect_to,
                was_new,
            }),
            Exchange::SecondFactorRequired {
                pending,
                redirect_to,
                was_new,
            } => Ok(ExchangeOutcome::MfaRequired {
                pending,
                redirect_to,
                was_new,
            }),
            Exchange::Expired => Err(AuthError::OAuthStateExpired),
            Exchange::Unknown => Err(AuthError::OAuthStateNotFound),
            other => Err(AuthError::internal(format!(
                "OAuth exchange rested in {}",
                match other {
                    Exchange::Presented => "Presented",
                    Exchange::Redeeming => "Redeeming",
                    Exchange::Loading(..) => "Loading",
                    Exchange::Passed(..) => "Passed",
                    _ => "Challenging",
                }
            ))),
        }
    }

    /// `GET /oauth/providers`: the configured names and the account's
    /// identities.
    pub async fn oauth_identities(&self, user: &UserId) -> Result<Vec<OAuthIdentity>, AuthError> {
        Ok(self.stores.oauth.identities_of(user).await?)
    }

    /// `DELETE /oauth/{p}/link`: removes the account's identity of that
    /// provider, unless it is the account's last way to sign in.
    pub async fn oauth_unlink(
        &self,
        user: &User,
        provider_name: &str,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        use regstack_ports::Unlinking;
        match self
            .stores
            .oauth
            .unlink_identity(&user.id, provider_name)
            .await?
        {
            Unlinking::Unlinked(_) => {
                self.emit(EventKind::OAuthAccountUnlinked, |e| {
                    e.user_id = Some(user.id.clone());
                    e.email = Some(user.email.clone());
                    e.provider = Some(provider_name.to_owned());
                    e.ip.clone_from(&client.ip);
                });
                Ok(())
            }
            Unlinking::NotLinked => Err(AuthError::OAuthNotLinked),
            Unlinking::LastSignInMethod => Err(AuthError::OAuthLastSignInMethod),
        }
    }
}

/// The callback's effects over the ports. Holds the request's inputs only.
struct CallbackRunner<'a> {
    engine: &'a Engine,
    provider_name: &'a str,
    provider: Option<&'a OAuthProvider>,
    state_hash: Option<TokenHash>,
    code: &'a str,
    iss: Option<&'a str>,
    exchange: &'a TokenHash,
    now: Timestamp,
}

impl Effects<Callback> for CallbackRunner<'_> {
    async fn perform(
        &mut self,
        effect: CallbackEffect,
    ) -> Result<Option<CallbackEvent>, AuthError> {
        let engine = self.engine;
        let oauth = &engine.stores.oauth;
        Ok(match effect {
            CallbackEffect::Claim => {
                let Some(id) = &self.state_hash else {
                    return Err(AuthError::internal("claim without a state"));
                };
                Some(CallbackEvent::Claimed(
                    oauth.claim(id, self.provider_name, self.now).await?,
                ))
            }
            CallbackEffect::RedeemCode(flow) => {
                let Some(provider) = self.provider else {
                    return Err(AuthError::internal("redeem without a provider"));
                };
                let answer = provider
                    .provider
                    .redeem_code(CodeRedemption {
                        code: self.code,
                        pkce_verifier: &flow.pkce_verifier,
                        nonce: &flow.nonce,
                        redirect_uri: &provider.redirect_uri,
                        response_issuer: self.iss,
                    })
                    .await;
                if let Err(e) = &answer {
                    tracing::warn!(
                        provider = %sanitize_for_log(self.provider_name),
                        error = %sanitize_for_log(&e.to_string()),
                        "OAuth provider did not vouch for the sign-in"
                    );
                }
                Some(CallbackEvent::Redeemed(answer))
            }
            CallbackEffect::FindIdentity { issuer, subject } => Some(CallbackEvent::Found(
                oauth.find_identity(&issuer, &subject).await?,
            )),
            CallbackEffect::LoadUser(id) => Some(CallbackEvent::Loaded(
                engine.stores.users.get(&id).await?.map(Box::new),
            )),
            CallbackEffect::FindByEmail(email) => Some(CallbackEvent::ByEmail(
                engine
                    .stores
                    .users
                    .find_by_email(&email)
                    .await?
                    .map(Box::new),
            )),
            CallbackEffect::Link(identity) => {
                Some(CallbackEvent::Linked(oauth.link_identity(&identity).await?))
            }
            CallbackEffect::Create(signup, external) => {
                let id = UserId::generate();
                let user = NewUser {
                    id: id.clone(),
                    email: signup.email,
                    password_hash: None,
                    full_name: signup.full_name,
                    is_verified: signup.is_verified,
                    is_superuser: false,
                    created_at: self.now,
                };
                let identity = OAuthIdentity {
                    user_id: id,
                    provider: self.provider_name.to_owned(),
                    issuer: external.issuer,
                    subject: external.subject,
                    email: external.email,
                    linked_at: self.now,
                    last_used_at: Some(self.now),
                };
                let created = oauth.create_user_with_identity(user, &identity).await?;
                if let Creation::Created(u) = &created {
                    tracing::info!(user_id = %u.id, provider = self.provider_name, "account created by OAuth sign-in");
                }
                Some(CallbackEvent::Created(created))
            }
            CallbackEffect::Touch { issuer, subject } => {
                oauth.touch_identity(&issuer, &subject, self.now).await?;
                None
            }
            CallbackEffect::Complete(result, expires_at) => {
                let Some(id) = &self.state_hash else {
                    return Err(AuthError::internal("complete without a state"));
                };
                Some(CallbackEvent::Completed(
                    oauth
                        .complete(id, self.exchange, &result, expires_at)
                        .await?,
                ))
            }
        })
    }
}

/// The exchange's effects over the ports.
struct ExchangeRunner<'a> {
    engine: &'a Engine,
    exchange: TokenHash,
    browser: TokenHash,
    client: &'a ClientContext,
    now: Timestamp,
}

impl Effects<Exchange<SignedIn, MfaPending>> for ExchangeRunner<'_> {
    async fn perform(
        &mut self,
        effect: ExchangeEffect,
    ) -> Result<Option<ExchangeEvent<SignedIn, MfaPending>>, AuthError> {
        let engine = self.engine;
        Ok(Some(match effect {
            ExchangeEffect::Redeem => ExchangeEvent::Redeemed(
                engine
                    .stores
                    .oauth
                    .redeem(&self.exchange, &self.browser, self.now)
                    .await?,
            ),
            ExchangeEffect::LoadUser(id) => {
                ExchangeEvent::Loaded(engine.stores.users.get(&id).await?.map(Box::new))
            }
            ExchangeEffect::StartSession(cleared) => ExchangeEvent::SessionStarted(
                engine
                    .start_session(cleared, self.client)
                    .await
                    .map_err(|e| match e {
                        // The account's credentials moved between the checks
                        // and the start: nothing to exchange any more.
                        AuthError::InvalidCredentials { .. } => AuthError::OAuthStateNotFound,
                        other => other,
                    })?,
            ),
            ExchangeEffect::OpenChallenge(user) => {
                ExchangeEvent::ChallengeOpened(engine.open_sign_in_challenge(&user, true).await?)
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s_s256() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let verifier = random_b64::<PKCE_VERIFIER_BYTES>();
        assert!((43..=128).contains(&verifier.len()), "{}", verifier.len());
    }

    #[test]
    fn provider_text_is_logged_without_control_characters_and_capped() {
        assert_eq!(sanitize_for_log("x\r\nFAKE\u{1b}[31m"), "xFAKE[31m");
        assert_eq!(sanitize_for_log(&"a".repeat(500)).len(), 200);
    }
}
