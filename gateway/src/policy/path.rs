//! Request path normalisation: the one path that policy evaluates and the upstream receives.
//!
//! Unreserved percent-escapes are decoded (`%7E` -> `~`, `%2e` -> `.`), other escapes keep
//! their encoding with upper-case hex, repeated slashes merge, and dot segments are resolved
//! (RFC 3986 5.2.4). Anything different upstreams could read differently is refused rather
//! than guessed: encoded `/` or `\`, raw `\`, NUL and control characters, `..` above the root,
//! and dot segments with path parameters (`/..;/`, which Tomcat-style servers resolve).

use std::fmt;

/// Longest accepted request target, in bytes.
pub const MAX_TARGET_LEN: usize = 8192;

/// A request target split into its normalised path and raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedTarget {
    pub path: String,
    /// The query as received, byte for byte (without the `?`).
    pub query: Option<String>,
}

impl NormalizedTarget {
    /// What the upstream receives as the request target.
    pub fn to_request_target(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Why a request target cannot be normalised unambiguously.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotOriginForm,
    TooLong,
    Fragment,
    BadPercentEncoding,
    EncodedSlash,
    EncodedBackslash,
    Backslash,
    NulByte,
    ControlCharacter,
    NonAscii,
    AboveRoot,
    DotSegmentWithParameters,
}

/// Normalises an origin-form request target (`/a/%7Eb/../c?x=1`).
pub fn normalize(raw: &str) -> Result<NormalizedTarget, PathError> {
    if raw.len() > MAX_TARGET_LEN {
        return Err(PathError::TooLong);
    }
    if raw.contains('#') {
        return Err(PathError::Fragment);
    }
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let decoded = decode_unreserved(path)?;
    let path = remove_dot_segments(&decoded)?;
    Ok(NormalizedTarget { path, query })
}

/// Decodes unreserved escapes and checks every byte.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| hex_value(*c));
                let lo = bytes.get(i + 2).and_then(|c| hex_value(*c));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadPercentEncoding);
                };
                let value = hi << 4 | lo;
                match value {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'\\' => return Err(PathError::EncodedBackslash),
                    0 => return Err(PathError::NulByte),
                    0x01..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    _ if is_unreserved(value) => out.push(value as char),
                    _ => {
                        out.push('%');
                        out.push(HEX_UPPER[usize::from(hi)] as char);
                        out.push(HEX_UPPER[usize::from(lo)] as char);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::NulByte),
            0x01..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            0x80..=0xff => return Err(PathError::NonAscii),
            _ => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Merges slashes and resolves `.` and `..`; a trailing slash is kept.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for (index, segment) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        let bare = segment.split(';').next().unwrap_or_default();
        if segment.contains(';') && (bare == "." || bare == "..") {
            return Err(PathError::DotSegmentWithParameters);
        }
        match *segment {
            "" => trailing_slash = last && !segments.is_empty(),
            "." => trailing_slash = last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "request target is not an origin-form path",
            PathError::TooLong => "request target is too long",
            PathError::Fragment => "request target carries a fragment",
            PathError::BadPercentEncoding => "path has an invalid percent-escape",
            PathError::EncodedSlash => "path contains an encoded slash (%2F)",
            PathError::EncodedBackslash => "path contains an encoded backslash (%5C)",
            PathError::Backslash => "path contains a backslash",
            PathError::NulByte => "path contains a NUL byte",
            PathError::ControlCharacter => "path contains a control character",
            PathError::NonAscii => "path contains a non-ASCII character",
            PathError::AboveRoot => "path climbs above the root with `..`",
            PathError::DotSegmentWithParameters => "path has a dot segment with parameters (`..;`)",
        })
    }
}

impl std::error::Error for PathError {}

#[cfg(test)]
mod tests;
