//! Identity headers: what the client may not say, and what the gateway says for it.
//!
//! A client-sent identity header is never forwarded: it is removed before the verified
//! identity is added, so an upstream that trusts these headers trusts only the gateway.

use pingora_http::RequestHeader;

use crate::identity::Identity;

/// Envoy-compatible forwarded client certificate header.
pub const XFCC: &str = "x-forwarded-client-cert";
pub const REQUEST_ID: &str = "x-request-id";
pub const SOURCE_ZONE: &str = "x-zonegate-source-zone";
/// The verified SPIFFE ID (absent when the identity has none).
pub const IDENTITY: &str = "x-zonegate-identity";
/// The verified token's `sub`, meaningful only together with the issuer.
pub const TOKEN_SUBJECT: &str = "x-zonegate-token-subject";
/// The credential kinds that proved it (`x509-svid`, `jwt-svid`, `x509-svid+jwt-svid`, ...).
pub const CREDENTIAL: &str = "x-zonegate-credential";
/// The configured name of the token issuer, when a token proved it.
pub const TOKEN_ISSUER: &str = "x-zonegate-token-issuer";

/// Headers every gateway strips; `x-zonegate-*` is stripped as a namespace too.
pub const BUILTIN_STRIP: &[&str] = &[
    XFCC,
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

/// Removes identity headers the client sent: the built-ins, the `x-zonegate-` namespace and
/// the configured extras (lower-case names).
pub fn strip_client_identity(req: &mut RequestHeader, extra: &[String]) {
    let doomed: Vec<String> = req
        .headers
        .keys()
        .map(|name| name.as_str())
        .filter(|name| {
            BUILTIN_STRIP.contains(name)
                || name.starts_with(OWN_PREFIX)
                || extra.iter().any(|e| e == name)
        })
        .map(str::to_string)
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

/// Adds the verified identity for the upstream.
///
/// When the connection presented an X.509-SVID:
/// `x-forwarded-client-cert: By=<gateway SPIFFE ID>;Hash=<SHA-256 of the client cert>;URI=<client SPIFFE ID>`
/// follows Envoy's format, so upstreams already parsing it need no change. `x-zonegate-identity`
/// carries the SPIFFE ID, and only a SPIFFE ID: a token subject from an issuer that speaks for
/// no trust domain goes in `x-zonegate-token-subject`, beside `x-zonegate-token-issuer`, so it
/// can never pass for a workload identity. The client can set none of these: the whole
/// `x-zonegate-` namespace is stripped from client requests first.
pub fn add_verified_identity(
    req: &mut RequestHeader,
    identity: &Identity,
    gateway_id: Option<&str>,
    source_zone: &str,
    request_id: &str,
) -> pingora_error::Result<()> {
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
        req.insert_header(XFCC, xfcc)?;
    }
    if let Some(id) = &identity.spiffe_id {
        req.insert_header(IDENTITY, id.as_str())?;
    }
    req.insert_header(CREDENTIAL, identity.credential_kind())?;
    if let Some(token) = &identity.token {
        req.insert_header(TOKEN_ISSUER, &*token.issuer.name)?;
        req.insert_header(TOKEN_SUBJECT, &token.subject)?;
    }
    req.insert_header(REQUEST_ID, request_id)?;
    req.insert_header(SOURCE_ZONE, source_zone)?;
    Ok(())
}
