use std::process::ExitCode;

use clap::Parser;

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    let cli = mlfusion_engine::args::Cli::parse();
    match mlfusion_engine::run(cli) {
        Ok(out) => {
            mlfusion_engine::output::print_result(&out);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {}", err.report());
            // 128 + the signal for a run a signal stopped, as shells report it.
            ExitCode::from(err.signal().map_or(1, |s| 128 + s as u8))
        }
    }
}
