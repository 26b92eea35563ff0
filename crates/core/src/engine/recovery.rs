//! Recovery: `forgot_password` mails a reset link (same answer whether or
//! not the address exists), `reset_password` spends it once
//! ([`crate::flows::one_time`]) and ends every session.

use regstack_ports::{Email, NewPassword, TokenKind};
use secrecy::{ExposeSecret, SecretString};

use super::{ClientContext, Engine};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::mail::MailKind;
use crate::tokens::{self, MAX_TOKEN_CHARS};

impl Engine {
    /// `POST /forgot-password`: mails a reset link to an active account. The
    /// caller answers the same whatever happens here.
    pub async fn forgot_password(
        &self,
        email: &Email,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self.cfg.enable_password_reset {
            return Err(AuthError::PasswordResetDisabled);
        }
        let Some(user) = self.stores.users.find_by_email(email).await? else {
            return Ok(());
        };
        if !user.is_active {
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
        self.send_mail(
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
            e.ip.clone_from(&client.ip);
        });
        Ok(())
    }

    /// `POST /reset-password`: single use; every session ends.
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
        match self.stores.users.get(&record.user_id).await? {
            Some(u) if u.is_active => {}
            _ => return Err(AuthError::InvalidResetToken),
        }
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
