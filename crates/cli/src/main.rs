//! `domicile`: the command line. Thin: parsing, output and exit codes here;
//! every decision is made in the engine and the core.
//!
//! - [`catalog`]: `domicile catalog migrate-to`, moving the catalog to another backend.
//! - [`cli`]: the clap definitions.
//! - [`commands`]: the dispatcher, and one module per command group.
//! - [`config_file`]: loading the config file.
//! - [`demo`]: the India/China story.
//! - [`init`]: the example deployment.
//! - [`migrate`]: migration jobs: apply, status, resume, pause, cancel.
//! - [`output`]: table, JSON and CSV output.
//! - [`progress`]: progress bars on a terminal, plain lines elsewhere.
//! - [`render`]: plans and exposure rendered for people and programs, with
//!   the grounds of reach they cite.
//! - [`serve`]: `domicile serve`, the REST and S3 APIs.

mod catalog;
mod cli;
mod commands;
mod config_file;
mod demo;
mod init;
mod migrate;
mod output;
mod progress;
mod render;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// Bad usage, config or input: exit code 2, and nothing was changed.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Exit codes of the CLI contract.
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_BAD_INPUT: u8 = 2;
pub const EXIT_VIOLATION: u8 = 3;

fn exit_code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<BadInput>().is_some()
            || cause.downcast_ref::<domicile_core::ConfigError>().is_some()
            || cause
                .downcast_ref::<domicile_core::ids::InvalidId>()
                .is_some()
            || cause
                .downcast_ref::<domicile_core::jurisdiction::UnknownJurisdiction>()
                .is_some()
        {
            return EXIT_BAD_INPUT;
        }
        if let Some(e) = cause.downcast_ref::<domicile_engine::Error>() {
            return if e.is_bad_input() {
                EXIT_BAD_INPUT
            } else {
                EXIT_FAILURE
            };
        }
    }
    EXIT_FAILURE
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("DOMICILE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // s3s logs request paths (subject ids, object names) at debug level:
    // capped, whatever DOMICILE_LOG asks, so logs keep no personal data.
    let filter = match "s3s=info".parse() {
        Ok(cap) => filter.add_directive(cap),
        Err(_) => filter,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = exit_code_of(&err);
            if err.downcast_ref::<domicile_core::ConfigError>().is_some() {
                eprintln!("{err}");
            } else {
                eprintln!("error: {err}");
                for cause in err.chain().skip(1) {
                    eprintln!("  caused by: {cause}");
                }
            }
            ExitCode::from(code)
        }
    }
}
