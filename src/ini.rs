//! A reader for the ini files CKAN runs with, following the rules of Python's
//! `configparser.ConfigParser` as CKAN sets it up: `[section]` headers, `key = value` or
//! `key: value` with keys kept case-sensitive, whole-line `#` and `;` comments, indented
//! continuation lines, a duplicate key or section being an error, and `%(name)s`
//! interpolation from the same section, then `[DEFAULT]`, then `here` and `__file__`.
//!
//! Written here rather than taken from a crate: the ini crates on crates.io follow
//! Windows ini rules (inline comments, no continuation lines, no interpolation), and
//! reading a value differently from CKAN would verify tokens with the wrong secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How deep `%(name)s` references may nest, as in Python's `BasicInterpolation`.
const MAX_DEPTH: usize = 10;

/// One parsed ini file.
#[derive(Debug, Clone)]
pub struct Ini {
    /// The file it was read from, for messages.
    path: PathBuf,
    /// `[DEFAULT]` plus `here` and `__file__`, which every section can refer to.
    defaults: BTreeMap<String, String>,
    /// Every other section's own keys, uninterpolated.
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

/// A problem with the file, worded to follow the file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniError(pub String);

impl std::fmt::Display for IniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ini {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Ini, IniError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| IniError(format!("cannot read {}: {err}", path.display())))?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the contents of `path` (which gives `here` and `__file__`).
    pub fn parse(path: &Path, text: &str) -> Result<Ini, IniError> {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let here = absolute
            .parent()
            .map(|dir| dir.display().to_string())
            .unwrap_or_default();
        let mut defaults = BTreeMap::from([
            ("here".to_string(), here),
            ("__file__".to_string(), absolute.display().to_string()),
        ]);
        let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let at =
            |line: usize, what: &str| IniError(format!("{} line {line}: {what}", path.display()));

        // The section being filled (None before the first header) and its last key,
        // which indented lines continue.
        let mut section: Option<String> = None;
        let mut last_key: Option<(String, usize)> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if trimmed.is_empty() {
                continue;
            }

            // An indented line continues the value above it.
            let indent = raw.len() - raw.trim_start().len();
            if let (Some((key, key_indent)), Some(name)) = (&last_key, &section) {
                if indent > *key_indent {
                    let table = if name == "DEFAULT" {
                        &mut defaults
                    } else {
                        sections.get_mut(name).expect("the section exists")
                    };
                    let value = table.get_mut(key).expect("the key exists");
                    value.push('\n');
                    value.push_str(trimmed);
                    continue;
                }
            }

            if let Some(header) = trimmed.strip_prefix('[') {
                let Some(name) = header.strip_suffix(']') else {
                    return Err(at(number, "a section header without its closing ]"));
                };
                if name != "DEFAULT" && sections.contains_key(name) {
                    return Err(at(number, &format!("section [{name}] appears twice")));
                }
                sections.entry(name.to_string()).or_default();
                section = Some(name.to_string());
                last_key = None;
                continue;
            }

            let Some(name) = &section else {
                return Err(at(number, "a setting before any [section] header"));
            };
            let Some(split) = trimmed.find(['=', ':']) else {
                return Err(at(number, "expected `key = value`"));
            };
            let key = trimmed[..split].trim_end();
            let value = trimmed[split + 1..].trim_start();
            if key.is_empty() {
                return Err(at(number, "a setting without a key"));
            }
            let table = if name == "DEFAULT" {
                &mut defaults
            } else {
                sections.get_mut(name).expect("the section exists")
            };
            if table.insert(key.to_string(), value.to_string()).is_some()
                && !matches!(key, "here" | "__file__")
            {
                return Err(at(number, &format!("{key} is set twice in [{name}]")));
            }
            last_key = Some((key.to_string(), indent));
        }
        sections.remove("DEFAULT");

