//! Composes transactional mail from templates (text + HTML + subject).
//!
//! Template names and variables are regstack's (`verification.txt`,
//! `password_reset.html`, `email_change.subject.txt`; `app_name`,
//! `full_name`, `url`, `ttl_minutes`, `ttl_hours`), so a regstack host's
//! override directory carries over. Overrides arrive as strings: reading
//! the directories is the caller's I/O, not core's. HTML templates are
//! auto-escaped; a user's name can never inject markup.

use std::collections::HashMap;

use minijinja::{context, Environment};
use regstack_ports::{Email, OutgoingMail};

/// Which mail to compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// Confirm a new account.
    Verification,
    /// Reset a password.
    PasswordReset,
    /// Confirm a new address.
    EmailChange,
    /// Tell an address's owner that someone tried to register it again
    /// (`uniform_registration`, EN-5). Its link carries no token: it leads
    /// to the forgot-password page.
    AccountExists,
    /// Tell an account's owner that an identity at another service was
    /// linked to it: a stolen session that links the thief's own account
    /// would otherwise keep a way in after the session is gone.
    OAuthLinked,
    /// Security notice (`notices.new_device`): a password sign-in from a
    /// device the account has not used recently.
    NewDevice,
    /// Security notice (`notices.password_changed`).
    PasswordChanged,
    /// Security notice (`notices.email_changed`) to the *old* address of a
    /// requested change, with the one-use link that revokes every session
    /// and blocks (or undoes) the change.
    EmailChangeNotice,
    /// Security notice (`notices.mfa_disabled`): a second factor removed.
    MfaDisabled,
    /// Security notice (`notices.refresh_reuse`): a session ended as stolen.
    RefreshReuse,
}

impl MailKind {
    /// Every kind, so that start-up renders each once.
    pub const ALL: [MailKind; 10] = [
        MailKind::Verification,
        MailKind::PasswordReset,
        MailKind::EmailChange,
        MailKind::AccountExists,
        MailKind::OAuthLinked,
        MailKind::NewDevice,
        MailKind::PasswordChanged,
        MailKind::EmailChangeNotice,
        MailKind::MfaDisabled,
        MailKind::RefreshReuse,
    ];
}

impl MailKind {
    /// The template stem.
    pub fn stem(self) -> &'static str {
        match self {
            Self::Verification => "verification",
            Self::PasswordReset => "password_reset",
            Self::EmailChange => "email_change",
            Self::AccountExists => "account_exists",
            Self::OAuthLinked => "oauth_linked",
            Self::NewDevice => "new_device",
            Self::PasswordChanged => "password_changed",
            Self::EmailChangeNotice => "email_change_notice",
            Self::MfaDisabled => "mfa_disabled",
            Self::RefreshReuse => "refresh_reuse",
        }
    }
}

const BUILTIN: [(&str, &str); 31] = [
    (
        "verification.subject.txt",
        include_str!("../templates/verification.subject.txt"),
    ),
    (
        "verification.txt",
        include_str!("../templates/verification.txt"),
    ),
    (
        "verification.html",
        include_str!("../templates/verification.html"),
    ),
    (
        "password_reset.subject.txt",
        include_str!("../templates/password_reset.subject.txt"),
    ),
    (
        "password_reset.txt",
        include_str!("../templates/password_reset.txt"),
    ),
    (
        "password_reset.html",
        include_str!("../templates/password_reset.html"),
    ),
    (
        "email_change.subject.txt",
        include_str!("../templates/email_change.subject.txt"),
    ),
    (
        "email_change.txt",
        include_str!("../templates/email_change.txt"),
    ),
    (
        "email_change.html",
        include_str!("../templates/email_change.html"),
    ),
    (
        "account_exists.subject.txt",
        include_str!("../templates/account_exists.subject.txt"),
    ),
    (
        "account_exists.txt",
        include_str!("../templates/account_exists.txt"),
    ),
    (
        "account_exists.html",
        include_str!("../templates/account_exists.html"),
    ),
    (
        "oauth_linked.subject.txt",
        include_str!("../templates/oauth_linked.subject.txt"),
    ),
    (
        "oauth_linked.txt",
        include_str!("../templates/oauth_linked.txt"),
    ),
    (
        "oauth_linked.html",
        include_str!("../templates/oauth_linked.html"),
    ),
    (
        "new_device.subject.txt",
        include_str!("../templates/new_device.subject.txt"),
    ),
    (
        "new_device.txt",
        include_str!("../templates/new_device.txt"),
    ),
    (
        "new_device.html",
        include_str!("../templates/new_device.html"),
    ),
    (
        "password_changed.subject.txt",
        include_str!("../templates/password_changed.subject.txt"),
    ),
    (
        "password_changed.txt",
        include_str!("../templates/password_changed.txt"),
    ),
    (
        "password_changed.html",
        include_str!("../templates/password_changed.html"),
    ),
    (
        "email_change_notice.subject.txt",
        include_str!("../templates/email_change_notice.subject.txt"),
    ),
    (
        "email_change_notice.txt",
        include_str!("../templates/email_change_notice.txt"),
    ),
    (
        "email_change_notice.html",
        include_str!("../templates/email_change_notice.html"),
    ),
    (
        "mfa_disabled.subject.txt",
        include_str!("../templates/mfa_disabled.subject.txt"),
    ),
    (
        "mfa_disabled.txt",
        include_str!("../templates/mfa_disabled.txt"),
    ),
    (
        "mfa_disabled.html",
        include_str!("../templates/mfa_disabled.html"),
    ),
    (
        "refresh_reuse.subject.txt",
        include_str!("../templates/refresh_reuse.subject.txt"),
    ),
    (
        "refresh_reuse.txt",
        include_str!("../templates/refresh_reuse.txt"),
    ),
    (
        "refresh_reuse.html",
        include_str!("../templates/refresh_reuse.html"),
    ),
    // Not mail, but a host overrides it the same way: regstack's text by
    // default (`app_name`, `code`, `ttl_minutes`).
    ("sms_code.txt", include_str!("../templates/sms_code.txt")),
];

