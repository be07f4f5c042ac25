//! Micro-benchmarks of the identity path: SPIFFE ID parsing and the X.509-SVID leaf checks the
//! gateway runs once per connection (certificates minted by rcgen at start-up).
//!
//! `cargo bench -p zonegate-core --bench identity`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use zonegate_core::identity::svid::inspect_leaf;
use zonegate_core::identity::SpiffeId;
use zonegate_devkit::devpki::{DevCa, LeafSpec};

fn spiffe_id_parse(c: &mut Criterion) {
    // The longest valid ID: every byte of the path is checked.
    let segments = vec!["segment"; 240].join("/");
    let long = format!("spiffe://example.org/{segments}");
    assert!(long.len() <= zonegate_core::identity::spiffe::MAX_ID_LEN);
    let cases = [
        (
            "typical",
            "spiffe://example.org/ns/shop/sa/checkout".to_string(),
        ),
        ("long_2k", long),
        // Refused only at the last segment: the whole string is read first.
        (
            "invalid_late",
            "spiffe://example.org/ns/shop/sa/check%6Fut".to_string(),
        ),
        ("invalid_scheme", "SPIFFE://example.org/ns/shop".to_string()),
    ];
    let mut group = c.benchmark_group("spiffe_id_parse");
    for (name, input) in &cases {
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, s| {
            b.iter(|| SpiffeId::parse(black_box(s)))
        });
    }
    group.finish();
}

fn svid_leaf_checks(c: &mut Criterion) {
    // Minting is setup, not measured; a failure here is a broken benchmark, not a result.
    let ca = DevCa::new("example.org").expect("dev CA");
    let valid = ca
        .svid("spiffe://example.org/ns/shop/sa/checkout")
        .expect("SVID");
    let mut two_uris = LeafSpec::svid("spiffe://example.org/ns/shop/sa/checkout");
    two_uris
        .uri_sans
        .push("spiffe://example.org/ns/shop/sa/cart".into());
    let two_uris = ca.issue(&two_uris).expect("leaf with two URI SANs");
    let mut is_ca = LeafSpec::svid("spiffe://example.org/ns/shop/sa/checkout");
    is_ca.is_ca = true;
    let is_ca = ca.issue(&is_ca).expect("CA leaf");
    assert!(inspect_leaf(&valid.cert_der).is_ok());
    assert!(inspect_leaf(&two_uris.cert_der).is_err());
    assert!(inspect_leaf(&is_ca.cert_der).is_err());

    let mut group = c.benchmark_group("svid_inspect_leaf");
    for (name, der) in [
        ("valid", &valid.cert_der),
        ("refused_two_uri_sans", &two_uris.cert_der),
        ("refused_ca", &is_ca.cert_der),
    ] {
        group.bench_with_input(BenchmarkId::from_parameter(name), der, |b, der| {
            b.iter(|| inspect_leaf(black_box(der)))
        });
    }
    group.finish();
}

criterion_group!(benches, spiffe_id_parse, svid_leaf_checks);
criterion_main!(benches);
