//! Path patterns of policy rules: exact paths, prefixes and globs over normalised paths.
//!
//! A pattern is split into `/`-separated segments. A `**` segment matches zero or more whole
//! segments; within a segment, `*` matches any run of characters except `/` (including none,
//! so `/a/*` matches `/a/`). Hence `/v1/**` is the prefix form: it matches `/v1/` and
//! everything below, but not `/v1` itself nor `/v1x`. Matching is byte-wise and
//! case-sensitive, and runs in O(pattern segments x path segments): no backtracking blow-up on
//! hostile paths.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// A segment with `*` wildcards.
    Glob(String),
    /// `**`: any number of whole segments.
    Any,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
    literal_prefix_len: usize,
}

/// Why a path pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternError {
    Empty,
    NotAbsolute,
    DoubleStarNotWholeSegment,
}

impl PathPattern {
    pub fn parse(s: &str) -> Result<PathPattern, PatternError> {
        if s.is_empty() {
            return Err(PatternError::Empty);
        }
        if !s.starts_with('/') {
            return Err(PatternError::NotAbsolute);
        }
        let mut segments = Vec::new();
        for part in s[1..].split('/') {
            segments.push(match part {
                "**" => Segment::Any,
                p if p.contains("**") => return Err(PatternError::DoubleStarNotWholeSegment),
                p if p.contains('*') => Segment::Glob(p.to_string()),
                p => Segment::Literal(p.to_string()),
            });
        }
        let literal_prefix_len = match s.find('*') {
            Some(star) => s[..star].rfind('/').map_or(0, |slash| slash + 1),
            None => s.len(),
        };
        Ok(PathPattern {
            source: s.to_string(),
            segments,
            literal_prefix_len,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern is a plain literal path.
    pub fn is_exact(&self) -> bool {
        self.literal_prefix_len == self.source.len()
    }

    /// The literal part before the first wildcard segment (`/v1/` for `/v1/**`).
    pub fn literal_prefix(&self) -> &str {
        &self.source[..self.literal_prefix_len]
    }

    /// Whether the normalised `path` (starting with `/`) matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        if self.is_exact() {
            return self.source == path;
        }
        let parts: Vec<&str> = rest.split('/').collect();
        // reachable[j]: the first i pattern segments can consume exactly the first j path segments.
        let mut reachable = vec![false; parts.len() + 1];
        reachable[0] = true;
        let last = self.segments.len().saturating_sub(1);
        for (index, segment) in self.segments.iter().enumerate() {
            let mut next = vec![false; parts.len() + 1];
            match segment {
                // A trailing `**` needs at least one (possibly empty) segment: `/v1/**` is the
                // prefix form and does not match `/v1`. Elsewhere it may match none.
                Segment::Any => {
                    let strict = index == last;
                    let mut any = false;
                    for j in 0..=parts.len() {
                        if !strict {
                            any |= reachable[j];
                        }
                        next[j] = any;
                        if strict {
                            any |= reachable[j];
                        }
                    }
                }
                Segment::Literal(lit) => {
                    for j in 0..parts.len() {
                        next[j + 1] = reachable[j] && parts[j] == lit;
                    }
                }
                Segment::Glob(glob) => {
                    for j in 0..parts.len() {
                        next[j + 1] =
                            reachable[j] && glob_segment(glob.as_bytes(), parts[j].as_bytes());
                    }
                }
            }
            reachable = next;
        }
        reachable[parts.len()]
    }
}

/// `*` wildcard match within one segment: the classic linear-time greedy algorithm.
fn glob_segment(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternError::Empty => "path pattern is empty",
            PatternError::NotAbsolute => "path pattern must start with `/`",
            PatternError::DoubleStarNotWholeSegment => {
                "`**` must be a whole path segment (`/a/**/b`)"
            }
        })
    }
}

impl std::error::Error for PatternError {}

#[cfg(test)]
mod tests;
