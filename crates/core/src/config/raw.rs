//! The file format: serde structs that mirror the TOML exactly. Unknown keys are errors.
//! Nothing outside `config` sees these; they convert into the validated types in `config`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGateway {
    pub zone: String,
    #[serde(default)]
    pub workers: Option<usize>,
    #[serde(default)]
    pub listener: Vec<RawListener>,
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub spiffe: Option<super::workload::RawSpiffe>,
    #[serde(default)]
    pub trust_domain: BTreeMap<String, RawTrustDomain>,
    #[serde(default)]
    pub zone_map: Vec<RawZoneMapping>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    #[serde(default)]
    pub upstream: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub events: RawEvents,
    #[serde(default)]
    pub headers: RawHeaders,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub revocation: Option<RawRevocation>,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub token_issuer: BTreeMap<String, RawTokenIssuer>,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub connections: RawConnections,
    #[serde(default)]
    pub dns: super::dns::RawDns,
    #[serde(default)]
    pub tracing: Option<super::traces::RawTracing>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnections {
    #[serde(default)]
    pub idle_timeout_s: Option<u64>,
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    #[serde(default)]
    pub max_headers: Option<usize>,
    #[serde(default)]
    pub max_target_bytes: Option<usize>,
    #[serde(default)]
    pub headers_with_underscores: Option<String>,
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    #[serde(default)]
    pub request_head_timeout_s: Option<u64>,
    pub handshake_timeout_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenIssuer {
    pub kind: String,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// The key file; a JWT-SVID issuer under `[spiffe]` may leave it out (the agent's keys).
    #[serde(default)]
    pub keys: Option<String>,
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub leeway_s: Option<u64>,
    #[serde(default)]
    pub max_lifetime_s: Option<u64>,
    #[serde(default)]
    pub required_claims: Vec<String>,
    #[serde(default)]
    pub zone: Option<String>,
    /// The issuer's JWK Set URL: fetched by the gateway into `keys`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// The issuer's OpenID Connect discovery document: its `jwks_uri` is fetched into `keys`.
    #[serde(default)]
    pub discovery: Option<String>,
    /// PEM roots for the issuer's web certificate (default: the system's).
    #[serde(default)]
    pub endpoint_ca: Option<String>,
    /// Bounds on how long fetched keys are used before the next fetch (Cache-Control max-age
    /// is clamped within them).
    #[serde(default)]
    pub min_refresh_s: Option<u64>,
    #[serde(default)]
    pub max_refresh_s: Option<u64>,
    /// Least time between two fetches caused by tokens naming an unknown `kid`.
    #[serde(default)]
    pub unknown_kid_refetch_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    #[serde(default)]
    pub cache_entries: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    #[serde(default = "admin_address")]
    pub address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    pub file: String,
}

/// The revocation list file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocationList {
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
    #[serde(default)]
    pub serials: Vec<String>,
    #[serde(default)]
    pub jtis: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShutdown {
    #[serde(default)]
    pub grace_period_s: Option<u64>,
    #[serde(default)]
    pub drain_timeout_s: Option<u64>,
    #[serde(default)]
    pub upgrade_sock: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub address: String,
    #[serde(default = "yes")]
    pub http2: bool,
    #[serde(default)]
    pub client_cert: Option<String>,
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub proxy_protocol_from: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrustDomain {
    /// The roots file; with `[spiffe]` it may be left out, the agent's bundle is used.
    #[serde(default)]
    pub bundle: Option<String>,
    /// SPIFFE federation: the domain's bundle endpoint, fetched into `bundle`.
    #[serde(default)]
    pub bundle_endpoint: Option<String>,
    /// `https_web` (the default) or `https_spiffe`.
    #[serde(default)]
    pub endpoint_profile: Option<String>,
    /// PEM roots for the endpoint's web certificate (default: the system's).
    #[serde(default)]
    pub endpoint_ca: Option<String>,
    /// https_spiffe: the SPIFFE ID the endpoint's X.509-SVID must carry.
    #[serde(default)]
    pub endpoint_spiffe_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZoneMapping {
    pub zone: String,
    pub identities: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default = "root")]
    pub path_prefix: String,
    pub upstream: String,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub forward_token: bool,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default)]
    pub limit: Option<RawLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub addresses: Vec<String>,
    #[serde(default)]
    pub tls: RawUpstreamTls,
    #[serde(default)]
    pub sni: Option<String>,
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub http2: bool,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub read_timeout_ms: Option<u64>,
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub health_check_interval_ms: Option<u64>,
    #[serde(default)]
    pub spiffe_ids: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawUpstreamTls {
    #[default]
    None,
    Tls,
    Mtls,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub cache_entries: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    #[serde(default)]
    pub sink: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub capacity: Option<usize>,
    #[serde(default)]
    pub fail_closed: bool,
    #[serde(default)]
    pub in_zone_sample: Option<f64>,
    /// `zonegate` (default) or `ocsf`.
    #[serde(default)]
    pub format: Option<String>,
    /// With sink = "syslog": `udp://host:port`, `tcp://host:port` or `unix:///path`.
    #[serde(default)]
    pub address: Option<String>,
    /// With sink = "syslog": the facility's name (`local0` by default).
    #[serde(default)]
    pub facility: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeaders {
    /// Extra request headers to strip besides the built-in identity headers.
    #[serde(default)]
    pub strip: Vec<String>,
}

/// A policy file: a list of rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyFile {
    #[serde(default)]
    pub rule: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub id: String,
    pub effect: String,
    #[serde(default)]
    pub mode: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub identities: Vec<String>,
    #[serde(default)]
    pub zones: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub issuers: Vec<String>,
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub limit: Option<RawLimit>,
}

/// A per-identity limit, on a rule or a route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimit {
    #[serde(default)]
    pub rate: Option<String>,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub in_flight: Option<u32>,
    #[serde(default)]
    pub per: Option<String>,
}

/// A string, or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

fn yes() -> bool {
    true
}

fn admin_address() -> String {
    "127.0.0.1:9901".to_string()
}

fn root() -> String {
    "/".to_string()
}
