//! Development token signing: a JWT-SVID signing key beside the dev PKI, its SPIFFE bundle,
//! and minting, for `dev-certs`, `token mint`, `demo`, the tests and the load generator.
//! Never for production: the signing key is written in clear.
//!
//! The signing input is assembled here rather than through `jsonwebtoken::encode` so that
//! tests can also mint the hostile tokens (odd headers, `crit`, missing claims) that the
//! verifier must refuse; the signature itself is jsonwebtoken's (ring).

use std::path::Path;

use jsonwebtoken::{Algorithm, EncodingKey};
use rcgen::KeyPair;
use serde_json::{json, Map, Value};

/// Unpadded base64url (RFC 7515 2), as JOSE writes every part.
fn b64url(bytes: &[u8]) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token signing key with its public JWK.
pub struct TokenSigner {
    pub alg: Algorithm,
    pub kid: String,
    key: EncodingKey,
    /// The public key as JWK members (`kty`, `crv`, `x`, `y`, `n`, `e`), without `use`/`kid`.
    public: Map<String, Value>,
}

impl TokenSigner {
    /// A new ES256 (P-256) key.
    pub fn generate_es256() -> Result<TokenSigner, String> {
        let pair =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
        TokenSigner::from_key_pair(&pair)
    }

    /// A new ES384 (P-384) key.
    pub fn generate_es384() -> Result<TokenSigner, String> {
        let pair =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(|e| e.to_string())?;
        TokenSigner::from_key_pair(&pair)
    }

    /// A new Ed25519 (EdDSA) key.
    pub fn generate_ed25519() -> Result<TokenSigner, String> {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
        TokenSigner::from_key_pair(&pair)
    }

    /// An EC or Ed25519 key from a PKCS#8 PEM file's text.
    pub fn from_pkcs8_pem(pem: &str) -> Result<TokenSigner, String> {
        let pair = KeyPair::from_pem(pem).map_err(|e| format!("not a PKCS#8 key: {e}"))?;
        TokenSigner::from_key_pair(&pair)
    }

    /// An RSA key (PKCS#1 DER), signing with `alg` (RS256, PS256, ...).
    pub fn from_rsa_pkcs1_der(der: &[u8], alg: Algorithm) -> Result<TokenSigner, String> {
        let pair = ring::signature::RsaKeyPair::from_der(der)
            .map_err(|e| format!("not an RSA key: {e}"))?;
        let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let mut public = Map::new();
        public.insert("kty".into(), json!("RSA"));
        public.insert("n".into(), json!(b64url(&components.n)));
        public.insert("e".into(), json!(b64url(&components.e)));
        Ok(TokenSigner::new(
            alg,
            EncodingKey::from_rsa_der(der),
            public,
        ))
    }

