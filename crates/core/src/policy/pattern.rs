//! Path patterns of policy rules: exact paths, prefixes and globs over normalised paths.
//!
//! A pattern is a normalised path (see [`super::path`]) whose segments may contain wildcards:
//!
//! - `*` inside a segment matches any run of characters within that segment, never `/`, and
//!   may appear several times (`/v1/*.json`, `/v1/order-*-items`). It matches the empty run
//!   too, so `/a/*` matches `/a/` (the empty last segment of a trailing-slash path) but not
//!   `/a` or `/a/b/c`. There is no escape: a literal `*` in a path is matched by `*`.
//! - `**` as a whole segment matches zero or more whole segments: `/a/**/z` matches `/a/z`,
//!   `/a/b/z`, `/a/b/c/z`. As the last segment it is the prefix form, "`/a/` and anything
//!   below": `/a/**` matches `/a/`, `/a/b`, `/a/b/c` but not `/a` nor `/ab`. `/**` matches
//!   every path.
//!
//! Matching is byte-wise and case-sensitive on the normalised path, and runs in
//! O(pattern segments x path segments x segment length) at worst, with no exponential
//! backtracking on hostile paths: both levels use the greedy two-pointer wildcard algorithm.
//! Patterns must themselves be in normal form (no `//`, `.`, `..`, lower-case or unreserved
//! escapes), since a pattern no normalised path can equal would silently never match, which
//! for a deny rule is a hole.

use std::fmt;

use super::path::{normalize, PathError};

/// A compiled path pattern: exact (`/v1/charge`), prefix (`/v1/**`: matches `/v1/` and
/// anything below, not `/v1` itself), or glob, where `*` matches any run of characters within
/// one segment (never `/`, possibly empty, so `/a/*` matches `/a/`) and `**` as a whole
/// segment matches zero or more whole segments. See the module doc for the exact semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    /// Length of the literal part before the first wildcard segment.
    literal_prefix_len: usize,
    matcher: Matcher,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// No wildcard: string equality.
    Exact,
    /// Literal segments then a final `**`: `starts_with(literal_prefix)`.
    Prefix,
    /// Anything else: segment-wise matching.
    Segments(Vec<Token>),
}

