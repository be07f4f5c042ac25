//! Configuration errors: each names the file, the key and the reason, and all are reported
//! together.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path (`upstream.payments.addresses[0]`), empty for whole-file problems.
    pub key: String,
    pub line: Option<usize>,
    pub reason: String,
}

/// Every problem found; never empty when returned as an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, file: &Path, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError {
            file: file.to_path_buf(),
            key: key.into(),
            line: None,
            reason: reason.into(),
        });
    }

    /// Records a TOML syntax or schema error, with the line the parser points at.
    pub fn push_toml(&mut self, file: &Path, source: &str, error: &toml::de::Error) {
        let line = error.span().map(|span| {
            source[..span.start.min(source.len())]
                .lines()
                .count()
                .max(1)
        });
        let key = error
            .message()
            .split('`')
            .nth(1)
            .filter(|_| error.message().starts_with("unknown field"))
            .unwrap_or("")
            .to_string();
        self.0.push(ConfigError {
            file: file.to_path_buf(),
            key,
            line,
            reason: error.message().trim().to_string(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn extend(&mut self, other: ConfigErrors) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when no error was recorded.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
