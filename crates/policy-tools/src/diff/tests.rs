use super::*;
use crate::testing::Fixture;

const BASE: &str = r#"
[[rule]]
id = "reads"
effect = "allow"
zones = ["payments"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/**"]
[[rule]]
id = "no-admin"
effect = "deny"
paths = ["/payments/admin/**"]
"#;

#[test]
fn removing_a_deny_grants_what_the_allows_beneath_it_allowed() {
    let f = Fixture::new(BASE);
    let without_deny = f.with_policy(
        "new.toml",
        r#"
[[rule]]
id = "reads"
effect = "allow"
zones = ["payments"]
routes = ["payments-api"]
methods = ["GET"]
paths = ["/payments/**"]
"#,
    );
    let d = diff(&f.loaded, &without_deny, "old".into(), "new".into());
    assert_eq!(d.rules.removed, ["no-admin"]);
    assert!(d.revokes.is_empty());
    assert_eq!(d.grants.len(), 1);
    let g = &d.grants[0];
    assert_eq!(g.identities, ["spiffe://example.org/ns/payments/*"]);
    assert_eq!(
        (g.route.as_str(), g.methods.named.as_slice()),
        ("payments-api", &["GET".to_string()][..])
    );
    assert_eq!(g.paths, ["/payments/admin/**"]);
    assert_eq!(g.attr.after, Basis::Rule("reads".into()));
    assert_eq!(g.attr.before, Basis::Rule("no-admin".into()));
    // Nothing else changes: shop identities were never allowed there.
    let again = diff(&without_deny, &f.loaded, "new".into(), "old".into());
    assert_eq!((again.grants.len(), again.revokes.len()), (0, 1));
}

#[test]
fn an_unchanged_policy_has_no_diff_and_audit_only_changes_are_staged() {
    let f = Fixture::new(BASE);
    let same = f.with_policy("same.toml", BASE);
    let d = diff(&f.loaded, &same, "a".into(), "b".into());
    assert!(d.grants.is_empty() && d.revokes.is_empty() && d.staged.is_empty());
    assert_eq!(d.rules, RuleChanges::default());
    let staged = f.with_policy(
        "staged.toml",
        &format!(
            "{BASE}\n[[rule]]\nid = \"staged\"\neffect = \"allow\"\nmode = \"audit\"\nidentities = [\"spiffe://example.org/ns/shop/sa/cart\"]\nroutes = [\"payments-api\"]\nmethods = [\"GET\"]\npaths = [\"/payments/charges/*\"]\n"
        ),
    );
    let d = diff(&f.loaded, &staged, "a".into(), "b".into());
    assert!(d.grants.is_empty() && d.revokes.is_empty());
    assert_eq!(d.rules.added, ["staged"]);
    assert_eq!(d.staged.len(), 1);
    assert_eq!(
        d.staged[0].identities,
        ["spiffe://example.org/ns/shop/sa/cart"]
    );
    assert_eq!(d.staged[0].attr.would_after, "allow");
    assert_eq!(d.staged[0].attr.enforced, "deny");
}
