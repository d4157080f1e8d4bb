//! One module per subcommand.

pub mod demo;
pub mod query;
pub mod serve;
