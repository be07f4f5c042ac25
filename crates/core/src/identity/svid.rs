//! Owns the X.509-SVID leaf rules of the SPIFFE X509-SVID specification (sections 2, 3.1, 4.1,
//! 4.3 and 5.2) and the facts the gateway reads once from a peer's leaf certificate.
//!
//! A leaf SVID carries exactly one URI SAN, a valid SPIFFE ID with a path; it is not a CA; its
//! critical keyUsage extension sets digitalSignature and neither keyCertSign nor cRLSign. Chain
//! building, signatures and the validity period are webpki's job, not this module's.

use std::fmt;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, KeyUsage, ParsedExtension, X509Extension};
use x509_parser::oid_registry::{
    Oid, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
};

use super::spiffe::{SpiffeId, SpiffeIdError};

/// Facts read once from a verified peer leaf certificate.
#[derive(Clone, Debug)]
pub struct SvidFacts {
    pub spiffe_id: SpiffeId,
    /// Lower-case hex of the serial number's DER content bytes, exactly as encoded: no
    /// separators, and a leading `00` kept where DER needs it to keep the number positive.
    pub serial_hex: String,
    /// Start of the validity period, seconds since the Unix epoch.
    pub not_before_unix: i64,
    /// End of the validity period, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// Lower-case hex SHA-256 of the whole DER certificate (Envoy XFCC `Hash=`).
    pub sha256_hex: String,
    /// Raw SHA-256 thumbprint of the whole DER certificate (RFC 8705 `x5t#S256`).
    pub sha256: [u8; 32],
}

impl SvidFacts {
    /// An SVID known only by its SPIFFE ID, as `policy explain` is told of one: no serial, no
    /// validity bounds, no thumbprint.
    pub fn stated(spiffe_id: SpiffeId) -> SvidFacts {
        SvidFacts {
            spiffe_id,
            serial_hex: String::new(),
            not_before_unix: i64::MIN,
            not_after_unix: i64::MAX,
            sha256_hex: String::new(),
            sha256: [0; 32],
        }
    }
}

/// Why a certificate is not an acceptable X.509-SVID leaf. Display is written for the gateway
/// operator reading a refused handshake in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SvidError {
    /// Not a single DER certificate, or an extension this module reads does not parse or
    /// appears twice.
    Malformed(String),
    /// No URI SAN at all.
    NoUriSan,
    /// This many URI SANs (two or more); the spec requires exactly one.
    MultipleUriSans(usize),
    /// The one URI SAN is not a valid SPIFFE ID.
    BadSpiffeId(SpiffeIdError),
    /// The SPIFFE ID is a trust domain's own ID; a leaf's must have a path (X509-SVID 3.1).
    NoPath(SpiffeId),
    /// basicConstraints says CA=true.
    IsCa,
    /// No keyUsage extension.
    MissingKeyUsage,
    /// keyUsage is present but not marked critical (X509-SVID 4.3).
    KeyUsageNotCritical,
    /// keyUsage lacks digitalSignature.
    MissingDigitalSignature,
    /// keyUsage sets keyCertSign: a signing certificate, not a leaf.
    ForbiddenKeyCertSign,
    /// keyUsage sets cRLSign: a signing certificate, not a leaf.
    ForbiddenCrlSign,
    /// The subject is empty but the subjectAltName extension is not critical (X509-SVID 3.1,
    /// RFC 5280 4.1.2.6).
    SanNotCritical,
    /// The public key is too weak or of a kind the gateway does not accept (RSA under 2048
    /// bits, an elliptic curve other than P-256 or P-384, DSA...).
    WeakKey(String),
}

