//! `[token_issuer.NAME]` sections and `[tokens]`: validated into [`IssuerSpec`]s, with their
//! key files read and checked, so that a token can only ever be verified the way the operator
//! wrote it down.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use tracing::warn;

use super::error::ConfigErrors;
use super::raw::{RawTokenIssuer, RawTokens};
use super::remote_keys::{self, RemoteKeys};
use super::workload::WorkloadMaterial;
use super::{sources, validate_name};
use crate::identity::spiffe::validate_trust_domain;
use crate::identity::token::{
    jwt_bundle_of, parse_key_set, IssuerKind, IssuerSpec, KeyFileFormat, KeySet,
    JWT_SVID_ALGORITHMS,
};
use crate::identity::SpiffeId;

const DEFAULT_LEEWAY_S: u64 = 30;
const MAX_LEEWAY_S: u64 = 300;
const DEFAULT_MAX_LIFETIME_S: u64 = 3600;
/// A day: beyond it a token is not a short-lived credential.
const MAX_MAX_LIFETIME_S: u64 = 86_400;
const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 16_384;

/// `[tokens]`: limits shared by every issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSettings {
    /// Longest `Authorization: Bearer` token read; longer ones are refused unread.
    pub max_token_bytes: usize,
    /// Verified tokens kept in the cache.
    pub cache_entries: usize,
}

pub(super) fn convert_settings(
    file: &Path,
    raw: &RawTokens,
    errors: &mut ConfigErrors,
) -> TokenSettings {
    let max_token_bytes = match raw.max_token_bytes {
        Some(n) if !(512..=65_536).contains(&n) => {
            errors.push(
                file,
                "tokens.max_token_bytes",
                "must be between 512 and 65536",
            );
            DEFAULT_MAX_TOKEN_BYTES
        }
        Some(n) => n,
        None => DEFAULT_MAX_TOKEN_BYTES,
    };
    TokenSettings {
        max_token_bytes,
        cache_entries: raw.cache_entries.unwrap_or(DEFAULT_TOKEN_CACHE_ENTRIES),
    }
}

/// The gateway's own identity, as far as token issuers need it.
pub(super) struct Own<'a> {
    /// The SPIFFE ID of its certificate: the default audience.
    pub spiffe_id: Option<&'a SpiffeId>,
    /// With `[spiffe]`, what the Workload API sent: JWT-SVID issuers' keys.
    pub agent: Option<&'a WorkloadMaterial>,
}

