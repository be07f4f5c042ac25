//! Patterns over SPIFFE IDs, shared by the zone map and policy rules.

use std::fmt;

use super::spiffe::{SpiffeId, SpiffeIdError};

/// Matches SPIFFE IDs: an exact ID, every ID below a path (`spiffe://td/ns/shop/*`), a whole
/// trust domain (`spiffe://td/*`), or any identity (`*`).
///
/// Prefixes match at path-segment boundaries only, so `spiffe://td/ns/shop/*` never matches
/// `spiffe://td/ns/shopping/x`: a string prefix would silently grant a sibling namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IdPattern {
    Any,
    Exact(SpiffeId),
    /// Holds the ID the pattern is rooted at; matches IDs strictly below it.
    Below(SpiffeId),
}

/// Why a SPIFFE ID pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdPatternError {
    pub pattern: String,
    pub reason: SpiffeIdError,
}

impl IdPattern {
    pub fn parse(s: &str) -> Result<IdPattern, IdPatternError> {
        let err = |reason| IdPatternError {
            pattern: s.to_string(),
            reason,
        };
        if s == "*" {
            return Ok(IdPattern::Any);
        }
        match s.strip_suffix("/*") {
            Some(base) => SpiffeId::parse(base).map(IdPattern::Below).map_err(err),
            None => SpiffeId::parse(s).map(IdPattern::Exact).map_err(err),
        }
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            IdPattern::Any => true,
            IdPattern::Exact(want) => want == id,
            IdPattern::Below(base) => {
                let (id, base) = (id.as_str(), base.as_str());
                id.len() > base.len() + 1
                    && id.starts_with(base)
                    && id.as_bytes()[base.len()] == b'/'
            }
        }
    }

    /// How many identities the pattern can name, for ordering most-specific first.
    pub fn specificity(&self) -> usize {
        match self {
            IdPattern::Any => 0,
            IdPattern::Below(base) => 1 + base.as_str().len(),
            IdPattern::Exact(id) => usize::MAX / 2 + id.as_str().len(),
        }
    }
}

impl fmt::Display for IdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdPattern::Any => f.write_str("*"),
            IdPattern::Exact(id) => write!(f, "{id}"),
            IdPattern::Below(base) => write!(f, "{base}/*"),
        }
    }
}

impl fmt::Display for IdPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a SPIFFE ID pattern ({}); expected `*`, `spiffe://td/*`, `spiffe://td/path/*` or an exact SPIFFE ID",
            self.pattern, self.reason
        )
    }
}

impl std::error::Error for IdPatternError {}

#[cfg(test)]
mod tests;