/// Checks that `der` is an X.509-SVID leaf per the spec and returns its facts. Chain and
/// validity period are checked elsewhere (webpki); this does only the SVID-specific leaf rules.
///
/// Rules run in a fixed order, identity first and then from most to least telling, so a
/// certificate breaking several always gets the same reason.
pub fn inspect_leaf(der: &[u8]) -> Result<SvidFacts, SvidError> {
    let cert = parse(der)?;
    let spiffe_id = spiffe_id_of(&cert)?;
    check_basic_constraints(&cert)?;
    check_key_usage(&cert)?;
    check_san_criticality(&cert)?;
    check_key_strength(&cert)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut sha256 = [0u8; 32];
    // A SHA-256 digest is always 32 bytes.
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

/// Only the SPIFFE ID (exactly one URI SAN, a valid SPIFFE ID with a path), used before chain
/// verification to pick the trust domain's bundle. Nothing it returns is trusted until the
/// chain has been verified and [`inspect_leaf`] has passed.
pub fn leaf_spiffe_id(der: &[u8]) -> Result<SpiffeId, SvidError> {
    spiffe_id_of(&parse(der)?)
}

/// The key must be strong enough to stand for a workload: RSA of 2048 bits or more, ECDSA on
/// P-256 or P-384, or Ed25519.
fn check_key_strength(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
        OID_SIG_ED25519,
    };
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err(SvidError::Malformed("RSA public key does not parse".into())),
        };
        if bits < 2048 {
            return Err(SvidError::WeakKey(format!(
                "RSA key of {bits} bits; at least 2048 are required"
            )));
        }
        return Ok(());
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 => Ok(()),
            Some(c) => Err(SvidError::WeakKey(format!(
                "elliptic curve {c} is not P-256 or P-384"
            ))),
            None => Err(SvidError::WeakKey(
                "elliptic curve key names no named curve".into(),
            )),
        };
    }
    if *algorithm == OID_SIG_ED25519 {
        return Ok(());
    }
    Err(SvidError::WeakKey(format!(
        "public key algorithm {algorithm} is not RSA, ECDSA or Ed25519"
    )))
}

/// Parses exactly one DER certificate; trailing bytes are refused, not ignored.
fn parse(der: &[u8]) -> Result<X509Certificate<'_>, SvidError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(SvidError::Malformed(format!(
            "trailing bytes after the certificate ({})",
            rest.len()
        ))),
        Err(e) => Err(SvidError::Malformed(format!(
            "not a DER X.509 certificate ({e})"
        ))),
    }
}

/// The extension `oid`, `None` if absent; a duplicate or one that failed to parse is
/// `Malformed`, so a broken extension can never read as an absent one.
fn extension<'c, 'a>(
    cert: &'c X509Certificate<'a>,
    oid: &Oid<'static>,
    name: &str,
) -> Result<Option<&'c X509Extension<'a>>, SvidError> {
    let ext = cert
        .get_extension_unique(oid)
        .map_err(|e| SvidError::Malformed(format!("{name}: {e}")))?;
    match ext.map(X509Extension::parsed_extension) {
        Some(ParsedExtension::ParseError { error }) => {
            Err(SvidError::Malformed(format!("{name}: {error}")))
        }
        _ => Ok(ext),
    }
}

/// X509-SVID 2 and 5.2: exactly one URI SAN (other SAN types may sit beside it), holding a
/// SPIFFE ID whose path is not empty (3.1, 5.2).
fn spiffe_id_of(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let names = match extension(cert, &OID_X509_EXT_SUBJECT_ALT_NAME, "subjectAltName")? {
        None => return Err(SvidError::NoUriSan),
        Some(ext) => match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => &san.general_names,
            _ => return Err(malformed_as("subjectAltName")),
        },
    };
    let mut uris = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let uri = match (uris.next(), uris.count()) {
        (None, _) => return Err(SvidError::NoUriSan),
        (Some(uri), 0) => uri,
        (Some(_), more) => return Err(SvidError::MultipleUriSans(more + 1)),
    };
    let id = SpiffeId::parse(uri).map_err(SvidError::BadSpiffeId)?;
    if id.path().is_empty() {
        return Err(SvidError::NoPath(id));
    }
    Ok(id)
}

