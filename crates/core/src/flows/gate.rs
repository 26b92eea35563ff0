//! The MFA gate: the one door to a session.
//!
//! A session starts only from a [`Cleared`] value
//! ([`Engine::start_session`](crate::engine::Engine::start_session) takes
//! nothing else), and a `Cleared` exists only where `Cleared::check` found
//! every factor the account requires proven in the run that asks for it.
//! Its fields are private and its constructor is visible only to the flow
//! machines, so host code, the HTTP layer, OAuth sign-in and anything added
//! later cannot start a session for an account whose second factor was not
//! checked — not by forgetting a check, which is how MFA bypasses through
//! side paths happen, but because the program would not compile:
//!
//! ```compile_fail,E0451
//! // Outside `core`, a `Cleared` cannot be built from its fields …
//! use regstack_core::flows::gate::{Cleared, FirstFactor};
//! fn forge(user: regstack_ports::User) -> Cleared {
//!     Cleared { user: Box::new(user), first: FirstFactor::Password, second: None }
//! }
//! ```
//!
//! ```compile_fail,E0624
//! // … nor through its checking constructor.
//! use regstack_core::flows::gate::{Cleared, FirstFactor};
//! fn forge(user: regstack_ports::User) -> Option<Cleared> {
//!     Cleared::check(Box::new(user), FirstFactor::Password, None).ok()
//! }
//! ```
//!
//! ```
//! // While the type itself is public: reading one is fine.
//! use regstack_core::flows::gate::Cleared;
//! fn who(cleared: &Cleared) -> &str {
//!     cleared.user().email.as_str()
//! }
//! ```
//!
//! What an account requires is read from the record the first factor was
//! checked against, so the requirement and the proof come from the same
//! read: a new password first when `must_change_password` is set (no
//! factor clears an account that must change it — the forced change ends
//! with the store clearing the flag, and the gate is asked again; it holds
//! up the password only, so an OAuth sign-in passes it), then a second
//! factor when `is_mfa_enabled` (a TOTP factor or a phone) — on every first
//! factor, OAuth included, unless the operator waived it for OAuth.

use regstack_ports::User;

/// How the run proved who the user is before any second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstFactor {
    /// The account's password, checked by the sign-in machine.
    Password,
    /// An identity linked to the account, vouched for by its provider at an
    /// OAuth callback and redeemed at the exchange by the browser that
    /// started the flow.
    OAuth {
        /// The operator turned `enforce_mfa_on_oauth_signin` off: the
        /// provider's sign-in stands in for the second factor. Off by
        /// default; an explicit, named waiver rather than a path that
        /// forgot to ask.
        second_factor_waived: bool,
    },
}

impl FirstFactor {
    /// Whether this first factor is the password a forced change is about.
    /// `must_change_password` concerns the password: an OAuth sign-in does
    /// not present it, so it is not held up by the flag (the password stays
    /// unusable until changed).
    fn uses_password(self) -> bool {
        matches!(self, Self::Password)
    }

    fn waives_second_factor(self) -> bool {
        matches!(
            self,
            Self::OAuth {
                second_factor_waived: true
            }
        )
    }
}

/// A second factor the run checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    /// An RFC 6238 code, at a time step not accepted before.
    Totp,
    /// A code sent by SMS to the enrolled phone.
    Sms,
    /// One of the account's single-use backup codes.
    BackupCode,
}

/// What a run has not proven yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// The account must set a new password before anything else
    /// (`must_change_password`).
    PasswordChange,
    /// The account has a second factor and none was checked.
    SecondFactor,
}

/// Proof that every factor the account requires was checked in this run:
/// the only value a session can be started from.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleared {
    user: Box<User>,
    first: FirstFactor,
    second: Option<SecondFactor>,
}

