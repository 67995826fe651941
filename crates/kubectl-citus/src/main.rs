//! Exit codes: 0 success, 1 `doctor` found hazards, 2 error, 130 a rebalance stopped with Ctrl-C;
//! `psql` exits with psql's code.

use std::process::ExitCode;

use clap::Parser;
use kubectl_citus::{cli::Cli, run, Exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)).map_err(anyhow::Error::from));
    match result {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::HazardsFound) => ExitCode::from(1),
        Ok(Exit::Interrupted) => ExitCode::from(130),
        Ok(Exit::Code(c)) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        Err(e) => {
            // The message already names what failed and the fix; add causes it does not repeat.
            let top = e.to_string();
            eprintln!("error: {top}");
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                // tokio-postgres's "db error" adds nothing: the message above carries the server's text.
                if !top.contains(&c) && c != "db error" {
                    eprintln!("  caused by: {c}");
                }
            }
            ExitCode::from(2)
        }
    }
}
