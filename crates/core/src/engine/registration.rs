//! Registration and verification: `register`, `verify`, `resend_verification`.
//!
//! A registration waits as a pending row until its mailed link is used
//! (`PendingStore::promote`, one atomic step); the single-use rule is
//! [`crate::flows::one_time`].
//!
//! With `registration_mode = "invite"` a registration must bring an
//! invitation code. The code is spent **at `/register`**, before anything
//! else is decided: one atomic `InviteStore::redeem` (single use under
//! any number of racers), checked before the address is even looked up, so
//! every refusal is the same 403 and says nothing about accounts. What
//! follows is the registration as in open mode, whose answer does not
//! depend on the address's state when `uniform_registration` is on — and
//! so neither does the spending: a valid code is spent by every
//! registration it admits, a taken or pending address included (a code
//! left unspent there would tell its holder the address has an account).
//! Only a registration that *fails* (a store or hashing error, or the
//! non-uniform 409, which tells anyway) gives the code back
//! (`InviteStore::release`, by the redeemer only). The redemption, the
//! registration and the release run to the end in a task of their own, so
//! a request dropped at its deadline cannot leave a spent code without
//! its registration. Spending at `/register` rather than at verification
//! keeps single use a property of one store step; the cost is that a code
//! is used up by a registration whose owner never clicks the link (an
//! administrator makes another). A code is a 256-bit secret, so only its
//! holder can spend it, and a code bound to an address spends only on a
//! registration for that address, whose link goes to that address.

use regstack_ports::{
    DisplayName, Email, Invite, InviteRedemption, NewPassword, NewUser, PendingRegistration,
    Promotion, Timestamp, User, UserId,
};
use secrecy::{ExposeSecret, SecretString};

use super::{secs, ClientContext, Engine};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::mail::MailKind;
use crate::tokens::{self, MAX_TOKEN_CHARS};
use crate::RegistrationMode;

/// A new registration as received.
#[derive(Debug)]
pub struct Registration {
    /// Canonical address.
    pub email: Email,
    /// Chosen password.
    pub password: NewPassword,
    /// Display name.
    pub full_name: Option<DisplayName>,
    /// The invitation code, when registration is by invitation (ignored,
    /// and not spent, when it is open).
    pub invite_code: Option<SecretString>,
}

/// The outcome of `register`.
#[derive(Debug, Clone)]
pub enum Registered {
    /// A verification link was mailed; no user exists yet.
    Pending {
        /// Canonical address.
        email: Email,
        /// When the link dies.
        expires_at: Timestamp,
    },
    /// The user exists (verification not required).
    Active(User),
}

