//! The forced password change (`must_change_password`): the token `/login`
//! hands out instead of a session, and `/login/change-password`, which
//! runs the [`ForcedChange`] machine and then goes on through the gate.

use regstack_ports::{
    ChallengeAttempt, ChallengeKind, LockoutKey, NewPassword, RevokeReason, Timestamp, TokenHash,
    User,
};
use secrecy::{ExposeSecret, SecretString};

use super::mfa::LoginOutcome;
use super::sign_in::SignedIn;
use super::{ClientContext, Engine};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::flows::mfa::Counting;
use crate::flows::password_change::{ForcedChange, ForcedChangeEffect, ForcedChangeEvent};
use crate::flows::{drive, Effects};
use crate::tokens;

/// `/login`'s answer for an account that must set a new password first.
#[derive(Debug)]
pub struct PasswordChangePending {
    /// Single use; 256 random bits, stored only as a hash.
    pub password_change_token: SecretString,
    /// Seconds until it dies.
    pub expires_in: u64,
}

/// Runs one `/login/change-password` through the [`ForcedChange`] machine.
struct ForcedChangeRunner<'a> {
    engine: &'a Engine,
    id: &'a TokenHash,
    new: &'a NewPassword,
    client: &'a ClientContext,
    now: Timestamp,
}

impl Effects<ForcedChange<SignedIn>> for ForcedChangeRunner<'_> {
    async fn perform(
        &mut self,
        effect: ForcedChangeEffect,
    ) -> Result<Option<ForcedChangeEvent<SignedIn>>, AuthError> {
        let engine = self.engine;
        Ok(Some(match effect {
            ForcedChangeEffect::Count => {
                let attempt = engine
                    .stores
                    .mfa
                    .attempt_challenge(self.id, self.now)
                    .await?;
                ForcedChangeEvent::Counted(match attempt {
                    ChallengeAttempt::Counted(c) if c.kind == ChallengeKind::PasswordChange => {
                        Counting::Counted(Box::new(c))
                    }
                    ChallengeAttempt::Counted(_) | ChallengeAttempt::Unknown => Counting::Unknown,
                    ChallengeAttempt::Exhausted => Counting::Exhausted,
                })
            }
            ForcedChangeEffect::LoadUser(id) => {
                ForcedChangeEvent::Loaded(engine.stores.users.get(&id).await?.map(Box::new))
            }
            ForcedChangeEffect::Compare(user) => {
                // Refused before the token is spent: the owner may try
                // another password with it.
                engine.screen_new_password(self.new, &user.email).await?;
                let differs = match &user.password_hash {
                    Some(stored) => {
                        !engine
                            .hasher
                            .verify(self.new.secret(), stored)
                            .await?
                            .matches
                    }
                    None => true,
                };
                ForcedChangeEvent::Compared { differs }
            }
            ForcedChangeEffect::Finish => ForcedChangeEvent::Finished(
                engine
                    .stores
                    .mfa
                    .finish_challenge(self.id, self.now)
                    .await?
                    .is_some(),
            ),
            ForcedChangeEffect::ChangePassword(id) => {
                let hash = engine.hasher.hash(self.new.secret()).await?;
                let changed = engine
                    .stores
                    .users
                    .change_password(&id, &hash, RevokeReason::PasswordChanged, engine.now())
                    .await?;
                if let Some(user) = &changed {
                    engine.emit_for(EventKind::PasswordChanged, user, self.client);
                }
                ForcedChangeEvent::Changed(changed.map(Box::new))
            }
            ForcedChangeEffect::StartSession(cleared) => {
                ForcedChangeEvent::SessionStarted(engine.start_session(cleared, self.client).await?)
            }
        }))
    }
}

impl Engine {
    /// Hands an account flagged `must_change_password`, whose password was
    /// just right, its single-use token. `user` is the record read with the
    /// password: the token is bound to its credential epoch.
    pub(super) async fn open_password_change(
        &self,
        user: &User,
    ) -> Result<PasswordChangePending, AuthError> {
        let opened = self
            .open_challenge(
                user,
                ChallengeKind::PasswordChange,
                None,
                None,
                self.cfg.mfa.mfa_pending_token_ttl_seconds,
            )
            .await?;
        Ok(PasswordChangePending {
            password_change_token: opened.token,
            expires_in: opened.expires_in,
        })
    }

    /// `POST /login/change-password`: sets the new password with the token
    /// `/login` handed out, then signs in through the gate — or, when the
    /// account has a second factor, answers its challenge.
    pub async fn complete_password_change(
        &self,
        token: &SecretString,
        new: &NewPassword,
        client: &ClientContext,
    ) -> Result<LoginOutcome, AuthError> {
        if token.expose_secret().len() > tokens::MAX_TOKEN_CHARS {
            return Err(AuthError::PasswordChangeTokenInvalid);
        }
        let id = tokens::hash_presented(token);
        let now = self.now();
        let mut runner = ForcedChangeRunner {
            engine: self,
            id: &id,
            new,
            client,
            now,
        };
        let end = drive(
            ForcedChange::Presented,
            ForcedChangeEvent::Presented,
            now,
            &(),
            &mut runner,
        )
        .await?;
        match end {
            ForcedChange::SignedIn(signed_in) => {
                self.stores
                    .login_attempts
                    .clear(&LockoutKey::address(signed_in.user.email.clone()))
                    .await?;
                Ok(LoginOutcome::SignedIn(Box::new(signed_in)))
            }
            ForcedChange::SecondFactorRequired { user } => Ok(LoginOutcome::MfaRequired(
                self.open_sign_in_challenge(&user, true).await?,
            )),
            ForcedChange::Same => Err(AuthError::SamePassword),
            ForcedChange::Expired => Err(AuthError::PasswordChangeTokenInvalid),
            _ => Err(AuthError::internal("forced password change did not finish")),
        }
    }

    /// Flags (or unflags) an account to set a new password at its next
    /// sign-in — for hosts and operators (the admin API and CLI use it).
    /// Flagging also ends every session of the account: an account flagged
    /// because it may be compromised must not stay signed in on the old
    /// password. `false` if there is no such account.
    pub async fn require_password_change(
        &self,
        user: &regstack_ports::UserId,
        required: bool,
    ) -> Result<bool, AuthError> {
        let now = self.now();
        if !self
            .stores
            .mfa
            .set_must_change_password(user, required, now)
            .await?
        {
            return Ok(false);
        }
        if required {
            self.stores
                .sessions
                .revoke_all(user, RevokeReason::PasswordChangeRequired, now)
                .await?;
        }
        Ok(true)
    }
}
