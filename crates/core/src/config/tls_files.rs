//! Reading PEM certificates and keys, with errors that name the file.

use std::path::Path;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in a PEM file; an error when there is none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem =
        super::sources::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{}` is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The one private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem =
        super::sources::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| format!("`{}` is not valid PEM: {e}", path.display()))?
        .ok_or_else(|| format!("`{}` holds no PEM private key", path.display()))
}
