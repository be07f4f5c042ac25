//! Development and test kit: a development PKI and SVIDs, development JWT-SVID signing, and
//! the echo upstream. Used by `zonegate demo`, `dev-certs`, `token mint`, the tests and the
//! benchmarks; never by the data plane.
#![forbid(unsafe_code)]

pub mod devpki;
pub mod devtoken;
pub mod echo;
