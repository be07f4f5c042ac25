//! The SPIFFE ID, validated to the letter of the SPIFFE-ID specification.
//!
//! `spiffe://<trust domain><path>`: lower-case scheme; trust domain of `[a-z0-9._-]` only (no
//! port, no userinfo); a path of non-empty segments of `[A-Za-z0-9._-]`, none `.` or `..`, no
//! trailing slash; no query or fragment; at most 2048 bytes overall, 255 for the trust domain.

use std::fmt;
use std::str::FromStr;

const SCHEME: &str = "spiffe://";
/// Maximum length of a SPIFFE ID, in bytes (SPIFFE-ID 2.3).
pub const MAX_ID_LEN: usize = 2048;
/// Maximum length of a trust domain name, in bytes (SPIFFE-ID 2.1).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A valid SPIFFE ID. Comparison is byte-wise: SPIFFE IDs are case-sensitive in the path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: Box<str>,
    /// Byte offset where the path starts (== id.len() when there is no path).
    path_start: usize,
}

/// Why a string is not a SPIFFE ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpiffeIdError {
    Empty,
    WrongScheme,
    MissingTrustDomain,
    BadTrustDomainChar,
    TrustDomainTooLong,
    Port,
    UserInfo,
    Query,
    Fragment,
    EmptySegment,
    DotSegment,
    BadPathChar,
    TrailingSlash,
    TooLong,
}

impl SpiffeId {
    pub fn parse(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
        if rest.contains('?') {
            return Err(SpiffeIdError::Query);
        }
        if rest.contains('#') {
            return Err(SpiffeIdError::Fragment);
        }
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(td)?;
        if !path.is_empty() {
            validate_path(path)?;
        }
        Ok(SpiffeId {
            id: s.into(),
            path_start: SCHEME.len() + td.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }

    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.path_start]
    }

    /// The path, `""` for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }
}

/// Validates a trust domain name (also used for config keys naming trust domains).
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if td.contains('@') {
        return Err(SpiffeIdError::UserInfo);
    }
    if td.contains(':') {
        return Err(SpiffeIdError::Port);
    }
    let ok = td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(SpiffeIdError::BadTrustDomainChar)
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    // `path` starts with '/'; every segment after it must be valid.
    if path.ends_with('/') {
        return Err(if path == "/" {
            SpiffeIdError::TrailingSlash
        } else if path.ends_with("//") {
            SpiffeIdError::EmptySegment
        } else {
            SpiffeIdError::TrailingSlash
        });
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            _ => {}
        }
        let ok = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !ok {
            return Err(SpiffeIdError::BadPathChar);
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpiffeId({})", self.id)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self {
            SpiffeIdError::Empty => "SPIFFE ID is empty",
            SpiffeIdError::WrongScheme => "scheme is not `spiffe://` (lower case)",
            SpiffeIdError::MissingTrustDomain => "trust domain is missing",
            SpiffeIdError::BadTrustDomainChar => {
                "trust domain contains a character outside [a-z0-9._-]"
            }
            SpiffeIdError::TrustDomainTooLong => "trust domain is longer than 255 bytes",
            SpiffeIdError::Port => "trust domain carries a port",
            SpiffeIdError::UserInfo => "trust domain carries userinfo",
            SpiffeIdError::Query => "SPIFFE ID carries a query",
            SpiffeIdError::Fragment => "SPIFFE ID carries a fragment",
            SpiffeIdError::EmptySegment => "path has an empty segment",
            SpiffeIdError::DotSegment => "path has a `.` or `..` segment",
            SpiffeIdError::BadPathChar => "path contains a character outside [A-Za-z0-9._-]",
            SpiffeIdError::TrailingSlash => "path ends with a slash",
            SpiffeIdError::TooLong => "SPIFFE ID is longer than 2048 bytes",
        };
        f.write_str(reason)
    }
}

impl std::error::Error for SpiffeIdError {}

#[cfg(test)]
mod tests;
