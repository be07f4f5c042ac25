#[test]
fn ids_are_unique_and_fixed_width() {
    let a = super::next_id();
    let b = super::next_id();
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    let c = super::Id::next();
    assert_eq!(c.as_str().len(), 32);
    assert_ne!(c.as_str(), b);
    assert_eq!(c.as_str()[..16], a[..16], "one prefix per process");
}

#[test]
fn hex_matches_the_formatter() {
    for value in [
        0u64,
        1,
        0xf,
        0x10,
        0xdead_beef,
        u64::MAX,
        0x0123_4567_89ab_cdef,
        0x9a9a_9a9a_a9a9_a9a9,
    ]
    .into_iter()
    // Every digit in every place, and every single bit.
    .chain((0..16u64).map(|n| n * 0x1111_1111_1111_1111))
    .chain((0..64).map(|bit| 1u64 << bit))
    {
        let mut out = [0u8; 16];
        super::put_hex(&mut out, value);
        assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{value:016x}"));
    }
}
