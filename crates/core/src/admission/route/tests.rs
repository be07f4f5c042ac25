use std::sync::Arc;

use super::*;

fn route(name: &str, hosts: &[&str], prefix: &str) -> Route {
    Route {
        name: Arc::from(name),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        path_prefix: prefix.to_string(),
        upstream: "u".into(),
        upstream_slot: 0,
        credentials: crate::policy::Credentials::Mtls,
        forward_token: false,
        max_body_bytes: None,
        limit: None,
    }
}

#[test]
fn longest_prefix_and_host_win() {
    let table = RouteTable::new(&[
        route("all", &[], "/"),
        route("pay", &[], "/payments"),
        route("refunds", &[], "/payments/refunds"),
        route("admin", &["admin.internal"], "/payments"),
    ]);
    let pick = |host, path| table.select(host, path).map(|r| &*r.name);
    assert_eq!(pick(None, "/payments/refunds/1"), Some("refunds"));
    assert_eq!(pick(None, "/payments/charge"), Some("pay"));
    assert_eq!(pick(None, "/payments"), Some("pay"));
    assert_eq!(pick(None, "/paymentsx"), Some("all"));
    assert_eq!(pick(Some("admin.internal"), "/payments/x"), Some("pay"));
    let only_host = RouteTable::new(&[route("admin", &["admin.internal"], "/")]);
    assert_eq!(
        only_host
            .select(Some("admin.internal"), "/x")
            .map(|r| &*r.name),
        Some("admin")
    );
    assert!(only_host.select(Some("other"), "/x").is_none());
    assert!(only_host.select(None, "/x").is_none());
}

#[test]
fn every_route_knows_where_its_upstream_is() {
    let mut a = route("a", &[], "/a");
    a.upstream = "zeta".into();
    let mut b = route("b", &[], "/b");
    b.upstream = "alpha".into();
    let mut c = route("c", &[], "/c");
    c.upstream = "zeta".into();
    let table = RouteTable::new(&[a, b, c]);
    assert_eq!(table.upstreams(), ["alpha", "zeta"]);
    for path in ["/a", "/b", "/c"] {
        let r = table.select(None, path).unwrap();
        assert_eq!(table.upstreams()[r.upstream_slot], r.upstream);
    }
}