/// X509-SVID 4.1 and 5.2: a leaf's cA is false; an absent extension means false (RFC 5280).
fn check_basic_constraints(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    match extension(cert, &OID_X509_EXT_BASIC_CONSTRAINTS, "basicConstraints")? {
        None => Ok(()),
        Some(ext) => match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) if bc.ca => Err(SvidError::IsCa),
            ParsedExtension::BasicConstraints(_) => Ok(()),
            _ => Err(malformed_as("basicConstraints")),
        },
    }
}

/// X509-SVID 4.3 and 5.2: keyUsage present and critical, digitalSignature set, keyCertSign
/// and cRLSign not. The forbidden bits are checked first: they say "signing certificate".
fn check_key_usage(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    let ext =
        extension(cert, &OID_X509_EXT_KEY_USAGE, "keyUsage")?.ok_or(SvidError::MissingKeyUsage)?;
    let ku: &KeyUsage = match ext.parsed_extension() {
        ParsedExtension::KeyUsage(ku) => ku,
        _ => return Err(malformed_as("keyUsage")),
    };
    if ku.key_cert_sign() {
        return Err(SvidError::ForbiddenKeyCertSign);
    }
    if ku.crl_sign() {
        return Err(SvidError::ForbiddenCrlSign);
    }
    if !ku.digital_signature() {
        return Err(SvidError::MissingDigitalSignature);
    }
    if !ext.critical {
        return Err(SvidError::KeyUsageNotCritical);
    }
    Ok(())
}

/// X509-SVID 3.1 (after RFC 5280 4.1.2.6): with no subject, the SAN extension is the only
/// name the certificate has and must be critical. Called after [`spiffe_id_of`], so the
/// extension is known to be present.
fn check_san_criticality(cert: &X509Certificate<'_>) -> Result<(), SvidError> {
    if cert.subject().iter().next().is_some() {
        return Ok(());
    }
    match extension(cert, &OID_X509_EXT_SUBJECT_ALT_NAME, "subjectAltName")? {
        Some(ext) if !ext.critical => Err(SvidError::SanNotCritical),
        _ => Ok(()),
    }
}

/// An extension x509-parser did not parse as its own type (it should never happen for the
/// three it knows; refusing is the safe answer if it does).
fn malformed_as(name: &str) -> SvidError {
    SvidError::Malformed(format!("{name} extension did not parse as {name}"))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
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
            SvidError::MultipleUriSans(n) => write!(
                f,
                "leaf certificate has {n} URI SANs; an X.509-SVID has exactly one"
            ),
            SvidError::BadSpiffeId(e) => write!(f, "URI SAN is not a valid SPIFFE ID: {e}"),
            SvidError::NoPath(id) => write!(
                f,
                "leaf SPIFFE ID `{id}` has no path; a leaf X.509-SVID names a workload, not a \
                 trust domain"
            ),
            SvidError::IsCa => f.write_str("leaf certificate is a CA (basicConstraints CA=true)"),
            SvidError::WeakKey(why) => write!(f, "leaf certificate key is not acceptable: {why}"),
            SvidError::MissingKeyUsage => f.write_str(
                "leaf certificate has no keyUsage extension; an X.509-SVID must set \
                 digitalSignature",
            ),
            SvidError::KeyUsageNotCritical => {
                f.write_str("leaf keyUsage extension is not marked critical")
            }
            SvidError::MissingDigitalSignature => {
                f.write_str("leaf keyUsage lacks digitalSignature")
            }
            SvidError::ForbiddenKeyCertSign => {
                f.write_str("leaf keyUsage sets keyCertSign; only signing certificates may")
            }
            SvidError::ForbiddenCrlSign => {
                f.write_str("leaf keyUsage sets cRLSign; only signing certificates may")
            }
            SvidError::SanNotCritical => f.write_str(
                "leaf certificate has an empty subject but a non-critical subjectAltName",
            ),
        }
    }
}

impl std::error::Error for SvidError {}

#[cfg(test)]
mod tests;
