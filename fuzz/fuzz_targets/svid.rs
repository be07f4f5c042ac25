//! X.509-SVID leaf inspection: the DER certificate a peer presents, read before (the SPIFFE
//! ID, to choose a bundle) and after chain verification.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zonegate_core::identity::svid::{inspect_leaf, leaf_spiffe_id};

fuzz_target!(|der: &[u8]| {
    let facts = inspect_leaf(der);
    let id = leaf_spiffe_id(der);
    match (&facts, &id) {
        // The identity is checked first, so both agree on it: same ID, or the same refusal.
        (Ok(facts), Ok(id)) => assert_eq!(&facts.spiffe_id, id),
        (Err(e), Err(f)) => assert_eq!(e, f),
        (Err(_), Ok(_)) => {}
        (Ok(_), Err(e)) => panic!("inspect_leaf accepted what leaf_spiffe_id refused: {e}"),
    }
    let Ok(facts) = facts else { return };
    assert!(!facts.spiffe_id.path().is_empty());
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    assert_eq!(facts.sha256.as_slice(), digest.as_ref());
    assert_eq!(facts.sha256_hex.len(), 64);
    assert!(facts.serial_hex.len() % 2 == 0);
    assert!(facts
        .serial_hex
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
});
