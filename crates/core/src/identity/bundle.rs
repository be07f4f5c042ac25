//! A trust domain's X.509 authorities, from its bundle file: PEM (what spiffe-helper writes),
//! or the SPIFFE bundle format (a JWK Set whose `x509-svid` keys each carry one root in `x5c`;
//! SPIFFE Trust Domain and Bundle, section 4).
//!
//! A root that names another trust domain (its URI SAN is that domain's SPIFFE ID, as SPIRE's
//! CAs' are) never anchors this one. spiffe-helper with federated domains writes every
//! domain's roots into one PEM file; read as it is, a federated domain's CA could sign a
//! certificate that claims this domain's identities. Roots without a SPIFFE ID are kept: they
//! say nothing about which domain they serve.

use base64::Engine;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// More authorities than this in one bundle is a mistake, not a bundle.
const MAX_AUTHORITIES: usize = 256;

/// The usable roots of a bundle file, and what was left out and why.
#[derive(Debug, Default)]
pub struct Authorities {
    pub roots: Vec<CertificateDer<'static>>,
    /// `keys[2]: ...`, `certificate 3: ...`, for the operator's log.
    pub skipped: Vec<String>,
    /// The SPIFFE bundle's `spiffe_sequence` and `spiffe_refresh_hint` (seconds), when set.
    pub sequence: Option<u64>,
    pub refresh_hint_s: Option<u64>,
}

/// The X.509 authorities of `trust_domain` (its name, `example.org`) in a bundle file's
/// `bytes`. An error means the file is no bundle, or holds no usable root for the domain.
pub fn x509_authorities(bytes: &[u8], trust_domain: &str) -> Result<Authorities, String> {
    let text = bytes.trim_ascii_start();
    let mut found = if text.starts_with(b"{") {
        spiffe_bundle(text)?
    } else {
        pem_bundle(bytes)?
    };
    let candidates = std::mem::take(&mut found.roots);
    for (i, root) in candidates.into_iter().enumerate() {
        match other_domain(&root, trust_domain) {
            Ok(None) => found.roots.push(root),
            Ok(Some(other)) => found.skipped.push(format!(
                "authority {}: names trust domain `{other}`, not `{trust_domain}`",
                i + 1
            )),
            Err(why) => found.skipped.push(format!("authority {}: {why}", i + 1)),
        }
    }
    if found.roots.is_empty() {
        let why = if found.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({})", found.skipped.join("; "))
        };
        return Err(format!(
            "no X.509 authority for trust domain `{trust_domain}`{why}"
        ));
    }
    Ok(found)
}

fn pem_bundle(bytes: &[u8]) -> Result<Authorities, String> {
    let roots = rustls_pemfile::certs(&mut &bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM bundle: {e}"))?;
    if roots.len() > MAX_AUTHORITIES {
        return Err(format!(
            "{} certificates; a bundle has at most {MAX_AUTHORITIES}",
            roots.len()
        ));
    }
    Ok(Authorities {
        roots,
        ..Authorities::default()
    })
}

/// SPIFFE Trust Domain and Bundle 4.1-4.2: `keys` is required; an `x509-svid` key's `x5c` has
/// exactly one element, the base64 (not base64url) DER of the root. Keys of other uses (JWT
/// authorities) are not X.509 roots; a key that breaks its rules is skipped, as 4.2 says
/// invalid entries are.
fn spiffe_bundle(bytes: &[u8]) -> Result<Authorities, String> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a SPIFFE bundle: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("a SPIFFE bundle has a `keys` array")?;
    if keys.len() > MAX_AUTHORITIES {
        return Err(format!(
            "{} keys; a bundle has at most {MAX_AUTHORITIES}",
            keys.len()
        ));
    }
    let number = |name: &str| -> Result<Option<u64>, String> {
        match doc.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("`{name}` is not a non-negative integer")),
        }
    };
    let mut found = Authorities {
        sequence: number("spiffe_sequence")?,
        refresh_hint_s: number("spiffe_refresh_hint")?,
        ..Authorities::default()
    };
    for (i, key) in keys.iter().enumerate() {
        if key.get("use").and_then(Value::as_str) != Some("x509-svid") {
            continue;
        }
        match x5c_root(key) {
            Ok(root) => found.roots.push(root),
            Err(why) => found.skipped.push(format!("keys[{i}]: {why}")),
        }
    }
    Ok(found)
}

fn x5c_root(key: &Value) -> Result<CertificateDer<'static>, String> {
    let x5c = key
        .get("x5c")
        .and_then(Value::as_array)
        .ok_or("an x509-svid key without `x5c`")?;
    let [only] = x5c.as_slice() else {
        return Err(format!(
            "`x5c` has {} elements; an x509-svid key has exactly one",
            x5c.len()
        ));
    };
    let encoded = only.as_str().ok_or("`x5c[0]` is not a string")?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("`x5c[0]` is not base64: {e}"))?;
    X509Certificate::from_der(&der).map_err(|e| format!("`x5c[0]` is not a certificate: {e}"))?;
    Ok(CertificateDer::from(der))
}

/// The trust domain a root names, when it names one other than `trust_domain`.
fn other_domain(root: &CertificateDer<'_>, trust_domain: &str) -> Result<Option<String>, String> {
    let (_, cert) =
        X509Certificate::from_der(root).map_err(|e| format!("not a certificate: {e}"))?;
    // Unreadable names (a duplicated extension) could hide another domain's: such a root is
    // left out, not trusted.
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subject alternative names: {e}"))?;
    let Some(san) = san else {
        return Ok(None);
    };
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(rest) = uri.strip_prefix("spiffe://") else {
            continue;
        };
        let domain = rest.split('/').next().unwrap_or_default();
        if !domain.eq_ignore_ascii_case(trust_domain) {
            return Ok(Some(domain.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
