use std::process::ExitCode;

use clap::Parser;

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = mlfusion_engine::args::Cli::parse();
    match mlfusion_engine::run(cli) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}", err.report());
            ExitCode::FAILURE
        }
    }
}
