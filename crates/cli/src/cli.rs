//! The subcommands behind the `zonegate` binary, returning process exit codes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, info};

use crate::config::{self, EXIT_CONFIG};
use crate::events::EventSink;
use crate::reload::SnapshotStore;
use crate::{devpki, devtoken, server};

pub(crate) use crate::config::EXIT_FAILURE;

pub(crate) fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// `zonegate run`: serve until a shutdown signal.
pub(crate) fn run(config_path: &Path, options: &server::StartOptions) -> i32 {
    let store = match SnapshotStore::open(config_path) {
        Ok(store) => Arc::new(store),
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "zonegate: {} error(s) in the configuration; not started",
                errors.len()
            );
            return EXIT_CONFIG;
        }
    };
    let snapshot = store.load();
    let events = match EventSink::start(&snapshot.config.events) {
        Ok(events) => events,
        Err(e) => {
            eprintln!(
                "{}: events: cannot open the event sink: {e}",
                config_path.display()
            );
            return EXIT_CONFIG;
        }
    };
    let server = match server::build(store.clone(), events, options) {
        Ok(server) => server,
        Err(e) => {
            error!(error = %e, "cannot build the gateway");
            return EXIT_FAILURE;
        }
    };
    let listeners: Vec<String> = snapshot
        .config
        .listeners
        .iter()
        .map(|l| l.address.to_string())
        .collect();
    info!(zone = %snapshot.config.zone, listeners = ?listeners, generation = snapshot.generation, "zonegate starting");
    drop(snapshot);
    server.run();
    0
}

/// `zonegate check`: validate and report every error at once.
pub(crate) fn check(config_path: &Path) -> i32 {
    // With [spiffe], the config is checked with what the agent sends now.
    let material = match config::workload_endpoint(config_path) {
        Some(endpoint) => match agent_material(&endpoint) {
            Ok(material) => Some(material),
            Err(reason) => {
                eprintln!("{}: spiffe.workload_api: {reason}", config_path.display());
                return EXIT_CONFIG;
            }
        },
        None => None,
    };
    let checked = config::load_with(config_path, material.as_deref(), None)
        .and_then(crate::reload::Snapshot::offline);
    match checked {
        Ok(snapshot) => {
            let c = &snapshot.config;
            println!(
                "{}: ok: zone `{}`, {} listener(s), {} trust domain(s), {} route(s), {} upstream(s), {} rule(s) from {} policy file(s)",
                config_path.display(),
                c.zone,
                c.listeners.len(),
                c.trust_domains.len(),
                c.routes.len(),
                c.upstreams.len(),
                c.rules.len(),
                c.policy_files.len()
            );
            0
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: {} error(s)", config_path.display(), errors.len());
            EXIT_CONFIG
        }
    }
}

/// What the Workload API at `endpoint` sends within a few seconds.
fn agent_material(endpoint: &str) -> Result<Arc<config::WorkloadMaterial>, String> {
    let feed = crate::reload::WorkloadFeed::start(endpoint)
        .map_err(|e| format!("cannot start the Workload API client: {e}"))?;
    feed.wait_first_for(std::time::Duration::from_secs(5))
        .ok_or_else(|| {
            format!(
                "no SVID from the Workload API at `{endpoint}` within 5 s ({})",
                feed.last_error().unwrap_or_else(|| "no answer".into())
            )
        })
}

/// `zonegate dev-certs`: mint a development PKI.
pub(crate) fn dev_certs(out: &Path, trust_domain: &str) -> i32 {
    if let Err(e) = crate::identity::spiffe::validate_trust_domain(trust_domain) {
        eprintln!("--trust-domain: `{trust_domain}`: {e}");
        return EXIT_CONFIG;
    }
    match devpki::write_dev_pki(out, trust_domain) {
        Ok(files) => {
            for f in files {
                println!("wrote {}", f.display());
            }
            0
        }
        Err(e) => {
            eprintln!("cannot write the dev PKI into {}: {e}", out.display());
            EXIT_FAILURE
        }
    }
}

/// `zonegate token mint`'s arguments.
#[derive(Debug)]
pub(crate) struct MintArgs {
    pub key: PathBuf,
    pub sub: String,
    pub aud: Vec<String>,
    pub ttl: i64,
    pub iss: Option<String>,
    pub claims: Vec<String>,
    pub bind_cert: Option<PathBuf>,
}

/// `zonegate token mint`: prints a freshly signed dev token.
pub(crate) fn mint_token(args: &MintArgs) -> i32 {
    match mint(args) {
        Ok(token) => {
            println!("{token}");
            0
        }
        Err(e) => {
            eprintln!("zonegate token mint: {e}");
            EXIT_CONFIG
        }
    }
}

fn mint(args: &MintArgs) -> Result<String, String> {
    if args.ttl <= 0 {
        return Err("--ttl must be positive".into());
    }
    let pem = std::fs::read_to_string(&args.key)
        .map_err(|e| format!("--key {}: {e}", args.key.display()))?;
    let signer = devtoken::TokenSigner::from_pkcs8_pem(&pem)
        .map_err(|e| format!("--key {}: {e}", args.key.display()))?;
    let claims = crate::intel::facts::parse_claims(&args.claims)?;
    let bind_to_cert_sha256 = match &args.bind_cert {
        Some(path) => {
            Some(devtoken::cert_thumbprint(path).map_err(|e| format!("--bind-cert: {e}"))?)
        }
        None => None,
    };
    let spec = devtoken::MintSpec {
        subject: args.sub.clone(),
        audiences: args.aud.clone(),
        issuer: args.iss.clone(),
        ttl_s: args.ttl,
        claims,
        bind_to_cert_sha256,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    signer.sign(&devtoken::claims(&spec, now))
}
