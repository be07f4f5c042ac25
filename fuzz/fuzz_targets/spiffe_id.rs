//! SPIFFE IDs and ID patterns, as they arrive in certificates' URI SANs, token subjects and
//! config. Input: an ID, or `pattern\nid` to also check pattern matching.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zonegate_core::identity::spiffe::{validate_trust_domain, SpiffeId, MAX_ID_LEN};
use zonegate_core::identity::IdPattern;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, id) = match text.split_once('\n') {
        Some((pattern, id)) => (Some(pattern), id),
        None => (None, text),
    };
    let parsed = check_id(id);
    if let Some(pattern) = pattern {
        check_id(pattern);
        check_pattern(pattern, parsed.as_ref());
    }
});

/// Parses `s`; an ID that parses is `s` byte for byte, splits back into `s`, and parses again
/// to itself (nothing is normalised, so nothing can change on a second pass).
fn check_id(s: &str) -> Option<SpiffeId> {
    let id = SpiffeId::parse(s).ok()?;
    assert_eq!(id.as_str(), s);
    assert!(s.len() <= MAX_ID_LEN);
    assert_eq!(format!("spiffe://{}{}", id.trust_domain(), id.path()), s);
    assert_eq!(validate_trust_domain(id.trust_domain()), Ok(()));
    assert!(id.path().is_empty() || id.path().starts_with('/'));
    assert!(!id.path().ends_with('/'));
    assert_eq!(SpiffeId::parse(&id.to_string()).as_ref(), Ok(&id));
    Some(id)
}

/// A pattern matches at segment boundaries only: `Below(base)` matches exactly the IDs that
/// start with `base/`, `Exact` only its own ID.
fn check_pattern(pattern: &str, id: Option<&SpiffeId>) {
    let Ok(parsed) = IdPattern::parse(pattern) else {
        return;
    };
    let Some(id) = id else { return };
    let matches = parsed.matches(id);
    match &parsed {
        IdPattern::Any => assert!(matches),
        IdPattern::Exact(want) => assert_eq!(matches, want == id),
        IdPattern::Below(base) => {
            let below = id
                .as_str()
                .strip_prefix(base.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'));
            assert_eq!(matches, below, "{pattern:?} {id:?}");
        }
    }
}
