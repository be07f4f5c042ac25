//! The `zonegate-loadtest` binary: parse, validate (exit 64 on any error, before any traffic),
//! run on a runtime of `--threads` threads, print the report.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use zonegate_loadtest::cli::Args;
use zonegate_loadtest::engine;
use zonegate_loadtest::plan::Plan;

/// sysexits EX_USAGE: the command line or a file it names is wrong.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match Plan::from_args(&args) {
        Ok(plan) => plan,
        Err(errors) => {
            for e in errors {
                eprintln!("zonegate-loadtest: {e}");
            }
            return ExitCode::from(EX_USAGE);
        }
    };
    // One thread: a current-thread runtime, the cheapest per request; pin it with taskset.
    let runtime = if plan.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(plan.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zonegate-loadtest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match runtime.block_on(engine::run(Arc::new(plan))) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("zonegate-loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("zonegate-loadtest: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.table());
    }
    // Don't wait for connection tasks still winding down.
    runtime.shutdown_background();
    if report.responses == 0 {
        eprintln!("zonegate-loadtest: no response at all; see the error counts");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
