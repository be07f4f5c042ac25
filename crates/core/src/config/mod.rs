//! The gateway's configuration: the TOML file and every file it references, read and validated
//! into internal types that the rest of the gateway trusts.
//!
//! Layers: [`raw`] mirrors the file (unknown keys are errors); [`load`] converts it into
//! [`GatewayConfig`], reading certificates, bundles and policy files on the way, and collects
//! every problem into [`ConfigErrors`] so that one `zonegate check` shows them all.

mod dns;
mod error;
mod policy_file;
mod raw;
mod remote_keys;
mod sources;
mod tls_files;
mod token_issuers;
mod traces;
mod workload;

pub use crate::events::EventFormat;
use crate::proxy_protocol::IpRange;
pub use dns::{DnsConfig, UpstreamAddress};
pub use error::{ConfigError, ConfigErrors};
pub use policy_file::load_policy_files;
pub use remote_keys::{KeysLocation, RemoteKeys};
pub use sources::toml_files_in;
pub use sources::Captured;
pub use tls_files::{read_certificates, read_private_key};
pub use token_issuers::TokenSettings;
pub use traces::TracingConfig;
pub use workload::{validate_endpoint, SpiffeSource, WorkloadMaterial, WorkloadSvid, ENDPOINT_ENV};

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::identity::spiffe::validate_trust_domain;
use crate::identity::{svid, IdPattern, Identity, IssuerSpec, RevocationList, SpiffeId};
use crate::policy::{Credentials, Rule};
use raw::{RawGateway, RawRevocationList, RawUpstream, RawUpstreamTls};

/// Exit code for configuration errors (EX_USAGE), as `check` and `run` use it.
pub const EXIT_CONFIG: i32 = 64;
/// Exit code for a failure that is not the config's fault (EX_SOFTWARE).
pub const EXIT_FAILURE: i32 = 70;

/// The name of the zone given to identities no zone mapping matches.
pub const UNKNOWN_ZONE: &str = "unknown";

const DEFAULT_EVENTS_CAPACITY: usize = 8192;
const DEFAULT_CACHE_ENTRIES: usize = 65_536;
const DEFAULT_IDLE_TIMEOUT_S: u64 = 60;

/// A validated gateway configuration with its referenced files loaded.
#[derive(Debug)]
pub struct GatewayConfig {
    pub source: PathBuf,
    pub zone: String,
    pub workers: Option<usize>,
    pub listeners: Vec<Listener>,
    pub tls: ServerTls,
    /// Trust domain name -> bundle roots.
    pub trust_domains: BTreeMap<String, Vec<CertificateDer<'static>>>,
    /// Federated trust domains whose bundle the gateway fetches from their endpoint.
    pub bundle_endpoints: Vec<BundleEndpoint>,
    pub zone_map: Vec<ZoneMapping>,
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    pub rules: Vec<Rule>,
    pub policy_files: Vec<PathBuf>,
    pub decision_cache_entries: usize,
    pub events: EventsConfig,
    /// Lower-case request header names stripped before proxying, besides the built-in ones.
    pub strip_headers: Vec<String>,
    /// The admin listener, when `[admin]` is configured.
    pub admin: Option<SocketAddr>,
    pub revocation: RevocationList,
    pub shutdown: Shutdown,
    pub token_issuers: Vec<Arc<IssuerSpec>>,
    /// Token issuers whose keys the gateway fetches into their `keys` file.
    pub remote_keys: Vec<RemoteKeys>,
    pub tokens: TokenSettings,
    /// How long a client connection may sit idle between requests (HTTP/1.1 keep-alive, or an
    /// HTTP/2 connection with no stream) before the gateway closes it.
    pub idle_timeout: Duration,
    /// Bounds on a request head, and what to do with underscored header names.
    pub limits: Limits,
    /// How host-name upstream addresses are resolved.
    pub dns: DnsConfig,
    /// OpenTelemetry traces, when `[tracing]` is set.
    pub tracing: Option<TracingConfig>,
    /// Every file this config was built from (the config itself first), for reload watching.
    pub files: Vec<PathBuf>,
    /// Directories whose content is part of the config (policy directories).
    pub dirs: Vec<PathBuf>,
    /// SHA-256 (hex) over every file's path and content: equal hashes mean nothing changed.
    pub content_hash: String,
    /// SHA-256 (hex) over the policy files' contents, in load order.
    pub policy_hash: String,
    /// `[spiffe]`: the Workload API this config's SVID and bundles come from.
    pub spiffe: Option<SpiffeSource>,
    /// With `[spiffe]`, the bytes this config was read from: new material from the agent is
    /// applied to this very configuration, whatever is on disk now (see [`load_with`]).
    pub captured: Option<Arc<Captured>>,
}

/// How the gateway stops.
/// Request-head limits, checked before any byte reaches an upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// All header names and values together (431 past it).
    pub max_header_bytes: usize,
    /// Header fields (431 past it).
    pub max_headers: usize,
    /// The request target (414 past it).
    pub max_target_bytes: usize,
    pub underscores: UnderscoreAction,
    /// Concurrent streams on one HTTP/2 connection.
    pub max_concurrent_streams: u32,
    /// An HTTP/1.1 request head must arrive whole within this long of its first byte.
    pub request_head_timeout: Duration,
    /// The PROXY header and the TLS handshake must be done within this long of the accept.
    pub handshake_timeout: Duration,
}