        Ok(Ini {
            path: path.to_path_buf(),
            defaults,
            sections,
        })
    }

    /// The file the settings came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `[section]` exists.
    pub fn has_section(&self, section: &str) -> bool {
        self.sections.contains_key(section)
    }

    /// The value of `key` in `section` (or `[DEFAULT]`) with `%(name)s` references
    /// expanded; None when the key is absent.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<String>, IniError> {
        match self.raw(section, key) {
            None => Ok(None),
            Some(raw) => self.expand(section, key, raw, 1).map(Some),
        }
    }

    fn raw(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .get(section)
            .and_then(|table| table.get(key))
            .or_else(|| self.defaults.get(key))
            .map(String::as_str)
    }

    /// Expands `%(name)s` and `%%` in `raw`, the value of `key`, at nesting `depth`.
    fn expand(
        &self,
        section: &str,
        key: &str,
        raw: &str,
        depth: usize,
    ) -> Result<String, IniError> {
        let fail = |what: String| {
            IniError(format!(
                "{}: [{section}] {key}: {what}",
                self.path.display()
            ))
        };
        if depth > MAX_DEPTH {
            return Err(fail(format!(
                "%(…)s references nest deeper than {MAX_DEPTH} (a loop?)"
            )));
        }

        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            if let Some(after) = rest.strip_prefix('%') {
                out.push('%');
                rest = after;
                continue;
            }
            let Some(inner) = rest.strip_prefix('(') else {
                return Err(fail("a lone % (write %% for a percent sign)".into()));
            };
            let Some(close) = inner.find(")s") else {
                return Err(fail("a %( reference without its closing )s".into()));
            };
            let name = &inner[..close];
            let Some(value) = self.raw(section, name) else {
                return Err(fail(format!("refers to {name}, which is not set")));
            };
            out.push_str(&self.expand(section, name, value, depth + 1)?);
            rest = &inner[close + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Ini {
        Ini::parse(Path::new("/etc/ckan/default/ckan.ini"), text).unwrap()
    }

    fn error(text: &str) -> String {
        Ini::parse(Path::new("/etc/ckan.ini"), text).unwrap_err().0
    }

    #[test]
    fn reads_sections_keys_and_comments_as_configparser_does() {
        let ini = parse(
            "# comment\n[DEFAULT]\ndebug = false\n\n[app:main]\n; another\nuse = egg:ckan\n\
             Key.Case = kept\nsite: http://a.example:5000\nempty =\n\
             plugins = activity\n    datastore\n  # not a comment inside a value? it is one\n\
             [loggers]\nkeys = root\n",
        );
        assert_eq!(ini.get("app:main", "use").unwrap().unwrap(), "egg:ckan");
        assert_eq!(ini.get("app:main", "Key.Case").unwrap().unwrap(), "kept");
        assert_eq!(ini.get("app:main", "key.case").unwrap(), None);
        // The first of = and : splits, so a URL after `key:` survives.
        assert_eq!(
            ini.get("app:main", "site").unwrap().unwrap(),
            "http://a.example:5000"
        );
        assert_eq!(ini.get("app:main", "empty").unwrap().unwrap(), "");
        assert_eq!(
            ini.get("app:main", "plugins").unwrap().unwrap(),
            "activity\ndatastore"
        );
        assert_eq!(ini.get("app:main", "debug").unwrap().unwrap(), "false");
        assert_eq!(ini.get("loggers", "keys").unwrap().unwrap(), "root");
        assert!(ini.has_section("app:main") && !ini.has_section("DEFAULT"));
    }

    #[test]
    fn interpolates_from_the_section_defaults_and_here() {
        let ini = parse(
            "[DEFAULT]\nbase = /srv\n[app:main]\nSECRET_KEY = s3\nsecret = string:%(SECRET_KEY)s\n\
             storage = %(base)s/storage\nini_dir = %(here)s/x\npercent = 100%%\n\
             chain = %(secret)s!\n",
        );
        assert_eq!(ini.get("app:main", "secret").unwrap().unwrap(), "string:s3");
        assert_eq!(
            ini.get("app:main", "storage").unwrap().unwrap(),
            "/srv/storage"
        );
        assert_eq!(
            ini.get("app:main", "ini_dir").unwrap().unwrap(),
            "/etc/ckan/default/x"
        );
        assert_eq!(ini.get("app:main", "percent").unwrap().unwrap(), "100%");
        assert_eq!(ini.get("app:main", "chain").unwrap().unwrap(), "string:s3!");
    }

    #[test]
    fn bad_references_name_the_file_and_key() {
        let ini = parse("[app:main]\na = %(b)s\nb = %(a)s\nc = %(nope)s\nd = 5%\ne = %(x\n");
        for (key, words) in [
            ("a", "nest deeper"),
            ("c", "nope, which is not set"),
            ("d", "lone %"),
            ("e", "closing )s"),
        ] {
            let err = ini.get("app:main", key).unwrap_err().0;
            assert!(
                err.starts_with("/etc/ckan/default/ckan.ini: [app:main] "),
                "{err}"
            );
            assert!(err.contains(words), "{err}");
        }
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        assert_eq!(
            error("key = value\n"),
            "/etc/ckan.ini line 1: a setting before any [section] header"
        );
        assert!(error("[app:main\n").contains("line 1"));
        assert!(error("[app:main]\njust words\n").contains("line 2: expected `key = value`"));
        assert!(error("[app:main]\na = 1\na = 2\n").contains("a is set twice in [app:main]"));
        assert!(error("[x]\n[x]\n").contains("section [x] appears twice"));
        assert!(error("[x]\n= 1\n").contains("without a key"));
        let missing = Ini::load(Path::new("/nonexistent/ckan.ini")).unwrap_err().0;
        assert!(
            missing.starts_with("cannot read /nonexistent/ckan.ini"),
            "{missing}"
        );
    }
}
