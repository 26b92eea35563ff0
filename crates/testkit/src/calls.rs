//! One call of every store method: the single list behind the outage
//! tests ("every call is `Unavailable` within seconds" on PostgreSQL and
//! MongoDB) and the fake's fault names ([`OPERATIONS`]).
//!
//! Each call uses plausible arguments (fresh ids, a fixed instant) and is
//! reduced to its error; the caller decides how to run them (joined,
//! spawned, timed). `tests/store_calls.rs` holds the list to the ports: it
//! names exactly [`OPERATIONS`], in order, and failing one operation of the
//! in-memory stores fails exactly the call of that name — so a method added
//! to a port, which the fake must name to compile its fault check, cannot
//! be left out here.

use std::future::Future;
use std::pin::Pin;

use chrono::TimeDelta;
use regstack_ports::{
    AdminChange, AuditQuery, ChallengeKind, FlowMode, FlowResult, InviteId, LockoutKey,
    MfaChallenge, RevokeReason, SessionId, StoreError, Stores, TokenKind, UserFilter, UserId,
};

use crate::fixtures::{self, at, t0};
#[cfg(doc)]
use crate::memory::OPERATIONS;

/// A store call, named as in [`OPERATIONS`], reduced to its error.
pub type StoreCall = Pin<Box<dyn Future<Output = (&'static str, Result<(), StoreError>)> + Send>>;

/// Every method of every store, once, in [`OPERATIONS`] order.
pub fn every_store_call(stores: &Stores) -> Vec<StoreCall> {
    let mut calls: Vec<StoreCall> = Vec::new();
    macro_rules! calls {
        ($($name:literal => |$s:ident| $call:expr;)*) => {$({
            let $s = stores.clone();
            calls.push(Box::pin(async move { ($name, $call.await.map(drop)) }));
        })*};
    }
    let uid = UserId::generate;
    let sid = SessionId::generate;
    let email = || fixtures::email("outage@example.com");
    let hash = fixtures::token_hash;
    let pw = fixtures::password_hash;
    let later = || at(TimeDelta::hours(1));
    calls! {
        "users.insert" => |s| s.users.insert(fixtures::new_user("outage@example.com"));
        "users.get" => |s| s.users.get(&uid());
        "users.find_by_email" => |s| s.users.find_by_email(&email());
        "users.update_full_name" => |s| s.users.update_full_name(&uid(), None, t0());
        "users.upgrade_password_hash" => |s| s.users.upgrade_password_hash(&uid(), &pw(), &pw());
        "users.change_password" => |s| s.users.change_password(&uid(), &pw(), RevokeReason::PasswordChanged, t0());
        "users.complete_password_reset" => |s| s.users.complete_password_reset(&hash(), &pw(), t0());
        "users.confirm_email_change" => |s| s.users.confirm_email_change(&hash(), t0());
        "users.delete_account" => |s| s.users.delete_account(&uid());
        "users.count_users" => |s| s.users.count_users();
        "users.list_users" => |s| s.users.list_users(0, 10);
        "users.search_users" => |s| s.users.search_users(&UserFilter { is_active: Some(true), ..UserFilter::default() }, None, 0, 10);
        "users.count_matching" => |s| s.users.count_matching(&UserFilter::default());
        "users.admin_update" => |s| s.users.admin_update(&uid(), &AdminChange { is_active: Some(false), ..AdminChange::default() }, t0());
        "users.reenable_expired" => |s| s.users.reenable_expired(t0());
        "pending.put" => |s| s.pending.put(fixtures::pending("outage@example.com", &hash(), later()));
        "pending.find_by_email" => |s| s.pending.find_by_email(&email(), t0());
        "pending.replace_token" => |s| s.pending.replace_token(&email(), &hash(), later(), t0());
        "pending.promote" => |s| s.pending.promote(&hash(), &uid(), t0());
        "pending.promote_email" => |s| s.pending.promote_email(&email(), &uid(), t0());
        "pending.count_live" => |s| s.pending.count_live(t0());
        "pending.purge_expired" => |s| s.pending.purge_expired(t0());
        "tokens.issue" => |s| s.tokens.issue(fixtures::reset_token(&uid(), later()));
        "tokens.peek" => |s| s.tokens.peek(TokenKind::PasswordReset, &hash(), t0());
        "tokens.purge_expired" => |s| s.tokens.purge_expired(t0());
        "login_attempts.admit" => |s| s.login_attempts.admit(&LockoutKey::address(email()), t0(), TimeDelta::minutes(15), 5);
        "login_attempts.clear" => |s| s.login_attempts.clear(&LockoutKey::address(email()));
        "login_attempts.forget_address" => |s| s.login_attempts.forget_address(&email());
        "login_attempts.purge_expired" => |s| s.login_attempts.purge_expired(t0());
        "sessions.start" => |s| s.sessions.start(fixtures::new_session(&uid(), t0(), at(TimeDelta::days(1))));
        "sessions.rotate" => |s| s.sessions.rotate(&sid(), &hash(), &hash(), t0(), TimeDelta::hours(1));
        "sessions.list" => |s| s.sessions.list(&uid(), t0());
        "sessions.revoke_owned" => |s| s.sessions.revoke_owned(&sid(), &uid(), RevokeReason::Revoked, t0());
        "sessions.authenticate" => |s| s.sessions.authenticate(&sid());
        "sessions.revoke" => |s| s.sessions.revoke(&sid(), RevokeReason::Logout, t0());
        "sessions.revoke_all" => |s| s.sessions.revoke_all(&uid(), RevokeReason::LogoutAll, t0());
        "sessions.purge_expired" => |s| s.sessions.purge_expired(t0());
        "rate_limits.hit" => |s| s.rate_limits.hit("mail:outage@example.com", t0(), TimeDelta::hours(1), 5);
        "rate_limits.purge_expired" => |s| s.rate_limits.purge_expired(t0());
        "mfa.open_challenge" => |s| s.mfa.open_challenge(MfaChallenge {
            id: hash(),
            user_id: uid(),
            kind: ChallengeKind::SignIn,
            code_hash: Some(hash()),
            payload: None,
            attempts_left: 5,
            credential_epoch: None,
            created_at: t0(),
            expires_at: later(),
        });
        "mfa.attempt_challenge" => |s| s.mfa.attempt_challenge(&hash(), t0());
        "mfa.finish_challenge" => |s| s.mfa.finish_challenge(&hash(), t0());
        "mfa.factors" => |s| s.mfa.factors(&uid());
        "mfa.accept_totp_step" => |s| s.mfa.accept_totp_step(&uid(), 1);
        "mfa.spend_backup_code" => |s| s.mfa.spend_backup_code(&uid(), &hash());
        "mfa.enable_totp" => |s| s.mfa.enable_totp(&uid(), "sealed", &[hash()], Some(&sid()), t0());
        "mfa.disable_totp" => |s| s.mfa.disable_totp(&uid(), Some(&sid()), t0());
        "mfa.set_phone" => |s| s.mfa.set_phone(&uid(), "+14155550100", Some(&sid()), t0());
        "mfa.clear_phone" => |s| s.mfa.clear_phone(&uid(), Some(&sid()), t0());
        "mfa.replace_backup_codes" => |s| s.mfa.replace_backup_codes(&uid(), &[hash()], t0());
        "mfa.set_must_change_password" => |s| s.mfa.set_must_change_password(&uid(), true, t0());
        "mfa.purge_expired" => |s| s.mfa.purge_expired(t0());
        "oauth.begin" => |s| s.oauth.begin(fixtures::oauth_flow("google", FlowMode::SignIn, later()));
        "oauth.claim" => |s| s.oauth.claim(&hash(), "google", t0());
        "oauth.complete" => |s| s.oauth.complete(&hash(), &hash(), &FlowResult {
            user_id: uid(),
            was_new: false,
            credential_epoch: None,
        }, later());
        "oauth.redeem" => |s| s.oauth.redeem(&hash(), &hash(), t0());
        "oauth.find_identity" => |s| s.oauth.find_identity("https://accounts.google.com", "outage");
        "oauth.identities_of" => |s| s.oauth.identities_of(&uid());
        "oauth.link_identity" => |s| s.oauth.link_identity(&fixtures::oauth_identity(&uid(), "google", "https://accounts.google.com", "outage"));
        "oauth.create_user_with_identity" => |s| s.oauth.create_user_with_identity(
            fixtures::new_user("outage-oauth@example.com"),
            &fixtures::oauth_identity(&uid(), "google", "https://accounts.google.com", "outage"),
        );
        "oauth.unlink_identity" => |s| s.oauth.unlink_identity(&uid(), "google");
        "oauth.touch_identity" => |s| s.oauth.touch_identity("https://accounts.google.com", "outage", t0());
        "oauth.purge_expired" => |s| s.oauth.purge_expired(t0());
        "audit.append" => |s| s.audit.append(&[fixtures::audit_entry("login_failed", t0())]);
        "audit.query" => |s| s.audit.query(&AuditQuery::default());
        "audit.purge_before" => |s| s.audit.purge_before(t0());
        "invites.create" => |s| s.invites.create(fixtures::invite(&hash(), Some("outage@example.com"), later()));
        "invites.list" => |s| s.invites.list(true, 10, t0());
        "invites.revoke" => |s| s.invites.revoke(&InviteId::generate(), t0());
        "invites.redeem" => |s| s.invites.redeem(&hash(), &email(), t0());
        "invites.release" => |s| s.invites.release(&InviteId::generate(), &email());
        "invites.purge_expired" => |s| s.invites.purge_expired(t0());
        "health.ping" => |s| s.health.ping();
        "health.schema_is_current" => |s| s.health.schema_is_current();
    }
    calls
}
