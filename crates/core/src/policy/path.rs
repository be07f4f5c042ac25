//! Request path normalisation: the one path that policy evaluates and the upstream receives.
//!
//! The gateway decides on the normalised path and forwards exactly that path (plus the query
//! as received), so policy and upstream never disagree about dot segments, repeated slashes or
//! escapes of unreserved characters: those are resolved here, once. What remains is anything a
//! particular upstream might still reinterpret after we forward it (nginx, Go `net/http`,
//! Tomcat/Spring, Node, Python, IIS-style servers differ), and all of that is refused rather
//! than guessed:
//!
//! - encoded `/` (`%2F`) and `\` (`%5C`), raw `\`: separators to some upstreams, not others;
//! - `%00`, control characters, non-ASCII, spaces: truncation, header/line injection;
//! - `..` above the root: hostile or broken, never clamped;
//! - dot segments with path parameters (`/..;/`, `/.;x/`): Tomcat strips the parameter and then
//!   resolves the `..` that we saw as a plain name;
//! - `%25` followed by an escape (`%252F`): a double-decoding upstream turns it into `%2F`;
//! - escapes that decode to invalid UTF-8 (overlong `%C0%AE` is `.` to a lenient decoder).
//!
//! The normal form: unreserved escapes decoded (`%7E` -> `~`, `%2e` -> `.`); every other
//! escape kept with upper-case hex (`%3a` -> `%3A`); raw characters that are not allowed in a
//! path (`"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`, `}`) percent-encoded, so a raw and an
//! encoded spelling compare equal; repeated slashes merged; dot segments resolved
//! (RFC 3986 5.2.4) with a trailing slash kept. Normalising a normal path returns it unchanged.
//!
//! Not unified, by design (RFC 3986 6.2.2.2: the encoding of reserved characters is
//! significant): a raw sub-delimiter and its escape (`:` vs `%3A`, `;` vs `%3B`) stay distinct,
//! and path parameters (`/a;jsessionid=1/b`) are kept as part of the segment.

use std::fmt;

/// Longest accepted request target (path and query), in bytes, before and after
/// normalisation.
pub const MAX_TARGET_LEN: usize = 8192;

/// A request target split into its normalised path and raw query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedTarget {
    /// The normalised path: starts with `/`, in the normal form described in the module doc.
    pub path: String,
    /// The query as received, byte for byte, without the `?`. `Some("")` for a bare `?`, so
    /// the forwarded target is exactly what the client sent apart from the path.
    pub query: Option<String>,
}

impl NormalizedTarget {
    /// path + ("?" + query if any): what the upstream receives as the request target.
    pub fn to_request_target(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// Why a request target cannot be normalised unambiguously. Every variant means 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Absolute-form (`http://host/x`), authority-form, asterisk-form (`*`) or relative.
    NotOriginForm,
    /// Longer than [`MAX_TARGET_LEN`].
    TooLong,
    /// A `#`: clients never send fragments, so one is an attempt to confuse a parser.
    Fragment,
    /// A raw character outside ASCII; request lines are ASCII.
    NonAscii,
    /// A raw or encoded control character (0x01-0x1F, 0x7F).
    ControlCharacter,
    /// A raw or encoded NUL: truncates the path in C-string based upstreams.
    NulByte,
    /// A raw space: cannot appear in a well-formed request line.
    Space,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `%2F`: a separator to some upstreams, a name character to others.
    EncodedSlash,
    /// `%5C`: a separator to Windows-style upstreams once decoded.
    EncodedBackslash,
    /// A raw `\`: a separator to Windows/IIS-style upstreams.
    Backslash,
    /// `%25` followed by an escape (`%252F`, `%25u002F`): a double-decoding upstream would
    /// see the inner escape.
    DoubleEncoding,
    /// Escapes that decode to invalid UTF-8, such as overlong forms (`%C0%AE`).
    InvalidUtf8,
    /// A `..` that would climb above the root.
    AboveRoot,
    /// A segment that is `.` or `..` before a path parameter (`..;`, `.;x`, `..%3B`).
    DotSegmentWithParameters,
    /// A `;` (raw or `%3B`) in the path: Tomcat, Jetty and Spring strip `;params` from each
    /// segment, so `/admin;x` would pass an exact deny rule for `/admin` and reach `/admin`.
    PathParameters,
}

/// Normalises `raw`, the request-target as received in the request line (origin-form, e.g.
/// `/a/%7Eb/../c?x=1`), into the path policy evaluates and the upstream receives, or refuses
/// it when upstreams could read it differently (see the module doc).
pub fn normalize(raw: &str) -> Result<NormalizedTarget, PathError> {
    if raw.len() > MAX_TARGET_LEN {
        return Err(PathError::TooLong);
    }
    // The query is forwarded verbatim, so it too must be safe to put in a request line.
    for &b in raw.as_bytes() {
        match b {
            0 => return Err(PathError::NulByte),
            b if !b.is_ascii() => return Err(PathError::NonAscii),
            b if b.is_ascii_control() => return Err(PathError::ControlCharacter),
            b' ' => return Err(PathError::Space),
            b'#' => return Err(PathError::Fragment),
            _ => {}
        }
    }
    let (path, query) = match raw.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (raw, None),
    };
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let path = if is_canonical(path) {
        // Nearly every request: nothing to decode, merge or resolve, so `normalize_path`
        // would return it unchanged (a test holds the two to the same answers).
        path.to_string()
    } else {
        normalize_path(path)?
    };
    let len = path.len() + query.as_ref().map_or(0, |q| q.len() + 1);
    if len > MAX_TARGET_LEN {
        return Err(PathError::TooLong);
    }
    Ok(NormalizedTarget { path, query })
}

