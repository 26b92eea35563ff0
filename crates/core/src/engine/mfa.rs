//! Second factors: TOTP enrolment and removal, backup codes, and the
//! sign-in challenge that stands between a right password and a session.
//!
//! Every code presented — at `/login/mfa-confirm`, in a one-step `/login`,
//! or to confirm an authenticator — runs the [`Challenge`] machine
//! (`flows/mfa.rs`) through [`drive`]: the store counts the attempt, the
//! code is checked ([`ChallengeRunner`]'s `CheckCode`), a right one spends
//! the challenge, and a sign-in reaches a session only through the gate's
//! [`Cleared`](crate::flows::gate::Cleared). What each factor's check
//! means:
//!
//! - **TOTP**: the code verifies against the sealed secret at `now` (±1
//!   step) *and* the store accepts that step as later than any accepted
//!   before (`MfaStore::accept_totp_step`), so a code works once, across
//!   every instance sharing the database;
//! - **backup code**: the store deletes it as it is used
//!   (`MfaStore::spend_backup_code`), so it works once;
//! - **SMS**: the code's digest, bound to the challenge, matches the one
//!   the challenge was opened with (the challenge is spent on success, so
//!   the code works once). SMS delivery lands with the SMS routes.

use regstack_ports::{
    ChallengeAttempt, ChallengeKind, Factors, LockoutKey, MfaChallenge, SessionId, Timestamp, User,
    UserId,
};
use secrecy::{ExposeSecret, SecretString};

use super::{seconds_until, secs, ClientContext, Engine};
use crate::error::AuthError;
use crate::events::EventKind;
use crate::factors::{looks_like, totp, CodeShape, TotpSecret};
use crate::flows::gate::SecondFactor;
use crate::flows::mfa::{
    Challenge, ChallengeEffect, ChallengeEvent, ChallengePurpose, CodeCheck, Counting,
};
use crate::flows::{drive, Effects};
use crate::mail::MailKind;
use crate::tokens;

use super::sign_in::SignedIn;

/// Which factor a presented code is for, when the client says so
/// (`method` in `/login/mfa-confirm`); otherwise it is inferred from the
/// code's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// An authenticator app's code.
    Totp,
    /// A code sent by SMS.
    Sms,
    /// A backup code.
    BackupCode,
}

impl Method {
    /// The wire name (`methods`, `delivery`, `method`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Sms => "sms",
            Self::BackupCode => "backup_code",
        }
    }

    /// Reads a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Totp, Self::Sms, Self::BackupCode]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// A second-factor code as presented, with the method if the client named
/// it.
#[derive(Debug)]
pub struct PresentedCode {
    /// The code (never logged).
    pub code: SecretString,
    /// The method, when named.
    pub method: Option<Method>,
}

/// `/login`'s answer when a second factor is due: no session yet.
#[derive(Debug)]
pub struct MfaPending {
    /// Identifies the challenge at `/login/mfa-confirm`; 256 random bits,
    /// stored only as a hash.
    pub mfa_pending_token: SecretString,
    /// Seconds until it dies.
    pub expires_in: u64,
    /// Where the code comes from (`totp` when the account has an
    /// authenticator, else `sms`): regstack's `delivery`.
    pub delivery: Method,
    /// Every factor the account can answer with.
    pub methods: Vec<Method>,
}

/// The outcome of a password sign-in.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Every factor checked: a session.
    SignedIn(Box<SignedIn>),
    /// The password was right; a second factor is due.
    MfaRequired(MfaPending),
    /// The password was right; the account must set a new one first.
    PasswordChangeRequired(super::forced_change::PasswordChangePending),
}

impl LoginOutcome {
    /// The session, or what stands before one.
    pub fn into_session(self) -> Result<SignedIn, Self> {
        match self {
            Self::SignedIn(s) => Ok(*s),
            other => Err(other),
        }
    }
}

/// `/totp/setup`'s answer: what the authenticator app needs, shown once.
#[derive(Debug)]
pub struct TotpSetup {
    /// The shared secret in base32, for manual entry.
    pub secret: SecretString,
    /// The `otpauth://` URI the QR code encodes.
    pub otpauth_uri: SecretString,
    /// The QR code as an SVG document.
    pub qr_svg: SecretString,
    /// Identifies this setup at `/totp/confirm`.
    pub pending_token: SecretString,
    /// Seconds until it dies.
    pub expires_in: u64,
}

/// Backup codes to show once.
#[derive(Debug)]
pub struct BackupCodes(pub Vec<SecretString>);

