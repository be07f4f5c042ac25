use std::io::Write;

use super::*;

fn reader_over(text: &[u8]) -> (tempfile::NamedTempFile, EventReader) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text).unwrap();
    let reader = EventReader::open(file.path()).unwrap();
    (file, reader)
}

const REQUEST: &str = r#"{"schema":"zonegate.identity/v1","kind":"request","decision":"allow","reason":"allowed","source_spiffe_id":"spiffe://td/a","method":"GET","path":"/x","route":"r","destination_zone":"z"}"#;

#[test]
fn request_events_are_read_and_everything_else_counted() {
    let mut text = String::new();
    text.push_str(REQUEST);
    text.push('\n');
    text.push_str("\n   \n");
    text.push_str(r#"{"schema":"zonegate.identity/v1","kind":"events_dropped","dropped":7}"#);
    text.push('\n');
    text.push_str(
        r#"{"schema":"zonegate.identity/v1","kind":"handshake_refused","decision":"deny"}"#,
    );
    text.push('\n');
    text.push_str("{torn");
    text.push('\n');
    text.push_str(r#"{"schema":"other/v9","kind":"request"}"#);
    text.push('\n');
    text.push_str(r#"{"schema":"zonegate.identity/v1","kind":"request","decision":"allow"}"#);
    text.push('\n');
    // The last line of a file may lack its newline; a CR before it is JSON whitespace.
    text.push_str(&REQUEST.replace("/x", "/y"));
    text.push('\r');
    let (_file, mut reader) = reader_over(text.as_bytes());
    let mut paths = Vec::new();
    reader.for_each_request(|e| paths.push(e.path.map(|p| p.into_owned())));
    assert_eq!(paths, [Some("/x".to_string()), Some("/y".to_string())]);
    assert_eq!(
        reader.stats,
        ReadStats {
            lines: 9,
            requests: 2,
            other_records: 2,
            malformed: 3,
            dropped_by_gateway: 7,
        }
    );
    assert_eq!(reader.problems.len(), 3);
    assert!(
        reader.problems[0]
            .ends_with(":6: not a JSON event: key must be a string at line 1 column 2"),
        "{:?}",
        reader.problems
    );
    assert!(
        reader.problems[1].contains(":7: schema is Some(\"other/v9\")"),
        "{:?}",
        reader.problems
    );
    assert!(
        reader.problems[2].contains(":8: not a request event: missing field `reason`"),
        "{:?}",
        reader.problems
    );
}

#[test]
fn overlong_lines_are_skipped_without_being_kept() {
    let mut text = Vec::new();
    text.extend_from_slice(REQUEST.as_bytes());
    text.push(b'\n');
    text.extend(std::iter::repeat_n(b'x', MAX_LINE * 3));
    text.push(b'\n');
    text.extend_from_slice(REQUEST.as_bytes());
    text.push(b'\n');
    let (_file, mut reader) = reader_over(&text);
    let mut n = 0;
    reader.for_each_request(|_| n += 1);
    assert_eq!(n, 2);
    assert_eq!(reader.stats.malformed, 1);
    assert!(
        reader.line.capacity() <= MAX_LINE * 2,
        "the long line was buffered"
    );
    assert!(reader.problems[0].ends_with(":2: line longer than 65536 bytes"));
}

#[test]
fn gzip_is_refused_with_a_way_out() {
    let (_file, _) = reader_over(REQUEST.as_bytes());
    let mut gz = tempfile::NamedTempFile::new().unwrap();
    gz.write_all(&[0x1f, 0x8b, 8, 0]).unwrap();
    let err = EventReader::open(gz.path()).err().unwrap();
    assert!(err.to_string().contains("zcat FILE"), "{err}");
}

#[test]
fn peer_ips_ignore_ports() {
    assert_eq!(peer_ip("10.0.0.1:443"), "10.0.0.1");
    assert_eq!(peer_ip("[::1]:443"), "::1");
    assert_eq!(peer_ip("::1"), "::1");
    assert_eq!(peer_ip("10.0.0.1"), "10.0.0.1");
}
