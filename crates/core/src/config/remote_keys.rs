//! `jwks_uri` and `discovery` of a `[token_issuer.NAME]`: where the gateway fetches a bearer
//! token issuer's keys from, validated into a [`RemoteKeys`].
//!
//! Core only describes the source; the gateway fetches it and writes what it gets into the
//! issuer's `keys` file, where the usual reload validates and applies it. So the keys a token
//! is verified with always went through the same checks as keys an operator wrote by hand, and
//! the file keeps the last good keys across a failing issuer and across restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::error::ConfigErrors;
use super::raw::RawTokenIssuer;
use crate::identity::token::IssuerKind;

/// Fetched keys are used at least this long, unless the issuer's Cache-Control says less
/// and `min_refresh_s` allows it: an issuer answering `max-age=0` is not fetched in a loop.
const DEFAULT_MIN_REFRESH_S: u64 = 60;
/// Keys are fetched again at least daily, whatever the issuer's Cache-Control says.
const DEFAULT_MAX_REFRESH_S: u64 = 86_400;
const MAX_REFRESH_BOUND_S: u64 = 7 * 86_400;
/// Tokens naming a `kid` the issuer's keys lack cause at most one fetch in this long: an
/// attacker sending random key ids cannot make the gateway hammer the issuer.
const DEFAULT_UNKNOWN_KID_REFETCH_S: u64 = 30;
const MAX_UNKNOWN_KID_REFETCH_S: u64 = 3600;

/// Where a bearer token issuer's keys are fetched from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeysLocation {
    /// The issuer's JWK Set URL (`jwks_uri`).
    Jwks(String),
    /// An OpenID Connect discovery document (`discovery`): its `issuer` must equal the
    /// configured `issuer` exactly (OpenID Connect Discovery 1.0, 4.3), and its `jwks_uri`,
    /// an https URL, is then fetched.
    Discovery { url: String, issuer: String },
}

impl KeysLocation {
    /// The URL configured: the JWK Set's or the discovery document's.
    pub fn url(&self) -> &str {
        match self {
            KeysLocation::Jwks(url) | KeysLocation::Discovery { url, .. } => url,
        }
    }
}

/// A token issuer whose keys the gateway fetches and writes into its `keys` file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RemoteKeys {
    /// The issuer's config name (`token_issuer.NAME`).
    pub issuer: String,
    pub location: KeysLocation,
    /// PEM roots for the issuer's web certificate; `None`: the system's.
    pub ca: Option<PathBuf>,
    /// The issuer's `keys` file: the bootstrap, then the last good keys fetched.
    pub keys_path: PathBuf,
    /// The issuer's algorithms, to read a fetched key set as the reload will.
    pub algorithms: Vec<Algorithm>,
    /// Bounds within which the JWK Set's Cache-Control max-age is clamped.
    pub min_refresh: Duration,
    pub max_refresh: Duration,
    /// Least time between two fetches caused by an unknown `kid`.
    pub unknown_kid_refetch: Duration,
}

