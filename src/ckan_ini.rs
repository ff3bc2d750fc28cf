//! The settings `--ckan-ini` takes from CKAN's own config file, read from `[app:main]`
//! the way CKAN reads them: the database URL, the site URL, the API token secret with
//! CKAN's fallbacks between releases, the token algorithm and the collaborator switch.
//!
//! Errors name the file and the key, never a value that could be a secret (the token
//! secret, or the database URL with its password).

use crate::error::{Error, Result};
use crate::ini::Ini;
use std::path::Path;

/// The section CKAN reads its settings from.
const SECTION: &str = "app:main";

/// The key CKAN verifies API tokens with; it never falls back to the encode secret.
const DECODE_SECRET: &str = "api_token.jwt.decode.secret";

/// The spellings CKAN's `asbool` takes, after trimming and lower-casing.
const TRUTHY: [&str; 6] = ["true", "yes", "on", "y", "t", "1"];
const FALSY: [&str; 6] = ["false", "no", "off", "n", "f", "0"];

/// A CKAN ini, opened and checked to have an `[app:main]` section.
#[derive(Debug, Clone)]
pub struct CkanIni {
    ini: Ini,
}

impl CkanIni {
    /// Reads `path`; a missing file, a malformed one or one without `[app:main]` is an
    /// error naming the file.
    pub fn load(path: &Path) -> Result<CkanIni> {
        let ini = Ini::load(path).map_err(|err| Error::config(err.0))?;
        Self::from_ini(ini)
    }

    /// Parses `text` as if read from `path` (for tests and sample files).
    pub fn parse(path: &Path, text: &str) -> Result<CkanIni> {
        let ini = Ini::parse(path, text).map_err(|err| Error::config(err.0))?;
        Self::from_ini(ini)
    }

    fn from_ini(ini: Ini) -> Result<CkanIni> {
        if !ini.has_section(SECTION) {
            return Err(Error::config(format!(
                "{}: no [{SECTION}] section: is this CKAN's ini?",
                ini.path().display()
            )));
        }
        Ok(CkanIni { ini })
    }

    /// The file the settings come from.
    pub fn path(&self) -> &Path {
        self.ini.path()
    }

    /// A key's expanded value, None when absent or empty (CKAN treats both alike).
    fn value(&self, key: &str) -> Result<Option<String>> {
        let value = self
            .ini
            .get(SECTION, key)
            .map_err(|err| Error::config(err.0))?;
        Ok(value.filter(|value| !value.trim().is_empty()))
    }

    fn required(&self, key: &str) -> Result<String> {
        self.value(key)?
            .ok_or_else(|| self.error(key, "is not set"))
    }

    fn error(&self, key: &str, what: &str) -> Error {
        Error::config(format!(
            "{}: [{SECTION}] {key} {what}",
            self.path().display()
        ))
    }

    /// `sqlalchemy.url` as tokio-postgres takes it: SQLAlchemy's `postgresql+driver://`
    /// becomes `postgresql://`, and the result must parse.
    pub fn database_url(&self) -> Result<String> {
        let key = "sqlalchemy.url";
        let url = self.required(key)?;
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(self.error(key, "is not a URL"));
        };
        let dialect = scheme.split('+').next().unwrap_or_default();
        if !matches!(dialect, "postgresql" | "postgres") {
            return Err(self.error(
                key,
                &format!("uses {dialect:?}; ckan-webhooks needs PostgreSQL"),
            ));
        }
        let url = format!("postgresql://{rest}");
        // tokio-postgres's messages name the option, not the password.
        if let Err(err) = url.parse::<tokio_postgres::Config>() {
            return Err(self.error(key, &format!("cannot be used: {err}")));
        }
        Ok(url)
    }

    /// `ckan.site_url`, checked and without a trailing slash.
    pub fn site_url(&self) -> Result<String> {
        let key = "ckan.site_url";
        let url = self.required(key)?;
        crate::config::parse_site_url(&url).map_err(|_| {
            self.error(
                key,
                &format!("is {url:?}: expected http://host or https://host"),
            )
        })
    }

    /// The key CKAN verifies API tokens with, for the CKAN release `line` ("2.9", …,
    /// None when unknown). `api_token.jwt.decode.secret` when set; otherwise CKAN uses
    /// `string:` plus a session secret: `beaker.session.secret` up to 2.10, `SECRET_KEY`
    /// from 2.11 on (which itself defaults to `beaker.session.secret`).
    pub fn token_secret(&self, line: Option<&str>) -> Result<Vec<u8>> {
        let (key, value) = match self.value(DECODE_SECRET)? {
            Some(value) => (DECODE_SECRET, value),
            None => {
                let fallbacks: &[&str] = match line {
                    Some("2.8" | "2.9" | "2.10") => &["beaker.session.secret"],
                    _ => &["SECRET_KEY", "beaker.session.secret"],
                };
                let mut found = None;
                for key in fallbacks {
                    if let Some(value) = self.value(key)? {
                        found = Some((*key, format!("string:{value}")));
                        break;
                    }
                }
                found.ok_or_else(|| {
                    self.error(
                        DECODE_SECRET,
                        &format!(
                            "is not set, and neither is {}, which CKAN falls back to",
                            fallbacks.join(" nor ")
                        ),
                    )
                })?
            }
        };

        // CKAN splits at the first colon: `file:` reads a file, any other prefix is
        // taken as the text after it.
        let Some((kind, rest)) = value.split_once(':') else {
            return Err(self.error(
                key,
                "has no string: or file: prefix (CKAN cannot read it either)",
            ));
        };
        let secret = if kind == "file" {
            std::fs::read(rest).map_err(|err| {
                self.error(
                    key,
                    &format!("names the file {rest:?}, which cannot be read: {err}"),
                )
            })?
        } else {
            rest.as_bytes().to_vec()
        };
        if secret.is_empty() {
            return Err(self.error(key, "gives an empty secret"));
        }
        Ok(secret)
    }

    /// Refuses any `api_token.jwt.algorithm` but HS256, CKAN's default and the only one
    /// the service verifies.
    pub fn check_algorithm(&self) -> Result<()> {
        let key = "api_token.jwt.algorithm";
        match self.value(key)? {
            None => Ok(()),
            Some(algorithm) if algorithm.trim() == "HS256" => Ok(()),
            Some(algorithm) => Err(self.error(
                key,
                &format!(
                    "is {:?}: ckan-webhooks verifies HS256 tokens only",
                    algorithm.trim()
                ),
            )),
        }
    }

    /// `ckan.auth.allow_dataset_collaborators`, false when absent.
    pub fn allow_dataset_collaborators(&self) -> Result<bool> {
        let key = "ckan.auth.allow_dataset_collaborators";
        match self.value(key)? {
            None => Ok(false),
            Some(value) => parse_ckan_bool(&value)
                .ok_or_else(|| self.error(key, &format!("is {value:?}: expected true or false"))),
        }
    }
}

/// A boolean as CKAN's `asbool` reads it: true, yes, on, y, t, 1 and their opposites,
/// in any case.
pub fn parse_ckan_bool(value: &str) -> Option<bool> {
    let value = value.trim().to_lowercase();
    if TRUTHY.contains(&value.as_str()) {
        Some(true)
    } else if FALSY.contains(&value.as_str()) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
#[path = "ckan_ini_tests.rs"]
mod tests;