/// Runs one presented code through the [`Challenge`] machine.
pub(super) struct ChallengeRunner<'a> {
    engine: &'a Engine,
    /// The challenge named by the presented pending token.
    id: &'a regstack_ports::TokenHash,
    /// The kind the route expects; another kind is no challenge here.
    kind: ChallengeKind,
    /// For enrolment: the caller, whose challenge it must be.
    owner: Option<&'a UserId>,
    code: &'a PresentedCode,
    client: &'a ClientContext,
    now: Timestamp,
}

impl<'a> ChallengeRunner<'a> {
    /// A run of `code` against the challenge `id`, which must be of `kind`
    /// (and, when `owner` is given, that user's).
    pub(super) fn new(
        engine: &'a Engine,
        id: &'a regstack_ports::TokenHash,
        kind: ChallengeKind,
        owner: Option<&'a UserId>,
        code: &'a PresentedCode,
        client: &'a ClientContext,
        now: Timestamp,
    ) -> Self {
        Self {
            engine,
            id,
            kind,
            owner,
            code,
            client,
            now,
        }
    }
}

impl Effects<Challenge<SignedIn>> for ChallengeRunner<'_> {
    async fn perform(
        &mut self,
        effect: ChallengeEffect,
    ) -> Result<Option<ChallengeEvent<SignedIn>>, AuthError> {
        let engine = self.engine;
        Ok(match effect {
            ChallengeEffect::Count => {
                let attempt = engine
                    .stores
                    .mfa
                    .attempt_challenge(self.id, self.now)
                    .await?;
                Some(ChallengeEvent::Counted(match attempt {
                    ChallengeAttempt::Counted(c)
                        if c.kind == self.kind && self.owner.is_none_or(|o| *o == c.user_id) =>
                    {
                        Counting::Counted(Box::new(c))
                    }
                    ChallengeAttempt::Counted(_) | ChallengeAttempt::Unknown => Counting::Unknown,
                    ChallengeAttempt::Exhausted => Counting::Exhausted,
                }))
            }
            ChallengeEffect::CheckCode(challenge) => Some(ChallengeEvent::CodeChecked(
                engine.check_code(&challenge, self.code, self.now).await?,
            )),
            ChallengeEffect::Finish => Some(ChallengeEvent::Finished(
                engine
                    .stores
                    .mfa
                    .finish_challenge(self.id, self.now)
                    .await?
                    .is_some(),
            )),
            ChallengeEffect::LoadUser(id) => Some(ChallengeEvent::Loaded(
                engine.stores.users.get(&id).await?.map(Box::new),
            )),
            ChallengeEffect::StartSession(cleared) => Some(ChallengeEvent::SessionStarted(
                engine.start_session(cleared, self.client).await?,
            )),
            ChallengeEffect::Emit(kind) => {
                engine.emit(kind, |e| {
                    e.user_id = self.owner.cloned();
                    e.ip.clone_from(&self.client.ip);
                });
                None
            }
        })
    }
}

/// A challenge just opened: the pending token for the client (shown
/// once; the store keeps its hash) and its lifetime.
pub(super) struct Opened {
    pub(super) token: SecretString,
    pub(super) expires_in: u64,
}

impl Engine {
    /// Opens a challenge of `kind` for `user` — the record read with its
    /// password, whose credential epoch the challenge carries — living
    /// `ttl_seconds` and superseding the user's others of that kind.
    /// `code` is the texted code to bind to it, if any; `payload` what an
    /// enrolment commits when it is met.
    pub(super) async fn open_challenge(
        &self,
        user: &User,
        kind: ChallengeKind,
        payload: Option<String>,
        code: Option<&SecretString>,
        ttl_seconds: u64,
    ) -> Result<Opened, AuthError> {
        let now = self.now();
        let token = tokens::issue();
        let expires_at = now + secs(ttl_seconds);
        self.stores
            .mfa
            .open_challenge(MfaChallenge {
                code_hash: code.map(|c| self.sms_codes.hash_secret(c, token.hash.as_str())),
                id: token.hash,
                user_id: user.id.clone(),
                kind,
                payload,
                attempts_left: self.cfg.mfa.sms_code_max_attempts,
                credential_epoch: user.tokens_invalidated_after,
                created_at: now,
                expires_at,
            })
            .await?;
        Ok(Opened {
            token: token.raw,
            expires_in: seconds_until(expires_at, now),
        })
    }

