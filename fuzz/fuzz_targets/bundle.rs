//! Trust bundle files: PEM, or the SPIFFE bundle format (JSON), read for one trust domain.
#![no_main]

use libfuzzer_sys::fuzz_target;
use x509_parser::prelude::{FromDer, X509Certificate};
use zonegate_core::identity::bundle::x509_authorities;

fuzz_target!(|data: &[u8]| {
    let Ok(found) = x509_authorities(data, "example.org") else {
        return;
    };
    // A bundle that loads anchors something, and only certificates that parse, none of which
    // names another trust domain.
    assert!(!found.roots.is_empty());
    for root in &found.roots {
        let (_, cert) = X509Certificate::from_der(root).expect("a returned root parses");
        let san = cert.subject_alternative_name().expect("a kept root's names are readable");
        if let Some(san) = san {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::URI(uri) = name {
                    if let Some(rest) = uri.strip_prefix("spiffe://") {
                        let domain = rest.split('/').next().unwrap_or_default();
                        assert!(domain.eq_ignore_ascii_case("example.org"), "{uri}");
                    }
                }
            }
        }
    }
});
