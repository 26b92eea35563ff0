//! What the SES and SNS transports share: where their credentials come
//! from ([`AwsCredentials`]), SigV4 signing, and reading AWS's error
//! answers.
//!
//! Signing is AWS's own `aws-sigv4` crate: hand-written request signing is
//! easy to get subtly wrong (canonical header order, encoding, the session
//! token), and a wrong signature fails only in production.
//!
//! Credentials are resolved once, when the transport is built, so a
//! missing key stops start-up rather than the first message. What is
//! supported is what needs no AWS SDK: explicit keys; the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`);
//! and static keys in a profile of the shared files (`~/.aws/credentials`,
//! then `~/.aws/config`, or `AWS_SHARED_CREDENTIALS_FILE` /
//! `AWS_CONFIG_FILE`). Instance and container roles, SSO, `role_arn` and
//! `credential_process` are not: such a set-up is refused at start-up with
//! a message saying so. Temporary credentials therefore last as long as
//! the process does not outlive them; rotate by restarting.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use regstack_ports::NotifyError;
use secrecy::{ExposeSecret, SecretString};

use crate::http::{short, TransportConfigError};

/// Where an AWS transport takes its credentials from.
#[derive(Clone, Default)]
pub enum AwsCredentials {
    /// These keys (`email.ses_access_key_id`, `email.ses_secret_access_key`):
    /// for a host that loads them from its own secret store.
    Static {
        /// Access key id.
        access_key_id: SecretString,
        /// Secret access key.
        secret_access_key: SecretString,
        /// Session token, for temporary credentials.
        session_token: Option<SecretString>,
    },
    /// Static keys in this profile of the shared credentials or config file
    /// (`email.ses_profile`).
    Profile(String),
    /// The environment's `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// (and `AWS_SESSION_TOKEN`), else the profile `AWS_PROFILE` names (or
    /// `default`) — the part of the AWS default chain that needs no SDK.
    #[default]
    Default,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static { .. } => f.write_str("Static([redacted])"),
            Self::Profile(name) => f.debug_tuple("Profile").field(name).finish(),
            Self::Default => f.write_str("Default"),
        }
    }
}

/// Why no credentials could be found; the transport names its own key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredentialError {
    /// A key pair with one half empty.
    Incomplete(&'static str),
    /// The profile is unusable; the text says why.
    Profile(String),
    /// Nothing in the default chain.
    NotFound,
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Incomplete(which) => write!(f, "{which} must be set together"),
            Self::Profile(reason) => f.write_str(reason),
            Self::NotFound => f.write_str(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 or static keys in a profile of ~/.aws/credentials (instance roles, SSO, \
                 role_arn and credential_process are not supported)",
            ),
        }
    }
}

/// How the process environment is read; a parameter so tests need not
/// change the real one.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl AwsCredentials {
    /// Resolves against the real environment and files.
    pub(crate) fn resolve(&self) -> Result<Credentials, CredentialError> {
        self.resolve_with(&process_env)
    }

    pub(crate) fn resolve_with(&self, env: Env<'_>) -> Result<Credentials, CredentialError> {
        match self {
            Self::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                let id = access_key_id.expose_secret().trim();
                let secret = secret_access_key.expose_secret().trim();
                if id.is_empty() || secret.is_empty() {
                    return Err(CredentialError::Incomplete(
                        "the access key id and the secret access key",
                    ));
                }
                Ok(credentials(
                    id,
                    secret,
                    session_token.as_ref().map(|t| t.expose_secret().to_owned()),
                ))
            }
            Self::Profile(name) => from_profile(name, env)?.ok_or_else(|| {
                CredentialError::Profile(format!(
                    "AWS profile {name:?} is in neither {} nor {}",
                    credentials_file(env).display(),
                    config_file(env).display()
                ))
            }),
            Self::Default => {
                let id = env("AWS_ACCESS_KEY_ID");
                let secret = env("AWS_SECRET_ACCESS_KEY");
                match (id, secret) {
                    (Some(id), Some(secret)) => {
                        return Ok(credentials(&id, &secret, env("AWS_SESSION_TOKEN")));
                    }
                    (None, None) => {}
                    _ => {
                        return Err(CredentialError::Incomplete(
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                        ))
                    }
                }
                let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
                from_profile(&profile, env)?.ok_or(CredentialError::NotFound)
            }
        }
    }
}

fn credentials(id: &str, secret: &str, session_token: Option<String>) -> Credentials {
    Credentials::new(id, secret, session_token, None, "regstack")
}

fn home(env: Env<'_>) -> PathBuf {
    env("HOME")
        .or_else(|| env("USERPROFILE"))
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn credentials_file(env: Env<'_>) -> PathBuf {
    env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".aws").join("credentials"))
}

