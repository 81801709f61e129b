//! The `weir` binary: parses the command line, sets up logging, and hands
//! over to the library.

use std::process::ExitCode;

use clap::Parser;
use proxy_user::{cli, runtime};

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match runtime::main(args.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weir: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