/// Validates every issuer; each key file read is appended to `files` (watched for reload), and
/// each issuer whose keys the gateway fetches to `remote`.
pub(super) fn convert_issuers(
    file: &Path,
    raw: &BTreeMap<String, RawTokenIssuer>,
    resolve: &dyn Fn(&str) -> PathBuf,
    own: Own<'_>,
    files: &mut Vec<PathBuf>,
    remote: &mut Vec<RemoteKeys>,
    errors: &mut ConfigErrors,
) -> Vec<Arc<IssuerSpec>> {
    let mut issuers = Vec::new();
    let mut iss_values = HashSet::new();
    // One issuer speaks for a trust domain: two would let either mint the other's workloads.
    let mut spoken_for = HashSet::new();
    for (name, r) in raw {
        let key = format!("token_issuer.{name}");
        let before = errors.len();
        if let Err(reason) = validate_name(name) {
            errors.push(file, &key, reason);
        }
        let kind = match r.kind.as_str() {
            "jwt-svid" => IssuerKind::JwtSvid,
            "jwt" => IssuerKind::Jwt,
            other => {
                errors.push(
                    file,
                    format!("{key}.kind"),
                    format!("`{other}` is not \"jwt-svid\" or \"jwt\""),
                );
                IssuerKind::Jwt
            }
        };
        match (&kind, &r.issuer) {
            (IssuerKind::Jwt, None) => errors.push(
                file,
                format!("{key}.issuer"),
                "required for kind = \"jwt\": the `iss` its tokens carry",
            ),
            (_, Some(iss)) if iss.is_empty() => {
                errors.push(file, format!("{key}.issuer"), "must not be empty")
            }
            (_, Some(iss)) if !iss_values.insert(iss.clone()) => errors.push(
                file,
                format!("{key}.issuer"),
                format!("another issuer already has `{iss}`"),
            ),
            _ => {}
        }
        match (&kind, &r.trust_domain) {
            (IssuerKind::JwtSvid, None) => errors.push(
                file,
                format!("{key}.trust_domain"),
                "required for kind = \"jwt-svid\": the trust domain whose JWT-SVIDs it verifies",
            ),
            (_, Some(td)) => {
                if let Err(e) = validate_trust_domain(td) {
                    errors.push(
                        file,
                        format!("{key}.trust_domain"),
                        format!("`{td}` is not a valid trust domain name: {e}"),
                    );
                }
                if !spoken_for.insert(td.clone()) {
                    errors.push(
                        file,
                        format!("{key}.trust_domain"),
                        format!("another issuer already speaks for `{td}`"),
                    );
                }
            }
            (IssuerKind::Jwt, None) => {}
        }
        let algorithms = convert_algorithms(file, &key, &r.algorithms, &kind, errors);
        let audiences = match (r.audiences.is_empty(), own.spiffe_id) {
            (false, _) => r.audiences.clone(),
            (true, Some(id)) => vec![id.to_string()],
            (true, None) => {
                errors.push(
                    file,
                    format!("{key}.audiences"),
                    "required: the gateway's certificate has no SPIFFE ID to default to",
                );
                Vec::new()
            }
        };
        if audiences.iter().any(String::is_empty) {
            errors.push(
                file,
                format!("{key}.audiences"),
                "an audience must not be empty",
            );
        }
        let leeway_s = r.leeway_s.unwrap_or(DEFAULT_LEEWAY_S);
        if leeway_s > MAX_LEEWAY_S {
            errors.push(
                file,
                format!("{key}.leeway_s"),
                format!("at most {MAX_LEEWAY_S} seconds of clock skew"),
            );
        }
        let max_lifetime_s = r.max_lifetime_s.unwrap_or(DEFAULT_MAX_LIFETIME_S);
        if !(1..=MAX_MAX_LIFETIME_S).contains(&max_lifetime_s) {
            errors.push(
                file,
                format!("{key}.max_lifetime_s"),
                format!("between 1 and {MAX_MAX_LIFETIME_S} seconds: tokens are short-lived credentials"),
            );
        }
        if let Some(zone) = &r.zone {
            if let Err(reason) = validate_name(zone) {
                errors.push(file, format!("{key}.zone"), reason);
            }
        }
        for (i, claim) in r.required_claims.iter().enumerate() {
            if claim.is_empty() {
                errors.push(
                    file,
                    format!("{key}.required_claims[{i}]"),
                    "must not be empty",
                );
            }
        }

        let fetched =
            remote_keys::convert(file, name, r, &kind, resolve, errors).map(|remote| RemoteKeys {
                algorithms: algorithms.clone(),
                ..remote
            });
        let keys = match (&r.keys, &kind, own.agent, &r.trust_domain) {
            (Some(keys), _, _, _) => {
                let keys_path = resolve(keys);
                files.push(keys_path.clone());
                let jwt_svid_domain = match kind {
                    IssuerKind::JwtSvid => r.trust_domain.as_deref(),
                    IssuerKind::Jwt => None,
                };
                match read_key_file(name, &keys_path, jwt_svid_domain, &algorithms) {
                    Ok(Some(keys)) => Some(keys),
                    // Keys the gateway fetches need no file to start from: the first fetch
                    // writes it.
                    Ok(None) if fetched.is_some() => {
                        warn!(
                            file = %keys_path.display(),
                            issuer = %name,
                            "token issuer has no keys until the first fetch"
                        );
                        Some(KeySet::default())
                    }
                    Ok(None) => {
                        errors.push(
                            file,
                            format!("{key}.keys"),
                            format!("cannot read {}: no such file", keys_path.display()),
                        );
                        None
                    }
                    Err(reason) => {
                        errors.push(file, format!("{key}.keys"), reason);
                        None
                    }
                }
            }
            // A JWT-SVID issuer under [spiffe]: its trust domain's JWT authorities as the
            // agent sent them.
            (None, IssuerKind::JwtSvid, Some(agent), Some(td)) => match agent.jwt_bundles.get(td) {
                Some(jwks) => match parse_key_set(jwks, KeyFileFormat::WorkloadApi, &algorithms) {
                    Ok(keys) => {
                        for note in &keys.skipped {
                            warn!(issuer = %name, "Workload API JWT authority skipped: {note}");
                        }
                        Some(keys)
                    }
                    Err(e) => {
                        errors.push(
                            file,
                            format!("{key}.keys"),
                            format!("the Workload API's JWT bundle for `{td}`: {}", e.reason),
                        );
                        None
                    }
                },
                None => {
                    errors.push(
                        file,
                        format!("{key}.keys"),
                        format!("the Workload API has sent no JWT bundle for `{td}`"),
                    );
                    None
                }
            },
            _ => {
                errors.push(
                    file,
                    format!("{key}.keys"),
                    "required: the file of this issuer's keys (only a jwt-svid issuer under \
                     [spiffe] may take its keys from the Workload API)",
                );
                None
            }
        };
        if let (Some(keys), true) = (keys, errors.len() == before) {
            remote.extend(fetched);
            issuers.push(Arc::new(IssuerSpec {
                name: Arc::from(name.as_str()),
                kind,
                issuer: r.issuer.clone(),
                trust_domain: r.trust_domain.clone(),
                keys,
                algorithms,
                audiences,
                leeway_s: leeway_s as i64,
                max_lifetime_s: max_lifetime_s as i64,
                required_claims: r.required_claims.clone(),
                zone: r.zone.clone(),
            }));
        }
    }
    issuers
}

