//! The signed-in user's own account: profile, password change and email
//! change (request, then the mailed link; [`crate::flows::one_time`]).

use regstack_ports::{
    DisplayName, Email, EmailChangeOutcome, NewPassword, RevokeReason, TokenKind, User,
};
use secrecy::{ExposeSecret, SecretString};

use super::{ClientContext, Engine, Principal};
use crate::error::{AuthError, AuthFailure};
use crate::events::EventKind;
use crate::mail::MailKind;
use crate::tokens::{self, MAX_TOKEN_CHARS};

impl Engine {
    /// `PATCH /me`.
    pub async fn update_profile(
        &self,
        p: &Principal,
        full_name: Option<DisplayName>,
    ) -> Result<User, AuthError> {
        self.stores
            .users
            .update_full_name(
                &p.user.id,
                full_name.map(DisplayName::into_string),
                self.now(),
            )
            .await?
            .ok_or(AuthError::Unauthenticated(AuthFailure::Inactive))
    }

    /// `POST /change-password`: every session ends, this one included.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "change_password", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &SecretString,
        new: &NewPassword,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if current.expose_secret() == new.secret().expose_secret() {
            return Err(AuthError::SamePassword);
        }
        self.require_current_password(&p.user, current).await?;
        self.screen_new_password(new, &p.user.email).await?;
        let hash = self.hasher.hash(new.secret()).await?;
        self.stores
            .users
            .change_password(&p.user.id, &hash, RevokeReason::PasswordChanged, self.now())
            .await?
            .ok_or(AuthError::Unauthenticated(AuthFailure::Inactive))?;
        self.emit_for(EventKind::PasswordChanged, &p.user, client);
        self.notify(MailKind::PasswordChanged, &p.user, Some(client))
            .await;
        Ok(())
    }

    /// `POST /change-email`: mails a link to the new address. An address
    /// that is taken gets the same answer and no mail (no enumeration).
    pub async fn request_email_change(
        &self,
        p: &Principal,
        new_email: &Email,
        current: &SecretString,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if *new_email == p.user.email {
            return Err(AuthError::SameEmail);
        }
        self.require_current_password(&p.user, current).await?;
        if self.stores.users.find_by_email(new_email).await?.is_some() {
            return Ok(());
        }
        if !self
            .take_mail_quota(new_email, MailKind::EmailChange)
            .await?
        {
            return Ok(());
        }
        self.mail_email_change_notice(&p.user, client).await?;
        let token = self
            .issue_link_token(
                TokenKind::EmailChange,
                &p.user.id,
                Some(new_email.clone()),
                self.cfg.email_change_token_ttl_seconds,
            )
            .await?;
        let raw = token.expose_secret();
        let url = self.link(
            self.cfg.email_change_url_template.as_deref(),
            "/confirm-email-change",
            raw,
        );
        self.send_mail(
            MailKind::EmailChange,
            new_email,
            p.user.full_name.as_deref(),
            &url,
            self.cfg.email_change_token_ttl_seconds,
        );
        self.emit(EventKind::EmailChangeRequested, |e| {
            e.user_id = Some(p.user.id.clone());
            e.email = Some(new_email.clone());
            e.old_email = Some(p.user.email.clone());
            e.url_without_token = Some(tokens::redact_url(&url, raw));
            e.ip.clone_from(&client.ip);
        });
        Ok(())
    }

    /// Tells the *old* address that a change was requested, with the
    /// one-use link that revokes every session and blocks the change
    /// (`notices.email_changed`). Sent at the request, not at the
    /// confirmation: the owner hears of it before the change can take
    /// effect, and the link (living `notices.email_revert_ttl_seconds`,
    /// longer than the confirmation link) still undoes a change confirmed
    /// meanwhile. The link's token is stored hashed, like every other.
    /// Nothing is sent or issued when the switch is off or the old address
    /// is over its mail quota.
    async fn mail_email_change_notice(
        &self,
        user: &User,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        let kind = MailKind::EmailChangeNotice;
        if !self.notice_allowed(kind, &user.email).await {
            return Ok(());
        }
        let ttl = self.cfg.notices.email_revert_ttl_seconds;
        let token = self
            .issue_link_token(
                TokenKind::EmailChangeRevert,
                &user.id,
                Some(user.email.clone()),
                ttl,
            )
            .await?;
        let raw = token.expose_secret();
        let url = self.link(
            self.cfg.revert_email_change_url_template.as_deref(),
            "/revert-email-change",
            raw,
        );
        if let Some(mail) = self.compose_for(
            kind,
            &user.email,
            user.full_name.as_deref(),
            &url,
            ttl,
            Some(client),
        ) {
            self.spawn_delivery(kind, mail);
        }
        Ok(())
    }

    /// `POST /revert-email-change`: the owner of the old address says
    /// "this wasn't me". In one store step
    /// ([`regstack_ports::UserStore::revert_email_change`]): every session
    /// ends, a pending change is cancelled or a confirmed one undone, and
    /// the password becomes one nobody knows — whoever asked for the
    /// change knew the old one, so the owner sets a new one through a reset
    /// mailed to the restored address. The hash of that unknown password is
    /// paid only for a live link.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "revert_email_change", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn revert_email_change(
        &self,
        token: &SecretString,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        if token.expose_secret().len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InvalidEmailRevertToken);
        }
        let hash = tokens::hash_presented(token);
        let Some(record) = self
            .stores
            .tokens
            .peek(TokenKind::EmailChangeRevert, &hash, self.now())
            .await?
        else {
            return Err(AuthError::InvalidEmailRevertToken);
        };
        let unknown = tokens::issue().raw;
        let lockout = self.hasher.hash(&unknown).await?;
        let before = self.stores.users.get(&record.user_id).await?;
        let Some(user) = self
            .stores
            .users
            .revert_email_change(&hash, &lockout, self.now())
            .await?
        else {
            return Err(AuthError::InvalidEmailRevertToken);
        };
        Self::record_ids(&user.id, None);
        self.emit(EventKind::EmailChangeReverted, |e| {
            e.user_id = Some(user.id.clone());
            e.email = Some(user.email.clone());
            e.old_email = before.map(|u| u.email).filter(|e| *e != user.email);
            e.ip.clone_from(&client.ip);
        });
        Ok(user)
    }

    /// `POST /confirm-email-change`.
    pub async fn confirm_email_change(
        &self,
        token: &SecretString,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        if token.expose_secret().len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InvalidEmailChangeToken);
        }
        let now = self.now();
        let hash = tokens::hash_presented(token);
        let Some(record) = self
            .stores
            .tokens
            .peek(TokenKind::EmailChange, &hash, now)
            .await?
        else {
            return Err(AuthError::InvalidEmailChangeToken);
        };
        let old_email = self
            .stores
            .users
            .get(&record.user_id)
            .await?
            .map(|u| u.email);
        match self.stores.users.confirm_email_change(&hash, now).await? {
            EmailChangeOutcome::Changed(user) => {
                self.emit(EventKind::EmailChanged, |e| {
                    e.user_id = Some(user.id.clone());
                    e.email = Some(user.email.clone());
                    e.old_email = old_email;
                    e.ip.clone_from(&client.ip);
                });
                Ok(user)
            }
            EmailChangeOutcome::InvalidToken => Err(AuthError::InvalidEmailChangeToken),
            EmailChangeOutcome::EmailTaken => Err(AuthError::EmailTaken),
        }
    }
}