/// What to do with a request header whose name has an underscore: some servers read `_` as
/// `-`, so `x_zonegate_identity` could speak for an identity behind the gateway's back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderscoreAction {
    /// Remove the header and forward the rest (counted).
    Drop,
    /// Refuse the request with 400.
    Reject,
    /// Forward it as it is.
    Allow,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_target_bytes: 8 * 1024,
            underscores: UnderscoreAction::Drop,
            max_concurrent_streams: 100,
            // A whole head takes one round trip; seconds are for a client far away, not for
            // one that sends a byte at a time.
            request_head_timeout: Duration::from_secs(5),
            // Longer than the head's: in a burst of new connections, handshakes queue for the
            // CPU (each costs about a millisecond of signatures).
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Shutdown {
    /// After SIGTERM, keep serving (while `/readyz` says 503) so load balancers can notice.
    pub grace_period: Duration,
    /// Then stop accepting and give in-flight requests this long to finish.
    pub drain_timeout: Duration,
    /// Unix socket over which listening sockets are handed to a new process on upgrade.
    pub upgrade_sock: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub http2: bool,
    /// `false` lets clients without a certificate finish the handshake, for routes that
    /// accept tokens; every other route still refuses them.
    pub client_cert_required: bool,
    /// Balancers whose PROXY protocol header (v1 or v2) this listener reads, before TLS:
    /// empty unless `proxy_protocol = true`, and then only connections from these ranges are
    /// served at all.
    pub proxy_protocol_from: Vec<IpRange>,
}

/// The gateway's own certificate chain and key: served to workloads, and presented to mTLS
/// upstreams.
#[derive(Debug)]
pub struct ServerTls {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The SPIFFE ID in the gateway's own certificate, if it is an SVID.
    pub spiffe_id: Option<SpiffeId>,
}

#[derive(Clone, Debug)]
pub struct ZoneMapping {
    pub zone: String,
    pub identities: Vec<IdPattern>,
}

#[derive(Clone, Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// Lower-case host names without port; empty means any host.
    pub hosts: Vec<String>,
    /// Matches at segment boundaries: `/payments` matches `/payments` and `/payments/x`.
    pub path_prefix: String,
    pub upstream: String,
    /// Where the route's upstream is in [`RouteTable::upstreams`](crate::admission::RouteTable::upstreams),
    /// set by the route table: the data plane finds the route's pool by index, not by name.
    pub upstream_slot: usize,
    /// The credentials a request on this route must present.
    pub credentials: Credentials,
    /// Forward a verified token's `Authorization` header to the upstream (default: removed).
    pub forward_token: bool,
    /// Longest request body the route forwards (413 past it); `None`: no limit.
    pub max_body_bytes: Option<u64>,
    /// What one identity may do on this route, whatever rule allowed it.
    pub limit: Option<crate::policy::Limit>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamTls {
    None,
    Tls,
    /// TLS where the gateway presents its own SVID.
    Mtls,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub addresses: Vec<UpstreamAddress>,
    pub tls: UpstreamTls,
    pub sni: String,
    pub ca: Option<Vec<CertificateDer<'static>>>,
    pub http2: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub health_check_interval: Option<Duration>,
    /// The SPIFFE IDs a TLS upstream may present (exact, `.../*`, or a trust domain's
    /// `spiffe://td/*`); when set they are checked instead of the DNS name.
    pub spiffe_ids: Vec<IdPattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventsSink {
    Stdout,
    File(PathBuf),
    Syslog(SyslogTarget),
    Off,
}

/// A syslog receiver: RFC 5424 messages over UDP (RFC 5426, one per datagram), TCP (RFC 6587
/// octet counting) or a unix datagram socket (`/dev/log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: SyslogTransport,
    /// `host:port` for UDP and TCP, a path for unix.
    pub address: String,
    /// The facility code (RFC 5424 section 6.2.1): `local0` is 16.
    pub facility: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogTransport {
    Udp,
    Tcp,
    Unix,
}

impl std::fmt::Display for SyslogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.transport {
            SyslogTransport::Udp => "udp://",
            SyslogTransport::Tcp => "tcp://",
            SyslogTransport::Unix => "unix://",
        };
        write!(f, "{scheme}{}", self.address)
    }
}

/// The facilities by name, with their codes (RFC 5424 table 1).
const SYSLOG_FACILITIES: [(&str, u8); 20] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

#[derive(Clone, Debug)]
pub struct EventsConfig {
    pub sink: EventsSink,
    pub format: EventFormat,
    pub capacity: usize,
    /// Refuse (503) a request that would be recorded while the sink cannot record: its last
    /// write failed or its queue overflowed. Off: such events are dropped and counted.
    pub fail_closed: bool,
    /// The share of allowed requests within the zone that are recorded too (0: none, the
    /// default; 1: all), so that the policy tools see all traffic.
    pub in_zone_sample: f64,
}

impl GatewayConfig {
    /// The zone of `id`: the first zone mapping that matches, else [`UNKNOWN_ZONE`].
    pub fn zone_of(&self, id: &SpiffeId) -> &str {
        self.zone_map
            .iter()
            .find(|m| m.identities.iter().any(|p| p.matches(id)))
            .map(|m| m.zone.as_str())
            .unwrap_or(UNKNOWN_ZONE)
    }

    /// The zone of a verified identity: by its SPIFFE ID, else its token issuer's `zone`.
    pub fn zone_of_identity<'a>(&'a self, identity: &'a Identity) -> &'a str {
        match (&identity.spiffe_id, &identity.token) {
            (Some(id), _) => self.zone_of(id),
            (None, Some(token)) => token.issuer.zone.as_deref().unwrap_or(UNKNOWN_ZONE),
            (None, None) => UNKNOWN_ZONE,
        }
    }
}

/// Reads and validates the gateway config at `path` and every file it references.
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    load_with(path, None, None)
}

