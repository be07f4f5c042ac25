//! Revocation lists: SPIFFE IDs, certificate serials and token ids that must be refused even
//! while their credentials are otherwise valid. Checked on every request.

use std::collections::HashSet;

/// What is revoked. Serials are lower-case hex of the DER serial bytes, as events print them.
#[derive(Clone, Debug, Default)]
pub struct RevocationList {
    pub spiffe_ids: HashSet<String>,
    pub serials: HashSet<String>,
    pub jtis: HashSet<String>,
}

impl RevocationList {
    pub fn is_empty(&self) -> bool {
        self.spiffe_ids.is_empty() && self.serials.is_empty() && self.jtis.is_empty()
    }

    /// Why a credential with this ID and serial is revoked, if it is.
    pub fn check(&self, spiffe_id: &str, serial_hex: &str) -> Option<&'static str> {
        if self.spiffe_ids.contains(spiffe_id) {
            Some("SPIFFE ID is revoked")
        } else if !self.serials.is_empty() && self.serials.contains(normalize_serial(serial_hex)) {
            Some("certificate serial is revoked")
        } else {
            None
        }
    }
}

/// A serial in canonical form: lower-case hex without separators or leading zero bytes, so
/// `00:8F:01` (DER, as events print it) and `8f01` (as many tools print it) are the same.
pub fn normalize_serial(serial: &str) -> &str {
    let mut s = serial;
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_match_with_or_without_the_der_sign_byte() {
        let mut list = RevocationList::default();
        list.serials.insert(normalize_serial("008f01").to_string());
        assert!(list.check("spiffe://td/a", "008f01").is_some());
        assert!(list.check("spiffe://td/a", "8f01").is_some());
        assert!(list.check("spiffe://td/a", "8f02").is_none());
        assert_eq!(normalize_serial("00"), "00");
    }
}