/// The template names a host may override.
pub fn template_names() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(n, _)| *n)
}

/// A template failed to parse or render.
#[derive(Debug, thiserror::Error)]
#[error("mail template `{name}`: {reason}")]
pub struct TemplateError {
    /// Template name.
    pub name: String,
    /// What went wrong.
    pub reason: String,
}

/// Renders mail. Built once at start-up: a broken override is a start-up
/// error, not a failure at the first registration.
pub struct Composer {
    env: Environment<'static>,
    app_name: String,
}

impl std::fmt::Debug for Composer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composer")
            .field("app_name", &self.app_name)
            .finish_non_exhaustive()
    }
}

/// Values a mail needs besides the template.
#[derive(Debug, Clone)]
pub struct MailContext<'a> {
    /// Recipient.
    pub to: &'a Email,
    /// Recipient's display name.
    pub full_name: Option<&'a str>,
    /// The link, token included.
    pub url: &'a str,
    /// Link lifetime in seconds.
    pub ttl_seconds: u64,
    /// The client's IP, for a security notice (`ip`): what the owner needs
    /// to tell their own action from someone else's.
    pub ip: Option<&'a str>,
    /// The client's user agent, for a security notice (`user_agent`).
    /// Client-chosen text: escaped in HTML like every variable.
    pub user_agent: Option<&'a str>,
}

