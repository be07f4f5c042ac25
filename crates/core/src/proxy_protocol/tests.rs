use super::*;

fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(addresses);
    out
}

#[test]
fn version_1_names_the_client() {
    let line = b"PROXY TCP4 10.1.2.3 10.0.0.1 51234 8443\r\n\x16\x03\x01";
    assert_eq!(
        parse(line),
        Parse::Complete(Header {
            len: line.len() - 3,
            source: Some("10.1.2.3:51234".parse().unwrap()),
        })
    );
    let line = b"PROXY TCP6 fd00::7 fd00::1 1 443\r\n";
    assert_eq!(
        parse(line),
        Parse::Complete(Header {
            len: line.len(),
            source: Some("[fd00::7]:1".parse().unwrap()),
        })
    );
    assert_eq!(
        parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
        Parse::Complete(Header {
            len: 35,
            source: None
        })
    );
}

#[test]
fn version_2_names_the_client_and_skips_its_tlvs() {
    let mut addresses = vec![10, 1, 2, 3, 10, 0, 0, 1];
    addresses.extend_from_slice(&51234u16.to_be_bytes());
    addresses.extend_from_slice(&8443u16.to_be_bytes());
    addresses.extend_from_slice(&[0x04, 0x00, 0x02, 0xab, 0xcd]); // a NOOP TLV
    let mut header = v2(1, 0x11, &addresses);
    let len = header.len();
    header.extend_from_slice(b"\x16\x03\x01");
    assert_eq!(
        parse(&header),
        Parse::Complete(Header {
            len,
            source: Some("10.1.2.3:51234".parse().unwrap()),
        })
    );
    let mut v6 = vec![0u8; 36];
    v6[0] = 0xfd;
    v6[15] = 7;
    v6[32..34].copy_from_slice(&9u16.to_be_bytes());
    assert_eq!(
        parse(&v2(1, 0x21, &v6)),
        Parse::Complete(Header {
            len: 52,
            source: Some("[fd00::7]:9".parse().unwrap()),
        })
    );
    // LOCAL: the balancer's own connection (health checks), whatever follows.
    assert_eq!(
        parse(&v2(0, 0x00, &[])),
        Parse::Complete(Header {
            len: 16,
            source: None
        })
    );
}

#[test]
fn every_prefix_of_a_valid_header_is_incomplete() {
    let mut addresses = vec![10, 1, 2, 3, 10, 0, 0, 1];
    addresses.extend_from_slice(&[0, 1, 0, 2]);
    for header in [
        b"PROXY TCP4 10.1.2.3 10.0.0.1 1 2\r\n".to_vec(),
        v2(1, 0x11, &addresses),
    ] {
        for end in 0..header.len() {
            assert_eq!(parse(&header[..end]), Parse::Incomplete, "{end}");
        }
        assert!(matches!(parse(&header), Parse::Complete(_)));
    }
}

#[test]
fn malformed_headers_are_refused() {
    let v1_bad: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01\x02\x00",
        b"PROXY TCP4 10.1.2.3 10.0.0.1 51234\r\n",
        b"PROXY TCP4 10.1.2.300 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 fd00::1 10.0.0.1 1 2\r\n",
        b"PROXY TCP6 10.1.2.3 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 10.1.2.3 10.0.0.1 65536 2\r\n",
        b"PROXY TCP4 10.1.2.3 10.0.0.1 01 2\r\n",
        b"PROXY TCP4 10.1.2.3 10.0.0.1 +1 2\r\n",
        b"PROXY UDP4 10.1.2.3 10.0.0.1 1 2\r\n",
        b"PROXY  TCP4 10.1.2.3 10.0.0.1 1 2\r\n",
    ];
    for bad in v1_bad {
        assert!(
            matches!(parse(bad), Parse::Invalid(_)),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // No CRLF within 107 bytes.
    let long = format!("PROXY TCP4 {}", "1".repeat(120));
    assert!(matches!(parse(long.as_bytes()), Parse::Invalid(_)));
    // Version 2: wrong version, command, family, length.
    let mut wrong_version = v2(1, 0x11, &[0; 12]);
    wrong_version[12] = 0x31;
    assert!(matches!(parse(&wrong_version), Parse::Invalid(_)));
    assert!(matches!(parse(&v2(2, 0x11, &[0; 12])), Parse::Invalid(_)));
    assert!(matches!(parse(&v2(1, 0x12, &[0; 12])), Parse::Invalid(_)));
    assert!(matches!(parse(&v2(1, 0x11, &[0; 8])), Parse::Invalid(_)));
    assert!(matches!(parse(&v2(1, 0x21, &[0; 12])), Parse::Invalid(_)));
    let mut huge = V2_SIGNATURE.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert!(matches!(parse(&huge), Parse::Invalid(_)));
}

#[test]
fn ranges_hold_their_addresses() {
    let range = IpRange::parse("10.0.0.0/8").unwrap();
    assert!(range.contains("10.200.1.1".parse().unwrap()));
    assert!(range.contains("::ffff:10.1.1.1".parse().unwrap()));
    assert!(!range.contains("11.0.0.1".parse().unwrap()));
    assert!(!range.contains("fd00::1".parse().unwrap()));
    let one = IpRange::parse("127.0.0.1").unwrap();
    assert!(one.contains("127.0.0.1".parse().unwrap()));
    assert!(!one.contains("127.0.0.2".parse().unwrap()));
    assert!(IpRange::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
    assert!(IpRange::parse("fd00::/8")
        .unwrap()
        .contains("fd12::1".parse().unwrap()));
    for bad in [
        "10.0.0.1/8",
        "10.0.0.0/33",
        "fd00::/129",
        "ten",
        "10.0.0.0/x",
        "",
    ] {
        assert!(IpRange::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn ipv4_mapped_ranges_are_refused_as_they_could_never_match() {
    // Found by fuzzing (fuzz/run.sh, target proxy_protocol): parsed, `::ffff:10.0.0.1` did not
    // contain its own address, as peers are matched in their IPv4 form.
    for mapped in [
        "::ffff:10.0.0.1",
        "::ffff:10.0.0.0/104",
        "::ffff:0.0.0.0/96",
    ] {
        let err = IpRange::parse(mapped).unwrap_err();
        assert!(err.contains("IPv4-mapped"), "{mapped}: {err}");
    }
    assert!(IpRange::parse("::/0").is_ok());
    assert!(IpRange::parse("::1").is_ok());
}
