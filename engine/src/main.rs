use std::error::Error as _;
use std::process::ExitCode;

use clap::Parser;
use mlfusion_engine::error::Error;

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = mlfusion_engine::args::Cli::parse();
    match mlfusion_engine::run(cli) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}", render_error(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, once each. DataFusion errors are reported by their root
/// (the planning error or our model error), without DataFusion's wrapping.
fn render_error(err: &Error) -> String {
    let mut text = match err {
        Error::DataFusion(e) => {
            let root = e.find_root().to_string();
            root.strip_prefix("External error: ")
                .unwrap_or(&root)
                .to_owned()
        }
        other => other.to_string(),
    };
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(&format!("\n  caused by: {line}"));
        }
        source = cause.source();
    }
    text
}