/// The Workload API endpoint of the config at `path`, when it has a valid `[spiffe]`: what
/// to follow before the config can load. Any problem is left for [`load_with`] to report.
pub fn workload_endpoint(path: &Path) -> Option<String> {
    let source = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = toml::from_str(&source).ok()?;
    let raw: workload::RawSpiffe = table.get("spiffe")?.clone().try_into().ok()?;
    let mut errors = ConfigErrors::default();
    workload::convert(path, Some(&raw), &mut errors).map(|s| s.workload_api)
}

/// [`load`] with what the Workload API delivered (required when the config has `[spiffe]`).
/// With `replaying`, files are read from an earlier load's [`GatewayConfig::captured`]
/// instead of the disk: the agent's new material then changes nothing but itself.
pub fn load_with(
    path: &Path,
    material: Option<&WorkloadMaterial>,
    replaying: Option<Arc<Captured>>,
) -> Result<GatewayConfig, ConfigErrors> {
    let (result, mut reads, captured) =
        sources::record(replaying, || load_unhashed(path, material));
    let mut config = result?;
    let policy_files = &config.policy_files;
    config.policy_hash =
        sources::fingerprint(&reads, |p| policy_files.iter().any(|f| f == p), false);
    if config.spiffe.is_some() {
        if let Some(material) = material {
            reads.push((PathBuf::from("spiffe:workload_api"), material.fingerprint()));
        }
        config.captured = Some(Arc::new(captured));
    }
    config.content_hash = sources::fingerprint(&reads, |_| true, true);
    Ok(config)
}

