//! Python exceptions as our errors, captured while attached: `Type: message` and the
//! last lines of the traceback. The one place tracebacks are formatted, for the embedded
//! interpreter and for what worker processes send back.

use pyo3::prelude::*;
use pyo3::types::PyTracebackMethods;

use crate::error::Error;

/// How many traceback lines an error keeps.
const TRACEBACK_LINES: usize = 12;

/// How many bytes of an exception's notes an error keeps (their end).
const NOTES_BYTES: usize = 4096;

/// The notes of an exception (`__notes__`: what the bridge adds, such as what loading
/// printed), each on its own line after a newline, the last [`NOTES_BYTES`] kept.
pub(crate) fn format_notes(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let text = notes.join("\n");
    let start = text.len().saturating_sub(NOTES_BYTES);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    let cut = if start > 0 { "...\n" } else { "" };
    format!("\n{cut}{}", &text[start..])
}

fn py_notes(py: Python<'_>, err: &PyErr) -> Vec<String> {
    err.value(py)
        .getattr("__notes__")
        .and_then(|n| n.extract::<Vec<String>>())
        .unwrap_or_default()
}

/// Captures a Python exception while attached: `Type: message` and the last traceback lines.
pub(crate) fn format_py_err(py: Python<'_>, err: &PyErr) -> (String, String) {
    let exception = format!("{}: {}", type_name(py, err), err.value(py));
    let traceback = err
        .traceback(py)
        .and_then(|tb| tb.format().ok())
        .map(|text| abridge_traceback(&text))
        .unwrap_or_default();
    (exception, traceback)
}

/// The last lines of a formatted traceback, starting at a frame boundary so no frame is
/// shown half; empty when there are no frames.
fn abridge_traceback(text: &str) -> String {
    let lines: Vec<_> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TRACEBACK_LINES)..];
    let Some(start) = tail.iter().position(|l| l.starts_with("  File")) else {
        return String::new();
    };
    format!(
        "Traceback (most recent call last, abridged):\n{}",
        tail[start..].join("\n")
    )
}

fn type_name(py: Python<'_>, err: &PyErr) -> String {
    err.get_type(py)
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into())
}

/// A Python exception raised by `model` during `stage` as our error; the bridge tags
/// exceptions raised outside the model's own code with `mlfusion_stage`.
pub(crate) fn python_error(py: Python<'_>, model: &str, stage: &str, err: &PyErr) -> Error {
    let (exception, traceback) = format_py_err(py, err);
    let stage = err
        .value(py)
        .getattr("mlfusion_stage")
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| stage.to_owned());
    Error::Python {
        model: model.to_owned(),
        stage,
        exception,
        traceback,
        notes: format_notes(&py_notes(py, err)),
    }
}

/// An exception a worker process reported (its type and message, and the traceback as
/// Python formatted it), as [`python_error`] reports one in the embedded interpreter.
pub(crate) fn reported_error(
    model: &str,
    stage: &str,
    exception: &str,
    traceback: &str,
    notes: &[String],
) -> Error {
    Error::Python {
        model: model.to_owned(),
        stage: stage.to_owned(),
        exception: exception.to_owned(),
        traceback: abridge_traceback(traceback),
        notes: format_notes(notes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracebacks_are_cut_at_a_frame_boundary() {
        let frames: Vec<String> = (0..10)
            .flat_map(|i| {
                [
                    format!("  File \"m.py\", line {i}, in f{i}"),
                    format!("    f{}()", i + 1),
                ]
            })
            .collect();
        let text = format!(
            "Traceback (most recent call last):\n{}\nValueError: bad",
            frames.join("\n")
        );
        let cut = abridge_traceback(&text);
        let lines: Vec<_> = cut.lines().collect();
        assert_eq!(lines[0], "Traceback (most recent call last, abridged):");
        assert!(lines[1].starts_with("  File"), "{cut}");
        assert_eq!(lines.last(), Some(&"ValueError: bad"));
        assert!(lines.len() <= TRACEBACK_LINES + 1);
        assert_eq!(abridge_traceback("ValueError: no frames"), "");
    }
}