    /// Opens the sign-in challenge of an account whose password was right
    /// and which has a second factor. `user` is the record read with the
    /// password: the challenge carries its credential epoch.
    ///
    /// `text` is false when the request already carries the code (a
    /// one-step sign-in): an SMS account then gets no text — it would cost
    /// a message and a cap slot for a code nobody waits for.
    pub(super) async fn open_sign_in_challenge(
        &self,
        user: &User,
        text: bool,
    ) -> Result<MfaPending, AuthError> {
        let factors = self.stores.mfa.factors(&user.id).await?;
        let mut methods = available_methods(&factors);
        if factors.totp.is_none() && text {
            // The phone is the factor: text the code (unless SMS is off —
            // then the account cannot sign in, and must never without it).
            let Some(phone) = factors.phone_number.as_deref() else {
                return Err(AuthError::internal(
                    "second factor required but none enrolled",
                ));
            };
            if !self.cfg.mfa.enable_sms_2fa {
                tracing::warn!(user_id = %user.id, "sign-in refused: the account's second factor is SMS and enable_sms_2fa is off");
                return Err(AuthError::SmsDisabled);
            }
            let opened = self.text_sign_in_code(user, phone).await?;
            return Ok(MfaPending {
                mfa_pending_token: opened.token,
                expires_in: opened.expires_in,
                delivery: Method::Sms,
                methods,
            });
        }
        // An authenticator (or the code the request carries) answers; no
        // text is sent, so no SMS code exists.
        methods.retain(|m| *m != Method::Sms);
        let delivery = if factors.totp.is_some() {
            Method::Totp
        } else {
            Method::Sms
        };
        let opened = self
            .open_challenge(
                user,
                ChallengeKind::SignIn,
                None,
                None,
                self.cfg.mfa.mfa_pending_token_ttl_seconds,
            )
            .await?;
        Ok(MfaPending {
            mfa_pending_token: opened.token,
            expires_in: opened.expires_in,
            delivery,
            methods,
        })
    }

    /// `POST /login/mfa-confirm`: a code for a pending sign-in challenge.
    #[tracing::instrument(name = "flow", skip_all, fields(flow = "confirm_sign_in", user_id = tracing::field::Empty, session_id = tracing::field::Empty))]
    pub async fn confirm_sign_in(
        &self,
        pending_token: &SecretString,
        code: &PresentedCode,
        client: &ClientContext,
    ) -> Result<SignedIn, AuthError> {
        if pending_token.expose_secret().len() > tokens::MAX_TOKEN_CHARS {
            return Err(AuthError::MfaChallengeInvalid);
        }
        let id = tokens::hash_presented(pending_token);
        let now = self.now();
        let mut runner = ChallengeRunner {
            engine: self,
            id: &id,
            kind: ChallengeKind::SignIn,
            owner: None,
            code,
            client,
            now,
        };
        let end = drive(
            Challenge::Presented,
            ChallengeEvent::Presented,
            now,
            &ChallengePurpose::SignIn,
            &mut runner,
        )
        .await?;
        match end {
            Challenge::SignedIn(signed_in) => {
                // Signed in: the password's attempt, kept counted while the
                // factor was due, is forgotten, as any sign-in forgets its
                // address's failures.
                self.stores
                    .login_attempts
                    .clear(&LockoutKey::address(signed_in.user.email.clone()))
                    .await?;
                Ok(signed_in)
            }
            other => Err(challenge_error(other)),
        }
    }

