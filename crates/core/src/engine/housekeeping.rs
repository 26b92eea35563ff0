//! Housekeeping: deleting rows past their expiry, and writing down the end
//! of timed disablings. Only to keep tables small and lists truthful:
//! reads never trust a row past its expiry, purged or not, and every
//! decision about an account asks [`User::is_active_at`], re-enabled in
//! the store yet or not.
//!
//! [`User::is_active_at`]: regstack_ports::User::is_active_at

use chrono::TimeDelta;

use super::{secs, Engine};

/// Rows removed by [`Engine::purge_expired`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Pending registrations.
    pub pending: u64,
    /// Reset and email-change tokens.
    pub tokens: u64,
    /// Lockout attempts.
    pub login_attempts: u64,
    /// Sessions.
    pub sessions: u64,
    /// Rate-limit hits.
    pub rate_limit_hits: u64,
    /// Second-factor challenges past their expiry.
    pub mfa_challenges: u64,
    /// OAuth flows past their expiry (never redeemed, or abandoned at the
    /// provider).
    pub oauth_flows: u64,
    /// Audit entries older than `audit.retention_days`.
    pub audit_entries: u64,
    /// Invitations past their expiry, spent or not.
    pub invites: u64,
    /// Accounts whose timed disabling ended, now written down as active
    /// ([`UserStore::reenable_expired`](regstack_ports::UserStore::reenable_expired)).
    pub reenabled_users: u64,
}

impl Engine {
    /// Deletes rows past their expiry and re-enables accounts whose timed
    /// disabling ended. Run periodically by the server and by the CLI
    /// (`regstack purge`).
    pub async fn purge_expired(&self) -> Result<PurgeReport, regstack_ports::StoreError> {
        let now = self.now();
        let s = &self.stores;
        Ok(PurgeReport {
            pending: s.pending.purge_expired(now).await?,
            tokens: s.tokens.purge_expired(now).await?,
            login_attempts: s
                .login_attempts
                .purge_expired(now - secs(self.cfg.login_lockout_window_seconds))
                .await?,
            // Revoked sessions stay until every access token they issued has
            // expired, so a dead token keeps getting its precise refusal.
            sessions: s
                .sessions
                .purge_expired(now - secs(self.cfg.jwt_ttl_seconds))
                .await?,
            // The longest window any counter uses: the daily SMS caps. (An
            // hour, the mail quota's window, would forget a day's texts
            // every hour and let the caps reset 24 times a day.)
            rate_limit_hits: s
                .rate_limits
                .purge_expired(now - TimeDelta::days(1))
                .await?,
            mfa_challenges: s.mfa.purge_expired(now).await?,
            oauth_flows: s.oauth.purge_expired(now).await?,
            audit_entries: match self.cfg.audit.retention_days {
                0 => 0,
                days => {
                    s.audit
                        .purge_before(now - TimeDelta::days(i64::from(days)))
                        .await?
                }
            },
            invites: s.invites.purge_expired(now).await?,
            reenabled_users: s.users.reenable_expired(now).await?,
        })
    }
}
