//! SMS as a second factor (regstack's `/phone` routes): proving a number
//! with a texted code, removing it, and texting the sign-in code.
//!
//! Texts cost money per message, and a sign-in or setup that texts on
//! request is a toll-fraud pump (an attacker texting premium numbers
//! through us). So every text is counted against three daily caps in the
//! shared store — per number, per account and in all — *before* it is
//! composed; over any cap nothing is sent and the caller hears 429.
//! Sign-in texts and enrolment texts count in separate budgets, so
//! strangers texting a number from `/phone/start` cannot stop its owner
//! from signing in.

use chrono::TimeDelta;
use regstack_ports::{ChallengeKind, OutgoingSms, SessionId, TokenHash, User, UserId};
use secrecy::{ExposeSecret, SecretString};

use super::mfa::{Method, Opened, PresentedCode};
use super::{ClientContext, Engine};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::factors::{sms_code, E164};
use crate::flows::drive;
use crate::flows::mfa::{Challenge, ChallengeEvent, ChallengePurpose};
use crate::mail::MailKind;
use crate::tokens;

/// `/phone/start`'s answer: a code is on its way.
#[derive(Debug)]
pub struct PhoneStart {
    /// Identifies this setup at `/phone/confirm`.
    pub pending_token: SecretString,
    /// Seconds until the code dies.
    pub expires_in: u64,
}

impl Engine {
    /// Refuses the SMS routes unless `enable_sms_2fa`.
    fn require_sms(&self) -> Result<(), AuthError> {
        if self.cfg.mfa.enable_sms_2fa {
            Ok(())
        } else {
            Err(AuthError::SmsDisabled)
        }
    }