fn load_unhashed(
    path: &Path,
    material: Option<&WorkloadMaterial>,
) -> Result<GatewayConfig, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let source = match sources::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            errors.push(path, "", format!("cannot read config file: {e}"));
            return Err(errors);
        }
    };
    let raw: RawGateway = match toml::from_str(&source) {
        Ok(raw) => raw,
        Err(e) => {
            errors.push_toml(path, &source, &e);
            return Err(errors);
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| base.join(p);
    let file = path;

    if let Err(reason) = validate_name(&raw.zone) {
        errors.push(file, "zone", reason);
    }
    if raw.zone == UNKNOWN_ZONE {
        errors.push(
            file,
            "zone",
            "`unknown` is reserved for unmapped identities",
        );
    }
    if raw.workers == Some(0) {
        errors.push(file, "workers", "must be at least 1");
    }

    let mut listeners = Vec::new();
    if raw.listener.is_empty() {
        errors.push(file, "listener", "at least one [[listener]] is required");
    }
    for (i, l) in raw.listener.iter().enumerate() {
        let client_cert_required = match l.client_cert.as_deref().unwrap_or("required") {
            "required" => true,
            "optional" => false,
            other => {
                errors.push(
                    file,
                    format!("listener[{i}].client_cert"),
                    format!("`{other}` is not \"required\" or \"optional\""),
                );
                true
            }
        };
        let mut proxy_protocol_from = Vec::new();
        for (j, range) in l.proxy_protocol_from.iter().enumerate() {
            match IpRange::parse(range) {
                Ok(range) => proxy_protocol_from.push(range),
                Err(reason) => errors.push(
                    file,
                    format!("listener[{i}].proxy_protocol_from[{j}]"),
                    reason,
                ),
            }
        }
        match (l.proxy_protocol, l.proxy_protocol_from.is_empty()) {
            (true, true) => errors.push(
                file,
                format!("listener[{i}].proxy_protocol_from"),
                "name the balancers (addresses or CIDR ranges) whose PROXY headers to trust: \
                 from anyone else a header could claim any address",
            ),
            (false, false) => errors.push(
                file,
                format!("listener[{i}].proxy_protocol_from"),
                "set only with proxy_protocol = true",
            ),
            _ => {}
        }
        match l.address.parse::<SocketAddr>() {
            Ok(address) => listeners.push(Listener {
                address,
                http2: l.http2,
                client_cert_required,
                proxy_protocol_from,
            }),
            Err(_) => errors.push(
                file,
                format!("listener[{i}].address"),
                format!("`{}` is not an IP:port socket address", l.address),
            ),
        }
    }

    let spiffe = workload::convert(file, raw.spiffe.as_ref(), &mut errors);
    // The agent's material, once `[spiffe]` is valid; an agent that has sent nothing yet
    // counts as having sent nothing.
    let empty = WorkloadMaterial::default();
    let agent = spiffe.as_ref().map(|_| material.unwrap_or(&empty));
    let tls = match (&raw.tls, raw.spiffe.is_some()) {
        (Some(tls), false) => {
            load_server_tls(file, &resolve(&tls.cert), &resolve(&tls.key), &mut errors)
        }
        (Some(_), true) => {
            errors.push(
                file,
                "tls",
                "with [spiffe] the gateway's SVID comes from the Workload API: remove [tls]",
            );
            None
        }
        (None, false) => {
            errors.push(
                file,
                "tls",
                "[tls] (cert and key files) or [spiffe] (the Workload API) is required",
            );
            None
        }
        (None, true) => agent.and_then(|agent| workload_tls(file, agent, &mut errors)),
    };

    let mut trust_domains = BTreeMap::new();
    let mut bundle_endpoints = Vec::new();
    if raw.trust_domain.is_empty() && raw.spiffe.is_none() {
        errors.push(
            file,
            "trust_domain",
            "at least one [trust_domain.\"NAME\"] with a bundle is required",
        );
    }
    // Every trust domain the agent sends a bundle for is trusted, each with its own roots:
    // which domains a workload federates with is the SPIRE server's decision. A domain
    // configured with a `bundle` file takes its roots from that file instead.
    if let Some(agent) = agent {
        for (name, roots) in &agent.x509_bundles {
            if !raw.trust_domain.contains_key(name) {
                trust_domains.insert(name.clone(), roots.clone());
            }
        }
    }
    for (name, td) in &raw.trust_domain {
        let key = format!("trust_domain.\"{name}\"");
        if let Err(e) = validate_trust_domain(name) {
            errors.push(
                file,
                &key,
                format!("`{name}` is not a valid trust domain name: {e}"),
            );
        }
        let Some(bundle) = &td.bundle else {
            match agent {
                Some(agent) => match agent.x509_bundles.get(name) {
                    Some(roots) => {
                        trust_domains.insert(name.clone(), roots.clone());
                    }
                    None => errors.push(
                        file,
                        format!("{key}.bundle"),
                        "the Workload API has sent no bundle for this trust domain",
                    ),
                },
                None => errors.push(
                    file,
                    format!("{key}.bundle"),
                    "required: the file of this trust domain's roots",
                ),
            }
            if td.bundle_endpoint.is_some() {
                errors.push(
                    file,
                    format!("{key}.bundle_endpoint"),
                    "set with `bundle`: the file the fetched bundle is kept in",
                );
            }
            continue;
        };
        let path = resolve(bundle);
        let read = sources::read(&path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
            .and_then(|bytes| crate::identity::bundle::x509_authorities(&bytes, name));
        match read {
            Ok(found) => {
                for note in &found.skipped {
                    tracing::warn!(trust_domain = %name, bundle = %path.display(), "{note}; left out");
                }
                trust_domains.insert(name.clone(), found.roots);
            }
            Err(reason) => errors.push(file, format!("{key}.bundle"), reason),
        }
        if let Some(endpoint) =
            convert_bundle_endpoint(file, &key, name, td, &path, &resolve, &mut errors)
        {
            bundle_endpoints.push(endpoint);
        }
    }

    // An https_spiffe endpoint is authenticated with its own trust domain's bundle: one the
    // gateway must have.
    for endpoint in &bundle_endpoints {
        if let EndpointProfile::Spiffe { id } = &endpoint.profile {
            let domain = SpiffeId::parse(id).map(|id| id.trust_domain().to_string());
            if domain.is_ok_and(|d| !trust_domains.contains_key(&d)) {
                errors.push(
                    file,
                    format!(
                        "trust_domain.\"{}\".endpoint_spiffe_id",
                        endpoint.trust_domain
                    ),
                    format!("`{id}`: no bundle of its trust domain to verify the endpoint with"),
                );
            }
        }
    }

    let mut zone_map = Vec::new();
    for (i, m) in raw.zone_map.iter().enumerate() {
        if let Err(reason) = validate_name(&m.zone) {
            errors.push(file, format!("zone_map[{i}].zone"), reason);
        }
        let identities = parse_id_patterns(
            file,
            &format!("zone_map[{i}].identities"),
            &m.identities,
            &mut errors,
        );
        zone_map.push(ZoneMapping {
            zone: m.zone.clone(),
            identities,
        });
    }

    let mut upstreams = BTreeMap::new();
    for (name, u) in &raw.upstream {
        if let Some(upstream) = convert_upstream(file, name, u, &resolve, &mut errors) {
            upstreams.insert(name.clone(), Arc::new(upstream));
        }
    }

    let mut routes = Vec::new();
    let mut route_names = HashSet::new();
    for (i, r) in raw.route.iter().enumerate() {
        let key = format!("route[{i}]");
        if let Err(reason) = validate_name(&r.name) {
            errors.push(file, format!("{key}.name"), reason);
        }
        if !route_names.insert(r.name.clone()) {
            errors.push(
                file,
                format!("{key}.name"),
                format!("duplicate route name `{}`", r.name),
            );
        }
        if !r.path_prefix.starts_with('/') {
            errors.push(file, format!("{key}.path_prefix"), "must start with `/`");
        }
        if !upstreams.contains_key(&r.upstream) && !raw.upstream.contains_key(&r.upstream) {
            errors.push(
                file,
                format!("{key}.upstream"),
                format!("no [upstream.{}] is defined", r.upstream),
            );
        }
        let mut hosts = Vec::new();
        for (h, host) in r.hosts.iter().enumerate() {
            if host.is_empty() || host.contains([':', '/', ' ']) {
                errors.push(
                    file,
                    format!("{key}.hosts[{h}]"),
                    format!("`{host}` is not a host name (no port, no scheme)"),
                );
            }
            hosts.push(host.to_ascii_lowercase());
        }
        let path_prefix = match r.path_prefix.trim_end_matches('/') {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        let credentials = match r.credentials.as_deref() {
            None => Credentials::Mtls,
            Some(c) => Credentials::parse(c).unwrap_or_else(|| {
                errors.push(
                    file,
                    format!("{key}.credentials"),
                    format!("`{c}` is not one of \"mtls\", \"token\", \"either\", \"both\""),
                );
                Credentials::Mtls
            }),
        };
        if credentials.accepts_tokens() && raw.token_issuer.is_empty() {
            errors.push(
                file,
                format!("{key}.credentials"),
                format!(
                    "`{}` accepts tokens, but no [token_issuer.NAME] is configured",
                    credentials.as_str()
                ),
            );
        }
        if r.forward_token && !credentials.accepts_tokens() {
            errors.push(
                file,
                format!("{key}.forward_token"),
                "set only on routes whose credentials accept tokens",
            );
        }
        routes.push(Route {
            name: Arc::from(r.name.as_str()),
            hosts,
            path_prefix,
            upstream: r.upstream.clone(),
            upstream_slot: 0,
            credentials,
            forward_token: r.forward_token,
            max_body_bytes: r.max_body_bytes,
            limit: r.limit.as_ref().and_then(|l| {
                policy_file::convert_limit(file, &format!("{key}.limit"), l, &mut errors)
            }),
        });
    }

    let policy_paths: Vec<PathBuf> = raw.policy.files.iter().map(|p| resolve(p)).collect();
    let (rules, policy_files) = load_policy_files(&policy_paths, &mut errors);
    let known_routes: HashSet<&str> = routes.iter().map(|r| &*r.name).collect();
    for rule in &rules {
        for issuer in &rule.issuers {
            if !raw.token_issuer.contains_key(&**issuer) {
                errors.push(
                    file,
                    "policy.files",
                    format!(
                        "rule `{}` names token issuer `{issuer}`, which this gateway does not define",
                        rule.id
                    ),
                );
            }
        }
        for route in &rule.routes {
            if !known_routes.contains(&**route) {
                errors.push(
                    file,
                    "policy.files",
                    format!(
                        "rule `{}` names route `{route}`, which this gateway does not define",
                        rule.id
                    ),
                );
            }
        }
    }

    let events = convert_events(file, &raw, &resolve, &mut errors);
    let decision_cache_entries = raw.policy.cache_entries.unwrap_or(DEFAULT_CACHE_ENTRIES);

    let mut strip_headers = Vec::new();
    for (i, h) in raw.headers.strip.iter().enumerate() {
        match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => strip_headers.push(name.as_str().to_string()),
            Err(_) => errors.push(
                file,
                format!("headers.strip[{i}]"),
                format!("`{h}` is not a header name"),
            ),
        }
    }

    let admin = raw
        .admin
        .as_ref()
        .and_then(|a| match a.address.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                errors.push(
                    file,
                    "admin.address",
                    format!("`{}` is not an IP:port socket address", a.address),
                );
                None
            }
        });

    let mut files = vec![path.to_path_buf()];
    if let Some(tls) = &raw.tls {
        files.extend([resolve(&tls.cert), resolve(&tls.key)]);
    }
    files.extend(
        raw.trust_domain
            .values()
            .filter_map(|td| td.bundle.as_deref())
            .map(&resolve),
    );
    files.extend(
        raw.upstream
            .values()
            .filter_map(|u| u.ca.as_deref())
            .map(&resolve),
    );

    let revocation = match &raw.revocation {
        Some(r) => {
            let revocation_file = resolve(&r.file);
            files.push(revocation_file.clone());
            load_revocations(&revocation_file, &mut errors)
        }
        None => RevocationList::default(),
    };

    let shutdown = Shutdown {
        grace_period: Duration::from_secs(raw.shutdown.grace_period_s.unwrap_or(0)),
        drain_timeout: Duration::from_secs(raw.shutdown.drain_timeout_s.unwrap_or(10)),
        upgrade_sock: raw
            .shutdown
            .upgrade_sock
            .as_deref()
            .map(&resolve)
            .unwrap_or_else(|| PathBuf::from("/tmp/zonegate-upgrade.sock")),
    };

    let idle_timeout = match raw.connections.idle_timeout_s {
        Some(0) => {
            errors.push(
                file,
                "connections.idle_timeout_s",
                "must be at least 1: idle connections would pile up",
            );
            Duration::from_secs(DEFAULT_IDLE_TIMEOUT_S)
        }
        Some(s) => Duration::from_secs(s),
        None => Duration::from_secs(DEFAULT_IDLE_TIMEOUT_S),
    };
    let limits = convert_limits(file, &raw.connections, &mut errors);
    let dns = dns::convert(file, &raw.dns, &mut errors);
    let tracing = traces::convert(file, raw.tracing.as_ref(), &resolve, &mut errors);
    let tokens = token_issuers::convert_settings(file, &raw.tokens, &mut errors);
    let mut remote_keys = Vec::new();
    let token_issuers = token_issuers::convert_issuers(
        file,
        &raw.token_issuer,
        &resolve,
        token_issuers::Own {
            spiffe_id: tls.as_ref().and_then(|t| t.spiffe_id.as_ref()),
            agent,
        },
        &mut files,
        &mut remote_keys,
        &mut errors,
    );

    let dirs: Vec<PathBuf> = policy_paths
        .iter()
        .filter(|p| p.is_dir())
        .cloned()
        .collect();
    files.extend(policy_files.iter().cloned());

    let Some(tls) = tls else {
        return Err(errors);
    };
    errors.into_result(GatewayConfig {
        source: path.to_path_buf(),
        zone: raw.zone,
        workers: raw.workers,
        listeners,
        tls,
        trust_domains,
        bundle_endpoints,
        zone_map,
        routes,
        upstreams,
        rules,
        policy_files,
        decision_cache_entries,
        events,
        strip_headers,
        admin,
        revocation,
        shutdown,
        token_issuers,
        remote_keys,
        tokens,
        idle_timeout,
        limits,
        dns,
        tracing,
        files,
        dirs,
        content_hash: String::new(),
        policy_hash: String::new(),
        spiffe,
        captured: None,
    })
}