    fn from_key_pair(pair: &KeyPair) -> Result<TokenSigner, String> {
        let raw = pair.public_key_raw();
        let der = pair.serialize_der();
        let mut public = Map::new();
        let (alg, key) = if pair.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            ec_members(&mut public, "P-256", raw, 32)?;
            (Algorithm::ES256, EncodingKey::from_ec_der(&der))
        } else if pair.is_compatible(&rcgen::PKCS_ECDSA_P384_SHA384) {
            ec_members(&mut public, "P-384", raw, 48)?;
            (Algorithm::ES384, EncodingKey::from_ec_der(&der))
        } else if pair.is_compatible(&rcgen::PKCS_ED25519) {
            public.insert("kty".into(), json!("OKP"));
            public.insert("crv".into(), json!("Ed25519"));
            public.insert("x".into(), json!(b64url(raw)));
            (Algorithm::EdDSA, EncodingKey::from_ed_der(&der))
        } else {
            return Err("only P-256, P-384 and Ed25519 keys are supported".into());
        };
        Ok(TokenSigner::new(alg, key, public))
    }

    fn new(alg: Algorithm, key: EncodingKey, public: Map<String, Value>) -> TokenSigner {
        // The kid is derived from the public key, so the same key always has the same kid.
        let canonical = serde_json::to_vec(&public).unwrap_or_default();
        let digest = ring::digest::digest(&ring::digest::SHA256, &canonical);
        let kid = b64url(&digest.as_ref()[..12]);
        TokenSigner {
            alg,
            kid,
            key,
            public,
        }
    }

    /// The public key as a JWK with `use` (`jwt-svid` for a SPIFFE bundle, `sig` for a JWKS).
    pub fn jwk(&self, key_use: &str) -> Value {
        let mut jwk = self.public.clone();
        jwk.insert("use".into(), json!(key_use));
        jwk.insert("kid".into(), json!(self.kid));
        Value::Object(jwk)
    }

    /// A SPIFFE trust bundle holding this key as the trust domain's JWT authority.
    pub fn spiffe_bundle(&self) -> Value {
        json!({ "keys": [self.jwk("jwt-svid")], "spiffe_refresh_hint": 300 })
    }

    /// Signs `claims` with header `{"alg", "kid", "typ": "JWT"}`.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let header = json!({ "alg": format!("{:?}", self.alg), "kid": self.kid, "typ": "JWT" });
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` under exactly `header` (tests use this for hostile headers).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> Result<String, String> {
        let header = serde_json::to_vec(header).map_err(|e| e.to_string())?;
        let claims = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let input = format!("{}.{}", b64url(&header), b64url(&claims));
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &self.key, self.alg)
            .map_err(|e| format!("cannot sign: {e}"))?;
        Ok(format!("{input}.{signature}"))
    }
}

fn ec_members(
    public: &mut Map<String, Value>,
    curve: &str,
    raw: &[u8],
    coordinate: usize,
) -> Result<(), String> {
    // An uncompressed point: 0x04 || x || y.
    if raw.len() != 1 + 2 * coordinate || raw[0] != 4 {
        return Err("unexpected EC public key encoding".into());
    }
    public.insert("kty".into(), json!("EC"));
    public.insert("crv".into(), json!(curve));
    public.insert("x".into(), json!(b64url(&raw[1..1 + coordinate])));
    public.insert("y".into(), json!(b64url(&raw[1 + coordinate..])));
    Ok(())
}

/// What `token mint` puts in a token.
#[derive(Clone, Debug)]
pub struct MintSpec {
    pub subject: String,
    pub audiences: Vec<String>,
    pub issuer: Option<String>,
    pub ttl_s: i64,
    /// Extra claims (`scope`, ...).
    pub claims: Map<String, Value>,
    /// SHA-256 of the DER certificate to bind the token to (`cnf.x5t#S256`).
    pub bind_to_cert_sha256: Option<[u8; 32]>,
}

/// The claims of a token minted now from `spec`, with a fresh `jti`.
pub fn claims(spec: &MintSpec, now: i64) -> Value {
    let mut claims = spec.claims.clone();
    claims.insert("sub".into(), json!(spec.subject));
    claims.insert(
        "aud".into(),
        match spec.audiences.as_slice() {
            [one] => json!(one),
            many => json!(many),
        },
    );
    if let Some(iss) = &spec.issuer {
        claims.insert("iss".into(), json!(iss));
    }
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + spec.ttl_s));
    claims.insert("jti".into(), json!(b64url(&rand::random::<[u8; 12]>())));
    if let Some(thumbprint) = &spec.bind_to_cert_sha256 {
        claims.insert("cnf".into(), json!({ "x5t#S256": b64url(thumbprint) }));
    }
    Value::Object(claims)
}

/// Writes a new ES256 JWT-SVID signing key (`jwt-signer.key`) and the trust domain's JWT
/// bundle (`jwt-bundle.json`) into `dir`.
pub fn write_dev_signer(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let pair =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(std::io::Error::other)?;
    let signer = TokenSigner::from_key_pair(&pair).map_err(std::io::Error::other)?;
    let key_path = dir.join("jwt-signer.key");
    let bundle_path = dir.join("jwt-bundle.json");
    std::fs::write(&key_path, pair.serialize_pem())?;
    let bundle =
        serde_json::to_string_pretty(&signer.spiffe_bundle()).map_err(std::io::Error::other)?;
    std::fs::write(&bundle_path, bundle + "\n")?;
    Ok(vec![key_path, bundle_path])
}

/// SHA-256 of the first certificate in a PEM file, for `cnf.x5t#S256`.
pub fn cert_thumbprint(pem_path: &Path) -> Result<[u8; 32], String> {
    let pem = std::fs::read(pem_path)
        .map_err(|e| format!("cannot read `{}`: {e}", pem_path.display()))?;
    let leaf = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .ok_or_else(|| format!("{}: no certificate", pem_path.display()))?
        .map_err(|e| format!("`{}` is not valid PEM: {e}", pem_path.display()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, leaf.as_ref());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}