    /// Counts one text against the daily caps; `false` (logged) when any
    /// is reached, and then nothing may be sent. Sign-in texts and
    /// enrolment texts have budgets of their own: anyone with an account
    /// can text a number from `/phone/start`, and must not be able to use
    /// up the texts its owner needs to sign in (nor everyone's).
    async fn take_sms_quota(
        &self,
        to: &E164,
        user: &UserId,
        kind: ChallengeKind,
    ) -> Result<bool, AuthError> {
        let mfa = &self.cfg.mfa;
        let now = self.now();
        let day = TimeDelta::days(1);
        let budget = if kind == ChallengeKind::SignIn {
            "signin"
        } else {
            "enrol"
        };
        for (key, limit) in [
            (
                format!("sms:{budget}:number:{}", to.as_str()),
                mfa.sms_max_per_number_per_day,
            ),
            (
                format!("sms:{budget}:account:{user}"),
                mfa.sms_max_per_account_per_day,
            ),
            (format!("sms:{budget}:all"), mfa.sms_max_per_day),
        ] {
            if !self.stores.rate_limits.hit(&key, now, day, limit).await? {
                tracing::warn!(user_id = %user, cap = key.split(':').nth(2).unwrap_or("all"), budget, "daily SMS cap reached: nothing sent");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Opens a challenge whose code goes out by SMS to `to`: the code is
    /// drawn, kept only as a digest bound to the challenge, and texted in
    /// the background (a slow gateway never holds the request).
    async fn open_texted_challenge(
        &self,
        user: &User,
        to: &E164,
        kind: ChallengeKind,
        payload: Option<String>,
    ) -> Result<Opened, AuthError> {
        if !self.take_sms_quota(to, &user.id, kind).await? {
            return Err(AuthError::SmsCapReached);
        }
        let code = sms_code::generate(self.cfg.mfa.sms_code_length).map_err(AuthError::internal)?;
        let ttl = self
            .cfg
            .mfa
            .sms_code_ttl_seconds
            .min(self.cfg.mfa.mfa_pending_token_ttl_seconds);
        let opened = self
            .open_challenge(user, kind, payload, Some(&code), ttl)
            .await?;
        self.text_code(to, &code, ttl);
        Ok(opened)
    }

    /// Composes the text (`sms_code.txt`, regstack's message unless a host
    /// overrides it) and sends it in the background; failures are logged
    /// without the body.
    fn text_code(&self, to: &E164, code: &SecretString, ttl_seconds: u64) {
        let body = match self
            .composer
            .compose_sms_code(code.expose_secret(), ttl_seconds)
        {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "sms not composed");
                return;
            }
        };
        let sms = OutgoingSms {
            to: to.as_str().to_owned(),
            body,
        };
        let sender = self.sms.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    match tokio::time::timeout(super::MAIL_TIMEOUT, sender.send(&sms)).await {
                        Ok(Ok(())) => tracing::debug!("sms delivered"),
                        Ok(Err(e)) => tracing::error!(error = %e, "sms delivery failed"),
                        Err(_) => tracing::error!("sms delivery timed out"),
                    }
                });
            }
            Err(_) => tracing::error!("no async runtime: sms not sent"),
        }
    }

    /// The sign-in code for an account whose second factor is its phone.
    pub(super) async fn text_sign_in_code(
        &self,
        user: &User,
        phone: &str,
    ) -> Result<Opened, AuthError> {
        let to = E164::from_stored(phone)
            .ok_or_else(|| AuthError::internal("stored phone number is not E.164"))?;
        self.open_texted_challenge(user, &to, ChallengeKind::SignIn, None)
            .await
    }

    /// `POST /phone/start`: after the current password, texts a code to the
    /// number to prove it.
    pub async fn phone_start(
        &self,
        user: &User,
        phone_number: &str,
        current_password: &SecretString,
    ) -> Result<PhoneStart, AuthError> {
        self.require_sms()?;
        // regstack's rule: the number must already be E.164; a national
        // number is not guessed at.
        let to = E164::parse(phone_number, None).map_err(|_| AuthError::PhoneNumberInvalid)?;
        self.require_current_password(user, current_password)
            .await?;
        let opened = self
            .open_texted_challenge(
                user,
                &to,
                ChallengeKind::PhoneEnrolment,
                Some(to.as_str().to_owned()),
            )
            .await?;
        Ok(PhoneStart {
            pending_token: opened.token,
            expires_in: opened.expires_in,
        })
    }

    /// `POST /phone/confirm`: the texted code proves the number, which
    /// becomes the account's SMS factor; its other sessions end (all of
    /// them when the caller sends no bearer token, as regstack's route
    /// needs none). Returns the account.
    pub async fn phone_confirm(
        &self,
        pending_token: &SecretString,
        code: &SecretString,
        caller: Option<(&UserId, &SessionId)>,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        self.require_sms()?;
        if pending_token.expose_secret().len() > tokens::MAX_TOKEN_CHARS {
            return Err(AuthError::MfaSetupInvalid);
        }
        let id: TokenHash = tokens::hash_presented(pending_token);
        let now = self.now();
        let presented = PresentedCode {
            code: code.clone(),
            method: Some(Method::Sms),
        };
        let end = drive(
            Challenge::Presented,
            ChallengeEvent::Presented,
            now,
            &ChallengePurpose::Enrolment,
            &mut super::mfa::ChallengeRunner::new(
                self,
                &id,
                ChallengeKind::PhoneEnrolment,
                None,
                &presented,
                client,
                now,
            ),
        )
        .await?;
        let challenge = match end {
            Challenge::Confirmed { challenge } => challenge,
            Challenge::Wrong { remaining } => return Err(AuthError::WrongMfaCode { remaining }),
            _ => return Err(AuthError::MfaSetupInvalid),
        };
        let Some(phone) = challenge.payload.as_deref() else {
            return Err(AuthError::internal("phone enrolment without a number"));
        };
        // No bearer is needed here, so the account must be checked: one
        // whose password was changed or reset since `/phone/start` (by an
        // owner locking a thief out) gets no number chosen before that.
        self.enrolment_owner(&challenge).await?;
        let keep = caller
            .filter(|(user, _)| **user == challenge.user_id)
            .map(|(_, session)| session);
        if !self
            .stores
            .mfa
            .set_phone(&challenge.user_id, phone, keep, now)
            .await?
        {
            return Err(AuthError::MfaSetupInvalid);
        }
        let user = self
            .stores
            .users
            .get(&challenge.user_id)
            .await?
            .ok_or(AuthError::MfaSetupInvalid)?;
        self.emit_for(EventKind::MfaFactorEnabled, &user, client);
        Ok(user)
    }

    /// `DELETE /phone`: after the current password, the phone no longer
    /// signs in; the account's other sessions end.
    pub async fn phone_disable(
        &self,
        user: &User,
        session: &SessionId,
        current_password: &SecretString,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        self.require_sms()?;
        self.require_current_password(user, current_password)
            .await?;
        if !self
            .stores
            .mfa
            .clear_phone(&user.id, Some(session), self.now())
            .await?
        {
            return Err(AuthError::SmsNotEnabled);
        }
        self.emit_for(EventKind::MfaFactorDisabled, user, client);
        self.notify(MailKind::MfaDisabled, user, Some(client)).await;
        Ok(())
    }
}