impl Engine {
    /// `POST /register`: open, by invitation (module doc), or closed.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "register", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn register(
        &self,
        reg: Registration,
        client: &ClientContext,
    ) -> Result<Registered, AuthError> {
        match self.cfg.registration_mode {
            RegistrationMode::Closed => Err(AuthError::RegistrationClosed),
            RegistrationMode::Open => self.register_admitted(reg, client).await,
            RegistrationMode::Invite => {
                let engine = self.clone();
                let client = client.clone();
                tokio::spawn(async move { engine.register_invited(reg, &client).await })
                    .await
                    .map_err(AuthError::internal)?
            }
        }
    }

    /// Spends the registration's invitation, registers, and gives the
    /// invitation back if the registration failed.
    async fn register_invited(
        &self,
        mut reg: Registration,
        client: &ClientContext,
    ) -> Result<Registered, AuthError> {
        let Some(code) = reg.invite_code.take() else {
            return Err(AuthError::InviteRequired);
        };
        if code.expose_secret().is_empty() || code.expose_secret().len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InviteRequired);
        }
        let hash = tokens::hash_presented(&code);
        let invite = match self
            .stores
            .invites
            .redeem(&hash, &reg.email, self.now())
            .await?
        {
            InviteRedemption::Redeemed(invite) => invite,
            refused => {
                tracing::info!(
                    ip = client.ip.as_deref(),
                    why = ?refused,
                    "registration refused: no valid invitation"
                );
                return Err(AuthError::InviteRequired);
            }
        };
        let email = reg.email.clone();
        let result = self.register_admitted(reg, client).await;
        match &result {
            Ok(_) => self.emit(EventKind::InviteRedeemed, |e| {
                e.email = Some(email);
                e.ip.clone_from(&client.ip);
            }),
            Err(_) => self.release_invite(&invite, &email).await,
        }
        result
    }

    /// Gives back an invitation whose registration failed; a failure here
    /// is logged (the code stays spent, the safe side of single use).
    async fn release_invite(&self, invite: &Invite, email: &Email) {
        if let Err(e) = self.stores.invites.release(&invite.id, email).await {
            tracing::warn!(
                invite = invite.id.as_str(),
                error = %e,
                "an invitation spent by a failed registration could not be given back"
            );
        }
    }

    /// The registration itself, once it is admitted (open mode, or a
    /// redeemed invitation).
    async fn register_admitted(
        &self,
        reg: Registration,
        client: &ClientContext,
    ) -> Result<Registered, AuthError> {
        // Before anything else: the answer must not depend on whether the
        // address has an account.
        self.screen_new_password(&reg.password, &reg.email).await?;
        let taken = self.stores.users.find_by_email(&reg.email).await?.is_some();
        let now = self.now();
        let expires_at = now + secs(self.cfg.verification_token_ttl_seconds);
        if taken {
            if !self.cfg.uniform_registration {
                return Err(AuthError::EmailTaken);
            }
            self.notify_owner_of_registration(&reg, client).await?;
            return Ok(Registered::Pending {
                email: reg.email,
                expires_at,
            });
        }
        if self.cfg.require_verification {
            if let Some(pending) = self.stores.pending.find_by_email(&reg.email, now).await? {
                // A registration for the address is already pending. It
                // keeps the password it was made with — whoever sent this
                // one cannot choose the password of an account the owner
                // will verify (pre-account hijacking) — and its owner gets
                // the link again, within the mail quota. No hash is paid,
                // and the answer is the same as for a first registration.
                self.relink(&pending, now, client).await?;
                return Ok(Registered::Pending {
                    email: reg.email,
                    expires_at,
                });
            }
        }
        let hash = self.hasher.hash(reg.password.secret()).await?;
        let full_name = reg.full_name.map(DisplayName::into_string);
        if !self.cfg.require_verification {
            let user = self
                .stores
                .users
                .insert(NewUser {
                    id: UserId::generate(),
                    email: reg.email,
                    password_hash: Some(hash),
                    full_name,
                    is_verified: true,
                    is_superuser: false,
                    created_at: now,
                })
                .await
                .map_err(|e| match e {
                    regstack_ports::StoreError::Conflict(_) => AuthError::EmailTaken,
                    e => e.into(),
                })?;
            self.emit_for(EventKind::UserRegistered, &user, client);
            return Ok(Registered::Active(user));
        }
        let token = tokens::issue();
        let stored = self
            .stores
            .pending
            .put(PendingRegistration {
                email: reg.email.clone(),
                password_hash: hash,
                full_name: full_name.clone(),
                token_hash: token.hash,
                created_at: now,
                expires_at,
            })
            .await?;
        if !stored {
            // Someone else's registration for the address won the race:
            // it keeps its password, its owner gets the link again.
            self.resend_verification(&reg.email, client).await?;
        } else if self
            .take_mail_quota(&reg.email, MailKind::Verification)
            .await?
        {
            self.mail_verification(
                &reg.email,
                full_name.as_deref(),
                token.raw.expose_secret(),
                client,
            );
        }
        Ok(Registered::Pending {
            email: reg.email,
            expires_at,
        })
    }

    /// `uniform_registration` (EN-5): a registration for a taken address
    /// pays the hash a new registration pays — so the answer comes after
    /// the same work — and queues a notice to the owner, within the
    /// address's mail quota. No token, no pending row: nothing the sender
    /// could use, and the account is untouched.
    async fn notify_owner_of_registration(
        &self,
        reg: &Registration,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        self.hasher.hash(reg.password.secret()).await?;
        tracing::info!(
            ip = client.ip.as_deref(),
            "registration for a registered address answered like a new one; the owner is told"
        );
        let engine = self.clone();
        let to = reg.email.clone();
        self.background
            .spawn(
                format!("register:{}", to.as_str()),
                "notice of a registration for a registered address",
                async move { engine.mail_account_exists(&to).await },
            )
            .await;
        Ok(())
    }

    /// The notice of [`Self::notify_owner_of_registration`], off the
    /// request path.
    async fn mail_account_exists(&self, email: &Email) -> Result<(), AuthError> {
        let Some(user) = self.stores.users.find_by_email(email).await? else {
            return Ok(());
        };
        if !self
            .take_mail_quota(&user.email, MailKind::AccountExists)
            .await?
        {
            return Ok(());
        }
        let url = format!(
            "{}{}/forgot-password",
            self.cfg.base(),
            self.cfg.link_prefix()
        );
        if let Some(mail) = self.compose_mail(
            MailKind::AccountExists,
            &user.email,
            user.full_name.as_deref(),
            &url,
            0,
        ) {
            self.deliver(MailKind::AccountExists, mail).await;
        }
        Ok(())
    }

    pub(super) fn mail_verification(
        &self,
        email: &Email,
        full_name: Option<&str>,
        raw: &str,
        client: &ClientContext,
    ) {
        let url = self.link(self.cfg.verify_url_template.as_deref(), "/verify", raw);
        self.send_mail(
            MailKind::Verification,
            email,
            full_name,
            &url,
            self.cfg.verification_token_ttl_seconds,
        );
        self.emit(EventKind::VerificationRequested, |e| {
            e.email = Some(email.clone());
            e.url_without_token = Some(tokens::redact_url(&url, raw));
            e.ip.clone_from(&client.ip);
        });
    }

    /// `POST /verify`: the pending registration becomes a verified user.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "verify", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn verify(
        &self,
        token: &SecretString,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        if token.expose_secret().len() > MAX_TOKEN_CHARS {
            return Err(AuthError::InvalidVerificationToken);
        }
        let hash = tokens::hash_presented(token);
        match self
            .stores
            .pending
            .promote(&hash, &UserId::generate(), self.now())
            .await?
        {
            Promotion::Promoted(user) => {
                for kind in [EventKind::UserVerified, EventKind::UserRegistered] {
                    self.emit_for(kind, &user, client);
                }
                Ok(user)
            }
            Promotion::InvalidToken => Err(AuthError::InvalidVerificationToken),
            Promotion::EmailTaken => Err(AuthError::EmailTaken),
        }
    }

    /// `POST /resend-verification`: a new link if a registration is pending
    /// and the address's mail quota allows one; over the quota nothing
    /// changes, so the link last mailed keeps working. The caller answers
    /// the same whatever happens here.
    pub async fn resend_verification(
        &self,
        email: &Email,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        let now = self.now();
        match self.stores.pending.find_by_email(email, now).await? {
            Some(pending) => self.relink(&pending, now, client).await,
            None => Ok(()),
        }
    }

    /// Gives a live pending registration a new link and mails it — if the
    /// address's mail quota allows; otherwise nothing changes.
    async fn relink(
        &self,
        pending: &PendingRegistration,
        now: Timestamp,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        let email = &pending.email;
        if !self.take_mail_quota(email, MailKind::Verification).await? {
            return Ok(());
        }
        let token = tokens::issue();
        let expires_at = now + secs(self.cfg.verification_token_ttl_seconds);
        if self
            .stores
            .pending
            .replace_token(email, &token.hash, expires_at, now)
            .await?
        {
            self.mail_verification(
                email,
                pending.full_name.as_deref(),
                token.raw.expose_secret(),
                client,
            );
        }
        Ok(())
    }
}
