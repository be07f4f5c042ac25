//! Admission: the one decision the gateway makes about a request, pure.
//!
//! From the compiled snapshot, the request's credentials (behind [`Authenticator`]), its head
//! and the time, [`admit`] answers who is calling, from which zone, on which route, on which
//! normalised target, and whether policy lets them: an admitted request, or a refusal with its
//! detail. It knows nothing of sockets, runtimes or HTTP libraries: the data plane calls it
//! with the facts of a live connection, and `zonegate policy explain` with the facts it is
//! given, so the two cannot disagree.
//!
//! The order fails closed and reveals little: a request with no credential at all is refused
//! before its route is looked up; a request without a certificate must prove itself with a
//! token before routing too, so unauthenticated clients cannot map the routes; on a connection
//! with an SVID, the token is read only where the route accepts tokens.

pub mod credentials;
pub mod refusal;
pub mod route;

pub use credentials::{Authenticator, Bearer, PeerSvid, Refused};
pub use refusal::Refusal;
pub use route::RouteTable;

use std::sync::Arc;

use crate::config::{GatewayConfig, Route};
use crate::identity::{Identity, SvidFacts};
use crate::policy::{
    self, Decision, NormalizedTarget, Policy, Presented, RequestFacts, TokenFacts, Verdict,
};

/// The parts of a snapshot admission reads.
#[derive(Clone, Copy)]
pub struct Compiled<'a> {
    pub config: &'a GatewayConfig,
    pub routes: &'a RouteTable,
    pub policy: &'a Policy,
}

/// What the client asked for, as it asked it.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'r> {
    pub method: &'r str,
    /// Lower-case, without port; `None` when the request named no host.
    pub host: Option<&'r str>,
    /// The request target exactly as sent: normalisation must see every byte.
    pub raw_target: &'r str,
}

/// Admission's answer. Whatever the outcome, it carries everything learnt on the way (who
/// was refused, on which route), because the identity event records refusals too.
#[derive(Debug)]
pub struct Admission<'a> {
    pub identity: Option<Identity>,
    pub source_zone: Option<String>,
    pub cross_zone: bool,
    pub route: Option<&'a Route>,
    pub target: Option<NormalizedTarget>,
    pub decision: Option<Decision>,
    /// `None`: admitted.
    pub refused: Option<Refused>,
}

impl Admission<'_> {
    pub fn is_admitted(&self) -> bool {
        self.refused.is_none()
    }

    pub fn refusal(&self) -> Option<Refusal> {
        self.refused.as_ref().map(|r| r.refusal)
    }
}

/// An admission that got no further than the connection's SVID: for requests refused before
/// admission (a head over the limits), so that their event still says who sent them.
pub fn attributed<'a>(compiled: &Compiled<'a>, svid: Option<&Arc<SvidFacts>>) -> Admission<'a> {
    let mut admission = empty();
    if let Some(svid) = svid {
        attribute(
            compiled.config,
            &mut admission,
            Identity {
                spiffe_id: Some(svid.spiffe_id.clone()),
                svid: Some(svid.clone()),
                token: None,
            },
        );
    }
    admission
}

fn empty<'a>() -> Admission<'a> {
    Admission {
        identity: None,
        source_zone: None,
        cross_zone: false,
        route: None,
        target: None,
        decision: None,
        refused: None,
    }
}

/// Decides one request. See the module doc for the order of the checks.
pub fn admit<'a>(
    compiled: &Compiled<'a>,
    credentials: &dyn Authenticator,
    head: &RequestHead<'_>,
    now: i64,
) -> Admission<'a> {
    let mut admission = empty();
    if let Err(refused) = decide(compiled, credentials, head, now, &mut admission) {
        admission.refused = Some(refused);
    }
    admission
}

fn decide<'a>(
    compiled: &Compiled<'a>,
    credentials: &dyn Authenticator,
    head: &RequestHead<'_>,
    now: i64,
    out: &mut Admission<'a>,
) -> Result<(), Refused> {
    let config = compiled.config;
    let svid = credentials.svid();
    if let Some(svid) = svid {
        // Attribute the request to the certificate at once, so that even a refusal's event
        // says who was refused.
        attribute(
            config,
            out,
            Identity {
                spiffe_id: Some(svid.spiffe_id.clone()),
                svid: Some(svid.clone()),
                token: None,
            },
        );
        credentials.check_svid(compiled, now)?;
    } else {
        // Without a certificate only a token can authenticate, and it must do so before the
        // request learns anything about routes.
        let Some(token) = credentials.token(compiled, None, now)? else {
            return Err(Refused::new(
                Refusal::NoCredential,
                "neither an SVID on the connection nor a token on the request".to_string(),
            ));
        };
        attribute(
            config,
            out,
            Identity {
                spiffe_id: token.spiffe_id.clone(),
                svid: None,
                token: Some(token),
            },
        );
    }

    let target = policy::normalize(head.raw_target)
        .map_err(|e| Refused::new(Refusal::BadPath, e.to_string()))?;
    let route = compiled.routes.select(head.host, &target.path);
    out.target = Some(target);
    let route = route.ok_or(Refusal::NoRoute)?;
    out.route = Some(route);

    if let (Some(svid), true) = (svid, route.credentials.accepts_tokens()) {
        if let Some(token) = credentials.token(compiled, Some(svid), now)? {
            // Bound to the SVID: the SPIFFE ID and zone stay the SVID's, so the identity
            // recorded at the start only gains the token.
            if let Some(identity) = out.identity.as_mut() {
                identity.token = Some(token);
            }
        }
    }

    let Some(identity) = &out.identity else {
        return Err(Refusal::Internal.into());
    };
    let token = identity.token.as_deref();
    let presented = Presented {
        svid: identity.svid.is_some(),
        token: token.is_some(),
    };
    credentials::require(&route.name, route.credentials, presented)?;
    let path = out.target.as_ref().map_or("", |t| t.path.as_str());
    let decision = compiled.policy.decide(&RequestFacts {
        spiffe_id: identity.spiffe_id.as_ref(),
        source_zone: out.source_zone.as_deref().unwrap_or_default(),
        route: &route.name,
        method: head.method,
        path,
        presented,
        token: token.map(|t| TokenFacts {
            issuer: &t.issuer.name,
            subject: &t.subject,
            claims: &t.claims,
        }),
    });
    let verdict = decision.verdict;
    let by_rule = decision.rule.is_some();
    out.decision = Some(decision);
    match (verdict, by_rule) {
        (Verdict::Allow, _) => Ok(()),
        (Verdict::Deny, true) => Err(Refusal::PolicyDenied.into()),
        (Verdict::Deny, false) => Err(Refusal::DefaultDeny.into()),
    }
}

/// Records who the request is from, and the source zone that follows from it.
fn attribute(config: &GatewayConfig, out: &mut Admission<'_>, identity: Identity) {
    let zone = config.zone_of_identity(&identity);
    out.cross_zone = zone != config.zone;
    out.source_zone = Some(zone.to_string());
    out.identity = Some(identity);
}

#[cfg(test)]
mod tests;