/// The gateway's certificate from the agent's default SVID.
fn workload_tls(
    file: &Path,
    agent: &WorkloadMaterial,
    errors: &mut ConfigErrors,
) -> Option<ServerTls> {
    let Some(svid) = &agent.svid else {
        errors.push(
            file,
            "spiffe.workload_api",
            "the Workload API has sent no X.509-SVID for the gateway yet",
        );
        return None;
    };
    let spiffe_id = match svid.chain.first().map(|leaf| svid::leaf_spiffe_id(leaf)) {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            errors.push(
                file,
                "spiffe.workload_api",
                format!("the Workload API's X.509-SVID is not usable: {e}"),
            );
            return None;
        }
        None => {
            errors.push(
                file,
                "spiffe.workload_api",
                "the Workload API's X.509-SVID has no certificate",
            );
            return None;
        }
    };
    Some(ServerTls {
        chain: svid.chain.clone(),
        key: svid.key.clone_key(),
        spiffe_id: Some(spiffe_id),
    })
}

fn load_revocations(path: &Path, errors: &mut ConfigErrors) -> RevocationList {
    let source = match sources::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            errors.push(path, "", format!("cannot read revocation list: {e}"));
            return RevocationList::default();
        }
    };
    let raw: RawRevocationList = match toml::from_str(&source) {
        Ok(raw) => raw,
        Err(e) => {
            errors.push_toml(path, &source, &e);
            return RevocationList::default();
        }
    };
    let mut list = RevocationList::default();
    for (i, id) in raw.spiffe_ids.iter().enumerate() {
        match SpiffeId::parse(id) {
            Ok(id) => {
                list.spiffe_ids.insert(id.as_str().to_string());
            }
            Err(e) => errors.push(path, format!("spiffe_ids[{i}]"), format!("`{id}`: {e}")),
        }
    }
    for (i, serial) in raw.serials.iter().enumerate() {
        let hex = serial.replace(':', "").to_ascii_lowercase();
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            errors.push(
                path,
                format!("serials[{i}]"),
                format!("`{serial}` is not a hex serial number"),
            );
        } else {
            list.serials
                .insert(crate::identity::revocation::normalize_serial(&hex).to_string());
        }
    }
    list.jtis.extend(raw.jtis.iter().cloned());
    list
}

