use std::path::Path;

use super::*;
use zonegate_devkit::devpki;

/// A directory holding a dev PKI, for configs to reference.
fn pki_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    devpki::write_dev_pki(&dir.path().join("certs"), "example.org").unwrap();
    dir
}

fn write(dir: &Path, name: &str, contents: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path
}

const GOOD: &str = r#"
zone = "payments"
[[listener]]
address = "127.0.0.1:8443"
[tls]
cert = "certs/gateway.crt"
key = "certs/gateway.key"
[trust_domain."example.org"]
bundle = "certs/ca.crt"
[[zone_map]]
zone = "shop"
identities = ["spiffe://example.org/ns/shop/*"]
[[route]]
name = "api"
path_prefix = "/api/"
upstream = "backend"
[upstream.backend]
addresses = ["127.0.0.1:9000"]
[policy]
files = ["policy"]
"#;

const GOOD_POLICY: &str = r#"
[[rule]]
id = "allow-shop"
effect = "allow"
zones = ["shop"]
routes = ["api"]
methods = ["get"]
paths = ["/api/**"]
"#;

#[test]
fn loads_a_good_config() {
    let dir = pki_dir();
    let path = write(dir.path(), "gw.toml", GOOD);
    write(dir.path(), "policy/a.toml", GOOD_POLICY);
    let config = load(&path).unwrap();
    assert_eq!(config.zone, "payments");
    assert_eq!(config.routes[0].path_prefix, "/api");
    assert_eq!(config.rules.len(), 1);
    assert_eq!(config.rules[0].methods, vec!["GET".to_string()]);
    assert_eq!(
        config.tls.spiffe_id.as_ref().map(|id| id.as_str()),
        Some("spiffe://example.org/ns/payments/sa/zonegate")
    );
    let shop = SpiffeId::parse("spiffe://example.org/ns/shop/sa/cart").unwrap();
    let other = SpiffeId::parse("spiffe://example.org/ns/data/sa/etl").unwrap();
    assert_eq!(config.zone_of(&shop), "shop");
    assert_eq!(config.zone_of(&other), UNKNOWN_ZONE);
}

#[test]
fn unknown_key_is_refused_with_file_line_and_key() {
    let dir = pki_dir();
    let path = write(
        dir.path(),
        "gw.toml",
        &GOOD.replace("[policy]", "[policy]\nfilez = []"),
    );
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert_eq!(e.file, path);
    assert_eq!(e.key, "filez");
    assert!(e.line.is_some());
    assert!(e.reason.contains("unknown field"), "{}", e.reason);
}

#[test]
fn reports_every_error_at_once() {
    let dir = pki_dir();
    let bad = GOOD
        .replace("127.0.0.1:8443", "localhost")
        .replace("certs/ca.crt", "certs/missing.crt")
        .replace("spiffe://example.org/ns/shop/*", "spiffe://Example.org/*")
        .replace("upstream = \"backend\"", "upstream = \"nowhere\"");
    let path = write(dir.path(), "gw.toml", &bad);
    write(
        dir.path(),
        "policy/a.toml",
        &GOOD_POLICY
            .replace("\"allow\"", "\"permit\"")
            .replace("/api/**", "/api/a**b"),
    );
    let errors = load(&path).unwrap_err();
    let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
    for want in [
        "listener[0].address",
        "trust_domain.\"example.org\".bundle",
        "zone_map[0].identities[0]",
        "route[0].upstream",
        "rule[0].effect",
        "rule[0].paths[0]",
    ] {
        assert!(keys.contains(&want), "missing {want} in {errors}");
    }
    let policy_error = errors.0.iter().find(|e| e.key == "rule[0].effect").unwrap();
    assert!(policy_error.file.ends_with("policy/a.toml"));
}

