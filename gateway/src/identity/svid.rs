//! X.509-SVID leaf rules (SPIFFE X509-SVID specification, sections 2, 4.1 and 4.3): exactly
//! one URI SAN holding a valid SPIFFE ID; not a CA; key usage present with digitalSignature
//! and without keyCertSign or cRLSign. Chain and validity period are webpki's job.

use std::fmt;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::spiffe::{SpiffeId, SpiffeIdError};

/// Facts read once from a verified peer leaf certificate.
#[derive(Clone, Debug)]
pub struct SvidFacts {
    pub spiffe_id: SpiffeId,
    /// Lower-case hex of the serial number's DER bytes.
    pub serial_hex: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// Lower-case hex SHA-256 of the whole DER certificate (Envoy XFCC `Hash=`).
    pub sha256_hex: String,
    /// Raw SHA-256 thumbprint (RFC 8705 `x5t#S256`).
    pub sha256: [u8; 32],
}

/// Why a leaf certificate is not an acceptable X.509-SVID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SvidError {
    Malformed(String),
    NoUriSan,
    MultipleUriSans(usize),
    BadSpiffeId(SpiffeIdError),
    IsCa,
    MissingKeyUsage,
    MissingDigitalSignature,
    ForbiddenKeyCertSign,
    ForbiddenCrlSign,
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SvidError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SvidError::Malformed(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(SvidError::Malformed(e.to_string())),
    }
}

fn spiffe_id_of(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SvidError::Malformed(format!("subjectAltName: {e}")))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [] => Err(SvidError::NoUriSan),
        [uri] => SpiffeId::parse(uri).map_err(SvidError::BadSpiffeId),
        many => Err(SvidError::MultipleUriSans(many.len())),
    }
}

/// Only the SPIFFE ID, used before chain verification to pick the trust domain's bundle.
pub fn leaf_spiffe_id(der: &[u8]) -> Result<SpiffeId, SvidError> {
    spiffe_id_of(&parse(der)?)
}

/// Checks that `der` is an X.509-SVID leaf per the spec and returns its facts.
pub fn inspect_leaf(der: &[u8]) -> Result<SvidFacts, SvidError> {
    let cert = parse(der)?;
    let spiffe_id = spiffe_id_of(&cert)?;
    let mut key_usage = None;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(SvidError::IsCa),
            ParsedExtension::KeyUsage(ku) => key_usage = Some(*ku),
            ParsedExtension::ParseError { error } => {
                return Err(SvidError::Malformed(format!(
                    "extension {}: {error}",
                    ext.oid
                )))
            }
            _ => {}
        }
    }
    let ku = key_usage.ok_or(SvidError::MissingKeyUsage)?;
    if !ku.digital_signature() {
        return Err(SvidError::MissingDigitalSignature);
    }
    if ku.key_cert_sign() {
        return Err(SvidError::ForbiddenKeyCertSign);
    }
    if ku.crl_sign() {
        return Err(SvidError::ForbiddenCrlSign);
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(digest.as_ref());
    Ok(SvidFacts {
        spiffe_id,
        serial_hex: hex(cert.raw_serial()),
        not_before_unix: cert.validity().not_before.timestamp(),
        not_after_unix: cert.validity().not_after.timestamp(),
        sha256_hex: hex(&sha256),
        sha256,
    })
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

impl fmt::Display for SvidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SvidError::Malformed(e) => write!(f, "leaf certificate is malformed: {e}"),
            SvidError::NoUriSan => {
                f.write_str("leaf certificate has no URI SAN; an X.509-SVID has exactly one")
            }
            SvidError::MultipleUriSans(n) => {
                write!(
                    f,
                    "leaf certificate has {n} URI SANs; an X.509-SVID has exactly one"
                )
            }
            SvidError::BadSpiffeId(e) => write!(f, "URI SAN is not a valid SPIFFE ID: {e}"),
            SvidError::IsCa => f.write_str("leaf certificate is a CA (basicConstraints CA=true)"),
            SvidError::MissingKeyUsage => f.write_str("leaf certificate has no keyUsage extension"),
            SvidError::MissingDigitalSignature => {
                f.write_str("leaf keyUsage lacks digitalSignature")
            }
            SvidError::ForbiddenKeyCertSign => f.write_str("leaf keyUsage sets keyCertSign"),
            SvidError::ForbiddenCrlSign => f.write_str("leaf keyUsage sets cRLSign"),
        }
    }
}

impl std::error::Error for SvidError {}

#[cfg(test)]
mod tests;
