//! What the fuzz targets share: a per-process scratch directory for the loaders that read
//! files (there is no string entry point to the config and policy loaders, and the config
//! resolves the certificates, bundles and policy files it names relative to itself), the
//! fixtures a gateway config can reference there.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose as Ku, SanType};

/// A directory of this process's own under the system temp dir (fuzz/run.sh points `TMPDIR`
/// at a directory it removes afterwards). Made once; the targets overwrite files inside it.
pub fn scratch_dir(target: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("zonegate-fuzz-{target}-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create scratch dir {}: {e}", dir.display());
        }
        dir
    })
}

/// Writes what the seed configs reference into `dir`, laid out as in the repository (a
/// config in `dir/config/`, the dev PKI in `dir/certs/`) and as the config unit tests lay it
/// out (`dir/config/certs/`, `dir/config/policy/`), so that a seed loads in full and the
/// fuzzer starts from configs that reach every conversion.
pub fn write_config_fixture(dir: &Path) -> std::io::Result<()> {
    let io = |e: rcgen::Error| std::io::Error::other(e.to_string());
    let ca_key = KeyPair::generate().map_err(io)?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    ca.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    ca.subject_alt_names = vec![uri("spiffe://example.org")];
    let ca_cert = ca.self_signed(&ca_key).map_err(io)?;
    let gw_key = KeyPair::generate().map_err(io)?;
    let mut gw = CertificateParams::default();
    gw.subject_alt_names = vec![uri("spiffe://example.org/ns/payments/sa/zonegate")];
    gw.key_usages = vec![Ku::DigitalSignature, Ku::KeyEncipherment];
    let gw_cert = gw.signed_by(&gw_key, &ca_cert, &ca_key).map_err(io)?;
    let jwt_key = KeyPair::generate().map_err(io)?;
    let point = jwt_key.public_key_raw();
    let (x, y) = point.get(1..).unwrap_or_default().split_at(32);
    let bundle = serde_json::json!({ "keys": [{
        "kty": "EC", "crv": "P-256", "use": "jwt-svid", "kid": "k1",
        "x": b64url(x), "y": b64url(y),
    }]})
    .to_string();
    let policy = "[[rule]]\nid = \"allow-shop\"\neffect = \"allow\"\nzones = [\"shop\"]\n\
                  paths = [\"/payments/**\"]\n";
    let revocation = "spiffe_ids = [\"spiffe://example.org/x\"]\nserials = [\"01:ab\"]\n\
                      jtis = [\"j\"]\n";
    for certs in [dir.join("certs"), dir.join("config/certs")] {
        write(&certs.join("ca.crt"), &ca_cert.pem())?;
        write(&certs.join("gateway.crt"), &gw_cert.pem())?;
        write(&certs.join("gateway.key"), &gw_key.serialize_pem())?;
        write(&certs.join("jwt-bundle.json"), &bundle)?;
    }
    for policy_dir in [
        "config/policy",
        "config/policy/payments",
        "config/policy/shop",
    ] {
        write(&dir.join(policy_dir).join("a.toml"), policy)?;
    }
    write(&dir.join("config/revocation/payments.toml"), revocation)?;
    write(&dir.join("config/revocation/shop.toml"), revocation)?;
    Ok(())
}

fn write(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, contents)
}

/// Unpadded base64url, as JWS and JWK spell bytes.
pub fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn uri(s: &str) -> SanType {
    match s.try_into() {
        Ok(uri) => SanType::URI(uri),
        Err(e) => panic!("{s}: {e}"),
    }
}
