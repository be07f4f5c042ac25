//! Token identities: JWT-SVIDs and other issuers' bearer JWTs, verified to the letter of the
//! SPIFFE JWT-SVID specification and RFC 8725 (JWT best current practices).
//!
//! A token is verified once: header and claims read strictly ([`jose`]), the issuer chosen
//! from configuration, the key chosen by `kid` from that issuer's keys alone ([`keys`]), the
//! algorithm allowed by both the key and the issuer, the signature checked, then every claim
//! rule. The verified claims are then served from a bounded cache ([`cache`]) until the token
//! expires; what can change while a token is cached (the clock, revocation, the connection it
//! arrives on) is checked on every request by the caller.

pub mod cache;
pub mod jose;
pub mod keys;

pub use cache::TokenCache;
pub use keys::{jwt_bundle_of, parse_key_set, KeyError, KeyFileFormat, KeySet};

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::spiffe::SpiffeId;
use super::svid::SvidFacts;

/// Algorithms the JWT-SVID specification admits that the gateway implements (no ES512).
pub const JWT_SVID_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Why a token was refused: the stable category written in events and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenReason {
    /// Not a compact signed JWT, or a claim of the wrong JSON type.
    Malformed,
    TooLarge,
    /// `typ` names another kind of token (explicit typing, RFC 8725 3.11).
    TypeNotAccepted,
    /// `crit` lists extensions; the gateway implements none.
    CritUnsupported,
    /// No configured issuer vouches for this token's `iss` (or JWT-SVID trust domain).
    UnknownIssuer,
    /// No key of the issuer has the token's `kid` (or no `kid` and several keys).
    UnknownKey,
    /// `alg` is not one the key and the issuer both allow.
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    WrongIssuer,
    /// `exp` is further from its issue time than the issuer's maximum lifetime.
    LifetimeTooLong,
    MissingClaim,
    /// `sub` is not a SPIFFE ID of the issuer's trust domain where one is required.
    BadSubject,
    Revoked,
    /// The token and the connection's certificate name different workloads.
    BindingMismatch,
}

impl TokenReason {
    /// The reason category in events and metrics (docs/events.md).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenReason::Malformed => "token_malformed",
            TokenReason::TooLarge => "token_too_large",
            TokenReason::TypeNotAccepted => "token_type_not_accepted",
            TokenReason::CritUnsupported => "token_crit_unsupported",
            TokenReason::UnknownIssuer => "token_unknown_issuer",
            TokenReason::UnknownKey => "token_unknown_key",
            TokenReason::AlgorithmNotAllowed => "token_algorithm_not_allowed",
            TokenReason::BadSignature => "token_bad_signature",
            TokenReason::Expired => "token_expired",
            TokenReason::NotYetValid => "token_not_yet_valid",
            TokenReason::WrongAudience => "token_wrong_audience",
            TokenReason::WrongIssuer => "token_wrong_issuer",
            TokenReason::LifetimeTooLong => "token_lifetime_too_long",
            TokenReason::MissingClaim => "token_missing_claim",
            TokenReason::BadSubject => "token_bad_subject",
            TokenReason::Revoked => "token_revoked",
            TokenReason::BindingMismatch => "token_binding_mismatch",
        }
    }

    /// What the client is told in `WWW-Authenticate: error_description`: the category in
    /// words, never a claim value, key id or other detail. Refusals made before the signature
    /// verified all read "invalid token": telling them apart would let anyone probe which
    /// issuers, key ids and algorithms are configured. The event keeps the precise reason.
    pub fn description(self) -> &'static str {
        match self {
            TokenReason::Malformed
            | TokenReason::TypeNotAccepted
            | TokenReason::CritUnsupported
            | TokenReason::UnknownIssuer
            | TokenReason::UnknownKey
            | TokenReason::AlgorithmNotAllowed
            | TokenReason::BadSignature => "invalid token",
            TokenReason::TooLarge => "token too large",
            TokenReason::Expired => "token expired",
            TokenReason::NotYetValid => "token not yet valid",
            TokenReason::WrongAudience => "wrong audience",
            TokenReason::WrongIssuer => "wrong issuer",
            TokenReason::LifetimeTooLong => "token lifetime too long",
            TokenReason::MissingClaim => "required claim missing",
            TokenReason::BadSubject => "subject not accepted",
            TokenReason::Revoked => "token revoked",
            TokenReason::BindingMismatch => "token not bound to this client",
        }
    }
}

