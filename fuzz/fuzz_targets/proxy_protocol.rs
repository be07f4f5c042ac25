//! The PROXY protocol header (v1 and v2) a balancer sends before the TLS handshake, parsed
//! over the bytes peeked so far; and the balancer address ranges of the config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zonegate_core::proxy_protocol::{parse, IpRange, Parse, V2_MAX};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Parse::Complete(header) => {
            // Never claims more than it was given, nor more than the caller reads.
            assert!(header.len > 0 && header.len <= data.len());
            assert!(header.len <= V2_MAX);
            // The header's own bytes are enough, and the same; what follows is not its.
            assert_eq!(parse(&data[..header.len]), Parse::Complete(header));
            // Every shorter prefix of a header is Incomplete, so a caller peeking at a slow
            // balancer never acts on part of one. Checked on a sample of prefixes for long
            // v2 headers, every one for the rest.
            let step = if header.len > 128 { header.len / 64 } else { 1 };
            for end in (0..header.len).step_by(step) {
                assert_eq!(parse(&data[..end]), Parse::Incomplete, "prefix {end}");
            }
        }
        // The caller gives up after V2_MAX bytes: Incomplete must not ask for more.
        Parse::Incomplete => assert!(data.len() < V2_MAX),
        Parse::Invalid(_) => {
            // Refusal is final: more bytes cannot make an invalid start valid.
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\x16\x03\x01");
            assert!(matches!(parse(&longer), Parse::Invalid(_)));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(range) = IpRange::parse(text) {
            // A range holds its own network address (the text up to `/`).
            let network = text.split('/').next().and_then(|a| a.parse().ok());
            match network {
                Some(ip) => assert!(range.contains(ip), "{text:?}"),
                None => panic!("{text:?} parsed without an address"),
            }
        }
    }
});
