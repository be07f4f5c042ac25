//! Identity headers: what the client may not say, and what the gateway says for it; and the
//! hop-by-hop headers that belong to one connection and are never forwarded.
//!
//! A client-sent identity header is never forwarded: it is removed before the verified
//! identity is added, so an upstream that trusts these headers trusts only the gateway.
//! Header names are lower-case on the wire of both HTTP versions once parsed, so a removal by
//! name catches every spelling of case; names with underscores (which some servers read as
//! dashes) are dropped or refused before anything else looks at the request.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRANSFER_ENCODING, UPGRADE,
};

use crate::identity::Identity;

/// Envoy-compatible forwarded client certificate header.
pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const SOURCE_ZONE: HeaderName = HeaderName::from_static("x-zonegate-source-zone");
/// The verified SPIFFE ID (absent when the identity has none).
pub const IDENTITY: HeaderName = HeaderName::from_static("x-zonegate-identity");
/// The verified token's `sub`, meaningful only together with the issuer.
pub const TOKEN_SUBJECT: HeaderName = HeaderName::from_static("x-zonegate-token-subject");
/// The credential kinds that proved it (`x509-svid`, `jwt-svid`, `x509-svid+jwt-svid`, ...).
pub const CREDENTIAL: HeaderName = HeaderName::from_static("x-zonegate-credential");
/// The configured name of the token issuer, when a token proved it.
pub const TOKEN_ISSUER: HeaderName = HeaderName::from_static("x-zonegate-token-issuer");

/// Headers every gateway strips; `x-zonegate-*` is stripped as a namespace too.
pub const BUILTIN_STRIP: &[&str] = &[
    "x-forwarded-client-cert",
    "x-client-cert",
    "x-client-cert-chain",
    "x-ssl-client-cert",
    "x-ssl-client-dn",
    "x-ssl-client-verify",
    "ssl-client-cert",
    "x-spiffe-id",
    "x-workload-identity",
];
const OWN_PREFIX: &str = "x-zonegate-";

/// Connection-specific headers (RFC 9110 7.6.1), never forwarded in either direction.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const HOP_BY_HOP: [HeaderName; 4] = [
    KEEP_ALIVE,
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// Whether any header name has an underscore.
pub fn has_underscore_names(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| name.as_str().contains('_'))
}

/// Removes every header whose name has an underscore; returns how many names were dropped.
pub fn drop_underscore_names(headers: &mut HeaderMap) -> usize {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().contains('_'))
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
    doomed.len()
}

/// Removes identity headers the client sent: the built-ins, the `x-zonegate-` namespace and
/// the configured extras (lower-case names).
pub fn strip_client_identity(headers: &mut HeaderMap, extra: &[String]) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            BUILTIN_STRIP.contains(&name)
                || name.starts_with(OWN_PREFIX)
                || extra.iter().any(|e| e == name)
        })
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
}

/// Removes the hop-by-hop headers: the fixed set, and every header `Connection` names. `TE`
/// survives only as `trailers` (gRPC needs it); `Upgrade` only when `keep_upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests carry none, and most responses only `Connection: keep-alive` (or
    // `close`), which names no header but itself: one pass over the names, then in that
    // case one removal.
    let (mut connection, mut others) = (false, false);
    for name in headers.keys() {
        if name == CONNECTION {
            connection = true;
        } else if is_hop_by_hop(name) {
            others = true;
        }
    }
    if !connection && !others {
        return;
    }
    if connection && !others && !keep_upgrade && names_only_itself(headers) {
        headers.remove(CONNECTION);
        return;
    }
    let mut doomed: Vec<HeaderName> = Vec::new();
    for token in headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        // The usual options name no header, or a fixed one: no need to parse them.
        if token.eq_ignore_ascii_case("close") || token.is_empty() {
            continue;
        }
        let name = if token.eq_ignore_ascii_case("keep-alive") {
            KEEP_ALIVE
        } else if token.eq_ignore_ascii_case("upgrade") {
            UPGRADE
        } else {
            match HeaderName::from_bytes(token.as_bytes()) {
                Ok(name) => name,
                Err(_) => continue,
            }
        };
        if !(keep_upgrade && name == UPGRADE) {
            doomed.push(name);
        }
    }
    for name in headers.keys() {
        let fixed = name == TRANSFER_ENCODING
            || HOP_BY_HOP.contains(name)
            || (!keep_upgrade && (name == CONNECTION || name == UPGRADE));
        if fixed {
            doomed.push(name.clone());
        }
    }
    let trailers_only = headers
        .get(TE)
        .is_none_or(|te| te.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !trailers_only {
        doomed.push(TE);
    }
    for name in &doomed {
        headers.remove(name);
    }
}