/// A refused token: the category, and a detail for the operator's event (never the client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFailure {
    pub reason: TokenReason,
    pub detail: String,
}

impl TokenFailure {
    pub fn new(reason: TokenReason, detail: impl Into<String>) -> Self {
        TokenFailure {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.detail)
    }
}

/// What kind of tokens an issuer issues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuerKind {
    /// SPIFFE JWT-SVIDs of one trust domain: `sub` is a SPIFFE ID of it, keys come from the
    /// trust domain's bundle (`use: jwt-svid`).
    JwtSvid,
    /// Another issuer's bearer JWTs (`iss` required). With a trust domain, the issuer is
    /// authoritative for it and `sub` must be a SPIFFE ID of it; without one, its subjects
    /// are never SPIFFE identities, whatever they look like.
    Jwt,
}

impl IssuerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            IssuerKind::JwtSvid => "jwt-svid",
            IssuerKind::Jwt => "jwt",
        }
    }
}

/// One configured token issuer, validated.
#[derive(Debug, PartialEq)]
pub struct IssuerSpec {
    /// The config name, used by policy `issuers` and in events.
    pub name: Arc<str>,
    pub kind: IssuerKind,
    /// The `iss` value tokens must carry (required for `jwt`; optional for `jwt-svid`).
    pub issuer: Option<String>,
    /// The trust domain whose SPIFFE IDs this issuer speaks for.
    pub trust_domain: Option<String>,
    pub keys: KeySet,
    pub algorithms: Vec<Algorithm>,
    /// A token is accepted when its `aud` contains one of these.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
    pub leeway_s: i64,
    /// Longest accepted `exp - iat` (or `exp - nbf`, or `exp - now`), seconds.
    pub max_lifetime_s: i64,
    /// Claims that must be present besides the ones always required.
    pub required_claims: Vec<String>,
    /// The zone of this issuer's subjects that are not SPIFFE IDs.
    pub zone: Option<String>,
}

/// A token whose signature and claims were verified; what policy, events and headers use.
#[derive(Debug)]
pub struct VerifiedToken {
    pub issuer: Arc<IssuerSpec>,
    pub iss: Option<String>,
    pub subject: String,
    /// The SPIFFE ID `sub` names, when the issuer speaks for a trust domain.
    pub spiffe_id: Option<SpiffeId>,
    pub jti: Option<String>,
    pub expires_at: i64,
    pub not_before: Option<i64>,
    /// RFC 8705 certificate binding (`cnf.x5t#S256`): SHA-256 of the client certificate.
    pub cnf_x5t_s256: Option<[u8; 32]>,
    pub claims: Map<String, Value>,
}

impl VerifiedToken {
    /// The first Unix second at which the token is refused: its `exp` plus the issuer's
    /// leeway. A stream the token admitted ends then too.
    pub fn refused_from(&self) -> i64 {
        self.expires_at.saturating_add(self.issuer.leeway_s)
    }

