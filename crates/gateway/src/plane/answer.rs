//! The one place where refusals become HTTP answers: status, a JSON body with the coarse
//! error name and the request id, and the RFC 6750 challenge where tokens are accepted.

use bytes::Bytes;
use http::header::{
    HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use http::{Response, StatusCode, Version};
use serde::Serialize;

use super::body::ResponseBody;
use super::headers::REQUEST_ID;
use crate::admission::Refusal;

#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    request_id: &'a str,
}

/// The answer for `refusal`; `tokens` says whether the gateway accepts tokens, and so whether
/// a 401 challenges the client to present one. `close` asks an HTTP/1.1 client to close the
/// connection (HTTP/2 connections are closed with GOAWAY by the connection's owner).
pub fn response(
    refusal: Refusal,
    request_id: &str,
    tokens: bool,
    version: Version,
    close: bool,
) -> Response<ResponseBody> {
    let body = serde_json::to_vec(&Body {
        error: refusal.error(),
        request_id,
    })
    .map(Bytes::from)
    .unwrap_or_default();
    let status =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let len = body.len();
    let mut response = Response::new(ResponseBody::answer(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(challenge) = refusal
        .challenge(tokens)
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(WWW_AUTHENTICATE, challenge);
    }
    if close && version < Version::HTTP_2 {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