#[test]
fn duplicate_rule_ids_and_unknown_routes_are_refused() {
    let dir = pki_dir();
    let path = write(dir.path(), "gw.toml", GOOD);
    write(dir.path(), "policy/a.toml", GOOD_POLICY);
    write(
        dir.path(),
        "policy/b.toml",
        &GOOD_POLICY.replace("[\"api\"]", "[\"ghost\"]"),
    );
    let errors = load(&path).unwrap_err().to_string();
    assert!(
        errors.contains("duplicate rule id `allow-shop`"),
        "{errors}"
    );
    assert!(errors.contains("route `ghost`"), "{errors}");
}

#[test]
fn tls_upstream_requires_a_ca() {
    let dir = pki_dir();
    let path = write(
        dir.path(),
        "gw.toml",
        &GOOD.replace(
            "addresses = [\"127.0.0.1:9000\"]",
            "addresses = [\"127.0.0.1:9000\"]\ntls = \"mtls\"",
        ),
    );
    write(dir.path(), "policy/a.toml", GOOD_POLICY);
    let errors = load(&path).unwrap_err();
    assert_eq!(errors.0[0].key, "upstream.backend.ca");
}

const TOKENS: &str = r#"
[token_issuer.td]
kind = "jwt-svid"
trust_domain = "example.org"
keys = "certs/jwt-bundle.json"
algorithms = ["ES256"]
[[route]]
name = "tok"
path_prefix = "/tok"
upstream = "backend"
credentials = "either"
"#;

#[test]
fn loads_token_issuers_with_their_defaults() {
    let dir = pki_dir();
    let path = write(dir.path(), "gw.toml", &format!("{GOOD}{TOKENS}"));
    write(dir.path(), "policy/a.toml", GOOD_POLICY);
    let config = load(&path).unwrap();
    let issuer = &config.token_issuers[0];
    assert_eq!(&*issuer.name, "td");
    // The audience defaults to the gateway's own SPIFFE ID.
    assert_eq!(
        issuer.audiences,
        vec!["spiffe://example.org/ns/payments/sa/zonegate".to_string()]
    );
    assert_eq!((issuer.leeway_s, issuer.max_lifetime_s), (30, 3600));
    assert_eq!(issuer.keys.keys.len(), 1);
    assert_eq!(
        config.routes[1].credentials,
        crate::policy::Credentials::Either
    );
    assert!(
        config.files.iter().any(|f| f.ends_with("jwt-bundle.json")),
        "keys are watched"
    );
}

#[test]
fn refuses_every_unsafe_token_setting_with_file_and_key() {
    let dir = pki_dir();
    let bad = r#"
[token_issuer.a]
kind = "jwt-svid"
trust_domain = "example.org"
keys = "certs/jwt-bundle.json"
algorithms = ["none", "HS256", "EdDSA", "ES999"]
max_lifetime_s = 100000
leeway_s = 3600
[token_issuer.b]
kind = "jwt"
trust_domain = "example.org"
keys = "certs/missing.json"
algorithms = ["ES256"]
[token_issuer.c]
kind = "saml"
keys = "certs/jwt-bundle.json"
algorithms = []
[[route]]
name = "tok"
path_prefix = "/tok"
upstream = "backend"
credentials = "sometimes"
"#;
    let path = write(dir.path(), "gw.toml", &format!("{GOOD}{bad}"));
    write(
        dir.path(),
        "policy/a.toml",
        r#"
[[rule]]
id = "by-subject"
effect = "allow"
subjects = ["repo:acme/*"]
claims = { scope = "" }
[[rule]]
id = "unknown-issuer"
effect = "allow"
issuers = ["nobody"]
"#,
    );
    let errors = load(&path).unwrap_err().to_string();
    for want in [
        "token_issuer.a.algorithms[0]: `none` (an unsigned token) is never accepted",
        "token_issuer.a.algorithms[1]: `HS256`: symmetric (HMAC) algorithms are never accepted",
        "token_issuer.a.algorithms[2]: `EdDSA` is not a JWT-SVID algorithm",
        "token_issuer.a.algorithms[3]: `ES999` is not one of",
        "token_issuer.a.max_lifetime_s: between 1 and 86400 seconds",
        "token_issuer.a.leeway_s: at most 300 seconds",
        "token_issuer.b.issuer: required for kind = \"jwt\"",
        "token_issuer.b.trust_domain: another issuer already speaks for `example.org`",
        "token_issuer.b.keys: cannot read",
        "token_issuer.c.kind: `saml` is not \"jwt-svid\" or \"jwt\"",
        "token_issuer.c.algorithms: list the signature algorithms",
        "route[1].credentials: `sometimes` is not one of",
        "rule[0].issuers: required with `subjects` or `claims`",
        "rule[0].claims.scope: a claim matcher needs a name and at least one non-empty value",
        "rule `unknown-issuer` names token issuer `nobody`",
    ] {
        assert!(errors.contains(want), "missing `{want}` in:\n{errors}");
    }
}