fn config_file(env: Env<'_>) -> PathBuf {
    env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home(env).join(".aws").join("config"))
}

/// Static keys of `profile`: the credentials file first (it wins in every
/// AWS SDK), then the config file (`[profile name]`, or `[default]`).
/// `Ok(None)` when neither file has the profile.
fn from_profile(profile: &str, env: Env<'_>) -> Result<Option<Credentials>, CredentialError> {
    let sources = [
        (credentials_file(env), profile.to_owned()),
        (
            config_file(env),
            if profile == "default" {
                "default".to_owned()
            } else {
                format!("profile {profile}")
            },
        ),
    ];
    for (path, section) in sources {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(CredentialError::Profile(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        let Some(keys) = ini_section(&text, &section) else {
            continue;
        };
        let get = |name: &str| {
            keys.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(id), Some(secret)) => {
                return Ok(Some(credentials(&id, &secret, get("aws_session_token"))));
            }
            (None, None) => {}
            _ => {
                return Err(CredentialError::Profile(format!(
                    "AWS profile {profile:?} in {} has only one of aws_access_key_id and \
                     aws_secret_access_key",
                    path.display()
                )))
            }
        }
        let unsupported = [
            "role_arn",
            "credential_process",
            "sso_session",
            "sso_start_url",
            "web_identity_token_file",
        ];
        if let Some(what) = unsupported.iter().find(|k| get(k).is_some()) {
            return Err(CredentialError::Profile(format!(
                "AWS profile {profile:?} in {} uses {what}, which this version does not \
                 support; give the profile aws_access_key_id and aws_secret_access_key",
                path.display()
            )));
        }
    }
    Ok(None)
}

/// The `key = value` pairs of `[section]` in an INI text, or `None` when
/// the section is absent. Enough for the AWS shared files: comments start
/// with `#` or `;`, section names are compared after trimming.
fn ini_section(text: &str, section: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = false;
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            found |= inside;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                keys.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
    }
    found.then_some(keys)
}

/// Signs requests to one service in one region.
#[derive(Clone)]
pub(crate) struct Signer {
    region: String,
    service: &'static str,
    credentials: Credentials,
}

impl Signer {
    pub(crate) fn new(region: &str, service: &'static str, credentials: Credentials) -> Self {
        Self {
            region: region.to_owned(),
            service,
            credentials,
        }
    }

    /// The headers (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials) that make this
    /// request valid. `headers` are the ones the request will carry and
    /// that the signature should cover; the host is taken from `url`, as
    /// the HTTP client will send it.
    pub(crate) fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, NotifyError> {
        let failed = |e: &dyn fmt::Display| {
            NotifyError::Delivery(format!("{}: signing the request failed: {e}", self.service))
        };
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| failed(&e))?;
        let (instructions, _signature) =
            sign(request, &params).map_err(|e| failed(&e))?.into_parts();
        let (signed, _query) = instructions.into_parts();
        Ok(signed
            .iter()
            .map(|h| (h.name(), h.value().to_owned()))
            .collect())
    }
}

/// A region goes into a host name: lower-case letters, digits and dashes.
pub(crate) fn check_region(key: &'static str, raw: &str) -> Result<String, TransportConfigError> {
    let region = raw.trim();
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(TransportConfigError::new(
            key,
            format!("{raw:?} is not an AWS region (e.g. \"eu-west-1\")"),
        ));
    }
    Ok(region.to_owned())
}

/// Error codes that mean "too much, slow down": transient whatever the
/// status says (the query API answers `Throttling` with a 400).
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "KMSThrottlingException",
];

/// Error codes that blame our credentials or account, not the message:
/// the same message can go through once the operator fixes them.
const NOT_THE_MESSAGE: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "AccountSuspendedException",
    "SendingPausedException",
    "RequestExpired",
];