impl Cleared {
    /// The gate's check: `user` (as read with the first factor) cleared by
    /// `first` and `second`, or what is still missing. Visible only to the
    /// flow machines, which call it with what their run proved.
    pub(in crate::flows) fn check(
        user: Box<User>,
        first: FirstFactor,
        second: Option<SecondFactor>,
    ) -> Result<Self, Missing> {
        if user.must_change_password && first.uses_password() {
            return Err(Missing::PasswordChange);
        }
        if user.is_mfa_enabled && second.is_none() && !first.waives_second_factor() {
            return Err(Missing::SecondFactor);
        }
        Ok(Self {
            user,
            first,
            second,
        })
    }

    /// The account, as read together with the first factor: its
    /// `tokens_invalidated_after` is the credential epoch the session is
    /// bound to.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// How the run proved who the user is.
    pub fn first_factor(&self) -> FirstFactor {
        self.first
    }

    /// The second factor checked, if the account has one.
    pub fn second_factor(&self) -> Option<SecondFactor> {
        self.second
    }

    /// Gives the account up; the proof is consumed with it.
    pub fn into_user(self) -> User {
        *self.user
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeDelta};
    use regstack_ports::{Email, UserId};

    fn user(mfa: bool) -> Box<User> {
        let now = DateTime::UNIX_EPOCH + TimeDelta::days(20_000);
        Box::new(User {
            id: UserId::generate(),
            email: Email::parse("gate@example.com").unwrap(),
            password_hash: None,
            is_active: true,
            is_verified: true,
            is_superuser: false,
            full_name: None,
            phone_number: None,
            is_mfa_enabled: mfa,
            created_at: now,
            updated_at: now,
            last_login: None,
            tokens_invalidated_after: None,
            disabled_reason: None,
            disabled_until: None,
            must_change_password: false,
        })
    }

    #[test]
    fn an_account_with_a_second_factor_is_not_cleared_by_its_password_alone() {
        assert_eq!(
            Cleared::check(user(true), FirstFactor::Password, None),
            Err(Missing::SecondFactor)
        );
        for second in [
            SecondFactor::Totp,
            SecondFactor::Sms,
            SecondFactor::BackupCode,
        ] {
            let cleared = Cleared::check(user(true), FirstFactor::Password, Some(second)).unwrap();
            assert_eq!(cleared.second_factor(), Some(second));
        }
    }

    #[test]
    fn an_account_that_must_change_its_password_is_cleared_by_nothing_else() {
        for mfa in [false, true] {
            let mut u = user(mfa);
            u.must_change_password = true;
            for second in [None, Some(SecondFactor::Totp)] {
                assert_eq!(
                    Cleared::check(u.clone(), FirstFactor::Password, second),
                    Err(Missing::PasswordChange)
                );
            }
        }
    }

    #[test]
    fn an_oauth_sign_in_asks_for_the_second_factor_unless_the_operator_waived_it() {
        let strict = FirstFactor::OAuth {
            second_factor_waived: false,
        };
        assert_eq!(
            Cleared::check(user(true), strict, None),
            Err(Missing::SecondFactor)
        );
        assert!(Cleared::check(user(true), strict, Some(SecondFactor::Totp)).is_ok());
        let waived = FirstFactor::OAuth {
            second_factor_waived: true,
        };
        assert!(Cleared::check(user(true), waived, None).is_ok());
    }

    #[test]
    fn a_forced_password_change_holds_up_the_password_not_an_oauth_sign_in() {
        let mut u = user(false);
        u.must_change_password = true;
        let oauth = FirstFactor::OAuth {
            second_factor_waived: false,
        };
        assert!(Cleared::check(u.clone(), oauth, None).is_ok());
        u.is_mfa_enabled = true;
        assert_eq!(Cleared::check(u, oauth, None), Err(Missing::SecondFactor));
    }

    #[test]
    fn an_account_without_one_is_cleared_by_its_password() {
        let u = user(false);
        let cleared = Cleared::check(u.clone(), FirstFactor::Password, None).unwrap();
        assert_eq!(cleared.first_factor(), FirstFactor::Password);
        assert_eq!(cleared.into_user(), *u);
    }
}
