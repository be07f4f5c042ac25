//! The `zonegate` command line: the clap tree over the core, the gateway, the policy tools
//! and the dev kit, and the place where their errors become exit codes.
#![forbid(unsafe_code)]

mod cli;
mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The crates' modules, under the names the commands use for them.
use zonegate_core::{config, identity};
use zonegate_devkit::{devpki, devtoken, echo};
use zonegate_gateway::{events, reload, server};
use zonegate_policy_tools as intel;

/// glibc's allocator with a per-thread cache in front of it, for the workers' bursts.
#[global_allocator]
static ALLOCATOR: zonegate_gateway::alloc::ThreadCache = zonegate_gateway::alloc::ThreadCache;

#[derive(Parser)]
#[command(
    name = "zonegate",
    version,
    about = "Identity-aware east-west gateway: SPIFFE mTLS, per-request zone policy, identity events"
)]
struct Args {
    /// Log format on stderr.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Take over the listening sockets of a running zonegate (zero-downtime upgrade):
        /// start the new process with --upgrade, then send SIGQUIT to the old one.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file and every file it references; print every error (exit 64).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Mint a development PKI: a trust-domain CA, the gateway's SVID and workload SVIDs.
    DevCerts {
        /// Directory to write into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        #[arg(long, default_value = "example.org")]
        trust_domain: String,
    },
    /// Development tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Start a ready-to-try gateway: dev PKI, sample zone, built-in echo upstream.
    Demo {
        /// Working directory for the demo's certificates, config, policy and events.
        #[arg(long, default_value = ".zonegate-demo")]
        dir: PathBuf,
        /// Gateway port on 127.0.0.1.
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// Admin listener port on 127.0.0.1.
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
    },
    /// Policy intelligence, offline on files: explain, lint, diff, blast-radius, suggest, report.
    Policy {
        #[command(subcommand)]
        command: intel::PolicyCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint a JWT-SVID (or bearer JWT) signed with a dev key; prints the token.
    Mint {
        /// The signing key (PKCS#8 PEM, P-256/P-384/Ed25519), as `dev-certs` writes it.
        #[arg(long, default_value = "certs/jwt-signer.key")]
        key: PathBuf,
        /// Subject: the workload's SPIFFE ID for a JWT-SVID.
        #[arg(long)]
        sub: String,
        /// Audience (repeat for several): the gateway's SPIFFE ID by default in its config.
        #[arg(long, required = true)]
        aud: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 300)]
        ttl: i64,
        /// `iss` claim.
        #[arg(long)]
        iss: Option<String>,
        /// Extra claim NAME=VALUE (repeatable): JSON when VALUE is JSON, else a string, e.g.
        /// scope="payments:charge payments:read".
        #[arg(long = "claim", value_name = "NAME=VALUE")]
        claims: Vec<String>,
        /// Bind the token to this client certificate (PEM): RFC 8705 `cnf.x5t#S256`.
        #[arg(long, value_name = "CERT")]
        bind_cert: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(&args.log_format);
    let code = match args.command {
        Command::Run { config, upgrade } => cli::run(&config, &server::StartOptions { upgrade }),
        Command::Check { config } => cli::check(&config),
        Command::DevCerts { out, trust_domain } => cli::dev_certs(&out, &trust_domain),
        Command::Token {
            command:
                TokenCommand::Mint {
                    key,
                    sub,
                    aud,
                    ttl,
                    iss,
                    claims,
                    bind_cert,
                },
        } => cli::mint_token(&cli::MintArgs {
            key,
            sub,
            aud,
            ttl,
            iss,
            claims,
            bind_cert,
        }),
        Command::Demo {
            dir,
            port,
            admin_port,
        } => demo::run(&dir, port, admin_port),
        Command::Policy { command } => intel::run(&command),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