/// Whether every `Connection` option is `close` or `keep-alive`: with no `Keep-Alive` header
/// there, removing `Connection` is all there is to do.
fn names_only_itself(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().all(|value| {
        value.as_bytes().split(|&b| b == b',').all(|token| {
            let token = token.trim_ascii();
            token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
        })
    })
}

/// Whether `strip_hop_by_hop` has anything to do about a header of this name (a `TE` of
/// `trailers` included: it is looked at there).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == UPGRADE
        || name == TRANSFER_ENCODING
        || name == TE
        || HOP_BY_HOP.contains(name)
}

/// The verified identity's headers for the upstream, but the request id.
///
/// When the connection presented an X.509-SVID:
/// `x-forwarded-client-cert: By=<gateway SPIFFE ID>;Hash=<SHA-256 of the client cert>;URI=<client SPIFFE ID>`
/// follows Envoy's format, so upstreams already parsing it need no change. `x-zonegate-identity`
/// carries the SPIFFE ID, and only a SPIFFE ID: a token subject from an issuer that speaks for
/// no trust domain goes in `x-zonegate-token-subject`, beside `x-zonegate-token-issuer`, so it
/// can never pass for a workload identity. The client can set none of these: the whole
/// `x-zonegate-` namespace is stripped from client requests first.
///
/// Built once per connection and snapshot for an identity proved by the certificate alone
/// (see `Connection`), and per request when a token took part.
pub fn identity_headers(
    identity: &Identity,
    gateway_id: Option<&str>,
    source_zone: &str,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(6);
    let mut put = |name: HeaderName, value: &str| {
        // Every value here was parsed from a certificate, a verified token or the config;
        // one that is not a valid header value is left out rather than forwarded mangled.
        if let Ok(value) = HeaderValue::from_str(value) {
            out.push((name, value));
        }
    };
    if let Some(svid) = &identity.svid {
        let mut xfcc = String::with_capacity(192);
        if let Some(by) = gateway_id {
            xfcc.push_str("By=");
            xfcc.push_str(by);
            xfcc.push(';');
        }
        xfcc.push_str("Hash=");
        xfcc.push_str(&svid.sha256_hex);
        xfcc.push_str(";URI=");
        xfcc.push_str(svid.spiffe_id.as_str());
        put(XFCC, &xfcc);
    }
    if let Some(id) = &identity.spiffe_id {
        put(IDENTITY, id.as_str());
    }
    put(CREDENTIAL, identity.credential_kind());
    if let Some(token) = &identity.token {
        put(TOKEN_ISSUER, &token.issuer.name);
        put(TOKEN_SUBJECT, &token.subject);
    }
    put(SOURCE_ZONE, source_zone);
    out
}

/// Adds the verified identity's headers and the request id for the upstream.
pub fn add_verified_identity(
    headers: &mut HeaderMap,
    identity: &[(HeaderName, HeaderValue)],
    request_id: Option<&HeaderValue>,
) {
    // One growth of the map at most, not one per header added.
    headers.reserve(identity.len() + 1);
    for (name, value) in identity {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(id) = request_id {
        headers.insert(REQUEST_ID, id.clone());
    }
}

#[cfg(test)]
mod tests;