/// Zone, route and rule names: what event consumers and policy files can rely on.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1 to 128 characters of [A-Za-z0-9._-]"
        ))
    }
}

pub(crate) fn parse_id_patterns(
    file: &Path,
    key: &str,
    patterns: &[String],
    errors: &mut ConfigErrors,
) -> Vec<IdPattern> {
    let mut out = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        match IdPattern::parse(p) {
            Ok(pattern) => out.push(pattern),
            Err(e) => errors.push(file, format!("{key}[{i}]"), e.to_string()),
        }
    }
    out
}

fn load_server_tls(
    file: &Path,
    cert_file: &Path,
    key_file: &Path,
    errors: &mut ConfigErrors,
) -> Option<ServerTls> {
    let chain = read_certificates(cert_file)
        .map_err(|reason| errors.push(file, "tls.cert", reason))
        .ok();
    let key = read_private_key(key_file)
        .map_err(|reason| errors.push(file, "tls.key", reason))
        .ok();
    let (chain, key) = (chain?, key?);
    let spiffe_id = chain
        .first()
        .and_then(|leaf| svid::leaf_spiffe_id(leaf).ok());
    Some(ServerTls {
        chain,
        key,
        spiffe_id,
    })
}

fn convert_upstream(
    file: &Path,
    name: &str,
    u: &RawUpstream,
    resolve: &dyn Fn(&str) -> PathBuf,
    errors: &mut ConfigErrors,
) -> Option<Upstream> {
    let key = format!("upstream.{name}");
    let before = errors.len();
    if let Err(reason) = validate_name(name) {
        errors.push(file, &key, reason);
    }
    if u.addresses.is_empty() {
        errors.push(
            file,
            format!("{key}.addresses"),
            "at least one IP:port or host:port address is required",
        );
    }
    let mut addresses = Vec::new();
    for (i, a) in u.addresses.iter().enumerate() {
        match UpstreamAddress::parse(a) {
            Ok(addr) => addresses.push(addr),
            Err(reason) => errors.push(file, format!("{key}.addresses[{i}]"), reason),
        }
    }
    let tls = match u.tls {
        RawUpstreamTls::None => UpstreamTls::None,
        RawUpstreamTls::Tls => UpstreamTls::Tls,
        RawUpstreamTls::Mtls => UpstreamTls::Mtls,
    };
    let ca = match (&u.ca, tls) {
        (Some(_), UpstreamTls::None) => {
            errors.push(
                file,
                format!("{key}.ca"),
                "set only with tls = \"tls\" or \"mtls\"",
            );
            None
        }
        (Some(ca), _) => read_certificates(&resolve(ca))
            .map_err(|reason| errors.push(file, format!("{key}.ca"), reason))
            .ok(),
        (None, UpstreamTls::None) => None,
        (None, _) => {
            errors.push(
                file,
                format!("{key}.ca"),
                "a CA file is required to verify a TLS upstream",
            );
            None
        }
    };
    let mut ms = |field: &str, value: Option<u64>, default: u64| -> Duration {
        match value {
            Some(0) => {
                errors.push(file, format!("{key}.{field}"), "must be greater than 0");
                Duration::from_millis(default)
            }
            Some(v) => Duration::from_millis(v),
            None => Duration::from_millis(default),
        }
    };
    let connect_timeout = ms("connect_timeout_ms", u.connect_timeout_ms, 1_000);
    let read_timeout = ms("read_timeout_ms", u.read_timeout_ms, 30_000);
    let idle_timeout = ms("idle_timeout_ms", u.idle_timeout_ms, 60_000);
    let health_check_interval = match u.health_check_interval_ms {
        None | Some(0) => None,
        Some(v) => Some(Duration::from_millis(v)),
    };
    let spiffe_ids = parse_id_patterns(file, &format!("{key}.spiffe_ids"), &u.spiffe_ids, errors);
    if !u.spiffe_ids.is_empty() && tls == UpstreamTls::None {
        errors.push(
            file,
            format!("{key}.spiffe_ids"),
            "set only with tls = \"tls\" or \"mtls\": a plain upstream proves no identity",
        );
    }
    if spiffe_ids.contains(&IdPattern::Any) {
        errors.push(
            file,
            format!("{key}.spiffe_ids"),
            "`*` would accept any SPIFFE ID: name the IDs, or a trust domain as `spiffe://td/*`",
        );
    }
    (errors.len() == before).then(|| Upstream {
        name: name.to_string(),
        addresses,
        tls,
        sni: u.sni.clone().unwrap_or_default(),
        ca,
        http2: u.http2,
        connect_timeout,
        read_timeout,
        idle_timeout,
        health_check_interval,
        spiffe_ids,
    })
}

