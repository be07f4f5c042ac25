//! Request-target normalisation, and path patterns over its output. Input: a request target,
//! or `pattern\ntarget` to also check a pattern against the normalised path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zonegate_core::policy::path::{normalize, MAX_TARGET_LEN};
use zonegate_core::policy::PathPattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.split_once('\n') {
        // A raw newline is refused by `normalize`, so it can only be the separator.
        Some((pattern, target)) => {
            check_normalize(pattern);
            let path = check_normalize(target);
            check_pattern(pattern, path.as_deref());
        }
        None => {
            check_normalize(text);
        }
    }
});

/// The normal form is a fixed point, starts with `/`, keeps the query byte for byte, and has
/// no empty, `.` or `..` segment but a trailing slash.
fn check_normalize(raw: &str) -> Option<String> {
    let target = normalize(raw).ok()?;
    let path = &target.path;
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(target.to_request_target().len() <= MAX_TARGET_LEN);
    assert_eq!(target.query.as_deref(), raw.split_once('?').map(|(_, q)| q));
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!segment.is_empty() || last, "{raw:?} -> {path:?}");
        assert!(*segment != "." && *segment != "..", "{raw:?} -> {path:?}");
    }
    assert!(!path.contains(';') && !path.contains("%3B"));
    let again = normalize(&target.to_request_target());
    assert_eq!(again.as_ref(), Ok(&target), "{raw:?} is not a fixed point");
    let path_only = normalize(path);
    assert_eq!(path_only.map(|t| t.path).as_ref(), Ok(path));
    Some(target.path)
}

/// A pattern is its own normal form; every path it matches starts with its literal prefix
/// (the rule index relies on this); an exact pattern matches exactly its own text.
fn check_pattern(pattern: &str, path: Option<&str>) {
    let Ok(parsed) = PathPattern::parse(pattern) else {
        return;
    };
    assert_eq!(parsed.as_str(), pattern);
    assert!(pattern.starts_with(parsed.literal_prefix()));
    if parsed.is_exact() {
        assert!(parsed.matches(pattern));
    }
    let Some(path) = path else { return };
    if parsed.matches(path) {
        assert!(
            path.starts_with(parsed.literal_prefix()),
            "{pattern:?} matches {path:?} outside its literal prefix"
        );
        if parsed.is_exact() {
            assert_eq!(path, pattern);
        }
    }
}
