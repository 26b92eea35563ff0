//! The account pages' looks and where their files come from: regstack's
//! top-level keys (`brand_logo_url`, `brand_tagline`, `static_prefix`,
//! `theme_css_url`, `extra_static_dirs`) and our `[ui]` table
//! (`template_dir`, `brand_color`). Whether the pages exist at all is
//! policy (`Config::enable_ui_router`, which also moves the mailed links).

use regstack_core::ConfigError;

/// How the pages look; the server fills it from `regstack.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSettings {
    /// Logo in the header (an `<img>` source; empty alt, the product name
    /// beside it is the text).
    pub brand_logo_url: Option<String>,
    /// Shown under the product name.
    pub brand_tagline: Option<String>,
    /// Mount point of the stylesheet and of `extra_static_dirs`.
    pub static_prefix: String,
    /// A host stylesheet linked after ours, to override its custom
    /// properties.
    pub theme_css_url: Option<String>,
    /// Directories served under `static_prefix` (first match wins).
    pub extra_static_dirs: Vec<String>,
    /// Files here replace the built-in templates of the same name.
    pub template_dir: Option<String>,
    /// Accent colour (`--rs-brand`); a CSS colour.
    pub brand_color: Option<String>,
    /// The overriding templates by name, read from `template_dir` at
    /// start-up ([`PageSettings::read_template_overrides`]); a host
    /// building in code may fill it directly.
    pub template_overrides: std::collections::HashMap<String, String>,
}

impl Default for PageSettings {
    fn default() -> Self {
        Self {
            brand_logo_url: None,
            brand_tagline: None,
            static_prefix: "/regstack-static".into(),
            theme_css_url: None,
            extra_static_dirs: Vec::new(),
            template_dir: None,
            brand_color: None,
            template_overrides: std::collections::HashMap::new(),
        }
    }
}

impl PageSettings {
    /// Refuses what would break the pages or let configuration inject
    /// markup or CSS: a static prefix that is not a path, a brand colour
    /// with characters no CSS colour has.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let p = &self.static_prefix;
        if !p.starts_with('/') || p.len() < 2 || p.contains(['?', '#', ' ', '"', '\'']) {
            return Err(ConfigError::new(
                "static_prefix",
                "must be a path such as \"/regstack-static\"",
            ));
        }
        if let Some(c) = &self.brand_color {
            let ok = !c.is_empty()
                && c.len() <= 64
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"#(),.% -".contains(&b));
            if !ok {
                return Err(ConfigError::new(
                    "ui.brand_color",
                    "must be a CSS colour such as \"#0b5fff\" or \"rgb(11 95 255)\"",
                ));
            }
        }
        Ok(())
    }

    /// The `template_dir` overrides, read once at start-up: every file in
    /// the directory whose name is one of the built-in templates'. A
    /// missing directory is an error (a typo must not silently fall back).
    pub fn read_template_overrides(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, ConfigError> {
        let mut out = std::collections::HashMap::new();
        let Some(dir) = &self.template_dir else {
            return Ok(out);
        };
        let meta = std::fs::metadata(dir)
            .map_err(|e| ConfigError::new("ui.template_dir", format!("{dir}: {e}")))?;
        if !meta.is_dir() {
            return Err(ConfigError::new(
                "ui.template_dir",
                format!("{dir}: not a directory"),
            ));
        }
        for name in super::template_names() {
            let path = std::path::Path::new(dir).join(name);
            if path.exists() {
                let src = std::fs::read_to_string(&path).map_err(|e| {
                    ConfigError::new("ui.template_dir", format!("{}: {e}", path.display()))
                })?;
                out.insert(name.to_owned(), src);
            }
        }
        Ok(out)
    }
}