fn convert_events(
    file: &Path,
    raw: &RawGateway,
    resolve: &dyn Fn(&str) -> PathBuf,
    errors: &mut ConfigErrors,
) -> EventsConfig {
    let e = &raw.events;
    let kind = e.sink.as_deref().unwrap_or("stdout");
    if e.path.is_some() && kind != "file" {
        errors.push(file, "events.path", "set only with sink = \"file\"");
    }
    if kind != "syslog" {
        for (key, set) in [
            ("events.address", e.address.is_some()),
            ("events.facility", e.facility.is_some()),
        ] {
            if set {
                errors.push(file, key, "set only with sink = \"syslog\"");
            }
        }
    }
    let sink = match (kind, &e.path) {
        ("stdout", _) => EventsSink::Stdout,
        ("off", _) => EventsSink::Off,
        ("file", Some(path)) => EventsSink::File(resolve(path)),
        ("file", None) => {
            errors.push(file, "events.path", "required when sink = \"file\"");
            EventsSink::Off
        }
        ("syslog", _) => {
            convert_syslog(file, e, errors).map_or(EventsSink::Off, EventsSink::Syslog)
        }
        (other, _) => {
            errors.push(
                file,
                "events.sink",
                format!("`{other}` is not one of \"stdout\", \"file\", \"syslog\", \"off\""),
            );
            EventsSink::Off
        }
    };
    let format = match e.format.as_deref() {
        None | Some("zonegate") => EventFormat::Zonegate,
        Some("ocsf") => EventFormat::Ocsf,
        Some(other) => {
            errors.push(
                file,
                "events.format",
                format!("`{other}` is not one of \"zonegate\", \"ocsf\""),
            );
            EventFormat::Zonegate
        }
    };
    let capacity = match e.capacity {
        Some(0) => {
            errors.push(file, "events.capacity", "must be at least 1");
            DEFAULT_EVENTS_CAPACITY
        }
        Some(c) => c,
        None => DEFAULT_EVENTS_CAPACITY,
    };
    if e.fail_closed && sink == EventsSink::Off {
        errors.push(
            file,
            "events.fail_closed",
            "set only with a sink: with events off there is nothing to fail",
        );
    }
    let in_zone_sample = match e.in_zone_sample {
        None => 0.0,
        Some(share) if (0.0..=1.0).contains(&share) => share,
        Some(share) => {
            errors.push(
                file,
                "events.in_zone_sample",
                format!("{share} is not a share between 0 and 1"),
            );
            0.0
        }
    };
    EventsConfig {
        sink,
        format,
        capacity,
        fail_closed: e.fail_closed,
        in_zone_sample,
    }
}

/// A federated trust domain's SPIFFE bundle endpoint (SPIFFE Federation, https_web profile):
/// fetched by the gateway, which writes what it serves into the domain's `bundle` file, where
/// the usual reload validates and applies it (and a bad bundle keeps the last good one).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BundleEndpoint {
    pub trust_domain: String,
    pub url: String,
    pub profile: EndpointProfile,
    /// The domain's `bundle` file: the bootstrap, then the last bundle fetched.
    pub bundle_path: PathBuf,
}

/// How a bundle endpoint is authenticated (SPIFFE Trust Domain and Bundle, section 5.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EndpointProfile {
    /// A web certificate for the URL's host, from these PEM roots (`None`: the system's).
    Web { ca: Option<PathBuf> },
    /// An X.509-SVID with exactly this SPIFFE ID, verified against the bundle in force for
    /// its trust domain: for the federated domain itself, the last bundle fetched (the file's
    /// bootstrap before the first fetch).
    Spiffe { id: String },
}

