//! The administrator's runners (`/admin/*`): the overview, the account
//! list, one account, its flags, its deletion, a new verification mail,
//! promoting a pending registration, and the operator's levers beyond
//! regstack (a forced password change, the account's sessions, its second
//! factors, an address's lockout).
//!
//! Each runner first checks that the caller is an administrator — as the
//! store read the account for this very request, so a withdrawn right
//! stops working at once — and only then looks at the target. What an
//! administrator may not do to their own account is refused here
//! ([`SelfChange`]); every change is one store step, and an event names
//! the administrator who made it.

use chrono::SubsecRound;
use regstack_ports::{
    AdminChange, DisableReason, Email, Invite, InviteId, PendingRegistration, Promotion,
    RevokeReason, Session, User, UserCounts, UserCursor, UserFilter, UserId,
};
use secrecy::{ExposeSecret, SecretString};

use super::{secs, ClientContext, Engine, Principal};
use crate::error::{AuthError, DisableRefusal, SelfChange};
use crate::events::EventKind;
use crate::mail::MailKind;
use crate::tokens;

/// The overview of `GET /admin/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminStats {
    /// Accounts, by flag.
    pub users: UserCounts,
    /// Registrations waiting for their link, live now.
    pub pending_registrations: u64,
}

/// One page of `GET /admin/users`.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// The accounts, newest first.
    pub items: Vec<User>,
    /// Every account, for the pager.
    pub total: u64,
}

/// How long an invitation lives when its maker does not say: a week.
pub const DEFAULT_INVITE_TTL_SECONDS: u64 = 7 * 24 * 3600;
/// The longest an invitation may live: 90 days. A forgotten code should
/// not admit someone a year later.
pub const MAX_INVITE_TTL_SECONDS: u64 = 90 * 24 * 3600;
/// The longest note an invitation may carry, in characters.
pub const MAX_INVITE_NOTE_CHARS: usize = 500;
/// The most invitations one list answer holds.
pub const MAX_INVITE_PAGE: u64 = 200;

/// What an invitation is made with (`POST /admin/invites`,
/// `regstack invite create`); checked by [`Engine::create_invite`].
#[derive(Debug, Clone, Default)]
pub struct InviteSpec {
    /// The only address it will admit, when given.
    pub email: Option<Email>,
    /// Its lifetime in seconds (default [`DEFAULT_INVITE_TTL_SECONDS`],
    /// 60 to [`MAX_INVITE_TTL_SECONDS`]).
    pub expires_in_seconds: Option<u64>,
    /// A reminder for the operators (≤ [`MAX_INVITE_NOTE_CHARS`], no
    /// control characters).
    pub note: Option<String>,
}

