//! Upstream pools: addresses behind a route, load-balanced round robin, health-aware, with
//! the connection settings (timeouts, TLS, HTTP/2) every peer of the pool shares.

use std::net::SocketAddr;
use std::sync::Arc;

use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{CertKey, WrappedX509};
use pingora_load_balancing::health_check::TcpHealthCheck;
use pingora_load_balancing::selection::RoundRobin;
use pingora_load_balancing::LoadBalancer;

use crate::config::{ServerTls, Upstream, UpstreamTls};

/// One upstream pool, built with its snapshot.
pub struct UpstreamPool {
    pub config: Arc<Upstream>,
    balancer: LoadBalancer<RoundRobin>,
    ca: Option<Arc<[WrappedX509]>>,
    client_cert: Option<Arc<CertKey>>,
}

impl UpstreamPool {
    pub fn new(config: Arc<Upstream>, own: &ServerTls) -> std::io::Result<UpstreamPool> {
        let mut balancer =
            LoadBalancer::<RoundRobin>::try_from_iter(config.addresses.iter().copied())?;
        if config.health_check_interval.is_some() {
            let mut check = TcpHealthCheck::new();
            check.peer_template.options.connection_timeout = Some(config.connect_timeout);
            balancer.set_health_check(check);
            balancer.health_check_frequency = config.health_check_interval;
        }
        let ca = config.ca.as_ref().map(|certs| {
            certs
                .iter()
                .map(|c| WrappedX509::new(c.to_vec(), pingora_core::utils::tls::parse_x509))
                .collect::<Vec<_>>()
                .into()
        });
        let client_cert = (config.tls == UpstreamTls::Mtls).then(|| {
            Arc::new(CertKey::new(
                own.chain.iter().map(|c| c.to_vec()).collect(),
                own.key.secret_der().to_vec(),
            ))
        });
        Ok(UpstreamPool {
            config,
            balancer,
            ca,
            client_cert,
        })
    }

    /// The next healthy address, or `None` when every address is down.
    pub fn select(&self) -> Option<SocketAddr> {
        let backend = self.balancer.select(b"", 256)?;
        backend.addr.as_inet().copied()
    }

    /// Builds the peer for one request to `addr`.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let c = &self.config;
        let tls = c.tls != UpstreamTls::None;
        let mut peer = HttpPeer::new(addr, tls, c.sni.clone());
        let options = &mut peer.options;
        options.connection_timeout = Some(c.connect_timeout);
        options.read_timeout = Some(c.read_timeout);
        options.write_timeout = Some(c.read_timeout);
        options.idle_timeout = Some(c.idle_timeout);
        if c.http2 {
            options.set_http_version(2, 2);
        } else {
            options.set_http_version(1, 1);
        }
        if tls {
            options.ca = self.ca.clone();
            options.verify_cert = true;
            options.verify_hostname = !c.sni.is_empty();
        }
        peer.client_cert_key = self.client_cert.clone();
        peer
    }

    /// Runs one round of health checks, when this pool has them.
    pub async fn check_health(&self) {
        if self.config.health_check_interval.is_some() {
            self.balancer.backends().run_health_check(true).await;
        }
    }
}
