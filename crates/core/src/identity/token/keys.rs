//! Token verification keys: a JWK Set file, or a SPIFFE trust bundle whose `jwt-svid` keys are
//! the trust domain's JWT authorities, turned into keys that each know which algorithms they
//! may verify.
//!
//! RFC 8725 3.1: the algorithm comes from the key, never from the token. A key's algorithms
//! are its JWK `alg` when set, else what its type and curve admit, always within the issuer's
//! configured list. Symmetric keys are never used (an HMAC "public" key is a shared secret),
//! nor RSA keys outside 2048..=8192 bits (RFC 8725 3.5).
//!
//! A key that cannot be used is skipped with a note, never a reason to refuse the file: the
//! SPIFFE bundle format and RFC 7517 5 say keys a reader does not understand are ignored, and
//! refusing the file would keep the previous keys, so an issuer that rotates a compromised key
//! out while adding a key of a newer type would stay trusted with the compromised one. A file
//! with no usable key loads as an issuer that accepts nothing.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::jose::b64url_decode;

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus ring verifies with, in bits.
const MAX_RSA_BITS: usize = 8192;
/// More keys than this in one file is a mistake, not a key set.
const MAX_KEYS: usize = 256;

/// How a key file is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFileFormat {
    /// A SPIFFE trust bundle: keys carry `use`; only `jwt-svid` keys verify JWT-SVIDs.
    SpiffeBundle,
    /// A plain JWK Set: keys with `use` absent or `sig` verify tokens; `enc` keys are skipped.
    Jwks,
    /// A trust domain's JWT authorities from the Workload API (`FetchJWTBundles`): a JWK Set
    /// whose keys may carry `use: jwt-svid` or no `use` at all, as agents write them.
    WorkloadApi,
}

/// One verification key.
pub struct VerificationKey {
    pub kid: Option<String>,
    /// The algorithms this key may verify: never empty.
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

/// The usable keys of one key file.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<VerificationKey>,
    /// Keys skipped, and why (`keys[2]: RSA key of 1024 bits ...`), for the operator.
    pub skipped: Vec<String>,
    /// SHA-256 of the file's bytes: equal fingerprints mean the same keys.
    pub fingerprint: Vec<u8>,
}

impl PartialEq for KeySet {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl KeySet {
    /// The key a token names by `kid`; without a `kid`, the only key, if there is one.
    pub fn select(&self, kid: Option<&str>) -> Option<&VerificationKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

/// A problem with the whole file (not JSON, no `keys` array, too many keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub reason: String,
}

/// The JWT bundle of `trust_domain` in `bytes`: the file itself when it is a bundle (a JWK
/// Set), or its entry when it is spiffe-helper's `jwt_bundle_file_name` file, a JSON object
/// from trust domain name to the base64 (standard alphabet) of that domain's bundle. Only the
/// named domain's keys are ever read, so one domain's keys never verify another's tokens.
pub fn jwt_bundle_of<'b>(
    bytes: &'b [u8],
    trust_domain: &str,
) -> Result<std::borrow::Cow<'b, [u8]>, KeyError> {
    use base64::Engine;
    let whole = |reason: String| KeyError { reason };
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| whole(format!("not JSON: {e}")))?;
    let Some(map) = doc
        .as_object()
        .filter(|m| !m.contains_key("keys") && !m.is_empty() && m.values().all(Value::is_string))
    else {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    };
    let name = trust_domain
        .strip_prefix("spiffe://")
        .unwrap_or(trust_domain);
    let Some(encoded) = map.get(name).and_then(Value::as_str) else {
        let mut present: Vec<&str> = map.keys().map(String::as_str).collect();
        present.sort_unstable();
        return Err(whole(format!(
            "a JWT bundle map (spiffe-helper's) without trust domain `{name}` (it has: {})",
            present.join(", ")
        )));
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| {
            whole(format!(
                "the `{name}` bundle in the JWT bundle map is not base64: {e}"
            ))
        })
}

/// Reads the keys in `bytes` usable with `allowed` algorithms. Only a file that is not a key
/// set at all is an error; each unusable key is skipped and noted in [`KeySet::skipped`].
pub fn parse_key_set(
    bytes: &[u8],
    format: KeyFileFormat,
    allowed: &[Algorithm],
) -> Result<KeySet, KeyError> {
    let whole = |reason: String| KeyError { reason };
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| whole(format!("not JSON: {e}")))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(whole("no `keys` array (expected a JWK Set)".into()));
    };
    if entries.len() > MAX_KEYS {
        return Err(whole(format!(
            "{} keys; at most {MAX_KEYS} are read",
            entries.len()
        )));
    }
    let mut skipped = Vec::new();
    let mut keys: Vec<VerificationKey> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match read_key(entry, format, allowed) {
            Ok(Some(key)) if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) => {
                skipped.push(format!(
                    "keys[{i}]: duplicate kid `{}`: only the first key with it is used",
                    key.kid.as_deref().unwrap_or_default()
                ));
            }
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(reason) => skipped.push(format!("keys[{i}]: {reason}")),
        }
    }
    if keys.len() > 1 && keys.iter().any(|k| k.kid.is_none()) {
        // A token without `kid` selects a key only when there is one key: these never could.
        keys.retain(|k| k.kid.is_some());
        skipped.push("keys without `kid` beside other keys can never be selected".into());
    }
    if keys.is_empty() {
        skipped.push(format!(
            "no key usable with algorithms {}: this issuer accepts no token",
            names(allowed)
        ));
    }
    Ok(KeySet {
        keys,
        skipped,
        fingerprint: ring::digest::digest(&ring::digest::SHA256, bytes)
            .as_ref()
            .to_vec(),
    })
}