    /// Checks a presented code for `challenge`'s account: which factor it
    /// proves, if any. Spends what must be spent to make the code single
    /// use (a backup code; a TOTP step).
    async fn check_code(
        &self,
        challenge: &MfaChallenge,
        presented: &PresentedCode,
        now: Timestamp,
    ) -> Result<CodeCheck, AuthError> {
        let code = presented.code.expose_secret();
        let user = &challenge.user_id;
        let method = match (presented.method, looks_like(code)) {
            (Some(m), _) => m,
            (None, Some(CodeShape::BackupCode)) => Method::BackupCode,
            (None, Some(CodeShape::Digits)) if challenge.code_hash.is_some() => Method::Sms,
            (None, Some(CodeShape::Digits)) => Method::Totp,
            (None, None) => return Ok(CodeCheck::Wrong),
        };
        Ok(match method {
            Method::BackupCode => {
                // Enrolment is proven by the new factor itself, never by a
                // backup code.
                if challenge.kind != ChallengeKind::SignIn {
                    return Ok(CodeCheck::Wrong);
                }
                // The current key's digest, then those of the secrets a
                // rotation moved to `jwt_previous_secrets`.
                let hashers = std::iter::once(&*self.backup_codes)
                    .chain(self.previous_factor_keys.iter().map(|(_, h)| h));
                for hasher in hashers {
                    if let Some(hash) = hasher.hash(code) {
                        if self.stores.mfa.spend_backup_code(user, &hash).await? {
                            return Ok(CodeCheck::Right(SecondFactor::BackupCode));
                        }
                    }
                }
                CodeCheck::Wrong
            }
            Method::Sms => match &challenge.code_hash {
                Some(stored) if self.sms_codes.verify(code, challenge.id.as_str(), stored) => {
                    CodeCheck::Right(SecondFactor::Sms)
                }
                _ => CodeCheck::Wrong,
            },
            Method::Totp => {
                let sealed = match challenge.kind {
                    // Enrolment: the secret being enrolled.
                    ChallengeKind::TotpEnrolment => challenge.payload.clone(),
                    _ => self
                        .stores
                        .mfa
                        .factors(user)
                        .await?
                        .totp
                        .map(|t| t.sealed_secret),
                };
                let Some(sealed) = sealed else {
                    return Ok(CodeCheck::Wrong);
                };
                let secret = self.open_sealed(&sealed, user)?;
                let Some(step) = secret.verify(code, now) else {
                    return Ok(CodeCheck::Wrong);
                };
                // A sign-in code works once: the store accepts each step
                // once, and never one at or before the last accepted. (An
                // enrolment code is recorded when the factor is enabled.)
                if challenge.kind == ChallengeKind::TotpEnrolment
                    || self
                        .stores
                        .mfa
                        .accept_totp_step(user, step.counter())
                        .await?
                {
                    CodeCheck::Right(SecondFactor::Totp)
                } else {
                    CodeCheck::Wrong
                }
            }
        })
    }

    /// `POST /totp/setup`: after the current password, a new secret to add
    /// to an authenticator app, pending until a first code confirms it.
    pub async fn totp_setup(
        &self,
        user: &User,
        current_password: &SecretString,
    ) -> Result<TotpSetup, AuthError> {
        self.require_current_password(user, current_password)
            .await?;
        let secret = TotpSecret::generate();
        let sealed = self
            .sealer
            .seal(&secret, &user.id)
            .map_err(AuthError::internal)?;
        let issuer = self.cfg.app_name.as_str();
        let otpauth_uri = secret
            .otpauth_uri(issuer, user.email.as_str())
            .map_err(AuthError::internal)?;
        let qr_svg = totp::qr_svg(&otpauth_uri).map_err(AuthError::internal)?;
        let opened = self
            .open_challenge(
                user,
                ChallengeKind::TotpEnrolment,
                Some(sealed),
                None,
                self.cfg.mfa.mfa_pending_token_ttl_seconds,
            )
            .await?;
        Ok(TotpSetup {
            secret: secret.to_base32(),
            otpauth_uri,
            qr_svg,
            pending_token: opened.token,
            expires_in: opened.expires_in,
        })
    }

    /// `POST /totp/confirm`: the first code from the authenticator enables
    /// the factor. Answers the backup codes, shown once; every other
    /// session of the account ends.
    pub async fn totp_confirm(
        &self,
        user: &User,
        session: &SessionId,
        pending_token: &SecretString,
        code: &SecretString,
        client: &ClientContext,
    ) -> Result<BackupCodes, AuthError> {
        if pending_token.expose_secret().len() > tokens::MAX_TOKEN_CHARS {
            return Err(AuthError::MfaSetupInvalid);
        }
        let id = tokens::hash_presented(pending_token);
        let now = self.now();
        let presented = PresentedCode {
            code: code.clone(),
            method: Some(Method::Totp),
        };
        let mut runner = ChallengeRunner {
            engine: self,
            id: &id,
            kind: ChallengeKind::TotpEnrolment,
            owner: Some(&user.id),
            code: &presented,
            client,
            now,
        };
        let end = drive(
            Challenge::Presented,
            ChallengeEvent::Presented,
            now,
            &ChallengePurpose::Enrolment,
            &mut runner,
        )
        .await?;
        let Challenge::Confirmed { challenge, .. } = end else {
            return Err(match end {
                Challenge::Wrong { remaining } => AuthError::WrongMfaCode { remaining },
                _ => AuthError::MfaSetupInvalid,
            });
        };
        let Some(sealed) = challenge.payload.as_deref() else {
            return Err(AuthError::internal("TOTP enrolment without a secret"));
        };
        self.enrolment_owner(&challenge).await?;
        let issued = self.backup_codes.generate();
        if !self
            .stores
            .mfa
            .enable_totp(&user.id, sealed, &issued.hashes, Some(session), now)
            .await?
        {
            return Err(AuthError::MfaSetupInvalid);
        }
        // The confirming code's step counts as accepted: it cannot sign in
        // a second time.
        if let Some(step) = self
            .open_sealed(sealed, &user.id)
            .ok()
            .and_then(|s| s.verify(code.expose_secret(), now))
        {
            self.stores
                .mfa
                .accept_totp_step(&user.id, step.counter())
                .await?;
        }
        self.emit_for(EventKind::MfaFactorEnabled, user, client);
        Ok(BackupCodes(issued.codes))
    }