/// The full pass over a path that starts with `/`, is ASCII and has no `?`, `#`, space or
/// control character: decode, refuse what upstreams could read differently, resolve dots.
fn normalize_path(path: &str) -> Result<String, PathError> {
    let decoded = decode(path)?;
    refuse_double_encoding(&decoded)?;
    let path = remove_dot_segments(&decoded)?;
    if path.contains(';') || path.contains("%3B") {
        return Err(PathError::PathParameters);
    }
    Ok(path)
}

/// Whether `path` (which starts with `/`) is already what [`normalize`] makes of it: only
/// `/` and pchars other than `;` (so no escape, no parameter, no backslash), no empty segment
/// but a trailing one, and no segment starting with a dot (which rules out `.` and `..`).
fn is_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut previous = 0u8;
    for &b in bytes {
        let allowed = match b {
            b'/' => previous != b'/',
            b'.' => previous != b'/',
            b';' => false,
            b => is_pchar(b),
        };
        if !allowed {
            return false;
        }
        previous = b;
    }
    true
}

/// Decodes unreserved escapes, upper-cases the others, encodes raw characters that are not
/// allowed in a path, and refuses what must not be forwarded. `path` is ASCII without `?`,
/// `#`, spaces or control characters (checked by the caller).
fn decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    // The path with every escape decoded: what a decoding upstream ends up with.
    let mut fully_decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let hi = bytes.get(i + 1).and_then(|&c| hex_value(c));
            let lo = bytes.get(i + 2).and_then(|&c| hex_value(c));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadPercentEncoding);
            };
            let value = (hi << 4) | lo;
            match value {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::EncodedBackslash),
                0 => return Err(PathError::NulByte),
                v if v.is_ascii_control() => return Err(PathError::ControlCharacter),
                v if is_unreserved(v) => out.push(char::from(v)),
                v => push_escape(&mut out, v),
            }
            fully_decoded.push(value);
            i += 3;
            continue;
        }
        match byte {
            b'\\' => return Err(PathError::Backslash),
            b if b == b'/' || is_pchar(b) => out.push(char::from(b)),
            b => push_escape(&mut out, b),
        }
        fully_decoded.push(byte);
        i += 1;
    }
    if std::str::from_utf8(&fully_decoded).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    Ok(out)
}

/// Refuses `%25` followed by what a second decoding pass would read as an escape: two hex
/// digits (`%252F`) or IIS's `%u` form (`%25u002F`). Runs on the decoded form so spellings
/// such as `%25%32%46` are caught too.
fn refuse_double_encoding(decoded: &str) -> Result<(), PathError> {
    let bytes = decoded.as_bytes();
    for (at, _) in decoded.match_indices("%25") {
        let next = |k: usize| bytes.get(at + 3 + k).copied();
        let hex = |b: Option<u8>| b.and_then(hex_value).is_some();
        if (hex(next(0)) && hex(next(1))) || matches!(next(0), Some(b'u' | b'U')) {
            return Err(PathError::DoubleEncoding);
        }
    }
    Ok(())
}

/// Merges repeated slashes and resolves `.` and `..` (RFC 3986 5.2.4); a trailing slash is
/// kept (`/a/./` -> `/a/`, `/a/b/..` -> `/a/`). `path` starts with `/`.
fn remove_dot_segments(path: &str) -> Result<String, PathError> {
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(parts.len());
    let mut trailing_slash = false;
    for (index, &segment) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        let bare = bare_segment(segment);
        if bare.len() != segment.len() && (bare == "." || bare == "..") {
            return Err(PathError::DotSegmentWithParameters);
        }
        match segment {
            // Empty segments come from repeated slashes or a trailing slash.
            "" | "." => trailing_slash = last,
            ".." => {
                if kept.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            name => {
                kept.push(name);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if kept.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// The part of a segment before its first path parameter, raw `;` or encoded `%3B` (a
/// decode-then-strip upstream would treat the latter as a parameter too).
fn bare_segment(segment: &str) -> &str {
    let end = [segment.find(';'), segment.find("%3B")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(segment.len());
    &segment[..end]
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_escape(out: &mut String, byte: u8) {
    out.push('%');
    out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
    out.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved: ALPHA DIGIT `-` `.` `_` `~`.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 pchar, less pct-encoded: unreserved, sub-delims, `:` and `@`.
fn is_pchar(c: u8) -> bool {
    is_unreserved(c)
        || matches!(
            c,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "request target is not an origin-form path",
            PathError::TooLong => "request target is too long",
            PathError::Fragment => "request target contains a fragment (#)",
            PathError::NonAscii => "request target contains a non-ASCII character",
            PathError::ControlCharacter => "request target contains a control character",
            PathError::NulByte => "request target contains a NUL byte",
            PathError::Space => "request target contains a space",
            PathError::BadPercentEncoding => "path contains an invalid percent-escape",
            PathError::EncodedSlash => "path contains an encoded slash (%2F)",
            PathError::EncodedBackslash => "path contains an encoded backslash (%5C)",
            PathError::Backslash => "path contains a backslash",
            PathError::DoubleEncoding => "path contains a double-encoded escape (%25XX)",
            PathError::InvalidUtf8 => "path escapes do not decode to valid UTF-8",
            PathError::AboveRoot => "path climbs above the root with ..",
            PathError::DotSegmentWithParameters => "path has a dot segment with parameters (..;)",
            PathError::PathParameters => {
                "path has `;` parameters, which some upstreams strip before routing"
            }
        })
    }
}

impl std::error::Error for PathError {}

#[cfg(test)]
mod tests;
