//! Scenario files: the identity and request mix as TOML, for mixes too long for the command
//! line. Paths in the file are relative to the file. Unknown keys are errors.
//!
//! ```toml
//! ca = "certs/ca.crt"
//! bearer_file = "tokens/default.jwt"     # for identities without their own
//!
//! [[identity]]
//! cert = "certs/checkout.crt"
//! key = "certs/checkout.key"
//! weight = 3
//! bearer_file = "tokens/checkout.jwt"    # optional
//! name = "checkout"                      # optional: defaults to the cert's file stem
//!
//! [[request]]
//! method = "GET"
//! path = "/payments/charge"
//! weight = 9
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::spec::{check_request, IdentitySpec, RequestSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    ca: Option<PathBuf>,
    bearer_file: Option<PathBuf>,
    #[serde(default)]
    identity: Vec<RawIdentity>,
    #[serde(default)]
    request: Vec<RawRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default = "one")]
    weight: u32,
    bearer_file: Option<PathBuf>,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: String,
    path: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

/// A scenario file, its paths resolved against the file's directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub ca: Option<PathBuf>,
    pub bearer_file: Option<PathBuf>,
    pub identities: Vec<IdentitySpec>,
    pub requests: Vec<RequestSpec>,
}

/// Parses `text` (read from `path`): every problem found, each naming its key.
pub fn parse(path: &Path, text: &str) -> Result<Scenario, Vec<String>> {
    let where_ = path.display();
    let raw: RawScenario = toml::from_str(text).map_err(|e| vec![format!("{where_}: {e}")])?;
    let base = path.parent().unwrap_or(Path::new(""));
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let mut errors = Vec::new();
    let mut identities = Vec::new();
    for (i, id) in raw.identity.into_iter().enumerate() {
        if id.weight == 0 {
            errors.push(format!("{where_}: identity[{i}].weight: must be >= 1"));
        }
        let name = id.name.unwrap_or_else(|| {
            id.cert
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("identity{i}"))
        });
        identities.push(IdentitySpec {
            name,
            cert: resolve(id.cert),
            key: resolve(id.key),
            weight: id.weight,
            bearer_file: id.bearer_file.map(resolve),
        });
    }
    let mut requests = Vec::new();
    for (i, r) in raw.request.into_iter().enumerate() {
        let request = RequestSpec {
            method: r.method,
            path: r.path,
            weight: r.weight,
        };
        if let Err(e) = check_request(&request) {
            errors.push(format!("{where_}: request[{i}]: {e}"));
        }
        if request.weight == 0 {
            errors.push(format!("{where_}: request[{i}].weight: must be >= 1"));
        }
        requests.push(request);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Scenario {
        ca: raw.ca.map(resolve),
        bearer_file: raw.bearer_file.map(resolve),
        identities,
        requests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_file() {
        let text = r#"
ca = "certs/ca.crt"
[[identity]]
cert = "certs/checkout.crt"
key = "/abs/checkout.key"
weight = 3
bearer_file = "t.jwt"
[[identity]]
cert = "certs/cart.crt"
key = "certs/cart.key"
name = "shopping-cart"
[[request]]
method = "GET"
path = "/payments/charge"
weight = 9
[[request]]
method = "POST"
path = "/payments/refund"
"#;
        let s = parse(Path::new("/scen/mix.toml"), text).unwrap();
        assert_eq!(s.ca, Some(PathBuf::from("/scen/certs/ca.crt")));
        assert_eq!(s.identities[0].name, "checkout");
        assert_eq!(s.identities[0].key, PathBuf::from("/abs/checkout.key"));
        assert_eq!(
            s.identities[0].bearer_file,
            Some(PathBuf::from("/scen/t.jwt"))
        );
        assert_eq!(
            (s.identities[1].name.as_str(), s.identities[1].weight),
            ("shopping-cart", 1)
        );
        assert_eq!(s.requests.len(), 2);
        assert_eq!((s.requests[0].weight, s.requests[1].weight), (9, 1));
    }

    #[test]
    fn reports_every_problem() {
        let text = r#"
[[request]]
method = "GET"
path = "relative"
[[request]]
method = "GET"
path = "/x"
weight = 0
"#;
        let errors = parse(Path::new("s.toml"), text).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("request[0]"), "{errors:?}");
        assert!(errors[1].contains("request[1].weight"), "{errors:?}");
        let errors = parse(
            Path::new("s.toml"),
            "[[request]]\nmethod = \"GET\"\npth = \"/\"\n",
        )
        .unwrap_err();
        assert!(errors[0].contains("pth"), "{errors:?}");
    }
}