/// Why an [`InviteSpec`] was refused: the field and what is wrong, for the
/// caller's own wording (a 422, a usage error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteSpecError {
    /// `expires_in_seconds` or `note`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl InviteSpec {
    /// Checks the lifetime and the note.
    pub fn check(&self) -> Result<(), InviteSpecError> {
        if let Some(ttl) = self.expires_in_seconds {
            if !(60..=MAX_INVITE_TTL_SECONDS).contains(&ttl) {
                return Err(InviteSpecError {
                    field: "expires_in_seconds",
                    reason: format!("must be between 60 and {MAX_INVITE_TTL_SECONDS}"),
                });
            }
        }
        if let Some(note) = &self.note {
            if note.chars().count() > MAX_INVITE_NOTE_CHARS || note.chars().any(char::is_control) {
                return Err(InviteSpecError {
                    field: "note",
                    reason: format!(
                        "must be at most {MAX_INVITE_NOTE_CHARS} characters, without control characters"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A new invitation and its code — the only time the code exists outside
/// the hands it is given to; it is never stored or shown again.
pub struct NewInvite {
    /// The invitation as stored.
    pub invite: Invite,
    /// The code to hand to the invitee.
    pub code: SecretString,
}

impl Engine {
    /// Makes an invitation (module doc of `registration.rs` for how it is
    /// spent); `created_by` names the administrator, `None` the command
    /// line. The spec must pass [`InviteSpec::check`].
    pub async fn create_invite(
        &self,
        spec: InviteSpec,
        created_by: Option<&UserId>,
    ) -> Result<NewInvite, AuthError> {
        spec.check().map_err(|e| {
            AuthError::internal(format!("unchecked invite spec: {} {}", e.field, e.reason))
        })?;
        let now = self.now();
        let ttl = spec
            .expires_in_seconds
            .unwrap_or(DEFAULT_INVITE_TTL_SECONDS);
        let token = tokens::issue();
        let invite = Invite {
            id: InviteId::generate(),
            code_hash: token.hash,
            email: spec.email,
            note: spec.note,
            created_by: created_by.cloned(),
            created_at: now,
            expires_at: now + secs(ttl),
            used_at: None,
            used_by: None,
            revoked_at: None,
        };
        self.stores.invites.create(invite.clone()).await?;
        Ok(NewInvite {
            invite,
            code: token.raw,
        })
    }

    /// Invitations newest first: the open ones, or every stored one.
    pub async fn list_invites(
        &self,
        include_closed: bool,
        limit: u64,
    ) -> Result<Vec<Invite>, AuthError> {
        let limit = limit.clamp(1, MAX_INVITE_PAGE);
        Ok(self
            .stores
            .invites
            .list(include_closed, limit, self.now())
            .await?)
    }

    /// Withdraws an invitation not yet spent or withdrawn; anything else
    /// (unknown, malformed id, spent, revoked) is [`AuthError::InviteNotFound`].
    pub async fn revoke_invite(&self, id: &str) -> Result<Invite, AuthError> {
        let id = InviteId::parse(id).ok_or(AuthError::InviteNotFound)?;
        self.stores
            .invites
            .revoke(&id, self.now())
            .await?
            .ok_or(AuthError::InviteNotFound)
    }

    /// `POST /admin/invites`.
    pub async fn admin_create_invite(
        &self,
        admin: &Principal,
        spec: InviteSpec,
        client: &ClientContext,
    ) -> Result<NewInvite, AuthError> {
        Self::require_admin(admin)?;
        let made = self.create_invite(spec, Some(&admin.user.id)).await?;
        self.emit(EventKind::AdminInviteCreated, |e| {
            e.email.clone_from(&made.invite.email);
            e.actor_id = Some(admin.user.id.clone());
            e.ip.clone_from(&client.ip);
        });
        Ok(made)
    }

    /// `GET /admin/invites`.
    pub async fn admin_list_invites(
        &self,
        admin: &Principal,
        include_closed: bool,
        limit: u64,
    ) -> Result<Vec<Invite>, AuthError> {
        Self::require_admin(admin)?;
        self.list_invites(include_closed, limit).await
    }

    /// `DELETE /admin/invites/{id}`.
    pub async fn admin_revoke_invite(
        &self,
        admin: &Principal,
        id: &str,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        Self::require_admin(admin)?;
        let invite = self.revoke_invite(id).await?;
        self.emit(EventKind::AdminInviteRevoked, |e| {
            e.email = invite.email;
            e.actor_id = Some(admin.user.id.clone());
            e.ip.clone_from(&client.ip);
        });
        Ok(())
    }

    /// Refuses a caller who is not an administrator.
    pub(super) fn require_admin(admin: &Principal) -> Result<(), AuthError> {
        if admin.user.is_superuser {
            Ok(())
        } else {
            Err(AuthError::NotAdmin)
        }
    }

    /// The account an admin route names, as it stands now ([`User::as_of`]);
    /// a malformed id names none.
    async fn target(&self, admin: &Principal, id: &str) -> Result<User, AuthError> {
        Self::require_admin(admin)?;
        let id = UserId::parse(id).ok_or(AuthError::UserNotFound)?;
        self.stores
            .users
            .get(&id)
            .await?
            .map(|u| u.as_of(self.now()))
            .ok_or(AuthError::UserNotFound)
    }

    /// Checks the disabling part of a change: a reason or an end only with
    /// `is_active: false`, the reason within [`DisableReason`]'s rule, the
    /// end in the future (to the microsecond, as stores keep instants).
    fn checked_disabling(&self, mut change: AdminChange) -> Result<AdminChange, AuthError> {
        let refuse = |why| Err(AuthError::DisableRefused(why));
        if change.is_active != Some(false) {
            if change.disabled_reason.is_some() {
                return refuse(DisableRefusal::ReasonWithoutDisabling);
            }
            if change.disabled_until.is_some() {
                return refuse(DisableRefusal::UntilWithoutDisabling);
            }
        }
        if let Some(reason) = &change.disabled_reason {
            if DisableReason::parse(reason).is_err() {
                return refuse(DisableRefusal::ReasonInvalid);
            }
        }
        if let Some(until) = change.disabled_until {
            let until = until.trunc_subsecs(6);
            if until <= self.now() {
                return refuse(DisableRefusal::UntilNotInFuture);
            }
            change.disabled_until = Some(until);
        }
        Ok(change)
    }

    /// Writes down every timed disabling that has ended, so that the lists,
    /// filters and counts an administrator reads next agree with
    /// [`User::is_active_at`].
    async fn settle_disablings(&self) -> Result<(), AuthError> {
        self.stores.users.reenable_expired(self.now()).await?;
        Ok(())
    }

    /// Fires an event about what an administrator did to an account.
    fn emit_admin(&self, kind: EventKind, admin: &Principal, user: &User, client: &ClientContext) {
        self.emit(kind, |e| {
            e.user_id = Some(user.id.clone());
            e.email = Some(user.email.clone());
            e.actor_id = Some(admin.user.id.clone());
            e.ip.clone_from(&client.ip);
        });
    }

    /// `GET /admin/stats`.
    pub async fn admin_stats(&self, admin: &Principal) -> Result<AdminStats, AuthError> {
        Self::require_admin(admin)?;
        self.settle_disablings().await?;
        Ok(AdminStats {
            users: self.stores.users.count_users().await?,
            pending_registrations: self.stores.pending.count_live(self.now()).await?,
        })
    }

    /// `GET /admin/users`: a page of accounts, newest first.
    pub async fn admin_list_users(
        &self,
        admin: &Principal,
        skip: u64,
        limit: u64,
    ) -> Result<UserPage, AuthError> {
        Self::require_admin(admin)?;
        self.settle_disablings().await?;
        let items = self.stores.users.list_users(skip, limit).await?;
        let total = self.stores.users.count_users().await?.total;
        Ok(UserPage { items, total })
    }

    /// `GET /admin/users` with filters or a cursor: the matching accounts
    /// newest first, from just after `after`, and how many match in all.
    /// The address part is lower-cased, as addresses are stored.
    pub async fn admin_search_users(
        &self,
        admin: &Principal,
        mut filter: UserFilter,
        after: Option<&UserCursor>,
        skip: u64,
        limit: u64,
    ) -> Result<UserPage, AuthError> {
        Self::require_admin(admin)?;
        self.settle_disablings().await?;
        filter.email_contains = filter.email_contains.map(|q| q.trim().to_lowercase());
        let items = self
            .stores
            .users
            .search_users(&filter, after, skip, limit)
            .await?;
        let total = self.stores.users.count_matching(&filter).await?;
        Ok(UserPage { items, total })
    }

    /// `GET /admin/users/{id}`.
    pub async fn admin_get_user(&self, admin: &Principal, id: &str) -> Result<User, AuthError> {
        self.target(admin, id).await
    }

    /// `PATCH /admin/users/{id}`: flags and name in one store step;
    /// disabling ends every session of the account in that step. A
    /// disabling may carry a reason (for administrators only: the owner is
    /// told just "disabled") and an end, from which the account is active
    /// again by itself ([`User::is_active_at`]); enabling clears both. An
    /// administrator can neither withdraw their own rights nor disable
    /// themselves.
    pub async fn admin_update_user(
        &self,
        admin: &Principal,
        id: &str,
        change: AdminChange,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        Self::require_admin(admin)?;
        let change = self.checked_disabling(change)?;
        let user = self.target(admin, id).await?;
        if user.id == admin.user.id {
            if change.is_superuser == Some(false) {
                return Err(AuthError::AdminSelfChange(SelfChange::Demote));
            }
            if change.is_active == Some(false) {
                return Err(AuthError::AdminSelfChange(SelfChange::Disable));
            }
        }
        if change.is_empty() {
            return Ok(user);
        }
        let updated = self
            .stores
            .users
            .admin_update(&user.id, &change, self.now())
            .await?
            .map(|u| u.as_of(self.now()))
            .ok_or(AuthError::UserNotFound)?;
        let mut changes = Vec::new();
        if let Some(v) = change.is_active {
            changes.push(("is_active", v.into()));
        }
        if let Some(v) = change.is_superuser {
            changes.push(("is_superuser", v.into()));
        }
        if change.full_name.is_some() {
            changes.push(("full_name", true.into()));
        }
        self.emit(EventKind::AdminUserUpdated, |e| {
            e.user_id = Some(updated.id.clone());
            e.email = Some(updated.email.clone());
            e.actor_id = Some(admin.user.id.clone());
            e.ip.clone_from(&client.ip);
            e.changes = changes;
        });
        Ok(updated)
    }

    /// `DELETE /admin/users/{id}`: every row of the account goes, exactly
    /// as when its owner deletes it. Returns the account as it was.
    pub async fn admin_delete_user(
        &self,
        admin: &Principal,
        id: &str,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        let user = self.target(admin, id).await?;
        if user.id == admin.user.id {
            return Err(AuthError::AdminSelfChange(SelfChange::Delete));
        }
        let deleted = self
            .stores
            .users
            .delete_account(&user.id)
            .await?
            .ok_or(AuthError::UserNotFound)?;
        self.emit_admin(EventKind::UserDeleted, admin, &deleted, client);
        Ok(deleted)
    }

    /// `POST /admin/users/{id}/resend-verification`: mails an unverified
    /// account a verification link, through a pending registration that
    /// carries the account's own password hash (verifying it proves the
    /// address of that same account). Within the address's mail quota;
    /// over it nothing changes and the answer is the same. Returns the
    /// address.
    pub async fn admin_resend_verification(
        &self,
        admin: &Principal,
        id: &str,
        client: &ClientContext,
    ) -> Result<Email, AuthError> {
        let user = self.target(admin, id).await?;
        if user.is_verified {
            return Err(AuthError::AlreadyVerified);
        }
        let Some(hash) = user.password_hash.clone() else {
            return Err(AuthError::NoPasswordToVerify);
        };
        if !self
            .take_mail_quota(&user.email, MailKind::Verification)
            .await?
        {
            return Ok(user.email);
        }
        let now = self.now();
        let token = tokens::issue();
        let expires_at = now + secs(self.cfg.verification_token_ttl_seconds);
        let stored = self
            .stores
            .pending
            .put(PendingRegistration {
                email: user.email.clone(),
                password_hash: hash,
                full_name: user.full_name.clone(),
                token_hash: token.hash.clone(),
                created_at: now,
                expires_at,
            })
            .await?;
        // A live row for the address already: it gets the new link.
        let linked = stored
            || self
                .stores
                .pending
                .replace_token(&user.email, &token.hash, expires_at, now)
                .await?;
        if linked {
            self.mail_verification(
                &user.email,
                user.full_name.as_deref(),
                token.raw.expose_secret(),
                client,
            );
        }
        Ok(user.email)
    }

    /// `POST /admin/pending/{email}/promote`: the pending registration
    /// becomes a verified account without its link — the administrator
    /// vouches for the address. `raw` is the address as given, which the
    /// refusals repeat.
    pub async fn admin_promote_pending(
        &self,
        admin: &Principal,
        raw: &str,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        Self::require_admin(admin)?;
        let Ok(email) = Email::parse(raw) else {
            return Err(AuthError::NoPendingRegistration(raw.to_owned()));
        };
        match self
            .stores
            .pending
            .promote_email(&email, &UserId::generate(), self.now())
            .await?
        {
            Promotion::Promoted(user) => {
                for kind in [EventKind::UserVerified, EventKind::UserRegistered] {
                    self.emit_admin(kind, admin, &user, client);
                }
                Ok(user)
            }
            Promotion::InvalidToken => Err(AuthError::NoPendingRegistration(raw.to_owned())),
            Promotion::EmailTaken => Err(AuthError::PendingAddressTaken(raw.to_owned())),
        }
    }

    /// `POST /admin/users/{id}/require-password-change`: the account must
    /// set a new password at its next sign-in, and every session of it
    /// ends now ([`Engine::require_password_change`]).
    pub async fn admin_require_password_change(
        &self,
        admin: &Principal,
        id: &str,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        let user = self.target(admin, id).await?;
        if !self.require_password_change(&user.id, true).await? {
            return Err(AuthError::UserNotFound);
        }
        self.emit_admin(EventKind::AdminPasswordChangeRequired, admin, &user, client);
        Ok(user)
    }

    /// `GET /admin/users/{id}/sessions`: the account's live sessions,
    /// newest first.
    pub async fn admin_list_sessions(
        &self,
        admin: &Principal,
        id: &str,
    ) -> Result<Vec<Session>, AuthError> {
        let user = self.target(admin, id).await?;
        Ok(self.stores.sessions.list(&user.id, self.now()).await?)
    }

    /// `DELETE /admin/users/{id}/sessions`: ends every session of the
    /// account. Returns the account and how many sessions ended.
    pub async fn admin_revoke_sessions(
        &self,
        admin: &Principal,
        id: &str,
        client: &ClientContext,
    ) -> Result<(User, u64), AuthError> {
        let user = self.target(admin, id).await?;
        let n = self
            .stores
            .sessions
            .revoke_all(&user.id, RevokeReason::Revoked, self.now())
            .await?;
        self.emit_admin(EventKind::SessionsRevokedAll, admin, &user, client);
        Ok((user, n))
    }

    /// `DELETE /admin/users/{id}/mfa`: removes the account's TOTP factor,
    /// its phone and (with the last factor) its backup codes — for an
    /// owner who lost their device. Each removal is one store step that
    /// ends the account's sessions; an account with no factor is left as
    /// it is. Returns the account as it now is.
    pub async fn admin_reset_mfa(
        &self,
        admin: &Principal,
        id: &str,
        client: &ClientContext,
    ) -> Result<User, AuthError> {
        let user = self.target(admin, id).await?;
        let now = self.now();
        let totp = self.stores.mfa.disable_totp(&user.id, None, now).await?;
        let phone = self.stores.mfa.clear_phone(&user.id, None, now).await?;
        if totp || phone {
            self.emit_admin(EventKind::MfaFactorDisabled, admin, &user, client);
        }
        self.stores
            .users
            .get(&user.id)
            .await?
            .map(|u| u.as_of(self.now()))
            .ok_or(AuthError::UserNotFound)
    }

    /// `POST /admin/unlock`: forgets every sign-in failure counted against
    /// the address — its own bucket and each device's — whether or not an
    /// account has it (the answer says nothing about that).
    pub async fn admin_unlock(
        &self,
        admin: &Principal,
        email: &Email,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        Self::require_admin(admin)?;
        self.stores.login_attempts.forget_address(email).await?;
        self.emit(EventKind::AdminLockoutCleared, |e| {
            e.email = Some(email.clone());
            e.actor_id = Some(admin.user.id.clone());
            e.ip.clone_from(&client.ip);
        });
        Ok(())
    }
}
