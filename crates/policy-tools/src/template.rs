//! Path templates for suggested rules: observed paths with their identifiers folded into `*`,
//! so one pattern covers `/orders/1`, `/orders/2`, ... without covering anything else.
//!
//! A segment is an identifier when it is a number, a UUID, a long hex string (hashes, object
//! ids) or a long base64-ish token (letters and digits mixed, 20+ characters); `ch_3Nx...` or
//! `order-12345` keep their prefix (`ch_*`, `order-*`). Everything else is a name and stays.

use crate::policy::PathPattern;

/// Shortest hex string taken for a hash or object id (a 64-bit id in hex is 16 digits).
const MIN_HEX: usize = 16;
/// Shortest token taken for a base64-ish identifier.
const MIN_TOKEN: usize = 20;

/// The template of a normalised path: identifier segments replaced by `*` (or `prefix*`).
pub(crate) fn template(path: &str) -> String {
    let Some(rest) = path.strip_prefix('/') else {
        return path.to_string();
    };
    let segments: Vec<String> = rest.split('/').map(fold_segment).collect();
    format!("/{}", segments.join("/"))
}

/// A pattern that matches `path`: its template when that is a valid pattern matching it, else
/// the path itself as an exact pattern (`None` when even that is not a pattern, e.g. a path
/// with a literal `**`).
pub(crate) fn pattern_for(path: &str) -> Option<String> {
    let t = template(path);
    if PathPattern::parse(&t).is_ok_and(|p| p.matches(path)) {
        return Some(t);
    }
    PathPattern::parse(path)
        .is_ok_and(|p| p.matches(path))
        .then(|| path.to_string())
}

fn fold_segment(segment: &str) -> String {
    // A literal `*` in a path would read as a wildcard in a pattern.
    if segment.contains('*') || is_plain_identifier(segment) {
        return "*".to_string();
    }
    if let Some(at) = segment.rfind(['_', '-', '.', ':', '~']) {
        let (prefix, tail) = (&segment[..at + 1], &segment[at + 1..]);
        let prefix_is_name = prefix.len() > 1
            && prefix[..prefix.len() - 1]
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-');
        let tail_is_id = (tail.len() >= 3 && tail.bytes().all(|b| b.is_ascii_digit()))
            || is_identifier(tail)
            || (tail.len() >= 10 && is_mixed_token(tail));
        if prefix_is_name && tail_is_id {
            return format!("{prefix}*");
        }
    }
    if is_identifier(segment) {
        return "*".to_string();
    }
    segment.to_string()
}

/// Numbers, dates and times, UUIDs and long hex: identifiers whatever surrounds them.
fn is_plain_identifier(s: &str) -> bool {
    !s.is_empty()
        && (s.bytes().all(|b| b.is_ascii_digit())
            || is_timestamp(s)
            || is_uuid(s)
            || (s.len() >= MIN_HEX && s.bytes().all(|b| b.is_ascii_hexdigit())))
}

/// `2026-11-23`, `2026-11-23T10:00:00Z`, `20261123.1`: digits and separators, 6+ digits.
fn is_timestamp(s: &str) -> bool {
    s.bytes().filter(u8::is_ascii_digit).count() >= 6
        && s.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.' | b':' | b'T' | b'Z'))
}

/// Letters and digits, both present.
fn is_mixed_token(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'='))
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Numbers, UUIDs, long hex, long mixed tokens.
pub(crate) fn is_identifier(s: &str) -> bool {
    is_plain_identifier(s) || (s.len() >= MIN_TOKEN && is_mixed_token(s))
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_fold_and_names_stay() {
        let cases = [
            ("/payments/charges/42/refund", "/payments/charges/*/refund"),
            (
                "/orders/3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b/items",
                "/orders/*/items",
            ),
            ("/blobs/9f86d081884c7d659a2feaa0c55ad015", "/blobs/*"),
            ("/tokens/dGhpcyBpcyBhIHRva2VuMTIz", "/tokens/*"),
            (
                "/payments/charges/ch_3NxAbCdEfGhIjKlMn0",
                "/payments/charges/ch_*",
            ),
            ("/orders/order-12345", "/orders/order-*"),
            ("/settlements/2026-11-23", "/settlements/*"),
            ("/v1.2.3/docs", "/v1.2.3/docs"),
            ("/v1/users/me/settings", "/v1/users/me/settings"),
            (
                "/v2/customer-notifications-settings",
                "/v2/customer-notifications-settings",
            ),
            ("/api/v1", "/api/v1"),
            ("/catalog/items/", "/catalog/items/"),
            ("/", "/"),
            ("/deadbeef", "/deadbeef"),
        ];
        for (path, want) in cases {
            assert_eq!(template(path), want, "{path}");
            assert_eq!(pattern_for(path).as_deref(), Some(want), "{path}");
        }
    }

    #[test]
    fn a_template_always_matches_its_path_or_is_refused() {
        // A literal `**` segment folds to `*`; an empty middle segment cannot occur in a
        // normalised path.
        assert_eq!(pattern_for("/a/**/b").as_deref(), Some("/a/*/b"));
        assert_eq!(pattern_for("/a/x*y").as_deref(), Some("/a/*"));
        assert_eq!(pattern_for("relative"), None);
    }
}