    /// The checks that depend on the clock, made on every request (cached or not).
    pub fn check_time(&self, now: i64) -> Result<(), TokenFailure> {
        let leeway = self.issuer.leeway_s;
        if now >= self.refused_from() {
            return Err(TokenFailure::new(
                TokenReason::Expired,
                format!("expired at {}", self.expires_at),
            ));
        }
        if let Some(nbf) = self.not_before {
            if now < nbf.saturating_sub(leeway) {
                return Err(TokenFailure::new(
                    TokenReason::NotYetValid,
                    format!("not valid before {nbf}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether this token and the connection's SVID name the same workload: the token is
    /// bound to that very certificate (`cnf.x5t#S256`), or its subject is that SPIFFE ID.
    /// A token that can be bound neither way cannot ride on someone's connection.
    /// A token bound to a certificate that also names a SPIFFE ID must agree on both, so
    /// policy never sees one workload's subject on another's connection.
    pub fn check_binding(&self, svid: &SvidFacts) -> Result<(), TokenFailure> {
        if let Some(thumbprint) = &self.cnf_x5t_s256 {
            if thumbprint != &svid.sha256 {
                return Err(TokenFailure::new(
                    TokenReason::BindingMismatch,
                    "cnf.x5t#S256 is not the thumbprint of the connection's certificate",
                ));
            }
            if self.spiffe_id.is_none() {
                return Ok(());
            }
        }
        match &self.spiffe_id {
            Some(id) if id == &svid.spiffe_id => Ok(()),
            Some(id) => Err(TokenFailure::new(
                TokenReason::BindingMismatch,
                format!(
                    "token subject `{id}` is not the connection's SVID `{}`",
                    svid.spiffe_id
                ),
            )),
            None => Err(TokenFailure::new(
                TokenReason::BindingMismatch,
                "token names no SPIFFE ID and carries no certificate binding",
            )),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.issuer.kind.as_str()
    }
}

/// Verifies tokens against the configured issuers; one per snapshot, with its cache.
#[derive(Debug)]
pub struct TokenVerifier {
    issuers: Vec<Arc<IssuerSpec>>,
    by_iss: HashMap<String, usize>,
    /// Issuers chosen by the trust domain of `sub` (no `iss` needed: JWT-SVIDs).
    by_trust_domain: HashMap<String, usize>,
    max_token_bytes: usize,
    cache: TokenCache,
}

impl TokenVerifier {
    /// `issuers` were validated by config: `iss` values and trust domains are unique.
    pub fn new(
        issuers: Vec<Arc<IssuerSpec>>,
        max_token_bytes: usize,
        cache_entries: usize,
    ) -> Self {
        let mut by_iss = HashMap::new();
        let mut by_trust_domain = HashMap::new();
        for (i, issuer) in issuers.iter().enumerate() {
            if let Some(iss) = &issuer.issuer {
                by_iss.insert(iss.clone(), i);
            }
            if let (Some(td), IssuerKind::JwtSvid) = (&issuer.trust_domain, &issuer.kind) {
                by_trust_domain.insert(td.clone(), i);
            }
        }
        TokenVerifier {
            issuers,
            by_iss,
            by_trust_domain,
            max_token_bytes,
            cache: TokenCache::new(cache_entries),
        }
    }

    pub fn issuers(&self) -> &[Arc<IssuerSpec>] {
        &self.issuers
    }

    /// The configured issuer of `token` when its keys lack the key the token names (by `kid`,
    /// or, without one, when the issuer has not exactly one key): the tokens
    /// [`TokenReason::UnknownKey`] refuses. The gateway asks it to know whose keys to fetch
    /// again; it reads the header and claims only, so it vouches for nothing and costs no
    /// signature check.
    pub fn issuer_lacking_key(&self, token: &str) -> Option<&Arc<IssuerSpec>> {
        let jws = jose::parse(token, self.max_token_bytes).ok()?;
        let issuer = self.issuer_for(&jws.claims).ok()?;
        issuer
            .keys
            .select(jws.header.kid.as_deref())
            .is_none()
            .then_some(issuer)
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Verifies `token` at time `now` (Unix seconds): from the cache when this exact token was
    /// verified before, else in full. Revocation and binding are the caller's to check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<VerifiedToken>, TokenFailure> {
        if token.len() > self.max_token_bytes {
            return Err(TokenFailure::new(
                TokenReason::TooLarge,
                format!(
                    "{} bytes, more than the {} allowed",
                    token.len(),
                    self.max_token_bytes
                ),
            ));
        }
        // Keyed by a digest of the whole token: any change to header, claims or signature is
        // a different entry, so a cached verdict can never vouch for altered claims.
        let key = cache::key(token);
        if let Some(hit) = self.cache.lookup(&key) {
            hit.check_time(now)?;
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_uncached(token, now)?);
        self.cache.store(key, verified.clone(), token.len(), now);
        Ok(verified)
    }

    /// The full verification, no cache: the reference semantics.
    pub fn verify_uncached(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenFailure> {
        let jws = jose::parse(token, self.max_token_bytes)
            .map_err(|e| TokenFailure::new(e.reason, e.detail))?;
        let issuer = self.issuer_for(&jws.claims)?;
        check_type(jws.header.typ.as_deref(), &issuer.kind)?;

        let alg: Algorithm = jws.header.alg.parse().map_err(|_| {
            TokenFailure::new(
                TokenReason::AlgorithmNotAllowed,
                format!(
                    "`alg` {} is not a supported algorithm",
                    clip(&jws.header.alg)
                ),
            )
        })?;
        let key = issuer
            .keys
            .select(jws.header.kid.as_deref())
            .ok_or_else(|| {
                TokenFailure::new(
                    TokenReason::UnknownKey,
                    match &jws.header.kid {
                        Some(kid) => format!("issuer `{}` has no key `{}`", issuer.name, clip(kid)),
                        None => format!(
                            "no `kid`, and issuer `{}` has {} keys",
                            issuer.name,
                            issuer.keys.keys.len()
                        ),
                    },
                )
            })?;
        // The key's algorithms are already within the issuer's list (keys::parse_key_set).
        if !key.algorithms.contains(&alg) {
            return Err(TokenFailure::new(
                TokenReason::AlgorithmNotAllowed,
                format!(
                    "`alg` {alg:?} is not allowed for key `{}` (allowed: {})",
                    key.kid.as_deref().unwrap_or("-"),
                    keys::names(&key.algorithms)
                ),
            ));
        }
        let valid = jsonwebtoken::crypto::verify(
            jws.signature,
            jws.signing_input.as_bytes(),
            &key.key,
            alg,
        )
        .map_err(|e| {
            TokenFailure::new(TokenReason::Malformed, format!("signature unreadable: {e}"))
        })?;
        if !valid {
            return Err(TokenFailure::new(
                TokenReason::BadSignature,
                format!(
                    "signature does not verify with key `{}`",
                    key.kid.as_deref().unwrap_or("-")
                ),
            ));
        }
        // From here on the claims are the issuer's words.
        check_claims(jws.claims, issuer, now)
    }

    /// The issuer a token claims: by `iss`, else (JWT-SVIDs) by the trust domain of `sub`.
    /// Unverified claims only choose whose keys to verify with; they decide nothing else.
    fn issuer_for(&self, claims: &Map<String, Value>) -> Result<&Arc<IssuerSpec>, TokenFailure> {
        let iss = claims.get("iss").and_then(Value::as_str);
        if let Some(&i) = iss.and_then(|iss| self.by_iss.get(iss)) {
            return Ok(&self.issuers[i]);
        }
        let td = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|sub| SpiffeId::parse(sub).ok())
            .map(|id| id.trust_domain().to_string());
        if let Some(&i) = td.as_ref().and_then(|td| self.by_trust_domain.get(td)) {
            return Ok(&self.issuers[i]);
        }
        Err(TokenFailure::new(
            TokenReason::UnknownIssuer,
            match (iss, td) {
                (Some(iss), _) => format!("no issuer is configured for `iss` {}", clip(iss)),
                (None, Some(td)) => format!("no JWT-SVID issuer for trust domain `{td}`"),
                (None, None) => "no `iss`, and `sub` is not a SPIFFE ID".to_string(),
            },
        ))
    }
}

/// Explicit typing: a JWT-SVID is `JWT` or `JOSE` (or untyped); other issuers may also issue
/// RFC 9068 access tokens (`at+jwt`). Anything else is another kind of token.
fn check_type(typ: Option<&str>, kind: &IssuerKind) -> Result<(), TokenFailure> {
    let Some(typ) = typ else { return Ok(()) };
    let t = typ.to_ascii_lowercase();
    let t = t.strip_prefix("application/").unwrap_or(&t);
    let accepted = match kind {
        IssuerKind::JwtSvid => matches!(t, "jwt" | "jose"),
        IssuerKind::Jwt => matches!(t, "jwt" | "jose" | "at+jwt"),
    };
    if accepted {
        Ok(())
    } else {
        Err(TokenFailure::new(
            TokenReason::TypeNotAccepted,
            format!("`typ` {} is not accepted", clip(typ)),
        ))
    }
}

/// Every claim rule, on claims whose signature verified.
fn check_claims(
    mut claims: Map<String, Value>,
    issuer: &Arc<IssuerSpec>,
    now: i64,
) -> Result<VerifiedToken, TokenFailure> {
    let missing = |name: &str| TokenFailure::new(TokenReason::MissingClaim, format!("no `{name}`"));

    let expires_at = numeric_date(&claims, "exp")?.ok_or_else(|| missing("exp"))?;
    let not_before = numeric_date(&claims, "nbf")?;
    let issued_at = numeric_date(&claims, "iat")?;

    let subject = match claims.get("sub") {
        // The subject is forwarded in a header and written in events: visible ASCII with inner
        // spaces only, so no upstream parser can read it as anything but what was signed.
        Some(Value::String(s)) if !is_header_safe(s) => {
            return Err(malformed_claim(
                "sub",
                "visible ASCII without leading or trailing spaces",
            ))
        }
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None => return Err(missing("sub")),
        Some(_) => return Err(malformed_claim("sub", "a string")),
    };

    let iss = optional_string(&claims, "iss")?;
    if let Some(required) = &issuer.issuer {
        match &iss {
            Some(iss) if iss == required => {}
            Some(iss) => {
                return Err(TokenFailure::new(
                    TokenReason::WrongIssuer,
                    format!("`iss` {} is not `{required}`", clip(iss)),
                ))
            }
            None => return Err(missing("iss")),
        }
    }

    check_audience(claims.get("aud"), &issuer.audiences)?;

    let leeway = issuer.leeway_s;
    if let Some(iat) = issued_at {
        if iat > now.saturating_add(leeway) {
            return Err(TokenFailure::new(
                TokenReason::NotYetValid,
                format!("issued in the future ({iat})"),
            ));
        }
    }
    // Short-lived credentials are enforced: the lifetime counts from the issue time, else the
    // start of validity, else now (a token that says neither is judged by what remains).
    let start = issued_at.or(not_before).unwrap_or(now);
    let lifetime = expires_at.saturating_sub(start);
    if lifetime > issuer.max_lifetime_s {
        return Err(TokenFailure::new(
            TokenReason::LifetimeTooLong,
            format!(
                "lives {lifetime} s, more than the {} s allowed",
                issuer.max_lifetime_s
            ),
        ));
    }

    for name in &issuer.required_claims {
        if claims.get(name).is_none_or(Value::is_null) {
            return Err(missing(name));
        }
    }

    let spiffe_id = match &issuer.trust_domain {
        Some(td) => Some(spiffe_subject(&subject, td)?),
        None => None,
    };

    let jti = optional_string(&claims, "jti")?;
    let cnf_x5t_s256 = confirmation(claims.get("cnf"))?;

    // Registered claims live in their own fields; policy matches on the rest.
    claims.remove("cnf");
    let verified = VerifiedToken {
        issuer: issuer.clone(),
        iss,
        subject,
        spiffe_id,
        jti,
        expires_at,
        not_before,
        cnf_x5t_s256,
        claims,
    };
    verified.check_time(now)?;
    Ok(verified)
}

/// A claim that, when present, must be a string.
fn optional_string(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, TokenFailure> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None => Ok(None),
        Some(_) => Err(malformed_claim(name, "a string")),
    }
}

fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b)) && s.trim_matches(' ').len() == s.len()
}

fn malformed_claim(name: &str, expected: &str) -> TokenFailure {
    TokenFailure::new(
        TokenReason::Malformed,
        format!("`{name}` is not {expected}"),
    )
}

/// A NumericDate claim (RFC 7519 2): seconds since the epoch, fractions allowed and dropped.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenFailure> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let bad = || malformed_claim(name, "a NumericDate");
    if let Some(n) = value.as_i64() {
        return Ok(Some(n));
    }
    match value.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
        _ => Err(bad()),
    }
}

/// `aud` is one string or an array of strings; one must be an audience the issuer accepts.
fn check_audience(aud: Option<&Value>, accepted: &[String]) -> Result<(), TokenFailure> {
    let values: Vec<&str> = match aud {
        None => {
            return Err(TokenFailure::new(
                TokenReason::MissingClaim,
                "no `aud`".to_string(),
            ))
        }
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(
                    item.as_str()
                        .ok_or_else(|| malformed_claim("aud", "a string or array of strings"))?,
                );
            }
            out
        }
        Some(_) => return Err(malformed_claim("aud", "a string or array of strings")),
    };
    if values.iter().any(|v| accepted.iter().any(|a| a == v)) {
        Ok(())
    } else {
        let shown: Vec<String> = values.iter().take(4).map(|v| clip(v)).collect();
        Err(TokenFailure::new(
            TokenReason::WrongAudience,
            format!(
                "`aud` {} names no audience of this gateway",
                shown.join(", ")
            ),
        ))
    }
}

