//! Recovery: `forgot_password` mails a reset link (same answer, in the
//! same time, whether or not the address exists: the mailing runs as a
//! background job), `reset_password` spends it once
//! ([`crate::flows::one_time`]) and ends every session.

use regstack_ports::{Email, NewPassword, TokenKind};
use secrecy::{ExposeSecret, SecretString};

use super::{ClientContext, Engine};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::mail::MailKind;
use crate::tokens::{self, MAX_TOKEN_CHARS};

impl Engine {
    /// `POST /forgot-password`: mails a reset link to an active account.
    ///
    /// The answer must not tell whether the address has an account, not
    /// even by its timing (issue 19), so this does the same for every
    /// address: it queues `mail_reset_link` as a background job and
    /// returns. Jobs for one address run in the order they were queued
    /// (`background.rs`), so the link mailed last is the one that works.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "forgot_password", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn forgot_password(
        &self,
        email: &Email,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self.cfg.enable_password_reset {
            return Err(AuthError::PasswordResetDisabled);
        }
        let engine = self.clone();
        let (to, ip) = (email.clone(), client.ip.clone());
        self.background
            .spawn(
                format!("reset:{}", email.as_str()),
                "password reset request",
                async move { engine.mail_reset_link(&to, ip).await },
            )
            .await;
        Ok(())
    }

    /// The address-dependent part of [`Self::forgot_password`], off the
    /// request path: an active account gets a fresh reset link (superseding
    /// its older ones), within the mail quota.
    async fn mail_reset_link(&self, email: &Email, ip: Option<String>) -> Result<(), AuthError> {
        let Some(user) = self.stores.users.find_by_email(email).await? else {
            return Ok(());
        };
        if !user.is_active_at(self.now()) {
            return Ok(());
        }
        // Over the quota the last reset link mailed stays valid: nothing
        // is superseded.
        if !self
            .take_mail_quota(&user.email, MailKind::PasswordReset)
            .await?
        {
            return Ok(());
        }
        let token = self
            .issue_link_token(
                TokenKind::PasswordReset,
                &user.id,
                None,
                self.cfg.password_reset_token_ttl_seconds,
            )
            .await?;
        let raw = token.expose_secret();
        let url = self.link(
            self.cfg.password_reset_url_template.as_deref(),
            "/reset-password",
            raw,
        );
        let mail = self.compose_mail(
            MailKind::PasswordReset,
            &user.email,
            user.full_name.as_deref(),
            &url,
            self.cfg.password_reset_token_ttl_seconds,
        );
        self.emit(EventKind::PasswordResetRequested, |e| {
            e.user_id = Some(user.id.clone());
            e.email = Some(user.email.clone());
            e.url_without_token = Some(tokens::redact_url(&url, raw));
            e.ip = ip;
        });
        // Delivered within the job, so the next job for this address
        // starts after this mail went out and mails arrive in link order.
        if let Some(mail) = mail {
            self.deliver(MailKind::PasswordReset, mail).await;
        }
        Ok(())
    }

    /// `POST /reset-password`: single use; every session ends.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "reset_password", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn reset_password(
        &self,
        token: &SecretString,
        new: &NewPassword,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self.cfg.enable_password_reset {
            return Err(AuthError::PasswordResetDisabled);
        }
        if token.expose_secret().len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InvalidResetToken);
        }
        let hash = tokens::hash_presented(token);
        // Refuse a dead link before paying for a password hash; the atomic
        // spend below decides between concurrent presentations.
        let Some(record) = self
            .stores
            .tokens
            .peek(TokenKind::PasswordReset, &hash, self.now())
            .await?
        else {
            return Err(AuthError::InvalidResetToken);
        };
        let user = match self.stores.users.get(&record.user_id).await? {
            Some(u) if u.is_active_at(self.now()) => u,
            _ => return Err(AuthError::InvalidResetToken),
        };
        // The link stays valid: the owner may try another password.
        self.screen_new_password(new, &user.email).await?;
        let new_hash = self.hasher.hash(new.secret()).await?;
        let user = self
            .stores
            .users
            .complete_password_reset(&hash, &new_hash, self.now())
            .await?
            .ok_or(AuthError::InvalidResetToken)?;
        self.emit_for(EventKind::PasswordResetCompleted, &user, client);
        Ok(())
    }
}
