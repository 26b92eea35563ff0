//! Sessions after sign-in: `authenticate` (every request), `refresh`
//! (rotation, [`crate::flows::refresh`]), `logout`, `logout_all`, the
//! session list and revoking one session.

use regstack_ports::{RefreshFamily, RevokeReason, Rotation, Session, SessionId, Timestamp, User};
use secrecy::{ExposeSecret, SecretString};

use super::{seconds_until, secs, ClientContext, Engine};
use crate::error::{AuthError, AuthFailure};
use crate::events::EventKind;
use crate::flows::refresh::{judge, Verdict};
use crate::mail::MailKind;

/// The answer to `POST /refresh`.
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// A new bearer token for the same session.
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// The successor refresh token (the same one again for a replay).
    pub refresh_token: SecretString,
    /// Seconds until it dies if unused.
    pub refresh_expires_in: u64,
}

/// An authenticated caller: the user and the session its token names.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user, as loaded in the same lookup as the session.
    pub user: User,
    /// The session.
    pub session: Session,
}

impl Engine {
    /// `POST /refresh`: rotates the presented token — the store's one
    /// conditional write — or, when it was not the live one, judges the
    /// family the store read ([`judge`]): a retry inside the grace window
    /// gets the same successor, reuse ends the family, anything else is
    /// refused with one answer for every failure.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "refresh", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn refresh(
        &self,
        presented: &SecretString,
        client: &ClientContext,
    ) -> Result<Refreshed, AuthError> {
        // A token this server did not mint for its session never reaches
        // the store (and so can never revoke anything).
        let Some(presented) = self.refresh_tokens.parse(presented.expose_secret()) else {
            return Err(AuthError::InvalidRefreshToken);
        };
        let now = self.now();
        let successor = self.refresh_tokens.successor(&presented);
        let rotation = self
            .stores
            .sessions
            .rotate(
                &presented.session,
                &presented.hash,
                &successor.hash,
                now,
                secs(self.cfg.sessions.refresh_idle_ttl_seconds),
            )
            .await?;
        let (session, user, rotated) = match rotation {
            Rotation::Rotated { session, user } => (session, user, true),
            Rotation::Unknown => return Err(AuthError::InvalidRefreshToken),
            Rotation::NotLive(family) => {
                let grace = secs(self.cfg.sessions.reuse_grace_seconds);
                match judge(&family, &presented.hash, &successor.hash, now, grace) {
                    Verdict::Replay => (family.session, family.user, false),
                    Verdict::Dead => return Err(AuthError::InvalidRefreshToken),
                    Verdict::Reuse => {
                        self.end_reused_family(&family, client, now).await?;
                        return Err(AuthError::InvalidRefreshToken);
                    }
                }
            }
        };
        if !user.is_active_at(now) {
            return Err(AuthError::InvalidRefreshToken);
        }
        Self::record_ids(&user.id, Some(&session.id));
        if rotated {
            self.emit(EventKind::SessionRefreshed, |e| {
                e.user_id = Some(user.id.clone());
                e.session_id = Some(session.id.clone());
                e.ip.clone_from(&client.ip);
            });
        }
        let access_token = self
            .jwt
            .issue_access(&user.id, &session.id, now)
            .map_err(AuthError::internal)?;
        Ok(Refreshed {
            access_token,
            expires_in: self.jwt.ttl_seconds(),
            refresh_token: successor.raw,
            refresh_expires_in: seconds_until(session.idle_expires_at, now),
        })
    }

    /// Ends a family whose spent token came back: theft. The store's
    /// conditional revoke says `true` once however many race to present
    /// it, so the warning and the event happen once too.
    async fn end_reused_family(
        &self,
        family: &RefreshFamily,
        client: &ClientContext,
        now: Timestamp,
    ) -> Result<(), AuthError> {
        let (session_id, user_id) = (&family.session.id, &family.user.id);
        let revoked = self
            .stores
            .sessions
            .revoke(session_id, RevokeReason::RefreshReuse, now)
            .await?;
        if revoked {
            tracing::warn!(session_id = %session_id, user_id = %user_id, "spent refresh token presented again: session revoked");
            self.emit(EventKind::RefreshTokenReused, |e| {
                e.user_id = Some(user_id.clone());
                e.session_id = Some(session_id.clone());
                e.ip.clone_from(&client.ip);
            });
            self.notify(MailKind::RefreshReuse, &family.user, Some(client))
                .await;
        }
        Ok(())
    }

    /// `POST /logout-all`: ends every session of the caller. Returns how many.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "logout_all", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn logout_all(
        &self,
        p: &Principal,
        client: &ClientContext,
    ) -> Result<u64, AuthError> {
        let n = self
            .stores
            .sessions
            .revoke_all(&p.user.id, RevokeReason::LogoutAll, self.now())
            .await?;
        self.emit_for(EventKind::SessionsRevokedAll, &p.user, client);
        Ok(n)
    }

    /// `GET /sessions`: the caller's live sessions, newest first.
    pub async fn list_sessions(&self, p: &Principal) -> Result<Vec<Session>, AuthError> {
        Ok(self.stores.sessions.list(&p.user.id, self.now()).await?)
    }

    /// `DELETE /sessions/{id}`: ends one of the caller's own sessions.
    pub async fn revoke_session(
        &self,
        p: &Principal,
        id: &SessionId,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        if !self
            .stores
            .sessions
            .revoke_owned(id, &p.user.id, RevokeReason::Revoked, self.now())
            .await?
        {
            return Err(AuthError::SessionNotFound);
        }
        self.emit(EventKind::SessionRevoked, |e| {
            e.user_id = Some(p.user.id.clone());
            e.session_id = Some(id.clone());
            e.ip.clone_from(&client.ip);
        });
        Ok(())
    }

    /// Checks a bearer token: signature and expiry, then one lookup of the
    /// session together with its user.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        let token = bearer.ok_or(AuthError::Unauthenticated(AuthFailure::Missing))?;
        let now = self.now();
        let claims = self
            .jwt
            .verify_access(token, now)
            .map_err(|_| AuthError::Unauthenticated(AuthFailure::Invalid))?;
        let Some((session, user)) = self
            .stores
            .sessions
            .authenticate(&claims.session_id)
            .await?
        else {
            // The session only disappears with its user (or long after the
            // token expired): the account is gone.
            return Err(AuthError::Unauthenticated(AuthFailure::Inactive));
        };
        if session.user_id != claims.user_id || user.id != claims.user_id {
            return Err(AuthError::Unauthenticated(AuthFailure::Invalid));
        }
        if !user.is_active_at(now) {
            return Err(AuthError::Unauthenticated(AuthFailure::Inactive));
        }
        if session.revoked_at.is_some() {
            let failure = match session.revoked_reason {
                Some(RevokeReason::Disabled) => AuthFailure::Inactive,
                Some(r) if r.is_bulk() => AuthFailure::Invalidated,
                _ => AuthFailure::Revoked,
            };
            return Err(AuthError::Unauthenticated(failure));
        }
        if !session.is_live(now) {
            return Err(AuthError::Unauthenticated(AuthFailure::Invalid));
        }
        Self::record_ids(&user.id, Some(&session.id));
        // A timed disabling that ended reads as enabled, as housekeeping
        // will write it.
        Ok(Principal {
            user: user.as_of(now),
            session,
        })
    }

    /// `POST /logout`: revokes the session of the presented token.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "logout", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn logout(&self, p: &Principal, client: &ClientContext) -> Result<(), AuthError> {
        self.stores
            .sessions
            .revoke(&p.session.id, RevokeReason::Logout, self.now())
            .await?;
        for kind in [EventKind::UserLoggedOut, EventKind::SessionRevoked] {
            self.emit(kind, |e| {
                e.user_id = Some(p.user.id.clone());
                e.email = Some(p.user.email.clone());
                e.session_id = Some(p.session.id.clone());
                e.ip.clone_from(&client.ip);
            });
        }
        Ok(())
    }
}