fn convert_bundle_endpoint(
    file: &Path,
    key: &str,
    name: &str,
    td: &raw::RawTrustDomain,
    bundle_path: &Path,
    resolve: &dyn Fn(&str) -> PathBuf,
    errors: &mut ConfigErrors,
) -> Option<BundleEndpoint> {
    let Some(url) = &td.bundle_endpoint else {
        for (k, set) in [
            ("endpoint_profile", td.endpoint_profile.is_some()),
            ("endpoint_ca", td.endpoint_ca.is_some()),
            ("endpoint_spiffe_id", td.endpoint_spiffe_id.is_some()),
        ] {
            if set {
                errors.push(file, format!("{key}.{k}"), "set only with bundle_endpoint");
            }
        }
        return None;
    };
    let profile = match td.endpoint_profile.as_deref().unwrap_or("https_web") {
        "https_web" => {
            if td.endpoint_spiffe_id.is_some() {
                errors.push(
                    file,
                    format!("{key}.endpoint_spiffe_id"),
                    "set only with endpoint_profile = \"https_spiffe\"",
                );
            }
            EndpointProfile::Web {
                ca: td.endpoint_ca.as_deref().map(resolve),
            }
        }
        "https_spiffe" => {
            if td.endpoint_ca.is_some() {
                errors.push(
                    file,
                    format!("{key}.endpoint_ca"),
                    "not with https_spiffe: the endpoint's SVID is verified against the bundle \
                     of its trust domain",
                );
            }
            let Some(id) = &td.endpoint_spiffe_id else {
                errors.push(
                    file,
                    format!("{key}.endpoint_spiffe_id"),
                    "required with https_spiffe: the SPIFFE ID of the endpoint's server",
                );
                return None;
            };
            match SpiffeId::parse(id) {
                Ok(id) => EndpointProfile::Spiffe {
                    id: id.as_str().to_string(),
                },
                Err(e) => {
                    errors.push(
                        file,
                        format!("{key}.endpoint_spiffe_id"),
                        format!("`{id}`: {e}"),
                    );
                    return None;
                }
            }
        }
        other => {
            errors.push(
                file,
                format!("{key}.endpoint_profile"),
                format!("`{other}` is not \"https_web\" or \"https_spiffe\""),
            );
            return None;
        }
    };
    if !remote_keys::is_https_url(url) {
        errors.push(
            file,
            format!("{key}.bundle_endpoint"),
            format!("`{url}` is not an https:// URL"),
        );
        return None;
    }
    Some(BundleEndpoint {
        trust_domain: name.to_string(),
        url: url.clone(),
        profile,
        bundle_path: bundle_path.to_path_buf(),
    })
}

/// `[events] address` and `facility` for sink = "syslog".
fn convert_syslog(
    file: &Path,
    e: &raw::RawEvents,
    errors: &mut ConfigErrors,
) -> Option<SyslogTarget> {
    let facility = match e.facility.as_deref() {
        None => 16,
        Some(name) => match SYSLOG_FACILITIES.iter().find(|(n, _)| *n == name) {
            Some((_, code)) => *code,
            None => {
                let names: Vec<&str> = SYSLOG_FACILITIES.iter().map(|(n, _)| *n).collect();
                errors.push(
                    file,
                    "events.facility",
                    format!("`{name}` is not a syslog facility ({})", names.join(", ")),
                );
                16
            }
        },
    };
    let Some(address) = e.address.as_deref() else {
        errors.push(
            file,
            "events.address",
            "required when sink = \"syslog\": udp://host:port, tcp://host:port or unix:///path",
        );
        return None;
    };
    let (transport, rest) = if let Some(rest) = address.strip_prefix("udp://") {
        (SyslogTransport::Udp, rest)
    } else if let Some(rest) = address.strip_prefix("tcp://") {
        (SyslogTransport::Tcp, rest)
    } else if let Some(rest) = address.strip_prefix("unix://") {
        (SyslogTransport::Unix, rest)
    } else {
        errors.push(
            file,
            "events.address",
            format!("`{address}`: udp://host:port, tcp://host:port or unix:///path"),
        );
        return None;
    };
    let valid = match transport {
        SyslogTransport::Unix => rest.starts_with('/'),
        // `host:port`, `[v6]:port`: a port that is a number, after a non-empty host.
        _ => rest.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        }),
    };
    if !valid {
        errors.push(
            file,
            "events.address",
            format!("`{address}`: udp://host:port, tcp://host:port or unix:///path"),
        );
        return None;
    }
    Some(SyslogTarget {
        transport,
        address: rest.to_string(),
        facility,
    })
}

#[cfg(test)]
mod tests;

fn convert_limits(file: &Path, raw: &raw::RawConnections, errors: &mut ConfigErrors) -> Limits {
    let defaults = Limits::default();
    let mut positive = |key: &str, value: Option<usize>, default: usize| match value {
        Some(0) => {
            errors.push(file, format!("connections.{key}"), "must be at least 1");
            default
        }
        Some(v) => v,
        None => default,
    };
    let max_header_bytes = positive(
        "max_header_bytes",
        raw.max_header_bytes,
        defaults.max_header_bytes,
    );
    let max_headers = positive("max_headers", raw.max_headers, defaults.max_headers);
    let max_target_bytes = positive(
        "max_target_bytes",
        raw.max_target_bytes,
        defaults.max_target_bytes,
    );
    let max_concurrent_streams = positive(
        "max_concurrent_streams",
        raw.max_concurrent_streams.map(|v| v as usize),
        defaults.max_concurrent_streams as usize,
    ) as u32;
    let request_head_timeout = Duration::from_secs(positive(
        "request_head_timeout_s",
        raw.request_head_timeout_s.map(|v| v as usize),
        defaults.request_head_timeout.as_secs() as usize,
    ) as u64);
    let handshake_timeout = Duration::from_secs(positive(
        "handshake_timeout_s",
        raw.handshake_timeout_s.map(|v| v as usize),
        defaults.handshake_timeout.as_secs() as usize,
    ) as u64);
    let underscores = match raw.headers_with_underscores.as_deref() {
        None | Some("drop") => UnderscoreAction::Drop,
        Some("reject") => UnderscoreAction::Reject,
        Some("allow") => UnderscoreAction::Allow,
        Some(other) => {
            errors.push(
                file,
                "connections.headers_with_underscores",
                format!("`{other}` is not one of drop, reject, allow"),
            );
            UnderscoreAction::Drop
        }
    };
    Limits {
        max_header_bytes,
        max_headers,
        max_target_bytes,
        underscores,
        max_concurrent_streams,
        request_head_timeout,
        handshake_timeout,
    }
}
