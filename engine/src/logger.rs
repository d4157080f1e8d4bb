//! What the libraries report while they work (an env being built or reused, ...), on
//! stderr as `mlfusion: <message>`: the `log` records of mlfusion's crates at info level
//! and above, and warnings of every other crate.

use log::{Level, LevelFilter, Log, Metadata, Record};

struct StderrLog;

impl Log for StderrLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        if metadata.target().starts_with("mlfusion") {
            metadata.level() <= Level::Info
        } else {
            metadata.level() <= Level::Warn
        }
    }

    #[allow(clippy::print_stderr)]
    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("mlfusion: {}", record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once; later calls change nothing).
pub fn install() {
    if log::set_logger(&StderrLog).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
