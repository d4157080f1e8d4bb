//! Limits on what user and network input may ask for: each is a flag of `mlfusion query`
//! and `mlfusion serve` (README "Limits"), set once at start; the defaults are far above
//! what a real model needs.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The default of [`max_type_depth`]: Spark types nested this deep are unheard of.
pub const DEFAULT_MAX_TYPE_DEPTH: usize = 64;

static MAX_TYPE_DEPTH: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_TYPE_DEPTH);

/// How deeply `array<...>`, `map<...>` and `struct<...>` may nest in a result type
/// (`--max-type-depth`): the DDL parser is recursive, and deeper input is refused.
pub fn max_type_depth() -> usize {
    MAX_TYPE_DEPTH.load(Ordering::Relaxed)
}

/// Sets [`max_type_depth`] for the process (at least 1).
pub fn set_max_type_depth(depth: usize) {
    MAX_TYPE_DEPTH.store(depth.max(1), Ordering::Relaxed);
}

/// The nesting limit of every JSON reader (serde_json's own, fixed at build time).
pub const JSON_DEPTH: usize = 128;

/// A JSON parse error, naming the nesting limit when that is what was hit.
pub fn json_error(e: &serde_json::Error) -> String {
    if e.to_string().starts_with("recursion limit exceeded") {
        format!(
            "JSON nested deeper than {JSON_DEPTH} levels (the limit) at column {}",
            e.column()
        )
    } else {
        e.to_string()
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), saying how much was
/// cut: for echoing user input in messages.
pub fn abbreviate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &text[..end], text.len() - end)
}
