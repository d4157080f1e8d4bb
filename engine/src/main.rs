use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(mlfusion_engine::main(std::env::args_os()))
}