/// Turns an AWS error answer into a [`NotifyError`]: a 4xx whose code is
/// neither throttling nor about our credentials is the message's fault
/// ([`NotifyError::Rejected`]); everything else may pass later.
pub(crate) fn classify(
    provider: &'static str,
    status: u16,
    code: Option<&str>,
    reason: &str,
    body: &str,
) -> NotifyError {
    let reason = short(reason, body);
    let code = code.map(str::trim).filter(|c| !c.is_empty());
    let shown = code.unwrap_or("no error code");
    if status == 429 || code.is_some_and(|c| THROTTLED.contains(&c)) {
        return NotifyError::Delivery(format!(
            "{provider}: throttled ({status} {shown}): {reason}"
        ));
    }
    if status == 401 || status == 403 || code.is_some_and(|c| NOT_THE_MESSAGE.contains(&c)) {
        return NotifyError::Delivery(format!(
            "{provider}: credentials or account refused ({status} {shown}): {reason}"
        ));
    }
    match (status, code) {
        (400..=499, Some(code)) => NotifyError::Rejected {
            provider,
            code: code.to_owned(),
            reason,
        },
        _ => NotifyError::Delivery(format!("{provider}: failed ({status} {shown}): {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn files(credentials: &str, config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".aws")).unwrap();
        std::fs::write(dir.path().join(".aws/credentials"), credentials).unwrap();
        std::fs::write(dir.path().join(".aws/config"), config).unwrap();
        dir
    }

    #[test]
    fn the_environment_comes_first_in_the_default_chain() {
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
            ("AWS_SESSION_TOKEN", "env-token"),
            ("HOME", "/nonexistent"),
        ]);
        let c = AwsCredentials::Default.resolve_with(&env).unwrap();
        assert_eq!(c.access_key_id(), "AKIDENV");
        assert_eq!(c.secret_access_key(), "env-secret");
        assert_eq!(c.session_token(), Some("env-token"));
    }

    #[test]
    fn half_a_pair_in_the_environment_is_an_error_not_a_fallthrough() {
        let env = env_of(&[("AWS_ACCESS_KEY_ID", "AKIDENV"), ("HOME", "/nonexistent")]);
        assert!(matches!(
            AwsCredentials::Default.resolve_with(&env),
            Err(CredentialError::Incomplete(_))
        ));
    }

    #[test]
    fn the_default_chain_falls_back_to_the_named_or_default_profile() {
        let dir = files(
            "[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key = def-secret\n\
             # a comment\n[work]\naws_access_key_id=AKIDWORK\naws_secret_access_key=work-secret\n",
            "",
        );
        let home = dir.path().to_str().unwrap();
        let c = AwsCredentials::Default
            .resolve_with(&env_of(&[("HOME", home)]))
            .unwrap();
        assert_eq!(c.access_key_id(), "AKIDDEF");
        let c = AwsCredentials::Default
            .resolve_with(&env_of(&[("HOME", home), ("AWS_PROFILE", "work")]))
            .unwrap();
        assert_eq!(c.access_key_id(), "AKIDWORK");
        assert_eq!(c.session_token(), None);
    }

    #[test]
    fn a_named_profile_is_read_from_the_config_file_when_not_in_credentials() {
        let dir = files(
            "[other]\naws_access_key_id = A\naws_secret_access_key = B\n",
            "[profile mail]\nregion = eu-west-1\naws_access_key_id = AKIDCFG\n\
             aws_secret_access_key = cfg-secret\naws_session_token = cfg-token\n",
        );
        let env = env_of(&[("HOME", dir.path().to_str().unwrap())]);
        let c = AwsCredentials::Profile("mail".into())
            .resolve_with(&env)
            .unwrap();
        assert_eq!(c.access_key_id(), "AKIDCFG");
        assert_eq!(c.session_token(), Some("cfg-token"));
    }

    #[test]
    fn profiles_the_sdk_alone_could_use_are_refused_saying_why() {
        let dir = files(
            "",
            "[profile sso]\nsso_session = corp\n[profile role]\nrole_arn = arn:aws:iam::1:role/x\n",
        );
        let env = env_of(&[("HOME", dir.path().to_str().unwrap())]);
        for (name, what) in [("sso", "sso_session"), ("role", "role_arn")] {
            let err = AwsCredentials::Profile(name.into())
                .resolve_with(&env)
                .unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
        }
        let err = AwsCredentials::Profile("missing".into())
            .resolve_with(&env)
            .unwrap_err();
        assert!(err.to_string().contains("\"missing\""), "{err}");
        let err = AwsCredentials::Default.resolve_with(&env).unwrap_err();
        assert_eq!(err, CredentialError::NotFound);
    }

    #[test]
    fn debug_never_shows_static_keys() {
        let c = AwsCredentials::Static {
            access_key_id: "AKIDSECRETISH".into(),
            secret_access_key: "very-secret-key".into(),
            session_token: Some("tok".into()),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("AKIDSECRETISH") && !shown.contains("very-secret-key"));
    }

    #[test]
    fn throttling_and_credential_codes_are_transient_other_4xx_permanent() {
        let permanent = classify("sns", 400, Some("InvalidParameter"), "bad number", "");
        assert!(permanent.is_permanent(), "{permanent}");
        for (status, code) in [
            (400, Some("Throttling")),
            (429, None),
            (403, Some("SignatureDoesNotMatch")),
            (400, Some("AccountSuspendedException")),
            (500, Some("InternalError")),
            (503, None),
            (400, None),
        ] {
            let e = classify("ses", status, code, "x", "");
            assert!(!e.is_permanent(), "{status} {code:?}: {e}");
        }
    }
}