fn convert_algorithms(
    file: &Path,
    key: &str,
    names: &[String],
    kind: &IssuerKind,
    errors: &mut ConfigErrors,
) -> Vec<Algorithm> {
    if names.is_empty() {
        errors.push(
            file,
            format!("{key}.algorithms"),
            "list the signature algorithms to accept (e.g. [\"ES256\"])",
        );
    }
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let at = format!("{key}.algorithms[{i}]");
        match name.parse::<Algorithm>() {
            _ if name.eq_ignore_ascii_case("none") => {
                errors.push(file, at, "`none` (an unsigned token) is never accepted")
            }
            Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => errors.push(
                file,
                at,
                format!("`{name}`: symmetric (HMAC) algorithms are never accepted"),
            ),
            Ok(alg) if *kind == IssuerKind::JwtSvid && !JWT_SVID_ALGORITHMS.contains(&alg) => {
                errors.push(
                    file,
                    at,
                    format!("`{name}` is not a JWT-SVID algorithm (RS*, ES256, ES384, PS*)"),
                )
            }
            Ok(alg) => out.push(alg),
            Err(_) => errors.push(
                file,
                at,
                format!("`{name}` is not one of ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA"),
            ),
        }
    }
    out
}

/// An issuer's keys from its key file (`None`: there is no such file); a JWT-SVID issuer (`jwt_svid_domain`) reads its own
/// trust domain's bundle, also out of spiffe-helper's map of several.
fn read_key_file(
    issuer: &str,
    keys_path: &Path,
    jwt_svid_domain: Option<&str>,
    algorithms: &[Algorithm],
) -> Result<Option<KeySet>, String> {
    let bytes = match sources::read(keys_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", keys_path.display())),
    };
    let (bundle, format) = match jwt_svid_domain {
        Some(td) => (jwt_bundle_of(&bytes, td), KeyFileFormat::SpiffeBundle),
        None => (Ok(Cow::Borrowed(&bytes[..])), KeyFileFormat::Jwks),
    };
    let keys = bundle
        .and_then(|b| parse_key_set(&b, format, algorithms))
        .map_err(|e| format!("{}: {}", keys_path.display(), e.reason))?;
    for note in &keys.skipped {
        warn!(file = %keys_path.display(), issuer, "token issuer key skipped: {note}");
    }
    Ok(Some(keys))
}
