//! The PROXY protocol header (versions 1 and 2, as haproxy's proxy-protocol.txt defines them):
//! what an L4 balancer in front of the gateway says about the connection it relays, so that
//! events and reports see the workload's address rather than the balancer's.
//!
//! Pure parsing over the bytes received so far: the caller peeks at the socket, asks whether
//! the header is complete, and then consumes exactly its length, so not one byte of the TLS
//! handshake behind it is taken. Only listeners that opt in read it, and only from configured
//! balancers: anyone else could name any address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 header, CRLF included (the spec's bound).
const V1_MAX: usize = 107;
/// Longest version 2 header accepted: 16 bytes and the addresses, with room for TLVs. The
/// spec allows 64 KiB; a balancer that sends more than this is not one we configured.
pub const V2_MAX: usize = 16 + 1024;

/// What the header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Bytes of the header, to consume before the TLS handshake.
    pub len: usize,
    /// The original client's address; `None` for a `LOCAL` (v2) or `UNKNOWN` (v1) connection,
    /// which is the balancer's own (a health check): its real peer address stands.
    pub source: Option<SocketAddr>,
}

/// Parsing the bytes received so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse {
    Complete(Header),
    /// A prefix of a valid header: read more (at most [`V2_MAX`] bytes in all).
    Incomplete,
    Invalid(&'static str),
}

/// Parses a PROXY header at the start of `bytes`.
pub fn parse(bytes: &[u8]) -> Parse {
    if bytes.is_empty() {
        return Parse::Incomplete;
    }
    if bytes[0] == b'\r' {
        return parse_v2(bytes);
    }
    if bytes[0] == b'P' {
        return parse_v1(bytes);
    }
    Parse::Invalid("no PROXY protocol header")
}

fn parse_v1(bytes: &[u8]) -> Parse {
    const PREFIX: &[u8] = b"PROXY ";
    let n = bytes.len().min(PREFIX.len());
    if bytes[..n] != PREFIX[..n] {
        return Parse::Invalid("no PROXY protocol header");
    }
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Parse::Invalid("PROXY v1 header longer than 107 bytes")
        } else {
            Parse::Incomplete
        };
    };
    let len = end + 2;
    if len > V1_MAX {
        return Parse::Invalid("PROXY v1 header longer than 107 bytes");
    }
    let Ok(line) = std::str::from_utf8(&bytes[PREFIX.len()..end]) else {
        return Parse::Invalid("PROXY v1 header is not ASCII");
    };
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Parse::Complete(Header { len, source: None }),
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *family == "TCP4";
            let ip = |text: &str| -> Option<IpAddr> {
                if v4 {
                    text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
                } else {
                    text.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
                }
            };
            // Ports are 0..65535 in decimal, without leading zeros or signs.
            let port = |text: &str| -> Option<u16> {
                let canonical = !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (text == "0" || !text.starts_with('0'));
                canonical.then(|| text.parse().ok()).flatten()
            };
            match (ip(src), ip(dst), port(sport), port(dport)) {
                (Some(src), Some(_), Some(sport), Some(_)) => Parse::Complete(Header {
                    len,
                    source: Some(SocketAddr::new(src, sport)),
                }),
                _ => Parse::Invalid("PROXY v1 header with a malformed address or port"),
            }
        }
        _ => Parse::Invalid("PROXY v1 header with an unknown protocol or field count"),
    }
}

fn parse_v2(bytes: &[u8]) -> Parse {
    let n = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..n] != V2_SIGNATURE[..n] {
        return Parse::Invalid("no PROXY protocol header");
    }
    if bytes.len() < 16 {
        return Parse::Incomplete;
    }
    let version_command = bytes[12];
    if version_command >> 4 != 2 {
        return Parse::Invalid("PROXY v2 header with a version other than 2");
    }
    let local = match version_command & 0x0f {
        0x0 => true,
        0x1 => false,
        _ => return Parse::Invalid("PROXY v2 header with an unknown command"),
    };
    let family = bytes[13];
    let body = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Parse::Invalid("PROXY v2 header longer than the gateway accepts");
    }
    if bytes.len() < len {
        return Parse::Incomplete;
    }
    let addresses = &bytes[16..len];
    if local {
        return Parse::Complete(Header { len, source: None });
    }
    let source = match family {
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 if addresses.len() >= 12 => {
            let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
            let port = u16::from_be_bytes([addresses[8], addresses[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        0x21 if addresses.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addresses[..16]);
            let port = u16::from_be_bytes([addresses[32], addresses[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        0x11 | 0x21 => return Parse::Invalid("PROXY v2 header too short for its addresses"),
        // UNSPEC, UDP, unix sockets: nothing that names a TCP client.
        0x00 => None,
        _ => return Parse::Invalid("PROXY v2 header for a transport other than TCP"),
    };
    Parse::Complete(Header { len, source })
}

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address), for the balancers a listener
/// takes PROXY headers from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR range"))?;
        // `contains` matches an IPv4-mapped peer as the IPv4 address it is, so a range written
        // in the mapped form (`::ffff:10.0.0.1`) would silently never match: refuse it, naming
        // the spelling that works (found by fuzzing).
        if let Some(v4) = match network {
            IpAddr::V6(v6) => v6.to_ipv4_mapped(),
            IpAddr::V4(_) => None,
        } {
            return Err(format!(
                "`{text}` is an IPv4-mapped address, which never matches: write it as IPv4 \
                 (`{v4}`)"
            ));
        }
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: prefix length must be 0 to {max}"))?,
        };
        let range = IpRange { network, prefix };
        if range.mask(network) != network {
            return Err(format!("`{text}` has host bits set past its prefix"));
        }
        Ok(range)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.network.is_ipv4() && self.mask(ip) == self.network
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(bits & mask))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }
    }
}

#[cfg(test)]
mod tests;
