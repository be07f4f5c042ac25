//! The identity event as one JSON line, written by hand.
//!
//! serde's derive spends most of an event's cost escaping strings a byte at a time, its keys
//! included, and an event is written for every cross-zone request. This writes the same bytes
//! (the tests compare it with `serde_json` field for field): keys as constants, strings copied
//! whole unless they hold something to escape (the time and ids, [`Plain`], without
//! looking), integers with the formatter serde_json uses, and the one float from its whole
//! microseconds (any other value by serde_json itself).

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;

use serde::Serialize;

use super::IdentityEvent;

/// A string that holds nothing JSON escapes (no control character, `"` or `\\`), so the line
/// copies it without looking. Only this crate's makers of such text (an [`Id`](crate::ids::Id)'s
/// hex, a [`Clock`](super::Clock)'s RFC 3339 time) make one unchecked; anything else is checked
/// by [`Plain::new`]. The event's time and ids are a quarter of its per-request text, and the
/// gateway makes them itself.
///
/// It keeps the text's bytes: the line copies bytes, and an id is ASCII made byte by byte, so
/// it is never checked as UTF-8 on the way (~50 instructions an id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plain<'a>(&'a [u8]);

impl<'a> Plain<'a> {
    /// `text`, if it holds nothing to escape.
    pub fn new(text: &'a str) -> Option<Plain<'a>> {
        (!needs_escape(text.as_bytes())).then_some(Plain(text.as_bytes()))
    }

    /// Text this crate made from ASCII characters JSON never escapes. A debug build checks
    /// it, so every test that makes one does.
    pub(crate) fn made(text: &'a [u8]) -> Plain<'a> {
        debug_assert!(text.is_ascii() && !needs_escape(text), "{text:?}");
        Plain(text)
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    pub fn as_str(&self) -> &'a str {
        // Made from a `str` or from ASCII: never fails.
        std::str::from_utf8(self.0).unwrap_or_default()
    }
}

impl fmt::Display for Plain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Plain<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `,"name":`, made at compile time: one copy per key instead of three (names are constants
/// without anything to escape).
macro_rules! key {
    ($out:expr, $name:literal) => {
        $out.extend_from_slice(concat!(",\"", $name, "\":").as_bytes())
    };
}

/// `","name":"`: ends the string before it and starts this field's string value.
macro_rules! next_string {
    ($out:expr, $name:literal) => {
        $out.extend_from_slice(concat!("\",\"", $name, "\":\"").as_bytes())
    };
}

impl IdentityEvent<'_> {
    /// Appends the event to `out` as serde_json would encode it, and a newline.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        self.write_json_line_with(out, None);
    }

    /// [`write_json_line`](Self::write_json_line), with the source's fields taken from
    /// `source` when given: what [`write_source_fields`](Self::write_source_fields) wrote for
    /// an event whose fields it writes are the same as this one's. A connection proved by its
    /// certificate alone makes them once per snapshot (they hold no per-request fact), and
    /// they are a third of an event's encoding.
    pub fn write_json_line_with(&self, out: &mut Vec<u8>, source: Option<&[u8]>) {
        out.reserve(1024);
        // The first seven values are all strings with nothing to escape (names the code
        // spells, text the gateway makes), so each separator closes one and opens the next:
        // one copy per field instead of four.
        out.extend_from_slice(b"{\"schema\":\"");
        verbatim(out, self.schema);
        next_string!(out, "kind");
        verbatim(out, self.kind);
        next_string!(out, "time");
        out.extend_from_slice(self.time.as_bytes());
        next_string!(out, "event_id");
        out.extend_from_slice(self.event_id.as_bytes());
        next_string!(out, "request_id");
        out.extend_from_slice(self.request_id.as_bytes());
        next_string!(out, "decision");
        verbatim(out, self.decision);
        next_string!(out, "reason");
        verbatim(out, self.reason);
        out.push(b'"');
        key!(out, "detail");
        optional(out, self.detail);
        key!(out, "rule_id");
        optional(out, self.rule_id);
        key!(out, "audit_rule_id");
        optional(out, self.audit_rule_id);
        key!(out, "audit_decision");
        optional_constant(out, self.audit_decision);
        match source {
            Some(fields) => out.extend_from_slice(fields),
            None => self.write_source_fields(out),
        }
        key!(out, "route");
        optional(out, self.route);
        key!(out, "upstream");
        optional(out, self.upstream);
        key!(out, "method");
        string(out, self.method);
        key!(out, "host");
        optional(out, self.host);
        key!(out, "path");
        optional(out, self.path);
        key!(out, "raw_path");
        optional(out, self.raw_path);
        key!(out, "http_version");
        constant(out, self.http_version);
        key!(out, "status");
        out.extend_from_slice(itoa::Buffer::new().format(self.status).as_bytes());
        key!(out, "duration_ms");
        millis(out, self.duration_ms);
        key!(out, "policy_generation");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(self.policy_generation)
                .as_bytes(),
        );
        out.extend_from_slice(b"}\n");
    }

