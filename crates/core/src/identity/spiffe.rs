//! Owns the SPIFFE ID: parsing and validating it to the letter of the SPIFFE-ID specification,
//! and the trust-domain name check that configuration keys share with it.
//!
//! `spiffe://<trust domain><path>`: lower-case scheme; a trust domain of `[a-z0-9.-_]` only,
//! with no port and no userinfo; an optional path of non-empty segments of `[a-zA-Z0-9.-_]`,
//! none `.` or `..`, without a trailing slash; no query, fragment or percent-encoding; at most
//! 2048 bytes overall and 255 for the trust domain. Nothing is normalised: a string is either
//! already a SPIFFE ID byte for byte, or it is refused with the first rule it breaks.

use std::fmt;
use std::str::FromStr;

const SCHEME: &str = "spiffe://";

/// Longest SPIFFE ID accepted, in bytes, scheme included (SPIFFE-ID 2.3).
pub const MAX_ID_LEN: usize = 2048;

/// Longest trust domain name accepted, in bytes (SPIFFE-ID 2.3, after RFC 3986's host limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// A valid SPIFFE ID.
///
/// Equality, ordering and hashing are byte-wise on the whole ID. That is exact because parsing
/// refuses every non-canonical spelling (upper-case scheme or trust domain, percent-encoding,
/// dot segments, trailing slash), so two IDs naming the same workload are the same bytes.
/// Path case is significant, as the specification says.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: Box<str>,
    /// Byte offset of the path in `id`; `id.len()` for a trust domain's own ID. Derived from
    /// `id`, so it never changes the outcome of a comparison.
    path_start: usize,
}

/// The rule of the SPIFFE-ID specification a string breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpiffeIdError {
    /// The string is empty.
    Empty,
    /// The scheme is not exactly `spiffe://` (upper case is refused, not normalised).
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    MissingTrustDomain,
    /// A trust domain character outside `[a-z0-9.-_]`, upper case and `%` included.
    BadTrustDomainChar,
    /// The trust domain is longer than [`MAX_TRUST_DOMAIN_LEN`].
    TrustDomainTooLong,
    /// The authority carries a port, or just its `:` delimiter.
    Port,
    /// The authority carries userinfo (`@`).
    UserInfo,
    /// The ID carries a query (`?`).
    Query,
    /// The ID carries a fragment (`#`).
    Fragment,
    /// The path has an empty segment (`//`).
    EmptySegment,
    /// The path has a `.` or `..` segment.
    DotSegment,
    /// A path character outside `[a-zA-Z0-9.-_]`, `%` of percent-encoding included.
    BadPathChar,
    /// The path ends with `/`.
    TrailingSlash,
    /// The ID is longer than [`MAX_ID_LEN`].
    TooLong,
}

impl SpiffeId {
    /// Parses `s` as a SPIFFE ID, refusing it with the first rule it breaks.
    ///
    /// Checks run in a fixed order (length, scheme, query or fragment, trust domain, then path
    /// segments left to right) so that a string breaking several rules always gets the same
    /// reason.
    pub fn parse(s: &str) -> Result<SpiffeId, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
        // RFC 3986: the authority and the path end at the first `?` or `#`, whichever comes
        // first; anything from there on is a query or a fragment, both forbidden.
        if let Some(i) = rest.find(['?', '#']) {
            return Err(if rest.as_bytes()[i] == b'?' {
                SpiffeIdError::Query
            } else {
                SpiffeIdError::Fragment
            });
        }
        let (trust_domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        validate_trust_domain(trust_domain)?;
        validate_path(path)?;
        Ok(SpiffeId {
            id: s.into(),
            path_start: SCHEME.len() + trust_domain.len(),
        })
    }

    /// The whole ID, e.g. `spiffe://example.org/ns/shop/sa/checkout`.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        &self.id[SCHEME.len()..self.path_start]
    }

    /// The path with its leading `/`, e.g. `/ns/shop/sa/checkout`; `""` for the trust domain's
    /// own ID (`spiffe://example.org`).
    pub fn path(&self) -> &str {
        &self.id[self.path_start..]
    }
}

/// Checks a bare trust domain name (no scheme, no path) against SPIFFE-ID 2.1 and 2.3.
///
/// Used by [`SpiffeId::parse`] and for configuration keys that name trust domains, so that a
/// configured name can only ever match the trust domain of a parsed ID byte for byte.
pub fn validate_trust_domain(name: &str) -> Result<(), SpiffeIdError> {
    if name.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    if name.contains('@') {
        return Err(SpiffeIdError::UserInfo);
    }
    // Call it a port only when it looks like one (`host:` or `host:8443`); any other `:`
    // (an IPv6 literal, a pasted `spiffe://…`) is just a character that is not allowed.
    if let Some((_, port)) = name.split_once(':') {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SpiffeIdError::Port);
        }
    }
    if name.bytes().all(is_trust_domain_byte) {
        Ok(())
    } else {
        Err(SpiffeIdError::BadTrustDomainChar)
    }
}

fn is_trust_domain_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
}

fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// Checks `path`, which is empty or starts with `/`, segment by segment from the left.
fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    let Some(segments) = path.strip_prefix('/') else {
        return Ok(());
    };
    let mut segments = segments.split('/').peekable();
    while let Some(segment) = segments.next() {
        match segment {
            // An empty last segment is a trailing slash (`spiffe://td/` included).
            "" if segments.peek().is_none() => return Err(SpiffeIdError::TrailingSlash),
            "" => return Err(SpiffeIdError::EmptySegment),
            "." | ".." => return Err(SpiffeIdError::DotSegment),
            _ if !segment.bytes().all(is_path_byte) => return Err(SpiffeIdError::BadPathChar),
            _ => {}
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// Shows the ID string only; the path offset is an implementation detail.
impl fmt::Debug for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SpiffeId").field(&self.as_str()).finish()
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
        f.write_str(match self {
            SpiffeIdError::Empty => "SPIFFE ID is empty",
            SpiffeIdError::WrongScheme => "scheme is not `spiffe://` (lower case)",
            SpiffeIdError::MissingTrustDomain => "trust domain is missing",
            SpiffeIdError::BadTrustDomainChar => {
                "trust domain contains a character outside [a-z0-9.-_]"
            }
            SpiffeIdError::TrustDomainTooLong => "trust domain is longer than 255 bytes",
            SpiffeIdError::Port => "trust domain carries a port",
            SpiffeIdError::UserInfo => "trust domain carries userinfo (`@`)",
            SpiffeIdError::Query => "SPIFFE ID carries a query (`?`)",
            SpiffeIdError::Fragment => "SPIFFE ID carries a fragment (`#`)",
            SpiffeIdError::EmptySegment => "path has an empty segment",
            SpiffeIdError::DotSegment => "path has a `.` or `..` segment",
            SpiffeIdError::BadPathChar => "path contains a character outside [a-zA-Z0-9.-_]",
            SpiffeIdError::TrailingSlash => "path ends with a slash",
            SpiffeIdError::TooLong => "SPIFFE ID is longer than 2048 bytes",
        })
    }
}

impl std::error::Error for SpiffeIdError {}

#[cfg(test)]
mod tests;