/// `sub` must be a workload SPIFFE ID of `trust_domain` (JWT-SVID 3).
fn spiffe_subject(sub: &str, trust_domain: &str) -> Result<SpiffeId, TokenFailure> {
    let id = SpiffeId::parse(sub).map_err(|e| {
        TokenFailure::new(
            TokenReason::BadSubject,
            format!("`sub` {} is not a SPIFFE ID: {e}", clip(sub)),
        )
    })?;
    if id.trust_domain() != trust_domain {
        return Err(TokenFailure::new(
            TokenReason::BadSubject,
            format!("`sub` {id} is not in trust domain `{trust_domain}`"),
        ));
    }
    if id.path().is_empty() {
        return Err(TokenFailure::new(
            TokenReason::BadSubject,
            format!("`sub` {id} names a trust domain, not a workload"),
        ));
    }
    Ok(id)
}

/// RFC 8705 `cnf`: only the certificate thumbprint method is implemented; a token bound any
/// other way cannot be checked, so it is refused rather than treated as unbound.
fn confirmation(cnf: Option<&Value>) -> Result<Option<[u8; 32]>, TokenFailure> {
    let Some(cnf) = cnf else { return Ok(None) };
    let Some(members) = cnf.as_object() else {
        return Err(malformed_claim("cnf", "an object"));
    };
    match members.get("x5t#S256") {
        Some(Value::String(t)) => {
            let bytes = jose::b64url_decode(t)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| malformed_claim("cnf.x5t#S256", "a base64url SHA-256 thumbprint"))?;
            Ok(Some(bytes))
        }
        Some(_) => Err(malformed_claim("cnf.x5t#S256", "a string")),
        None => Err(TokenFailure::new(
            TokenReason::BindingMismatch,
            format!(
                "confirmation method {} is not supported (only x5t#S256)",
                members
                    .keys()
                    .map(|k| clip(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// An attacker-chosen string, shortened and quoted for a log or event.
fn clip(s: &str) -> String {
    const MAX: usize = 96;
    let mut end = s.len().min(MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let ellipsis = if end < s.len() { "..." } else { "" };
    format!("{:?}", format!("{}{ellipsis}", &s[..end]))
}

#[cfg(test)]
mod tests;