/// One step of a segment-wise pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A non-final `**`: zero or more whole segments.
    AnySegments,
    /// Exactly one segment.
    One(Segment),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`, or the one segment a final `**` needs at least (`/a/**` is `/a/*/**`).
    Any,
    /// A segment with `*`: the literal pieces around the stars (at least two).
    Glob(Vec<String>),
}

/// Why a path pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    Empty,
    /// Does not start with `/`.
    NotAbsolute,
    /// `**` inside a segment (`/a**`, `/a/**b`, `/***`).
    DoubleStarNotWholeSegment,
    /// A `?`: patterns match the path only, never the query.
    QueryNotAllowed,
    /// Not a path the gateway would accept from a client, so no request could match it.
    InvalidPath(PathError),
    /// Not in normal form; carries the normalised spelling (`/a//b` -> `/a/b`).
    NotNormalized(String),
}

impl PathPattern {
    /// Compiles `s`, which must be a normalised absolute path with optional wildcards.
    pub fn parse(s: &str) -> Result<PathPattern, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(PatternError::NotAbsolute);
        };
        if s.contains('?') {
            return Err(PatternError::QueryNotAllowed);
        }
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|&p| p != "**" && p.contains("**")) {
            return Err(PatternError::DoubleStarNotWholeSegment);
        }
        match normalize(s) {
            Err(e) => return Err(PatternError::InvalidPath(e)),
            Ok(normal) if normal.path != s => {
                return Err(PatternError::NotNormalized(normal.path));
            }
            Ok(_) => {}
        }

        let mut literal_prefix_len = s.len();
        let mut offset = 1;
        for part in &parts {
            if part.contains('*') {
                literal_prefix_len = offset;
                break;
            }
            offset += part.len() + 1;
        }
        let wildcards = parts.iter().filter(|p| p.contains('*')).count();
        let matcher = if wildcards == 0 {
            Matcher::Exact
        } else if wildcards == 1 && parts.last() == Some(&"**") {
            Matcher::Prefix
        } else {
            Matcher::Segments(compile(&parts))
        };
        Ok(PathPattern {
            source: s.to_string(),
            literal_prefix_len,
            matcher,
        })
    }

    /// Whether `path`, already normalised (starts with `/`), matches. Anything else never
    /// matches.
    pub fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.source,
            Matcher::Prefix => path.starts_with(self.literal_prefix()),
            Matcher::Segments(tokens) => match path.strip_prefix('/') {
                Some(rest) => match_segments(tokens, &rest.split('/').collect::<Vec<_>>()),
                None => false,
            },
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern is a plain literal (no wildcard), so it can be indexed in a hash
    /// map: it matches exactly the path equal to [`PathPattern::as_str`].
    pub fn is_exact(&self) -> bool {
        matches!(self.matcher, Matcher::Exact)
    }

    /// The literal leading part before the first wildcard segment (`/v1/` for `/v1/**`,
    /// `/v1/orders/` for `/v1/orders/*/items`, `/` for `/**`, the whole pattern when exact),
    /// used to index patterns by prefix: every path that matches starts with it.
    pub fn literal_prefix(&self) -> &str {
        &self.source[..self.literal_prefix_len]
    }
}

/// Turns the `/`-separated parts of a pattern into tokens. A final `**` must consume at least
/// one (possibly empty) segment, which is what keeps `/a/**` from matching `/a`.
fn compile(parts: &[&str]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(parts.len() + 1);
    for (index, &part) in parts.iter().enumerate() {
        if part == "**" {
            if index + 1 == parts.len() {
                tokens.push(Token::One(Segment::Any));
                tokens.push(Token::AnySegments);
            } else if tokens.last() != Some(&Token::AnySegments) {
                // `/**/**/` is `/**/`; collapsing keeps hostile patterns cheap.
                tokens.push(Token::AnySegments);
            }
        } else if part == "*" {
            tokens.push(Token::One(Segment::Any));
        } else if part.contains('*') {
            let pieces = part.split('*').map(str::to_string).collect();
            tokens.push(Token::One(Segment::Glob(pieces)));
        } else {
            tokens.push(Token::One(Segment::Literal(part.to_string())));
        }
    }
    tokens
}

/// Greedy two-pointer wildcard match over segments: on a mismatch, the most recent `**`
/// absorbs one more segment and matching resumes after it. Earlier `**`s never need to
/// backtrack, so this is O(tokens x segments) segment comparisons.
fn match_segments(tokens: &[Token], segments: &[&str]) -> bool {
    let (mut t, mut s) = (0, 0);
    // (token index after the last `**`, first segment it has not absorbed)
    let mut resume: Option<(usize, usize)> = None;
    while s < segments.len() {
        match tokens.get(t) {
            Some(Token::AnySegments) => {
                resume = Some((t + 1, s));
                t += 1;
                continue;
            }
            Some(Token::One(segment)) if segment.matches(segments[s]) => {
                t += 1;
                s += 1;
                continue;
            }
            _ => {}
        }
        let Some((after_star, absorbed)) = resume else {
            return false;
        };
        resume = Some((after_star, absorbed + 1));
        t = after_star;
        s = absorbed + 1;
    }
    tokens[t..].iter().all(|token| *token == Token::AnySegments)
}

impl Segment {
    fn matches(&self, text: &str) -> bool {
        match self {
            Segment::Literal(literal) => text == literal,
            Segment::Any => true,
            Segment::Glob(pieces) => glob_matches(pieces, text),
        }
    }
}

/// `text` is `pieces[0]`, then anything, `pieces[1]`, ..., anything, then the last piece.
/// Greedy: the first and last pieces are anchored; each middle piece takes its leftmost
/// occurrence, which never loses a match because the runs between pieces are unconstrained.
fn glob_matches(pieces: &[String], text: &str) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return text.is_empty();
    };
    let Some((last, middle)) = rest.split_last() else {
        return text == first;
    };
    if text.len() < first.len() + last.len() || !text.starts_with(first.as_str()) {
        return false;
    }
    if !text.ends_with(last.as_str()) {
        return false;
    }
    let mut window = &text[first.len()..text.len() - last.len()];
    for piece in middle {
        match window.find(piece.as_str()) {
            Some(at) => window = &window[at + piece.len()..],
            None => return false,
        }
    }
    true
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatternError::Empty => f.write_str("path pattern is empty"),
            PatternError::NotAbsolute => f.write_str("path pattern must start with /"),
            PatternError::DoubleStarNotWholeSegment => {
                f.write_str("** must be a whole path segment (/a/**/b)")
            }
            PatternError::QueryNotAllowed => {
                f.write_str("path pattern contains ?; patterns match the path only")
            }
            PatternError::InvalidPath(e) => write!(f, "no request could match: {e}"),
            PatternError::NotNormalized(normal) => {
                write!(
                    f,
                    "path pattern is not a normalised path; write it as {normal}"
                )
            }
        }
    }
}

impl std::error::Error for PatternError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PatternError::InvalidPath(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
