#[test]
fn ids_are_unique_and_fixed_width() {
    let a = super::next_id();
    let b = super::next_id();
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
}