#[test]
fn token_routes_need_an_issuer_and_forward_token_needs_a_token_route() {
    let dir = pki_dir();
    let bad = r#"
[[route]]
name = "tok"
path_prefix = "/tok"
upstream = "backend"
credentials = "token"
[[route]]
name = "fwd"
path_prefix = "/fwd"
upstream = "backend"
forward_token = true
[connections]
idle_timeout_s = 0
"#;
    let path = write(dir.path(), "gw.toml", &format!("{GOOD}{bad}"));
    write(dir.path(), "policy/a.toml", GOOD_POLICY);
    let errors = load(&path).unwrap_err().to_string();
    for want in [
        "route[1].credentials: `token` accepts tokens, but no [token_issuer.NAME] is configured",
        "route[2].forward_token: set only on routes whose credentials accept tokens",
        "connections.idle_timeout_s: must be at least 1",
    ] {
        assert!(errors.contains(want), "missing `{want}` in:\n{errors}");
    }
}

#[test]
fn limits_on_rules_and_routes_are_read_and_every_bad_one_is_refused_with_its_key() {
    let dir = pki_dir();
    let config = GOOD.replace(
        "upstream = \"backend\"\n",
        "upstream = \"backend\"\nlimit = { in_flight = 8, per = \"identity_route\" }\n",
    );
    let path = write(dir.path(), "gw.toml", &config);
    write(
        dir.path(),
        "policy/a.toml",
        &format!("{GOOD_POLICY}limit = {{ rate = \"600/m\" }}\n"),
    );
    let loaded = load(&path).unwrap();
    let rule = loaded.rules[0].limit.as_ref().unwrap();
    assert_eq!(
        rule.to_string(),
        "10/s (burst 10), per identity",
        "the burst defaults to a second's worth"
    );
    let route = loaded.routes[0].limit.as_ref().unwrap();
    assert_eq!(route.to_string(), "8 in flight, per identity and route");

    write(
        dir.path(),
        "policy/a.toml",
        r#"
[[rule]]
id = "bad-rate"
effect = "allow"
limit = { rate = "10/d", burst = 0 }
[[rule]]
id = "nothing"
effect = "allow"
limit = { per = "zone" }
[[rule]]
id = "on-a-deny"
effect = "deny"
limit = { rate = "1/s" }
[[rule]]
id = "in-audit"
effect = "allow"
mode = "audit"
limit = { in_flight = 1 }
"#,
    );
    let errors = load(&path).unwrap_err().to_string();
    for expected in [
        "rule[0].limit.rate: `10/d`: `d` is not one of s, m, h",
        "rule[0].limit.burst: must be at least 1",
        "rule[1].limit: a limit needs a `rate`, an `in_flight`, or both",
        "rule[1].limit.per: `zone` is not \"identity\" or \"identity_route\"",
        "rule[2].limit: only an enforced allow rule can carry a limit",
        "rule[3].limit: only an enforced allow rule can carry a limit",
    ] {
        assert!(errors.contains(expected), "no {expected:?} in:\n{errors}");
    }
    // A misspelt key is refused, not ignored (the limit would silently not apply).
    write(
        dir.path(),
        "policy/a.toml",
        "[[rule]]\nid = \"typo\"\neffect = \"allow\"\nlimit = { rate = \"1/s\", brust = 3 }\n",
    );
    let errors = load(&path).unwrap_err().to_string();
    assert!(errors.contains("unknown field `brust`"), "{errors}");
}

