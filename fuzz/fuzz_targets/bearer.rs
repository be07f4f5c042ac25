//! The `Authorization` header: every value a request carries, one per input line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zonegate_core::admission::credentials::bearer;
use zonegate_core::admission::Bearer;

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = if data.is_empty() {
        Vec::new()
    } else {
        data.split(|&b| b == b'\n').collect()
    };
    let Ok(read) = bearer(values.iter().copied()) else {
        return;
    };
    match read {
        Bearer::Absent => assert!(values.is_empty()),
        Bearer::OtherScheme => {
            assert_eq!(values.len(), 1);
            assert!(!scheme(values[0]).eq_ignore_ascii_case(b"bearer"));
        }
        Bearer::Token(token) => {
            // Exactly one value: `Bearer`, one or more spaces, and a token68 ending it.
            assert_eq!(values.len(), 1);
            let value = values[0];
            assert!(scheme(value).eq_ignore_ascii_case(b"bearer"));
            assert!(value.ends_with(token.as_bytes()));
            let between = &value[6..value.len() - token.len()];
            assert!(!between.is_empty() && between.iter().all(|&b| b == b' '));
            let body = token.trim_end_matches('=');
            assert!(!body.is_empty());
            assert!(body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)));
        }
    }
});

/// The auth-scheme: up to the first space or tab.
fn scheme(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    &value[..end]
}