/// One key: `Ok(None)` for a key meant for something else (encryption, X.509-SVIDs, an
/// algorithm this issuer does not allow); `Err` says why a signing key is unusable.
fn read_key(
    entry: &Value,
    format: KeyFileFormat,
    allowed: &[Algorithm],
) -> Result<Option<VerificationKey>, String> {
    let key_use = entry
        .get("use")
        .map(|u| u.as_str().unwrap_or("(not a string)"));
    match (format, key_use) {
        (KeyFileFormat::SpiffeBundle, Some("jwt-svid")) => {}
        (KeyFileFormat::SpiffeBundle, Some("x509-svid")) => return Ok(None),
        (KeyFileFormat::SpiffeBundle, other) => {
            return Err(format!(
                "`use` is {}; JWT authorities of a SPIFFE bundle have `jwt-svid`",
                other.map_or("absent".to_string(), |u| format!("`{u}`"))
            ))
        }
        (KeyFileFormat::Jwks, None | Some("sig")) => {}
        (KeyFileFormat::Jwks, Some("enc")) => return Ok(None),
        (KeyFileFormat::WorkloadApi, None | Some("jwt-svid" | "sig")) => {}
        (KeyFileFormat::WorkloadApi, Some("x509-svid" | "enc")) => return Ok(None),
        (KeyFileFormat::Jwks | KeyFileFormat::WorkloadApi, Some(other)) => {
            return Err(format!(
                "`use` is `{other}`; a token signing key has `sig` or none"
            ))
        }
    }
    if entry.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(
            "symmetric (`oct`) keys are never used: a shared secret cannot prove a workload".into(),
        );
    }
    let jwk: Jwk = serde_json::from_value(entry.clone())
        .map_err(|e| format!("not a JWK this gateway supports: {e}"))?;
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.iter().any(|op| matches!(op, KeyOperations::Verify)) {
            return Ok(None);
        }
    }
    let admitted = admitted_algorithms(&jwk)?;
    let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm {
        Some(declared) => {
            let alg = signature_algorithm(declared)
                .ok_or_else(|| format!("`alg` {declared:?} is not a signature algorithm"))?;
            if !admitted.contains(&alg) {
                return Err(format!(
                    "`alg` {alg:?} does not fit the key type ({})",
                    names(&admitted)
                ));
            }
            vec![alg]
        }
        None => admitted,
    };
    let algorithms: Vec<Algorithm> = algorithms
        .into_iter()
        .filter(|a| allowed.contains(a))
        .collect();
    if algorithms.is_empty() {
        return Ok(None);
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(Some(VerificationKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    }))
}

/// What the key's type and curve admit; refuses symmetric and weak keys.
fn admitted_algorithms(jwk: &Jwk) -> Result<Vec<Algorithm>, String> {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Ok(vec![Algorithm::ES256]),
            EllipticCurve::P384 => Ok(vec![Algorithm::ES384]),
            ref other => Err(format!("EC curve {other:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => Ok(vec![Algorithm::EdDSA]),
            ref other => Err(format!("OKP curve {other:?} is not supported")),
        },
        AlgorithmParameters::RSA(rsa) => {
            let modulus =
                b64url_decode(&rsa.n).map_err(|e| format!("RSA `n` is not base64url: {e}"))?;
            let bits = significant_bits(&modulus);
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(format!(
                    "RSA key of {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted"
                ));
            }
            Ok(vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ])
        }
        AlgorithmParameters::OctetKey(_) => Err(
            "symmetric (`oct`) keys are never used: a shared secret cannot prove a workload".into(),
        ),
    }
}

fn significant_bits(big_endian: &[u8]) -> usize {
    let skip = big_endian.iter().take_while(|&&b| b == 0).count();
    match big_endian.get(skip) {
        Some(first) => (big_endian.len() - skip) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512 => return None,
        KeyAlgorithm::RSA1_5 | KeyAlgorithm::RSA_OAEP | KeyAlgorithm::RSA_OAEP_256 => return None,
    })
}

/// `[ES256, RS256]` as the config spells them.
pub fn names(algs: &[Algorithm]) -> String {
    let list: Vec<String> = algs.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", list.join(", "))
}

#[cfg(test)]
mod tests;