#[test]
fn an_upstreams_spiffe_ids_need_tls_and_may_not_be_any() {
    let dir = pki_dir();
    let with = |lines: &str| {
        let config = GOOD.replace(
            "addresses = [\"127.0.0.1:9000\"]\n",
            &format!("addresses = [\"127.0.0.1:9000\"]\n{lines}"),
        );
        let path = write(dir.path(), "gw.toml", &config);
        write(dir.path(), "policy/a.toml", GOOD_POLICY);
        load(&path)
    };
    let loaded = with(
        "tls = \"mtls\"\nca = \"certs/ca.crt\"\nspiffe_ids = [\"spiffe://example.org/ns/payments/*\"]\n",
    )
    .unwrap();
    assert_eq!(
        loaded.upstreams["backend"].spiffe_ids[0].to_string(),
        "spiffe://example.org/ns/payments/*"
    );
    let plain = with("spiffe_ids = [\"spiffe://example.org/ns/payments/api\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        plain.contains("upstream.backend.spiffe_ids: set only with tls"),
        "{plain}"
    );
    let any = with("tls = \"tls\"\nca = \"certs/ca.crt\"\nspiffe_ids = [\"*\"]\n")
        .unwrap_err()
        .to_string();
    assert!(any.contains("would accept any SPIFFE ID"), "{any}");
    let bad = with("tls = \"tls\"\nca = \"certs/ca.crt\"\nspiffe_ids = [\"https://x\"]\n")
        .unwrap_err()
        .to_string();
    assert!(bad.contains("upstream.backend.spiffe_ids[0]"), "{bad}");
}

#[test]
fn event_formats_and_syslog_receivers_are_read_and_bad_ones_refused_with_their_key() {
    let dir = pki_dir();
    let with = |events: &str| {
        let path = write(dir.path(), "gw.toml", &format!("{GOOD}[events]\n{events}"));
        write(dir.path(), "policy/a.toml", GOOD_POLICY);
        load(&path)
    };
    let loaded = with("sink = \"syslog\"\naddress = \"tcp://[::1]:6514\"\nfacility = \"auth\"\nformat = \"ocsf\"\n").unwrap();
    assert_eq!(loaded.events.format, EventFormat::Ocsf);
    assert_eq!(
        loaded.events.sink,
        EventsSink::Syslog(SyslogTarget {
            transport: SyslogTransport::Tcp,
            address: "[::1]:6514".into(),
            facility: 4,
        })
    );
    let loaded = with("sink = \"syslog\"\naddress = \"unix:///dev/log\"\n").unwrap();
    assert_eq!(
        loaded.events.sink,
        EventsSink::Syslog(SyslogTarget {
            transport: SyslogTransport::Unix,
            address: "/dev/log".into(),
            facility: 16,
        })
    );
    assert_eq!(loaded.events.format, EventFormat::Zonegate);

    for (events, expected) in [
        (
            "sink = \"syslog\"\n",
            "events.address: required when sink = \"syslog\"",
        ),
        (
            "sink = \"syslog\"\naddress = \"udp://host\"\n",
            "events.address: `udp://host`",
        ),
        (
            "sink = \"syslog\"\naddress = \"udp://:514\"\n",
            "events.address: `udp://:514`",
        ),
        (
            "sink = \"syslog\"\naddress = \"http://h:1\"\n",
            "events.address: `http://h:1`",
        ),
        (
            "sink = \"syslog\"\naddress = \"unix://dev/log\"\n",
            "events.address: `unix://dev/log`",
        ),
        (
            "sink = \"syslog\"\naddress = \"udp://h:1\"\nfacility = \"local9\"\n",
            "events.facility: `local9` is not a syslog facility",
        ),
        (
            "sink = \"file\"\npath = \"e.jsonl\"\naddress = \"udp://h:1\"\n",
            "events.address: set only with sink = \"syslog\"",
        ),
        (
            "sink = \"stdout\"\nfacility = \"auth\"\n",
            "events.facility: set only with sink = \"syslog\"",
        ),
        (
            "format = \"cef\"\n",
            "events.format: `cef` is not one of \"zonegate\", \"ocsf\"",
        ),
    ] {
        let error = with(events).unwrap_err().to_string();
        assert!(error.contains("gw.toml"), "{error}");
        assert!(error.contains(expected), "{events}: {error}");
    }
}

