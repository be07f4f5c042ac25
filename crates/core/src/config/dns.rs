//! Upstream addresses that are host names, and the `[dns]` settings that resolve them.
//!
//! A host name (a Kubernetes Service, or a headless Service that names every pod) is resolved
//! by the gateway itself, at start and again when its records' TTL runs out, clamped to
//! `[min_ttl_s, max_ttl_s]`: a TTL of 0 cannot make it query in a loop, a long one cannot keep
//! a dead pod's address for an hour.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigErrors;

/// One entry of an upstream's `addresses`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UpstreamAddress {
    Ip(SocketAddr),
    /// A host name (lower-case, no trailing dot) and port; every address it resolves to is a
    /// member of the pool.
    Name {
        host: String,
        port: u16,
    },
}

impl UpstreamAddress {
    /// Parses `IP:port`, `[IPv6]:port` or `host:port`.
    pub fn parse(text: &str) -> Result<UpstreamAddress, String> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(UpstreamAddress::Ip(addr));
        }
        let bad = || format!("`{text}` is not an IP:port or host:port address");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 {
            return Err(format!("`{text}`: port 0 is not an address to connect to"));
        }
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        validate_host(&host).map_err(|why| format!("`{text}`: {why}"))?;
        Ok(UpstreamAddress::Name { host, port })
    }
}

impl fmt::Display for UpstreamAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddress::Ip(addr) => write!(f, "{addr}"),
            UpstreamAddress::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and hyphens, none empty, none
/// starting or ending with a hyphen, at most 63 bytes each and 253 in all. A name that is all
/// digits and dots is refused: it is a mistyped IP address, not a name.
fn validate_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() || host.len() > 253 {
        return Err("a host name has 1 to 253 characters");
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated label of a host name has 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("a host name has only letters, digits, hyphens and dots");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a host name label cannot start or end with a hyphen");
        }
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("not a valid IP address");
    }
    Ok(())
}

/// How host-name upstreams are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers to ask (UDP, then TCP for truncated answers); empty: the system's
    /// (`/etc/resolv.conf`, with its search domains).
    pub nameservers: Vec<SocketAddr>,
    /// Bounds on how long a resolution is kept before it is asked again.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// How long one resolution may take before it counts as failed.
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub min_ttl_s: Option<u64>,
    #[serde(default)]
    pub max_ttl_s: Option<u64>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

pub(super) fn convert(file: &Path, raw: &RawDns, errors: &mut ConfigErrors) -> DnsConfig {
    let defaults = DnsConfig::default();
    let mut nameservers = Vec::new();
    for (i, server) in raw.nameservers.iter().enumerate() {
        match server.parse::<SocketAddr>() {
            Ok(addr) => nameservers.push(addr),
            Err(_) => errors.push(
                file,
                format!("dns.nameservers[{i}]"),
                format!("`{server}` is not an IP:port address"),
            ),
        }
    }
    let min_ttl = raw.min_ttl_s.map_or(defaults.min_ttl, Duration::from_secs);
    let max_ttl = raw.max_ttl_s.map_or(defaults.max_ttl, Duration::from_secs);
    if min_ttl.is_zero() {
        errors.push(
            file,
            "dns.min_ttl_s",
            "must be at least 1: a TTL of 0 would resolve in a loop",
        );
    }
    if max_ttl < min_ttl {
        errors.push(
            file,
            "dns.max_ttl_s",
            format!(
                "{}s is below min_ttl_s ({}s)",
                max_ttl.as_secs(),
                min_ttl.as_secs()
            ),
        );
    }
    let timeout = match raw.timeout_ms {
        Some(0) => {
            errors.push(file, "dns.timeout_ms", "must be greater than 0");
            defaults.timeout
        }
        Some(ms) => Duration::from_millis(ms),
        None => defaults.timeout,
    };
    DnsConfig {
        nameservers,
        min_ttl,
        max_ttl,
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_ips_or_host_names() {
        assert_eq!(
            UpstreamAddress::parse("10.0.0.1:80"),
            Ok(UpstreamAddress::Ip("10.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            UpstreamAddress::parse("[::1]:8443"),
            Ok(UpstreamAddress::Ip("[::1]:8443".parse().unwrap()))
        );
        assert_eq!(
            UpstreamAddress::parse("Payments-API.payments.svc.cluster.local.:8080"),
            Ok(UpstreamAddress::Name {
                host: "payments-api.payments.svc.cluster.local".into(),
                port: 8080
            })
        );
        assert_eq!(
            UpstreamAddress::parse("localhost:9000")
                .unwrap()
                .to_string(),
            "localhost:9000"
        );
        for bad in [
            "not-an-address",
            "host:",
            "host:http",
            "host:70000",
            "host:0",
            ":80",
            "a..b:80",
            "-a.b:80",
            "a-.b:80",
            "under_score:80",
            "10.0.0.300:80",
            "::1:80",
            "sp ace:80",
            &format!("{}:80", "a".repeat(64)),
        ] {
            assert!(UpstreamAddress::parse(bad).is_err(), "{bad} was accepted");
        }
    }
}