    /// The fields from `cross_zone` to `destination_zone`, each with its leading comma: who
    /// the request is from (credential, SPIFFE ID, zone, address, certificate and token
    /// facts) and where it went. For the same identity on the same connection under the same
    /// snapshot they are the same bytes.
    pub fn write_source_fields(&self, out: &mut Vec<u8>) {
        key!(out, "cross_zone");
        out.extend_from_slice(if self.cross_zone { b"true" } else { b"false" });
        key!(out, "credential");
        optional_constant(out, self.credential);
        key!(out, "source_spiffe_id");
        optional(out, self.source_spiffe_id);
        key!(out, "source_zone");
        optional(out, self.source_zone);
        key!(out, "peer_addr");
        match self.peer_addr {
            Some(addr) => socket_addr(out, addr),
            None => out.extend_from_slice(b"null"),
        }
        key!(out, "cert_serial");
        optional(out, self.cert_serial);
        key!(out, "cert_not_after");
        optional(out, self.cert_not_after);
        key!(out, "token_issuer");
        optional(out, self.token_issuer);
        key!(out, "token_subject");
        optional(out, self.token_subject);
        key!(out, "token_jti");
        optional(out, self.token_jti);
        key!(out, "token_expiry");
        optional(out, self.token_expiry);
        key!(out, "destination_zone");
        string(out, self.destination_zone);
    }
}

/// A string the code spells (a `&'static str`: a kind, decision, reason or version name),
/// which holds nothing to escape (they are snake_case or `HTTP/1.1`-like): copied without
/// looking. A debug build checks each one written, so every test that writes events does.
#[inline(always)]
fn constant(out: &mut Vec<u8>, value: &'static str) {
    out.push(b'"');
    verbatim(out, value);
    out.push(b'"');
}

/// [`constant`]'s text without its quotes (checked the same way in a debug build).
#[inline(always)]
fn verbatim(out: &mut Vec<u8>, value: &'static str) {
    debug_assert!(!needs_escape(value.as_bytes()), "{value:?}");
    out.extend_from_slice(value.as_bytes());
}

#[inline(always)]
fn optional_constant(out: &mut Vec<u8>, value: Option<&'static str>) {
    match value {
        Some(v) => constant(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

#[inline(always)]
fn optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string. Most values need no escape and are copied whole; any other goes through
/// serde_json, so escapes are spelled exactly as elsewhere in the stream.
#[inline(always)]
fn string(out: &mut Vec<u8>, value: &str) {
    if needs_escape(value.as_bytes()) {
        if serde_json::to_writer(&mut *out, value).is_err() {
            // Writing to a Vec cannot fail; keep the line valid JSON regardless.
            out.extend_from_slice(b"null");
        }
    } else {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
}

/// Whether JSON needs an escape in `bytes`: a control character, `"` or `\\`. Eight bytes at
/// a time, without a branch per word (the usual bit tricks for "some byte is less than n /
/// equal to c", exact for n <= 128); a string's last word is read overlapping the one before
/// it, so no byte-at-a-time tail either; a shorter string is padded to a word.
#[inline(always)]
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let flags = |x: u64| {
        let below_space = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        (below_space
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGHS
    };
    let word = |chunk: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        u64::from_ne_bytes(word)
    };
    if bytes.len() < 8 {
        // One word too: the string padded with spaces, which need no escape.
        let mut padded = [b' '; 8];
        padded[..bytes.len()].copy_from_slice(bytes);
        return flags(u64::from_ne_bytes(padded)) != 0;
    }
    let mut chunks = bytes.chunks_exact(8);
    let mut found = 0;
    for chunk in &mut chunks {
        found |= flags(word(chunk));
    }
    if !chunks.remainder().is_empty() {
        found |= flags(word(&bytes[bytes.len() - 8..]));
    }
    found != 0
}

/// A duration in milliseconds, as serde_json writes the `f64`. The gateway's durations are
/// whole microseconds (`micros / 1000.0`); the shortest decimal that reads back as such a
/// number is `micros` itself with the point three digits in (at most 15 significant digits,
/// which no other decimal of as few digits shares), so it is written from the integer,
/// without float formatting. Any other value goes through serde_json (its exponent
/// spelling, `null` for NaN).
#[inline(always)]
fn millis(out: &mut Vec<u8>, ms: f64) {
    let micros = (ms * 1000.0).round();
    if ms.is_sign_positive() && micros < 1e12 && micros / 1000.0 == ms {
        let micros = micros as u64;
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(micros / 1000).as_bytes());
        out.push(b'.');
        let fraction = micros % 1000;
        let fraction = [fraction / 100, fraction / 10 % 10, fraction % 10].map(|d| d as u8);
        // Trailing zeros dropped, one digit kept (`1.0`, as serde_json writes a whole number).
        let len = fraction
            .iter()
            .rposition(|&d| d != 0)
            .map_or(1, |last| last + 1);
        for digit in &fraction[..len] {
            out.push(b'0' + digit);
        }
    } else if serde_json::to_writer(&mut *out, &ms).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// A socket address as serde writes it (its `Display` form, as a string).
fn socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    out.push(b'"');
    socket_addr_text_into(out, addr);
    out.push(b'"');
}

/// `addr`'s `Display` form, without the formatter machinery for the usual IPv4 address.
pub fn socket_addr_text(addr: SocketAddr) -> String {
    let mut out = Vec::with_capacity(21);
    socket_addr_text_into(&mut out, addr);
    String::from_utf8(out).unwrap_or_else(|_| addr.to_string())
}

/// A socket address's `Display` form, in a buffer kept from one call to the next: a pool of
/// one upstream address (the usual Kubernetes Service) is asked for the same one on every
/// request, so its text is made once.
#[derive(Debug, Default)]
pub struct AddrText {
    addr: Option<SocketAddr>,
    text: String,
}

impl AddrText {
    pub const fn new() -> AddrText {
        AddrText {
            addr: None,
            text: String::new(),
        }
    }

    pub fn set(&mut self, addr: SocketAddr) -> &str {
        if self.addr != Some(addr) {
            self.addr = Some(addr);
            self.text = socket_addr_text(addr);
        }
        &self.text
    }

    /// What the last `set` said.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Writes `addr`'s `Display` form.
fn socket_addr_text_into(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(*octet).as_bytes());
            }
            out.push(b':');
            out.extend_from_slice(digits.format(v4.port()).as_bytes());
        }
        SocketAddr::V6(_) => {
            // Rare here, and its text form has rules of its own (zero compression, scopes).
            let _ = write!(out, "{addr}");
        }
    }
}

