//! The one rule both services follow when reading environment variables.
//!
//! - Unset: the variable takes its default, a loopback value that matches the
//!   local stack (docs/design.md), so a developer needs to set nothing.
//! - Set: it must be valid, or the service refuses to start with an error
//!   that names the variable (never its value, which may be a secret).
//! - Set but empty (or only white space): an error, never "unset". In
//!   Kubernetes an empty value is almost always a missing Secret key or
//!   ConfigMap entry, and quietly taking the loopback default would point a
//!   production pod at 127.0.0.1.

use std::{collections::HashMap, str::FromStr};

use secrecy::SecretString;

/// A variable that is set but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid environment variable {name}: {reason}")]
pub struct EnvError {
    pub name: String,
    pub reason: String,
}

impl EnvError {
    pub fn new(name: &str, reason: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Where variables are read from: the process environment, or a map in tests
/// (the process environment is shared between test threads).
pub struct Env {
    lookup: Box<Lookup>,
}

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Env {
    /// The real process environment.
    pub fn process() -> Self {
        Self {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    /// Exactly these variables, for tests.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Self {
            lookup: Box::new(move |name| map.get(name).cloned()),
        }
    }

    /// The value if the variable is set, or `None`; set but blank is an error.
    pub fn optional(&self, name: &str) -> Result<Option<String>, EnvError> {
        match (self.lookup)(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(EnvError::new(
                name,
                "is set but empty; unset it to take the default",
            )),
            Some(v) => Ok(Some(v)),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String, EnvError> {
        Ok(self.optional(name)?.unwrap_or_else(|| default.to_owned()))
    }

    /// Like [`Env::string`], for values that must never print.
    pub fn secret(&self, name: &str, default: &str) -> Result<SecretString, EnvError> {
        self.string(name, default).map(SecretString::from)
    }

    /// A value parsed with `FromStr`, surrounding white space ignored. The
    /// error shows the value: use it only for variables that are not secret.
    pub fn parsed<T>(&self, name: &str, default: T) -> Result<T, EnvError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name)? {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| EnvError::new(name, format!("{raw:?} is not valid: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn unset_takes_the_default_and_set_must_parse() {
        let env = Env::from_pairs(&[("PORT", " 8080 "), ("BAD", "lots")]);
        assert_eq!(env.parsed("PORT", 1u16), Ok(8080));
        assert_eq!(env.parsed("UNSET", 7u16), Ok(7));
        let err = env.parsed("BAD", 1u16).unwrap_err();
        assert_eq!(err.name, "BAD");
        assert!(err.to_string().contains("BAD"), "{err}");
    }

    #[test]
    fn set_but_empty_is_an_error_for_every_kind() {
        let env = Env::from_pairs(&[("EMPTY", ""), ("BLANK", "  ")]);
        for name in ["EMPTY", "BLANK"] {
            assert_eq!(env.string(name, "d").unwrap_err().name, name);
            assert_eq!(env.parsed(name, 1u8).unwrap_err().name, name);
            assert!(env.secret(name, "d").is_err());
            assert!(env.optional(name).is_err());
        }
    }

    #[test]
    fn secrets_are_wrapped_and_errors_never_show_them() {
        let env = Env::from_pairs(&[("TOKEN", "hunter2"), ("EMPTY", "")]);
        let token = env.secret("TOKEN", "x").unwrap();
        assert_eq!(token.expose_secret(), "hunter2");
        assert!(!format!("{token:?}").contains("hunter2"));
        assert!(
            !env.secret("EMPTY", "x")
                .unwrap_err()
                .to_string()
                .contains("hunter2")
        );
    }
}
