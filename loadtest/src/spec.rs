//! The small command-line languages: `--identity CERT,KEY[,weight=N][,bearer=FILE][,name=N]`,
//! `--request 'METHOD PATH [weight=N]'`, `--header 'Name: value'` and durations (`500ms`,
//! `10s`, `2m`). Each parses to a plain value here; files are read later, by the plan.

use std::path::PathBuf;
use std::time::Duration;

/// One client identity: an X.509-SVID (certificate chain and key files), its share of the
/// connections, and optionally its own bearer token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySpec {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub weight: u32,
    pub bearer_file: Option<PathBuf>,
}

/// One kind of request and its share of the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub method: String,
    pub path: String,
    pub weight: u32,
}

/// `CERT,KEY[,weight=N][,bearer=FILE][,name=NAME]`. The name defaults to the certificate's
/// file stem (`checkout.crt` -> `checkout`).
pub fn parse_identity(spec: &str) -> Result<IdentitySpec, String> {
    let mut parts = spec.split(',').map(str::trim);
    let (Some(cert), Some(key)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "`{spec}`: expected CERT,KEY[,weight=N][,bearer=FILE][,name=NAME]"
        ));
    };
    if cert.is_empty() || key.is_empty() || cert.contains('=') || key.contains('=') {
        return Err(format!(
            "`{spec}`: the first two fields are the certificate and key files"
        ));
    }
    let cert = PathBuf::from(cert);
    let mut identity = IdentitySpec {
        name: cert
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "identity".into()),
        key: PathBuf::from(key),
        cert,
        weight: 1,
        bearer_file: None,
    };
    for option in parts {
        match option.split_once('=') {
            Some(("weight", w)) => identity.weight = parse_weight(w)?,
            Some(("bearer", file)) if !file.is_empty() => {
                identity.bearer_file = Some(PathBuf::from(file))
            }
            Some(("name", name)) if !name.is_empty() => identity.name = name.to_string(),
            _ => {
                return Err(format!(
                    "`{spec}`: unknown option `{option}` (weight=N, bearer=FILE, name=NAME)"
                ))
            }
        }
    }
    Ok(identity)
}

/// `METHOD PATH [weight=N]`, e.g. `POST /payments/refund weight=1`.
pub fn parse_request(spec: &str) -> Result<RequestSpec, String> {
    let mut words = spec.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        return Err(format!("`{spec}`: expected 'METHOD PATH [weight=N]'"));
    };
    let mut request = RequestSpec {
        method: method.to_string(),
        path: path.to_string(),
        weight: 1,
    };
    check_request(&request).map_err(|e| format!("`{spec}`: {e}"))?;
    for option in words {
        match option.split_once('=') {
            Some(("weight", w)) => request.weight = parse_weight(w)?,
            _ => return Err(format!("`{spec}`: unknown option `{option}` (weight=N)")),
        }
    }
    Ok(request)
}

/// The method is a token and the path an origin-form target that `http` accepts as is.
pub fn check_request(request: &RequestSpec) -> Result<(), String> {
    http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", request.method))?;
    if !request.path.starts_with('/') {
        return Err(format!("path `{}` must start with /", request.path));
    }
    request
        .path
        .parse::<http::uri::PathAndQuery>()
        .map_err(|e| format!("path `{}`: {e}", request.path))?;
    Ok(())
}

/// `Name: value`.
pub fn parse_header(spec: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = spec
        .split_once(':')
        .ok_or_else(|| format!("header `{spec}`: expected 'Name: value'"))?;
    let name = http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| format!("header `{spec}`: {e}"))?;
    let value =
        http::HeaderValue::from_str(value.trim()).map_err(|e| format!("header `{spec}`: {e}"))?;
    Ok((name, value))
}

/// A weight: a whole number from 1.
pub fn parse_weight(w: &str) -> Result<u32, String> {
    match w.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("weight `{w}` is not a whole number >= 1")),
    }
}

/// `1500ms`, `10s`, `2m`, `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" => value / 1e6,
        "m" | "min" => value * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (us, ms, s, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_with_all_options() {
        let id = parse_identity("certs/checkout.crt,certs/checkout.key,weight=3,bearer=tok.jwt")
            .unwrap();
        assert_eq!(
            id,
            IdentitySpec {
                name: "checkout".into(),
                cert: "certs/checkout.crt".into(),
                key: "certs/checkout.key".into(),
                weight: 3,
                bearer_file: Some("tok.jwt".into()),
            }
        );
        let id = parse_identity("a.pem,a.key,name=cart").unwrap();
        assert_eq!((id.name.as_str(), id.weight), ("cart", 1));
    }

    #[test]
    fn identity_errors_name_the_problem() {
        assert!(parse_identity("only.crt").unwrap_err().contains("CERT,KEY"));
        assert!(parse_identity("a.crt,weight=2").is_err());
        assert!(parse_identity("a.crt,a.key,weight=0")
            .unwrap_err()
            .contains("weight"));
        assert!(parse_identity("a.crt,a.key,colour=red")
            .unwrap_err()
            .contains("unknown option"));
    }

    #[test]
    fn requests() {
        assert_eq!(
            parse_request("POST /payments/refund weight=1").unwrap(),
            RequestSpec {
                method: "POST".into(),
                path: "/payments/refund".into(),
                weight: 1
            }
        );
        assert_eq!(parse_request("GET /a?b=c weight=9").unwrap().weight, 9);
        assert!(parse_request("GET").is_err());
        assert!(parse_request("GET payments").is_err());
        assert!(parse_request("G\u{e9}T /").is_err());
        assert!(parse_request("GET / wait=1").is_err());
    }

    #[test]
    fn headers() {
        let (n, v) = parse_header("X-Tenant:  blue ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-tenant", "blue"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