#[test]
fn tracing_is_read_with_its_defaults_and_bad_settings_refused_with_their_key() {
    let dir = pki_dir();
    let with = |tracing: &str| {
        let path = write(
            dir.path(),
            "gw.toml",
            &format!("{GOOD}[tracing]\n{tracing}"),
        );
        write(dir.path(), "policy/a.toml", GOOD_POLICY);
        load(&path)
    };
    let loaded = with("endpoint = \"http://127.0.0.1:4318\"\n").unwrap();
    let tracing = loaded.tracing.unwrap();
    assert_eq!(tracing.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(tracing.sample, 0.01);
    assert!(tracing.follow_parent);
    assert_eq!(tracing.service_name, "zonegate");
    assert_eq!(tracing.batch_delay, std::time::Duration::from_secs(5));
    let loaded =
        with("endpoint = \"https://otel:4318\"\nca = \"certs/ca.crt\"\nsample = 1\n").unwrap();
    assert!(loaded
        .tracing
        .unwrap()
        .ca
        .unwrap()
        .ends_with("certs/ca.crt"));
    assert!(load(&write(dir.path(), "gw.toml", GOOD))
        .unwrap()
        .tracing
        .is_none());

    for (tracing, expected) in [
        ("sample = 0.5\n", "tracing.endpoint: required"),
        (
            "endpoint = \"otel:4318\"\n",
            "tracing.endpoint: `otel:4318` is not an http:// or https:// URL",
        ),
        (
            "endpoint = \"https://otel:4318\"\n",
            "tracing.ca: required with an https endpoint",
        ),
        (
            "endpoint = \"http://otel:4318\"\nca = \"certs/ca.crt\"\n",
            "tracing.ca: set only with an https endpoint",
        ),
        (
            "endpoint = \"http://otel:4318\"\nsample = 1.5\n",
            "tracing.sample: 1.5 is not a share between 0 and 1",
        ),
        (
            "endpoint = \"http://otel:4318\"\nbatch_delay_ms = 0\n",
            "tracing.batch_delay_ms: 0 is not between 1 and 60000",
        ),
        (
            "endpoint = \"http://otel:4318\"\nservice = \"x\"\n",
            "unknown field `service`",
        ),
    ] {
        let error = with(tracing).unwrap_err().to_string();
        assert!(error.contains("gw.toml"), "{error}");
        assert!(error.contains(expected), "{tracing}: {error}");
    }
}

#[test]
fn bundle_endpoints_are_read_and_bad_ones_refused_with_their_key() {
    let dir = pki_dir();
    let partner = zonegate_devkit::devpki::DevCa::new("partner.org").unwrap();
    write(dir.path(), "partner.pem", &partner.cert_pem());
    let with = |td: &str| {
        let path = write(
            dir.path(),
            "gw.toml",
            &format!("{GOOD}[trust_domain.\"partner.org\"]\nbundle = \"partner.pem\"\n{td}"),
        );
        write(dir.path(), "policy/a.toml", GOOD_POLICY);
        load(&path)
    };
    let loaded = with("bundle_endpoint = \"https://partner.example:8443/bundle\"\n").unwrap();
    assert_eq!(
        loaded.bundle_endpoints,
        vec![BundleEndpoint {
            trust_domain: "partner.org".into(),
            url: "https://partner.example:8443/bundle".into(),
            profile: EndpointProfile::Web { ca: None },
            bundle_path: dir.path().join("partner.pem"),
        }]
    );
    let loaded = with(
        "bundle_endpoint = \"https://partner.example:8443/bundle\"\n\
         endpoint_profile = \"https_spiffe\"\n\
         endpoint_spiffe_id = \"spiffe://partner.org/spire/server\"\n",
    )
    .unwrap();
    assert_eq!(
        loaded.bundle_endpoints[0].profile,
        EndpointProfile::Spiffe {
            id: "spiffe://partner.org/spire/server".into()
        }
    );
    for (td, expected) in [
        (
            "bundle_endpoint = \"http://partner.example/bundle\"\n",
            "bundle_endpoint: `http://partner.example/bundle` is not an https:// URL",
        ),
        (
            "bundle_endpoint = \"https://p/b\"\nendpoint_profile = \"https_spiffe\"\n",
            "endpoint_spiffe_id: required with https_spiffe",
        ),
        (
            "bundle_endpoint = \"https://p/b\"\nendpoint_profile = \"https_spiffe\"\n\
             endpoint_spiffe_id = \"spiffe://partner.org/x\"\nendpoint_ca = \"certs/ca.crt\"\n",
            "endpoint_ca: not with https_spiffe",
        ),
        (
            "bundle_endpoint = \"https://p/b\"\nendpoint_profile = \"https_spiffe\"\n\
             endpoint_spiffe_id = \"spiffe://elsewhere.org/server\"\n",
            "endpoint_spiffe_id: `spiffe://elsewhere.org/server`: no bundle of its trust domain",
        ),
        (
            "bundle_endpoint = \"https://p/b\"\nendpoint_profile = \"https_spiffe\"\n\
             endpoint_spiffe_id = \"https://partner.org/server\"\n",
            "endpoint_spiffe_id: `https://partner.org/server`",
        ),
        (
            "bundle_endpoint = \"https://p/b\"\nendpoint_spiffe_id = \"spiffe://partner.org/x\"\n",
            "endpoint_spiffe_id: set only with endpoint_profile = \"https_spiffe\"",
        ),
        (
            "bundle_endpoint = \"https://p/b\"\nendpoint_profile = \"web\"\n",
            "endpoint_profile: `web` is not \"https_web\" or \"https_spiffe\"",
        ),
        (
            "endpoint_ca = \"certs/ca.crt\"\n",
            "endpoint_ca: set only with bundle_endpoint",
        ),
    ] {
        let error = with(td).unwrap_err().to_string();
        assert!(error.contains("trust_domain.\"partner.org\"."), "{error}");
        assert!(error.contains(expected), "{td}: {error}");
    }
}

#[test]
fn token_issuers_with_fetched_keys_are_read_and_bad_ones_refused_with_their_key() {
    let dir = pki_dir();
    const IDP: &str = "[token_issuer.idp]\nkind = \"jwt\"\nissuer = \"https://idp.example\"\n\
                       algorithms = [\"ES256\"]\naudiences = [\"gw\"]\nkeys = \"idp-jwks.json\"\n";
    let with = |tail: &str| {
        let path = write(dir.path(), "gw.toml", &format!("{GOOD}{tail}"));
        write(dir.path(), "policy/a.toml", GOOD_POLICY);
        load(&path)
    };
    // No keys file yet: the issuer starts with no keys, and the file is watched for the first
    // fetch to write.
    let loaded = with(&format!(
        "{IDP}discovery = \"https://idp.example/.well-known/openid-configuration\"\n\
         endpoint_ca = \"certs/ca.crt\"\n"
    ))
    .unwrap();
    let keys_path = dir.path().join("idp-jwks.json");
    assert_eq!(
        loaded.remote_keys,
        vec![RemoteKeys {
            issuer: "idp".into(),
            location: KeysLocation::Discovery {
                url: "https://idp.example/.well-known/openid-configuration".into(),
                issuer: "https://idp.example".into(),
            },
            ca: Some(dir.path().join("certs/ca.crt")),
            keys_path: keys_path.clone(),
            algorithms: vec![jsonwebtoken::Algorithm::ES256],
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(86_400),
            unknown_kid_refetch: Duration::from_secs(30),
        }]
    );
    assert!(loaded.token_issuers[0].keys.keys.is_empty());
    assert!(loaded.files.contains(&keys_path));

    let loaded = with(&format!(
        "{IDP}jwks_uri = \"https://idp.example:8443/jwks\"\nmin_refresh_s = 5\n\
         max_refresh_s = 600\nunknown_kid_refetch_s = 10\n"
    ))
    .unwrap();
    let remote = &loaded.remote_keys[0];
    assert_eq!(
        remote.location,
        KeysLocation::Jwks("https://idp.example:8443/jwks".into())
    );
    assert_eq!(remote.ca, None);
    assert_eq!(
        (
            remote.min_refresh,
            remote.max_refresh,
            remote.unknown_kid_refetch
        ),
        (
            Duration::from_secs(5),
            Duration::from_secs(600),
            Duration::from_secs(10)
        )
    );

    for (tail, expected) in [
        (
            format!("{IDP}jwks_uri = \"http://idp.example/jwks\"\n"),
            "token_issuer.idp.jwks_uri: `http://idp.example/jwks` is not an https:// URL",
        ),
        (
            format!("{IDP}discovery = \"https:///.well-known/openid-configuration\"\n"),
            "token_issuer.idp.discovery: `https:///.well-known/openid-configuration` is not an https:// URL",
        ),
        (
            format!("{IDP}jwks_uri = \"https://idp.example/jwks\"\ndiscovery = \"https://idp.example/d\"\n"),
            "token_issuer.idp.discovery: set jwks_uri or discovery, not both",
        ),
        (
            format!("{IDP}jwks_uri = \"https://idp.example/jwks\"\nendpoint_ca = \"no-such-ca.pem\"\n"),
            "token_issuer.idp.endpoint_ca: cannot read",
        ),
        (
            format!("{IDP}endpoint_ca = \"certs/ca.crt\"\n"),
            "token_issuer.idp.endpoint_ca: set only with jwks_uri or discovery",
        ),
        (
            format!("{IDP}unknown_kid_refetch_s = 5\n"),
            "token_issuer.idp.unknown_kid_refetch_s: set only with jwks_uri or discovery",
        ),
        (
            format!("{IDP}jwks_uri = \"https://idp.example/jwks\"\nmin_refresh_s = 0\n"),
            "token_issuer.idp.min_refresh_s: between 1 and 604800 seconds",
        ),
        (
            format!("{IDP}jwks_uri = \"https://idp.example/jwks\"\nmin_refresh_s = 600\nmax_refresh_s = 60\n"),
            "token_issuer.idp.max_refresh_s: 60 is less than min_refresh_s (600)",
        ),
        (
            format!("{IDP}jwks_uri = \"https://idp.example/jwks\"\nunknown_kid_refetch_s = 0\n"),
            "token_issuer.idp.unknown_kid_refetch_s: between 1 and 3600 seconds",
        ),
        // Without a URL to fetch from, the keys file is the only source: it must exist.
        (IDP.to_string(), "token_issuer.idp.keys: cannot read"),
        (
            "[token_issuer.td]\nkind = \"jwt-svid\"\ntrust_domain = \"example.org\"\n\
             algorithms = [\"ES256\"]\nkeys = \"certs/ca.crt\"\n\
             jwks_uri = \"https://spire.example.org/keys\"\n"
                .to_string(),
            "token_issuer.td.jwks_uri: only for kind = \"jwt\"",
        ),
    ] {
        let error = with(&tail).unwrap_err().to_string();
        assert!(error.contains("gw.toml"), "{error}");
        assert!(error.contains(expected), "{tail}: {error}");
    }
}
