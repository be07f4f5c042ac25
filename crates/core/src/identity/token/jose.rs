//! The JOSE layer of a token: compact JWS splitting, the protected header and the claims
//! payload, read strictly. Nothing here is trusted until the signature has been verified;
//! this module only refuses what no verification could make acceptable.
//!
//! RFC 8725 guides what is refused here: only the compact serialization of a signed JWT (no
//! JWE, no unsecured `none`), no `crit` extension (we implement none, RFC 7515 4.1.11), no
//! unencoded payload (`b64`), and header parameters that name key material (`jku`, `x5u`,
//! `jwk`, `x5c`) are never followed nor trusted: the key comes from configuration alone.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::TokenReason;

/// A token split into its parts, with the header and claims decoded but not yet trusted.
#[derive(Debug)]
pub struct Jws<'t> {
    pub header: JoseHeader,
    pub claims: Map<String, Value>,
    /// `BASE64URL(header) '.' BASE64URL(payload)`: the bytes the signature covers.
    pub signing_input: &'t str,
    /// The signature, still base64url-encoded.
    pub signature: &'t str,
}

/// The protected header parameters the gateway reads.
#[derive(Debug)]
pub struct JoseHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// Header parameters whose mere presence, whatever their value (`null` included), refuses the
/// token: `crit` lists extensions we do not implement; RFC 7797 `b64` changes what is signed;
/// `enc` makes it a JWE, which we cannot verify.
const REFUSED_PARAMETERS: [&str; 3] = ["crit", "b64", "enc"];

/// Why a token could not even be read; `detail` is for the operator, never the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseError {
    pub reason: TokenReason,
    pub detail: String,
}

fn malformed(detail: impl Into<String>) -> JoseError {
    JoseError {
        reason: TokenReason::Malformed,
        detail: detail.into(),
    }
}

/// Splits and decodes a compact JWS of at most `max_bytes` bytes.
pub fn parse(token: &str, max_bytes: usize) -> Result<Jws<'_>, JoseError> {
    if token.len() > max_bytes {
        return Err(JoseError {
            reason: TokenReason::TooLarge,
            detail: format!("{} bytes, more than the {max_bytes} allowed", token.len()),
        });
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload_part), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        let count = token.split('.').count();
        return Err(malformed(if count == 5 {
            "an encrypted token (JWE) is not accepted".to_string()
        } else {
            format!("{count} dot-separated parts; a signed JWT has 3")
        }));
    };
    if signature.is_empty() {
        return Err(malformed("no signature"));
    }
    let header_bytes = decode_part(header_part, "header")?;
    let header = read_header(&header_bytes)?;
    let payload_bytes = decode_part(payload_part, "payload")?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload_bytes)
        .map_err(|e| malformed(format!("payload is not a JSON object: {e}")))?;
    let signing_input = &token[..header_part.len() + 1 + payload_part.len()];
    Ok(Jws {
        header,
        claims,
        signing_input,
        signature,
    })
}

/// The header must be a JSON object (RFC 7515 4) with a string `alg`.
fn read_header(bytes: &[u8]) -> Result<JoseHeader, JoseError> {
    let members: Map<String, Value> = serde_json::from_slice(bytes)
        .map_err(|e| malformed(format!("header is not a JSON object: {e}")))?;
    if members.contains_key("crit") {
        return Err(JoseError {
            reason: TokenReason::CritUnsupported,
            detail: "header lists critical extensions (`crit`), none of which is supported".into(),
        });
    }
    if let Some(name) = REFUSED_PARAMETERS
        .iter()
        .find(|n| members.contains_key(**n))
    {
        return Err(malformed(format!(
            "`{name}`: unencoded or encrypted tokens are not accepted"
        )));
    }
    let text = |name: &str| -> Result<Option<String>, JoseError> {
        match members.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(format!("header `{name}` is not a string"))),
        }
    };
    Ok(JoseHeader {
        alg: text("alg")?.ok_or_else(|| malformed("header has no `alg`"))?,
        kid: text("kid")?,
        typ: text("typ")?,
    })
}

fn decode_part(part: &str, name: &str) -> Result<Vec<u8>, JoseError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| malformed(format!("{name} is not unpadded base64url: {e}")))
}

/// Encodes `bytes` as unpadded base64url (JWS and JWK encoding).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url.
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            b64url(header.as_bytes()),
            b64url(payload.as_bytes())
        )
    }

    #[test]
    fn reads_a_compact_jws() {
        let token = jws(
            r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#,
            r#"{"sub":"x"}"#,
        );
        let parsed = parse(&token, 8192).unwrap();
        assert_eq!(parsed.header.alg, "ES256");
        assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.claims["sub"], "x");
        assert_eq!(parsed.signature, "c2ln");
        assert_eq!(
            format!("{}.{}", parsed.signing_input, parsed.signature),
            token
        );
    }

    #[test]
    fn refuses_what_no_signature_can_make_acceptable() {
        let ok_payload = r#"{"sub":"x"}"#;
        let cases = [
            (
                jws(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#, ok_payload),
                TokenReason::CritUnsupported,
            ),
            (
                jws(r#"{"alg":"ES256","b64":false}"#, ok_payload),
                TokenReason::Malformed,
            ),
            (jws(r#"{"kid":"k"}"#, ok_payload), TokenReason::Malformed),
            (jws(r#"["ES256"]"#, ok_payload), TokenReason::Malformed),
            (
                jws(r#"{"alg":"ES256","crit":null}"#, ok_payload),
                TokenReason::CritUnsupported,
            ),
            (
                jws(r#"{"alg":"ES256","enc":null}"#, ok_payload),
                TokenReason::Malformed,
            ),
            (
                jws(r#"{"alg":"ES256","kid":7}"#, ok_payload),
                TokenReason::Malformed,
            ),
            (jws(r#"{"alg":"ES256"}"#, "[1,2]"), TokenReason::Malformed),
            ("a.b".to_string(), TokenReason::Malformed),
            ("a.b.c.d.e".to_string(), TokenReason::Malformed),
            (
                format!("{}.", &jws(r#"{"alg":"ES256"}"#, ok_payload)[..20]),
                TokenReason::Malformed,
            ),
            // Padding and the standard alphabet are not base64url.
            (
                format!("{}=.e30.c2ln", b64url(br#"{"alg":"ES256"}"#)),
                TokenReason::Malformed,
            ),
            ("e30.e30+.c2ln".to_string(), TokenReason::Malformed),
            (
                jws(r#"{"alg":"ES256"}"#, ok_payload).replace(".c2ln", "."),
                TokenReason::Malformed,
            ),
        ];
        for (token, reason) in cases {
            let err = parse(&token, 8192).expect_err(&token);
            assert_eq!(err.reason, reason, "{token}: {}", err.detail);
        }
    }

    #[test]
    fn enforces_the_size_limit_before_decoding() {
        let token = jws(
            r#"{"alg":"ES256"}"#,
            &format!(r#"{{"pad":"{}"}}"#, "x".repeat(600)),
        );
        assert!(parse(&token, token.len()).is_ok());
        let err = parse(&token, token.len() - 1).unwrap_err();
        assert_eq!(err.reason, TokenReason::TooLarge);
    }
}
