#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use super::super::picture::{Edge, RouteNode};
use super::*;

const EVIL: &str = "spiffe://example.org/x\"><script>alert('id')</script><!--&amp;";

fn picture() -> Picture {
    let node = IdentityNode {
        id: EVIL.to_string(),
        kind: "observed",
        zone: "shop".to_string(),
        routes: 0,
        zones: 0,
        grants: 0,
        allowed: 0,
        denied: 1,
        shared: false,
        peak_peer_ips: 1,
        peak_cert_serials: 1,
        stale: vec![],
    };
    Picture {
        zones: vec!["payments".to_string()],
        identities: vec![node],
        routes: vec![RouteNode {
            id: "payments/api".to_string(),
            zone: "payments".to_string(),
            route: "api".to_string(),
        }],
        edges: vec![Edge {
            from: EVIL.to_string(),
            to: "payments/api".to_string(),
            kind: EdgeKind::ObservedDenied,
            allowed: 0,
            denied: 1,
            samples: vec!["GET /a/</script><script>alert(1)</script> (default_deny)".to_string()],
        }],
        shared_threshold: 5,
        window_s: 600,
        notes: vec![],
    }
}

#[test]
fn text_escapes_markup_and_both_quotes() {
    assert_eq!(
        text(r#"<a href="x" title='y'>&</a>"#),
        "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
    );
    assert_eq!(
        text("spiffe://example.org/ns/shop"),
        "spiffe://example.org/ns/shop"
    );
}

#[test]
fn json_in_a_script_element_cannot_close_it_and_reads_back_the_same() {
    let value = serde_json::json!({ "id": "</script><!--<script>&\u{2028}" });
    let inert = json_script(&value).unwrap();
    assert!(
        !inert.contains('<') && !inert.contains('>') && !inert.contains('&'),
        "{inert}"
    );
    let back: serde_json::Value = serde_json::from_str(&inert).unwrap();
    assert_eq!(back, value);
}

#[test]
fn input_strings_reach_the_page_only_escaped() {
    let page = render(&picture()).unwrap();
    // The page's own two script elements, and no other.
    assert_eq!(page.matches("<script").count(), 2, "{page}");
    assert_eq!(page.matches("</script>").count(), 2, "{page}");
    assert!(!page.contains("<!--"), "{page}");
    let escaped = text(EVIL);
    assert!(page.contains(&format!("data-node=\"{escaped}\"")), "{page}");
    assert!(
        page.contains(&format!("data-edge-from=\"{escaped}\"")),
        "{page}"
    );
    assert!(
        page.contains(&format!("<td class=\"id\">{escaped}</td>")),
        "{page}"
    );
    // The data the script reads holds the strings as they were.
    let start = page.find("id=\"zone-data\">").unwrap() + "id=\"zone-data\">".len();
    let end = start + page[start..].find("</script>").unwrap();
    let data: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
    assert_eq!(data["identities"][0]["id"], EVIL);
    assert_eq!(data["edges"][0]["kind"], "observed-denied");
    assert_eq!(
        data["edges"][0]["samples"][0],
        "GET /a/</script><script>alert(1)</script> (default_deny)"
    );
}

#[test]
fn the_page_fetches_nothing_and_is_the_same_for_the_same_input() {
    let page = render(&picture()).unwrap();
    assert_eq!(page, render(&picture()).unwrap());
    for fetch in [
        "src=", "href=", "@import", "url(", "http:", "https:", "xmlns",
    ] {
        assert!(!page.contains(fetch), "{fetch} in the page");
    }
    assert!(page.contains("default-src 'none'"));
}

#[test]
fn long_labels_are_cut_but_nodes_keep_the_whole_identity() {
    let long = format!("spiffe://example.org/{}", "é".repeat(100));
    let cut = label(&long);
    assert_eq!(cut.chars().count(), MAX_LABEL);
    assert!(cut.ends_with('…'));
    assert_eq!(label("short"), "short");
}
