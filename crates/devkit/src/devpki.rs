//! The development PKI: a trust-domain CA and X.509-SVIDs minted with rcgen, for `dev-certs`,
//! `demo`, the tests and the load generator. Never for production: keys are written in clear.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// A trust domain's signing CA.
pub struct DevCa {
    pub trust_domain: String,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its key, in PEM and DER.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
}

impl Issued {
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

/// A subject public key given by its encoding, for keys rcgen cannot make (RSA of a chosen
/// size): `der` is what the certificate's SubjectPublicKeyInfo carries for `algorithm`
/// (PKCS#1 `RSAPublicKey` for RSA).
pub struct RawPublicKey {
    pub der: Vec<u8>,
    pub algorithm: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for RawPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.der
    }

    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

/// What a minted leaf looks like; the defaults are a well-formed X.509-SVID valid for a day.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    pub ip_sans: Vec<std::net::IpAddr>,
    pub is_ca: bool,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    pub fn svid(spiffe_id: &str) -> LeafSpec {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            uri_sans: vec![spiffe_id.to_string()],
            dns_sans: Vec::new(),
            ip_sans: Vec::new(),
            is_ca: false,
            key_usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(1),
        }
    }
}

impl DevCa {
    /// A new self-signed CA for `trust_domain`, its URI SAN the trust domain's SPIFFE ID.
    pub fn new(trust_domain: &str) -> Result<DevCa, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "zonegate dev");
        dn.push(DnType::CommonName, format!("{trust_domain} dev CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names =
            vec![SanType::URI(format!("spiffe://{trust_domain}").try_into()?)];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        let cert = params.self_signed(&key)?;
        Ok(DevCa {
            trust_domain: trust_domain.to_string(),
            cert,
            key,
        })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Mints an SVID for `spiffe_id` valid for a day.
    pub fn svid(&self, spiffe_id: &str) -> Result<Issued, rcgen::Error> {
        self.issue(&LeafSpec::svid(spiffe_id))
    }

    /// Mints a leaf exactly as `spec` says, well-formed or not (tests mint bad SVIDs too).
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, rcgen::Error> {
        let key = KeyPair::generate()?;
        let cert = self
            .leaf_params(spec)?
            .signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }

    /// Mints a leaf as `spec` says for a key made elsewhere (one rcgen cannot make, such as
    /// an RSA key of a chosen size); the caller keeps the private half.
    pub fn issue_for_key(
        &self,
        spec: &LeafSpec,
        subject_key: &impl rcgen::PublicKeyData,
    ) -> Result<CertificateDer<'static>, rcgen::Error> {
        let cert = self
            .leaf_params(spec)?
            .signed_by(subject_key, &self.cert, &self.key)?;
        Ok(cert.der().clone())
    }

    fn leaf_params(&self, spec: &LeafSpec) -> Result<CertificateParams, rcgen::Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "SPIFFE");
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from(
            rand::random::<[u8; 16]>().map(|b| b & 0x7f).to_vec(),
        ));
        let mut sans = Vec::new();
        for uri in &spec.uri_sans {
            sans.push(SanType::URI(uri.as_str().try_into()?));
        }
        for dns in &spec.dns_sans {
            sans.push(SanType::DnsName(dns.as_str().try_into()?));
        }
        sans.extend(spec.ip_sans.iter().map(|ip| SanType::IpAddress(*ip)));
        params.subject_alt_names = sans;
        params.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = spec.key_usages.clone();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        Ok(params)
    }
}

/// The workloads the dev PKI mints, as (file stem, SPIFFE ID path).
pub const DEV_WORKLOADS: &[(&str, &str)] = &[
    ("checkout", "/ns/shop/sa/checkout"),
    ("cart", "/ns/shop/sa/cart"),
    ("ledger", "/ns/payments/sa/ledger"),
];

/// The SPIFFE ID path of the dev gateway's own SVID.
pub const DEV_GATEWAY_PATH: &str = "/ns/payments/sa/zonegate";

/// Writes a dev PKI into `dir`: `ca.crt` (the trust bundle), `ca.key`, the gateway's SVID
/// (`gateway.crt`/`.key`, also valid for `localhost` and 127.0.0.1) and one SVID per
/// workload in [`DEV_WORKLOADS`], and the trust domain's JWT-SVID signing key and JWT bundle
/// (`jwt-signer.key`, `jwt-bundle.json`, see [`crate::devtoken`]). Returns the files written.
pub fn write_dev_pki(dir: &Path, trust_domain: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
    let io = |e: rcgen::Error| std::io::Error::other(e.to_string());
    std::fs::create_dir_all(dir)?;
    let ca = DevCa::new(trust_domain).map_err(io)?;
    let mut written = Vec::new();
    let mut write = |name: &str, contents: &str, secret: bool| -> std::io::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, contents)?;
        if secret {
            restrict(&path)?;
        }
        written.push(path);
        Ok(())
    };
    write("ca.crt", &ca.cert_pem(), false)?;
    write("ca.key", &ca.key_pem(), true)?;
    let mut gateway = LeafSpec::svid(&format!("spiffe://{trust_domain}{DEV_GATEWAY_PATH}"));
    gateway.dns_sans = vec!["localhost".into()];
    gateway.ip_sans = vec![std::net::Ipv4Addr::LOCALHOST.into()];
    gateway.not_after = OffsetDateTime::now_utc() + Duration::days(30);
    let gw = ca.issue(&gateway).map_err(io)?;
    write("gateway.crt", &gw.cert_pem, false)?;
    write("gateway.key", &gw.key_pem, true)?;
    for (name, path) in DEV_WORKLOADS {
        let mut spec = LeafSpec::svid(&format!("spiffe://{trust_domain}{path}"));
        spec.not_after = OffsetDateTime::now_utc() + Duration::days(30);
        let svid = ca.issue(&spec).map_err(io)?;
        write(&format!("{name}.crt"), &svid.cert_pem, false)?;
        write(&format!("{name}.key"), &svid.key_pem, true)?;
    }
    let signer = crate::devtoken::write_dev_signer(dir)?;
    if let Some(key) = signer.first() {
        restrict(key)?;
    }
    written.extend(signer);
    Ok(written)
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
