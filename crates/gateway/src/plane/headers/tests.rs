use http::header::{HeaderMap, HeaderValue};

use super::strip_hop_by_hop;

fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_static(value));
    }
    headers
}

fn names(headers: &HeaderMap) -> Vec<&str> {
    let mut names: Vec<&str> = headers.keys().map(|n| n.as_str()).collect();
    names.sort_unstable();
    names
}

#[test]
fn hop_by_hop_headers_are_removed_and_the_rest_kept() {
    let mut headers = map(&[
        ("connection", "keep-alive, X-Trace-Hop, close"),
        ("connection", "upgrade"),
        ("keep-alive", "timeout=5"),
        ("x-trace-hop", "1"),
        ("proxy-connection", "keep-alive"),
        ("proxy-authorization", "Basic x"),
        ("proxy-authenticate", "Basic"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("te", "gzip"),
        ("accept", "*/*"),
        ("x-kept", "1"),
    ]);
    strip_hop_by_hop(&mut headers, false);
    assert_eq!(names(&headers), ["accept", "x-kept"]);
}

#[test]
fn an_upgrade_keeps_its_connection_and_upgrade_headers() {
    let mut headers = map(&[
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("keep-alive", "timeout=5"),
        ("sec-websocket-key", "x"),
    ]);
    strip_hop_by_hop(&mut headers, true);
    assert_eq!(
        names(&headers),
        ["connection", "sec-websocket-key", "upgrade"]
    );
}

#[test]
fn te_survives_only_as_trailers() {
    let mut headers = map(&[("te", "trailers"), ("connection", "keep-alive")]);
    strip_hop_by_hop(&mut headers, false);
    assert_eq!(names(&headers), ["te"]);
    let mut headers = map(&[("te", "trailers, deflate")]);
    strip_hop_by_hop(&mut headers, false);
    assert!(headers.is_empty());
}

#[test]
fn messages_without_hop_by_hop_headers_are_untouched() {
    let mut headers = map(&[("accept", "*/*"), ("x-a", "1"), ("x-a", "2")]);
    let before = headers.clone();
    strip_hop_by_hop(&mut headers, false);
    assert_eq!(headers, before);
}

/// The usual response's `Connection` (only `keep-alive` or `close`) takes a shorter way; any
/// other option it names, or a `Keep-Alive` beside it, takes the full one, and both remove
/// the same headers.
#[test]
fn a_connection_naming_only_itself_is_removed_and_any_named_header_with_it() {
    /// The headers of a message, and the names left after the strip.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            &[("connection", "keep-alive"), ("x-kept", "1")],
            &["x-kept"],
        ),
        (&[("connection", " Close "), ("x-kept", "1")], &["x-kept"]),
        (
            &[("connection", "keep-alive,,close"), ("connection", "")],
            &[],
        ),
        (
            &[
                ("connection", "keep-alive"),
                ("keep-alive", "timeout=5"),
                ("x-kept", "1"),
            ],
            &["x-kept"],
        ),
        (
            &[
                ("connection", "keep-alive, x-named"),
                ("x-named", "1"),
                ("x-kept", "1"),
            ],
            &["x-kept"],
        ),
        (
            &[
                ("connection", "close"),
                ("connection", "X-Named"),
                ("x-named", "1"),
            ],
            &[],
        ),
    ];
    for (pairs, kept) in cases {
        let mut headers = HeaderMap::new();
        for (name, value) in *pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(names(&headers), *kept, "{pairs:?}");
    }
    // An upgrade keeps its Connection header, whatever it says.
    let mut headers = map(&[("connection", "keep-alive")]);
    strip_hop_by_hop(&mut headers, true);
    assert_eq!(names(&headers), ["connection"]);
}
