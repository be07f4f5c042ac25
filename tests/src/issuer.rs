//! A bearer token issuer for the tests, as an OpenID provider looks to a relying party: an
//! HTTPS server for `localhost` (its certificate from a test CA) serving a discovery document at
//! `/.well-known/openid-configuration` and a JWK Set at `/keys`, both switchable while a test
//! runs (to rotate keys or fail), counting the requests each path gets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use zonegate_devkit::devpki::{DevCa, LeafSpec};

pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const KEYS_PATH: &str = "/keys";

/// What one path answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// 200 with this body (served as JSON) and, if set, this Cache-Control.
    Body {
        body: String,
        cache_control: Option<String>,
    },
    Status(StatusCode),
    /// 302 to this URL.
    Redirect(String),
}

impl Answer {
    pub fn json(body: impl Into<String>) -> Answer {
        Answer::Body {
            body: body.into(),
            cache_control: None,
        }
    }

    pub fn cached(body: impl Into<String>, cache_control: &str) -> Answer {
        Answer::Body {
            body: body.into(),
            cache_control: Some(cache_control.to_string()),
        }
    }
}

/// A running issuer.
pub struct Issuer {
    pub addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

impl Issuer {
    /// Starts an issuer whose certificate `web` issued, serving the discovery document of
    /// [`Issuer::url`] (pointing at `/keys`) and, at `/keys`, nothing yet (404).
    pub async fn start(web: &DevCa) -> Issuer {
        let mut spec = LeafSpec::svid("spiffe://web.test/issuer");
        spec.dns_sans = vec!["localhost".into()];
        let cert = web.issue(&spec).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let answers: Arc<Mutex<HashMap<String, Answer>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let (serving, counting) = (answers.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (answers, hits) = (serving.clone(), counting.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let path = http::Request::uri(&request).path().to_string();
                        *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let answer = answers.lock().unwrap().get(&path).cloned();
                        async move { Ok::<_, Infallible>(respond(answer)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        let issuer = Issuer {
            addr,
            answers,
            hits,
        };
        issuer.answer(
            DISCOVERY_PATH,
            Answer::json(issuer.discovery(&issuer.url())),
        );
        issuer
    }

    /// The issuer identifier (`iss`): `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// A discovery document naming `issuer` and this issuer's `/keys`.
    pub fn discovery(&self, issuer: &str) -> String {
        self.discovery_with(issuer, KEYS_PATH)
    }

    /// A discovery document naming `issuer` and the JWK Set at `keys_path` of this server.
    pub fn discovery_with(&self, issuer: &str, keys_path: &str) -> String {
        serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{}{keys_path}", self.url()),
            "id_token_signing_alg_values_supported": ["ES256"],
        })
        .to_string()
    }

    /// From now on, `path` answers `answer`.
    pub fn answer(&self, path: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(path.to_string(), answer);
    }

    /// Requests `path` has had.
    pub fn hits(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn respond(answer: Option<Answer>) -> Response<Full<Bytes>> {
    let response = match answer {
        Some(Answer::Body {
            body,
            cache_control,
        }) => {
            let mut builder = Response::builder().header("content-type", "application/json");
            if let Some(value) = cache_control {
                builder = builder.header("cache-control", value);
            }
            builder.body(Full::new(Bytes::from(body)))
        }
        Some(Answer::Redirect(location)) => Response::builder()
            .status(StatusCode::FOUND)
            .header("location", location)
            .body(Full::new(Bytes::new())),
        Some(Answer::Status(status)) => Response::builder()
            .status(status)
            .body(Full::new(Bytes::new())),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new())),
    };
    response.unwrap()
}
