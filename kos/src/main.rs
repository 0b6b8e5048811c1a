//! `kos`: the docker-style command line for kosd. A client of the Docker
//! Engine API only; output, flags and exit codes follow the docker CLI.

mod cli;
mod client;
mod cmd;
mod format;
mod opts;
mod progress;
mod streams;
mod tty;

use clap::Parser;

/// An exit status with an optional message, as docker's `StatusError`.
#[derive(Debug)]
pub struct StatusError {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StatusError {}

pub fn status(code: i32, message: impl Into<String>) -> anyhow::Error {
    StatusError {
        code,
        message: message.into(),
    }
    .into()
}

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                // docker exits 125 on a flag error.
                _ => 125,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match cmd::dispatch(cli) {
        Ok(c) => c,
        Err(e) => match e.downcast::<StatusError>() {
            Ok(s) => {
                if !s.message.is_empty() {
                    eprintln!("{}", s.message);
                }
                s.code
            }
            Err(e) => {
                eprintln!("{e}");
                1
            }
        },
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}