impl Composer {
    /// Builds a composer; `overrides` maps template names to sources.
    pub fn new(app_name: &str, overrides: HashMap<String, String>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        // Autoescape HTML by file name only; subjects and text stay verbatim.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        env.set_keep_trailing_newline(false);
        for (name, src) in BUILTIN {
            let src = overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| src.to_owned());
            env.add_template_owned(name.to_owned(), src)
                .map_err(|e| TemplateError {
                    name: name.into(),
                    reason: e.to_string(),
                })?;
        }
        let composer = Self {
            env,
            app_name: app_name.to_owned(),
        };
        // Render each kind once with sample values so a broken override
        // fails now, at start-up.
        let sample = Email::parse("sample@example.com").map_err(|e| TemplateError {
            name: "sample".into(),
            reason: e.to_string(),
        })?;
        composer.compose_sms_code("123456", 300)?;
        for kind in MailKind::ALL {
            composer.compose(
                kind,
                &MailContext {
                    to: &sample,
                    full_name: Some("Sample"),
                    url: "https://example.com/x",
                    ttl_seconds: 3600,
                    ip: Some("192.0.2.1"),
                    user_agent: Some("Sample/1.0"),
                },
            )?;
        }
        Ok(composer)
    }

    /// The text message carrying a second-factor code (`sms_code.txt`).
    pub fn compose_sms_code(&self, code: &str, ttl_seconds: u64) -> Result<String, TemplateError> {
        let name = "sms_code.txt";
        self.env
            .get_template(name)
            .and_then(|t| {
                t.render(context! {
                    app_name => self.app_name,
                    code => code,
                    ttl_minutes => (ttl_seconds / 60).max(1),
                })
            })
            .map(|text| text.trim().to_owned())
            .map_err(|e| TemplateError {
                name: name.into(),
                reason: e.to_string(),
            })
    }

    /// Renders one mail.
    pub fn compose(
        &self,
        kind: MailKind,
        ctx: &MailContext<'_>,
    ) -> Result<OutgoingMail, TemplateError> {
        let vars = context! {
            app_name => self.app_name,
            full_name => ctx.full_name,
            url => ctx.url,
            ttl_minutes => (ctx.ttl_seconds / 60).max(1),
            ttl_hours => (ctx.ttl_seconds / 3600).max(1),
            email => ctx.to.as_str(),
            ip => ctx.ip,
            user_agent => ctx.user_agent,
        };
        let render = |suffix: &str| {
            let name = format!("{}.{suffix}", kind.stem());
            self.env
                .get_template(&name)
                .and_then(|t| t.render(&vars))
                .map_err(|e| TemplateError {
                    name,
                    reason: e.to_string(),
                })
        };
        let subject = render("subject.txt")?;
        let subject = subject
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_owned();
        Ok(OutgoingMail {
            to: ctx.to.clone(),
            subject,
            text: render("txt")?,
            html: render("html")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(to: &'a Email, name: Option<&'a str>) -> MailContext<'a> {
        MailContext {
            to,
            full_name: name,
            url: "https://app.example/verify?token=T0K",
            ttl_seconds: 86_400,
            ip: None,
            user_agent: None,
        }
    }

    #[test]
    fn verification_mail_has_subject_link_and_both_bodies() {
        let c = Composer::new("Acme", HashMap::new()).unwrap();
        let to = Email::parse("a@example.com").unwrap();
        let m = c
            .compose(MailKind::Verification, &ctx(&to, Some("Ann")))
            .unwrap();
        assert_eq!(m.subject, "Confirm your Acme account");
        assert!(m.text.contains("https://app.example/verify?token=T0K"));
        assert!(m.text.contains("24 hours"));
        // HTML-escaped (`/` becomes `&#x2f;`), which browsers decode in attributes.
        assert!(m.html.contains("verify?token=T0K\""));
    }

    #[test]
    fn the_sms_text_is_regstacks_and_overridable() {
        let c = Composer::new("RegStack Anchor", HashMap::new()).unwrap();
        assert_eq!(
            c.compose_sms_code("752864", 300).unwrap(),
            "RegStack Anchor verification code: 752864. Expires in 5 minutes."
        );
        let mut o = HashMap::new();
        o.insert(
            "sms_code.txt".to_owned(),
            "Your {{ app_name }} code is {{ code }}".to_owned(),
        );
        let c = Composer::new("Acme", o).unwrap();
        assert_eq!(
            c.compose_sms_code("111222", 300).unwrap(),
            "Your Acme code is 111222"
        );
    }

    #[test]
    fn notices_name_the_client_escaped_and_overrides_apply() {
        let c = Composer::new("Acme", HashMap::new()).unwrap();
        let to = Email::parse("a@example.com").unwrap();
        let m = c
            .compose(
                MailKind::NewDevice,
                &MailContext {
                    ip: Some("192.0.2.7"),
                    user_agent: Some("<b>Evil</b>"),
                    ..ctx(&to, None)
                },
            )
            .unwrap();
        assert_eq!(m.subject, "New sign-in to your Acme account");
        assert!(m.text.contains("192.0.2.7"));
        assert!(!m.html.contains("<b>Evil</b>"));
        let mut o = HashMap::new();
        o.insert(
            "refresh_reuse.subject.txt".to_owned(),
            "Stolen session at {{ app_name }}".to_owned(),
        );
        let c = Composer::new("Acme", o).unwrap();
        let m = c.compose(MailKind::RefreshReuse, &ctx(&to, None)).unwrap();
        assert_eq!(m.subject, "Stolen session at Acme");
        let mut bad = HashMap::new();
        bad.insert("mfa_disabled.html".to_owned(), "{% if %}".to_owned());
        assert_eq!(
            Composer::new("Acme", bad).unwrap_err().name,
            "mfa_disabled.html"
        );
    }

    #[test]
    fn names_are_escaped_in_html() {
        let c = Composer::new("Acme", HashMap::new()).unwrap();
        let to = Email::parse("a@example.com").unwrap();
        let m = c
            .compose(
                MailKind::PasswordReset,
                &ctx(&to, Some("<script>x</script>")),
            )
            .unwrap();
        assert!(!m.html.contains("<script>"));
        assert!(m.html.contains("&lt;script&gt;"));
    }

    #[test]
    fn overrides_replace_builtins_and_broken_ones_fail_at_start() {
        let mut o = HashMap::new();
        o.insert(
            "verification.subject.txt".to_owned(),
            "Welcome aboard {{ app_name }}!".to_owned(),
        );
        let c = Composer::new("Acme", o).unwrap();
        let to = Email::parse("a@example.com").unwrap();
        assert_eq!(
            c.compose(MailKind::Verification, &ctx(&to, None))
                .unwrap()
                .subject,
            "Welcome aboard Acme!"
        );
        let mut bad = HashMap::new();
        bad.insert("email_change.txt".to_owned(), "{% if %}".to_owned());
        let err = Composer::new("Acme", bad).unwrap_err();
        assert_eq!(err.name, "email_change.txt");
    }
}
