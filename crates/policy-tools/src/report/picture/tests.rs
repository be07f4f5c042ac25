#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use super::*;
use crate::report::Sharing;
use crate::testing::Fixture;

const CHECKOUT: &str = "spiffe://example.org/ns/shop/sa/checkout";
const CART: &str = "spiffe://example.org/ns/shop/sa/cart";
const LEDGER: &str = "spiffe://example.org/ns/payments/sa/ledger";

const POLICY: &str = r#"
[[rule]]
id = "checkout"
effect = "allow"
identities = ["spiffe://example.org/ns/shop/sa/checkout"]
routes = ["payments-api"]
methods = ["GET", "POST"]
paths = ["/payments/**"]

[[rule]]
id = "ledger"
effect = "allow"
identities = ["spiffe://example.org/ns/payments/sa/ledger"]
routes = ["ledger-grpc"]
"#;

/// A request event of `id` to `zone`'s `route`.
fn event(id: &str, zone: &str, route: &str, decision: &str, path: &str) -> String {
    serde_json::json!({
        "kind": "request",
        "decision": decision,
        "reason": if decision == "allow" { "allowed" } else { "default_deny" },
        "method": "GET",
        "source_spiffe_id": id,
        "source_zone": "shop",
        "destination_zone": zone,
        "route": route,
        "path": path,
    })
    .to_string()
}

fn draw(lines: &[String]) -> Picture {
    let fixture = Fixture::new(POLICY);
    let sides = [fixture.loaded];
    let mut sharing = Sharing::new(0);
    let mut observed = Observations::default();
    for line in lines {
        let event: RequestEvent<'_> = serde_json::from_str(line).unwrap();
        sharing.observe(&event);
        observed.observe(&event, &sides);
    }
    let ranking = crate::blast::rank(&sides, &observed.identities());
    picture(&sides, &ranking, &observed, &sharing.summaries(5), 5, 0)
}

fn edges(p: &Picture) -> Vec<(&str, &str, EdgeKind)> {
    p.edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.kind))
        .collect()
}

#[test]
fn grants_are_used_stale_or_refused_as_the_events_show() {
    let p = draw(&[
        event(
            CHECKOUT,
            "payments",
            "payments-api",
            "allow",
            "/payments/charges/1",
        ),
        event(
            CART,
            "payments",
            "payments-api",
            "deny",
            "/payments/charges/2",
        ),
        event(
            CART,
            "payments",
            "payments-api",
            "deny",
            "/payments/charges/3",
        ),
        // Another gateway's event, and a route this config no longer has: not drawn.
        event(CART, "shop", "cart-api", "deny", "/cart"),
        event(CHECKOUT, "payments", "old-api", "allow", "/old"),
    ]);
    assert_eq!(
        edges(&p),
        [
            (
                "spiffe://example.org/ns/payments/sa/ledger",
                "payments/ledger-grpc",
                EdgeKind::Stale
            ),
            (CART, "payments/payments-api", EdgeKind::ObservedDenied),
            (CHECKOUT, "payments/payments-api", EdgeKind::GrantedUsed),
        ]
    );
    let denied = &p.edges[1];
    // Identifiers folded, one sample for both requests.
    assert_eq!(
        (denied.denied, denied.samples.clone()),
        (
            2,
            vec!["GET /payments/charges/* (default_deny)".to_string()]
        )
    );
    let ledger = p.identities.iter().find(|i| i.id == LEDGER).unwrap();
    assert_eq!(ledger.stale, ["payments/ledger-grpc"]);
    assert_eq!(
        (ledger.routes, ledger.zones, ledger.zone.as_str()),
        (1, 1, "payments")
    );
    let cart = p.identities.iter().find(|i| i.id == CART).unwrap();
    assert_eq!((cart.kind, cart.routes, cart.denied), ("observed", 0, 2));
    assert_eq!(
        p.routes.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [
            "payments/admin-api",
            "payments/ledger-grpc",
            "payments/payments-api"
        ]
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("2 request event(s) of other gateways")),
        "{:?}",
        p.notes
    );
}

#[test]
fn traffic_the_policy_no_longer_grants_and_ids_that_do_not_parse_are_drawn_as_observed() {
    let odd = "spiffe://example.org/<b>";
    let p = draw(&[
        event(
            CART,
            "payments",
            "ledger-grpc",
            "allow",
            "/ledger.v1.Ledger/Get",
        ),
        event(odd, "payments", "payments-api", "deny", "/payments"),
    ]);
    assert!(edges(&p).contains(&(CART, "payments/ledger-grpc", EdgeKind::ObservedUngranted)));
    assert!(edges(&p).contains(&(odd, "payments/payments-api", EdgeKind::ObservedDenied)));
    let node = p.identities.iter().find(|i| i.id == odd).unwrap();
    assert_eq!((node.kind, node.zone.as_str()), ("observed", "shop"));
}

#[test]
fn identities_are_sorted_by_zone_then_id() {
    let p = draw(&[event(CART, "payments", "payments-api", "deny", "/payments")]);
    let keys: Vec<(&str, &str)> = p
        .identities
        .iter()
        .map(|i| (i.zone.as_str(), i.id.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
}