    /// `DELETE /totp`: after the current password, the authenticator no
    /// longer signs in; every other session of the account ends.
    pub async fn totp_disable(
        &self,
        user: &User,
        session: &SessionId,
        current_password: &SecretString,
        client: &ClientContext,
    ) -> Result<(), AuthError> {
        self.require_current_password(user, current_password)
            .await?;
        if !self
            .stores
            .mfa
            .disable_totp(&user.id, Some(session), self.now())
            .await?
        {
            return Err(AuthError::TotpNotEnabled);
        }
        self.emit_for(EventKind::MfaFactorDisabled, user, client);
        self.notify(MailKind::MfaDisabled, user, Some(client)).await;
        Ok(())
    }

    /// `POST /mfa/backup-codes`: after the current password, a new set of
    /// backup codes; the old ones stop working at once.
    pub async fn regenerate_backup_codes(
        &self,
        user: &User,
        current_password: &SecretString,
    ) -> Result<BackupCodes, AuthError> {
        self.require_current_password(user, current_password)
            .await?;
        let factors = self.stores.mfa.factors(&user.id).await?;
        if factors.totp.is_none() && factors.phone_number.is_none() {
            return Err(AuthError::NoSecondFactor);
        }
        let issued = self.backup_codes.generate();
        if !self
            .stores
            .mfa
            .replace_backup_codes(&user.id, &issued.hashes, self.now())
            .await?
        {
            return Err(AuthError::NoSecondFactor);
        }
        Ok(BackupCodes(issued.codes))
    }
}

impl Engine {
    /// The account a met enrolment challenge belongs to, if it is still
    /// the one that opened it: active, and with the credential epoch it had
    /// then. A password change or reset in between (which ends every
    /// session) must not let a factor chosen before it be committed after.
    pub(super) async fn enrolment_owner(
        &self,
        challenge: &MfaChallenge,
    ) -> Result<User, AuthError> {
        match self.stores.users.get(&challenge.user_id).await? {
            Some(user)
                if user.is_active_at(self.now())
                    && user.tokens_invalidated_after == challenge.credential_epoch =>
            {
                Ok(user)
            }
            _ => Err(AuthError::MfaSetupInvalid),
        }
    }

    /// Opens a sealed TOTP secret with the current key, or one of a secret
    /// a rotation moved to `jwt_previous_secrets`.
    fn open_sealed(&self, sealed: &str, user: &UserId) -> Result<TotpSecret, AuthError> {
        let previous = self.previous_factor_keys.iter().map(|(s, _)| s);
        let mut last = None;
        for sealer in std::iter::once(&*self.sealer).chain(previous) {
            match sealer.open(sealed, user) {
                Ok(secret) => return Ok(secret),
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || AuthError::internal("no key to open a TOTP secret"),
            AuthError::internal,
        ))
    }
}

/// The factors a sign-in challenge can be answered with.
fn available_methods(factors: &Factors) -> Vec<Method> {
    let mut methods = Vec::new();
    if factors.totp.is_some() {
        methods.push(Method::Totp);
    }
    if factors.phone_number.is_some() {
        methods.push(Method::Sms);
    }
    if factors.backup_codes_left > 0 {
        methods.push(Method::BackupCode);
    }
    methods
}

/// The answer to a challenge run that did not sign in.
fn challenge_error(end: Challenge<SignedIn>) -> AuthError {
    match end {
        Challenge::Wrong { remaining } => AuthError::WrongMfaCode { remaining },
        Challenge::Exhausted | Challenge::Expired => AuthError::MfaChallengeInvalid,
        _ => AuthError::internal("second-factor challenge did not finish"),
    }
}