/// The remote key source of issuer `name`, if it names one; errors name their key. Its
/// `algorithms` are left empty for the caller, which validates them.
pub(super) fn convert(
    file: &Path,
    name: &str,
    r: &RawTokenIssuer,
    kind: &IssuerKind,
    resolve: &dyn Fn(&str) -> PathBuf,
    errors: &mut ConfigErrors,
) -> Option<RemoteKeys> {
    let key = format!("token_issuer.{name}");
    let (url_key, url) = match (&r.jwks_uri, &r.discovery) {
        (None, None) => {
            for (k, set) in [
                ("endpoint_ca", r.endpoint_ca.is_some()),
                ("min_refresh_s", r.min_refresh_s.is_some()),
                ("max_refresh_s", r.max_refresh_s.is_some()),
                ("unknown_kid_refetch_s", r.unknown_kid_refetch_s.is_some()),
            ] {
                if set {
                    errors.push(
                        file,
                        format!("{key}.{k}"),
                        "set only with jwks_uri or discovery",
                    );
                }
            }
            return None;
        }
        (Some(_), Some(_)) => {
            errors.push(
                file,
                format!("{key}.discovery"),
                "set jwks_uri or discovery, not both (discovery finds the jwks_uri)",
            );
            return None;
        }
        (Some(url), None) => ("jwks_uri", url),
        (None, Some(url)) => ("discovery", url),
    };
    let before = errors.len();
    if *kind != IssuerKind::Jwt {
        errors.push(
            file,
            format!("{key}.{url_key}"),
            "only for kind = \"jwt\": a JWT-SVID issuer's keys are its trust domain's SPIFFE bundle",
        );
    }
    if !is_https_url(url) {
        errors.push(
            file,
            format!("{key}.{url_key}"),
            format!("`{url}` is not an https:// URL"),
        );
    }
    let min_refresh_s = r.min_refresh_s.unwrap_or(DEFAULT_MIN_REFRESH_S);
    let max_refresh_s = r.max_refresh_s.unwrap_or(DEFAULT_MAX_REFRESH_S);
    if !(1..=MAX_REFRESH_BOUND_S).contains(&min_refresh_s) {
        errors.push(
            file,
            format!("{key}.min_refresh_s"),
            format!("between 1 and {MAX_REFRESH_BOUND_S} seconds"),
        );
    }
    if !(1..=MAX_REFRESH_BOUND_S).contains(&max_refresh_s) {
        errors.push(
            file,
            format!("{key}.max_refresh_s"),
            format!("between 1 and {MAX_REFRESH_BOUND_S} seconds"),
        );
    } else if max_refresh_s < min_refresh_s {
        errors.push(
            file,
            format!("{key}.max_refresh_s"),
            format!("{max_refresh_s} is less than min_refresh_s ({min_refresh_s})"),
        );
    }
    let unknown_kid_refetch_s = r
        .unknown_kid_refetch_s
        .unwrap_or(DEFAULT_UNKNOWN_KID_REFETCH_S);
    if !(1..=MAX_UNKNOWN_KID_REFETCH_S).contains(&unknown_kid_refetch_s) {
        errors.push(
            file,
            format!("{key}.unknown_kid_refetch_s"),
            format!(
                "between 1 and {MAX_UNKNOWN_KID_REFETCH_S} seconds: it bounds how often tokens can make the gateway ask the issuer"
            ),
        );
    }
    let ca = r.endpoint_ca.as_deref().map(resolve);
    if let Some(ca) = &ca {
        // Read now so a wrong path is a config error, not a fetch failing in the background.
        if let Err(reason) = super::read_certificates(ca) {
            errors.push(file, format!("{key}.endpoint_ca"), reason);
        }
    }
    let location = match (url_key, &r.issuer) {
        ("discovery", Some(issuer)) => KeysLocation::Discovery {
            url: url.clone(),
            issuer: issuer.clone(),
        },
        // kind = "jwt" requires `issuer`; its absence is reported there.
        ("discovery", None) => return None,
        _ => KeysLocation::Jwks(url.clone()),
    };
    let Some(keys) = &r.keys else {
        errors.push(
            file,
            format!("{key}.keys"),
            format!("required with {url_key}: the file the fetched keys are kept in"),
        );
        return None;
    };
    (errors.len() == before).then(|| RemoteKeys {
        issuer: name.to_string(),
        location,
        ca,
        keys_path: resolve(keys),
        algorithms: Vec::new(),
        min_refresh: Duration::from_secs(min_refresh_s),
        max_refresh: Duration::from_secs(max_refresh_s),
        unknown_kid_refetch: Duration::from_secs(unknown_kid_refetch_s),
    })
}

/// `https://host...`: a host, and a URI `http` can parse.
pub(super) fn is_https_url(url: &str) -> bool {
    url.strip_prefix("https://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && url.parse::<http::Uri>().is_ok()
}
