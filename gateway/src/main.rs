//! The `zonegate` command line: a thin layer over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use zonegate::{cli, demo};

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
        command: zonegate::intel::PolicyCommand,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(&args.log_format);
    let code = match args.command {
        Command::Run { config, upgrade } => {
            cli::run(&config, &zonegate::server::StartOptions { upgrade })
        }
        Command::Check { config } => cli::check(&config),
        Command::DevCerts { out, trust_domain } => cli::dev_certs(&out, &trust_domain),
        Command::Demo {
            dir,
            port,
            admin_port,
        } => demo::run(&dir, port, admin_port),
        Command::Policy { command } => zonegate::intel::run(&command),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
