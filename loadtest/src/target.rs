//! The target: URL parsing, name resolution, and the loopback-only rule.
//!
//! This tool generates load, so it refuses to aim at anything but this machine: the host is
//! resolved before any connection is made and *every* address it resolves to must be loopback
//! (127.0.0.0/8 or ::1). A name that resolves to one loopback and one remote address is refused
//! too, because which address a connection uses is not ours to guarantee.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use http::uri::{Authority, Scheme, Uri};

/// A validated target: where to connect and how to name the server.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https` (TLS, usually mTLS) or `http`.
    pub tls: bool,
    /// Host as written in the URL, without brackets for an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// `host:port` as sent in `Host` / `:authority`.
    pub authority: Authority,
    /// Every address the host resolved to (all loopback).
    pub resolved: Vec<SocketAddr>,
    /// The address connections use: the first IPv4 one, else the first.
    pub addr: SocketAddr,
}

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    BadUrl(String),
    /// Only `http` and `https`.
    Scheme(String),
    /// The URL has a path or query; paths come from `--request`.
    HasPath(String),
    Resolve {
        host: String,
        reason: String,
    },
    NoAddress {
        host: String,
    },
    /// The host resolves to (or is) an address that is not loopback.
    NotLoopback {
        host: String,
        addr: IpAddr,
    },
}

/// Whether `ip` is a loopback address this tool may target: 127.0.0.0/8 or ::1. IPv4-mapped
/// IPv6 forms (`::ffff:127.0.0.1`) are refused: plain spellings exist for every loopback target.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    }
}

/// Checks that `addrs` is not empty and that every address in it is loopback.
pub fn check_loopback(host: &str, addrs: &[SocketAddr]) -> Result<(), TargetError> {
    if addrs.is_empty() {
        return Err(TargetError::NoAddress { host: host.into() });
    }
    match addrs.iter().find(|a| !is_loopback(a.ip())) {
        Some(bad) => Err(TargetError::NotLoopback {
            host: host.into(),
            addr: bad.ip(),
        }),
        None => Ok(()),
    }
}

/// Splits a URL into scheme, host (IPv6 brackets removed), port and authority.
pub fn parse_url(url: &str) -> Result<(bool, String, u16, Authority), TargetError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| TargetError::BadUrl(format!("`{url}`: {e}")))?;
    let tls = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        Some(s) => return Err(TargetError::Scheme(s.to_string())),
        None => {
            return Err(TargetError::BadUrl(format!(
                "`{url}`: expected https://HOST:PORT or http://HOST:PORT"
            )))
        }
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| TargetError::BadUrl(format!("`{url}`: no host")))?;
    if authority.as_str().contains('@') {
        return Err(TargetError::BadUrl(format!(
            "`{url}`: userinfo is not supported"
        )));
    }
    if let Some(pq) = uri.path_and_query() {
        if pq.as_str() != "/" && !pq.as_str().is_empty() {
            return Err(TargetError::HasPath(pq.as_str().into()));
        }
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok((tls, host, port, authority))
}

impl Target {
    /// Parses `url`, resolves its host and refuses it unless every address is loopback.
    pub fn resolve(url: &str) -> Result<Target, TargetError> {
        let (tls, host, port, authority) = parse_url(url)?;
        let resolved: Vec<SocketAddr> = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| TargetError::Resolve {
                host: host.clone(),
                reason: e.to_string(),
            })?
            .collect();
        check_loopback(&host, &resolved)?;
        let addr = resolved
            .iter()
            .find(|a| a.is_ipv4())
            .or(resolved.first())
            .copied()
            .ok_or_else(|| TargetError::NoAddress { host: host.clone() })?;
        Ok(Target {
            tls,
            host,
            port,
            authority,
            resolved,
            addr,
        })
    }

    /// `scheme://authority`, for reports.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority
        )
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::BadUrl(e) => write!(f, "bad target URL {e}"),
            TargetError::Scheme(s) => write!(f, "scheme `{s}` is not http or https"),
            TargetError::HasPath(p) => write!(
                f,
                "the target URL has a path (`{p}`); give paths with --request 'METHOD PATH'"
            ),
            TargetError::Resolve { host, reason } => write!(f, "cannot resolve `{host}`: {reason}"),
            TargetError::NoAddress { host } => write!(f, "`{host}` resolves to no address"),
            TargetError::NotLoopback { host, addr } => write!(
                f,
                "refusing target `{host}`: it resolves to {addr}, which is not loopback; this \
                 tool only loads 127.0.0.0/8 and ::1"
            ),
        }
    }
}

impl std::error::Error for TargetError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_is_127_slash_8_and_v6_localhost_only() {
        for ok in ["127.0.0.1", "127.255.255.254", "127.0.1.1", "::1"] {
            assert!(is_loopback(ok.parse().unwrap()), "{ok}");
        }
        for bad in [
            "0.0.0.0",
            "10.0.0.1",
            "128.0.0.1",
            "126.255.255.255",
            "192.168.1.1",
            "::",
            "::ffff:127.0.0.1",
            "fe80::1",
            "2001:db8::1",
        ] {
            assert!(!is_loopback(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn every_resolved_address_must_be_loopback() {
        assert!(check_loopback("h", &[sa("127.0.0.1:1"), sa("[::1]:1")]).is_ok());
        assert_eq!(
            check_loopback("h", &[sa("127.0.0.1:1"), sa("10.1.2.3:1")]),
            Err(TargetError::NotLoopback {
                host: "h".into(),
                addr: "10.1.2.3".parse().unwrap()
            })
        );
        assert_eq!(
            check_loopback("h", &[]),
            Err(TargetError::NoAddress { host: "h".into() })
        );
    }

    #[test]
    fn resolves_loopback_literals_and_localhost() {
        let t = Target::resolve("https://127.0.0.1:8443").unwrap();
        assert!(t.tls);
        assert_eq!(t.addr, sa("127.0.0.1:8443"));
        assert_eq!(t.authority.as_str(), "127.0.0.1:8443");
        let t = Target::resolve("http://[::1]:9000/").unwrap();
        assert!(!t.tls);
        assert_eq!(t.host, "::1");
        assert_eq!(t.addr, sa("[::1]:9000"));
        let t = Target::resolve("https://localhost:8443").unwrap();
        assert_eq!(t.host, "localhost");
        assert!(t.resolved.iter().all(|a| is_loopback(a.ip())));
        assert_eq!(Target::resolve("https://localhost").unwrap().port, 443);
    }

    #[test]
    fn refuses_remote_targets_before_connecting() {
        for url in [
            "https://10.0.0.1:8443",
            "http://0.0.0.0:80",
            "https://[2001:db8::1]",
        ] {
            let err = Target::resolve(url).unwrap_err();
            assert!(
                matches!(err, TargetError::NotLoopback { .. }),
                "{url}: {err}"
            );
            assert!(err.to_string().contains("not loopback"), "{err}");
        }
    }

    #[test]
    fn refuses_malformed_urls() {
        assert!(matches!(
            Target::resolve("ftp://127.0.0.1"),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            Target::resolve("127.0.0.1:8443"),
            Err(TargetError::BadUrl(_))
        ));
        assert!(matches!(
            Target::resolve("https://127.0.0.1:8443/payments"),
            Err(TargetError::HasPath(_))
        ));
        assert!(matches!(
            Target::resolve("https://user@127.0.0.1:8443"),
            Err(TargetError::BadUrl(_))
        ));
    }
}