#[cfg(test)]
mod tests {
    /// The word-at-a-time check answers yes wherever an escape is needed, at every offset.
    #[test]
    fn needs_escape_misses_nothing() {
        for len in 0..24 {
            let clean = vec![b'a'; len];
            assert!(!super::needs_escape(&clean));
            for at in 0..len {
                for bad in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut dirty = clean.clone();
                    dirty[at] = bad;
                    assert!(super::needs_escape(&dirty), "{bad:#x} at {at} of {len}");
                }
            }
        }
        // Against the byte-at-a-time definition, on strings mixing every kind of byte (high
        // bytes too: a borrow out of one must not hide or fake a match in the next).
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet = [
            0x00, 0x1f, 0x20, b'!', b'"', b'#', b'\\', b']', 0x7f, 0x80, 0xc3, 0xff,
        ];
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    let pick = (seed >> (i % 60)) as usize;
                    // Mostly clean bytes, so strings without a match are common.
                    if pick % 5 == 0 {
                        alphabet[pick / 5 % alphabet.len()]
                    } else {
                        b'a' + (pick % 26) as u8
                    }
                })
                .collect();
            let slow = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            assert_eq!(super::needs_escape(&bytes), slow, "{bytes:?}");
        }
        let mut kept = super::AddrText::default();
        for addr in [
            "0.0.0.0:0",
            "10.1.200.7:9001",
            "255.255.255.255:65535",
            "[::1]:1",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535",
            "[::ffff:255.255.255.255%4294967295]:65535",
        ] {
            let addr: std::net::SocketAddr = addr.parse().unwrap();
            assert_eq!(super::socket_addr_text(addr), addr.to_string());
            // Made, then kept.
            assert_eq!(kept.set(addr), addr.to_string());
            assert_eq!(kept.set(addr), addr.to_string());
        }
        // Durations: whole microseconds from the integer, anything else through serde_json,
        // the same text either way.
        let dense = 0..20_000u64;
        let sparse = std::iter::successors(Some(20_000u64), |m| Some(m * 3 / 2 + 1 + m % 7));
        for micros in dense.chain(sparse.take_while(|&m| m < 10_000_000_000_000)) {
            for ms in [micros as f64 / 1000.0, (micros as f64 + 0.5) / 1000.0] {
                let mut ours = Vec::new();
                super::millis(&mut ours, ms);
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    serde_json::to_string(&ms).unwrap(),
                    "{micros}"
                );
            }
        }
        for ms in [-0.0, -1.0, 1e-7, 1e21, f64::NAN, f64::INFINITY, 0.1 + 0.2] {
            let mut ours = Vec::new();
            super::millis(&mut ours, ms);
            let theirs = serde_json::to_string(&ms).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), theirs, "{ms}");
        }
        // Only text without anything to escape is plain.
        assert_eq!(super::Plain::new("0af9").map(|p| p.as_str()), Some("0af9"));
        for dirty in ["a\"b", "a\\b", "tab\there", "\u{0}"] {
            assert_eq!(super::Plain::new(dirty), None, "{dirty:?}");
        }
        // Typical values, non-ASCII included, take the fast path.
        for value in [
            "spiffe://example.org/ns/shop/sa/checkout",
            "caf\u{e9} \u{1F600}",
            "~\u{7f}",
        ] {
            assert!(!super::needs_escape(value.as_bytes()), "{value}");
        }
    }
}
