//! One module per subcommand.

pub mod demo;
pub mod env;
pub mod query;
pub mod serve;

/// Resolves with the signal number on Ctrl-C (SIGINT) or SIGTERM. Once awaited, neither
/// signal ends the process by itself any more: whoever awaits it decides.
pub async fn stop_signal() -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => libc::SIGTERM,
        _ = interrupt.recv() => libc::SIGINT,
    }
}
