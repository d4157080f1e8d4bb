//! What a person at a terminal sees: the REPL, the progress bar, `EXPLAIN ANALYZE`.
//! Terminal sessions run under util-linux `script`, which gives mlfusion a pseudo-terminal.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::fixtures::{BIN, mlfusion, sklearn_model, success, test_model, write_features};

/// Runs `mlfusion ARGS` on a pseudo-terminal, typing `lines` (paced, as a person would);
/// returns the terminal's text without escape sequences.
fn on_terminal(home: &Path, args: &[&str], lines: &[&str]) -> String {
    let command = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", home)
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux runs");
    let mut stdin = child.stdin.take().expect("stdin");
    if !lines.is_empty() {
        std::thread::sleep(Duration::from_secs(3)); // the interpreter starts
    }
    for line in lines {
        stdin
            .write_all(format!("{line}\r").as_bytes())
            .expect("type");
        stdin.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(700));
    }
    drop(stdin);
    let out: Output = child.wait_with_output().expect("script ends");
    let text = String::from_utf8_lossy(&out.stdout);
    strip_escapes(&text).replace('\r', "")
}

/// Drops ANSI CSI escape sequences (`ESC [ ... letter`).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn repl_runs_multi_line_statements_keeps_going_after_errors_and_keeps_history() {
    let home = tempfile::tempdir().expect("tempdir");
    let churn = format!("churn={}", test_model("churn"));
    let screen = on_terminal(
        home.path(),
        &["query", "--model", &churn],
        &[
            "SELECT 1 +",
            " 41 AS answer;",
            "SELECT nope;",
            "SELECT round(churn(2, 95.0, 4), 4) AS p;",
            "\\q",
        ],
    );
    assert!(screen.contains("| 42     |"), "{screen}");
    assert!(
        screen.contains("error: Schema error: No field named nope"),
        "{screen}"
    );
    assert!(screen.contains("| 0.9025 |"), "{screen}");
    let history =
        std::fs::read_to_string(home.path().join(".mlfusion_history")).expect("history is saved");
    assert!(history.contains("41 AS answer;"), "{history}");
}

#[test]
fn piped_stdin_is_a_script() {
    let mut child = Command::new(BIN)
        .args(["query", "--format", "csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mlfusion runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"SELECT 1 AS a;\nSELECT 2 AS b;\n")
        .expect("write");
    let out = success(&child.wait_with_output().expect("ends"));
    assert_eq!(out.trim(), "a\n1\nb\n2");
}

#[test]
fn progress_bar_reaches_100_percent_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo_dir = dir.path().join("demo").display().to_string();
    let demo = ["demo", "--dir", demo_dir.as_str(), "--rows", "300000"];
    let screen = on_terminal(dir.path(), &demo, &[]);
    assert!(
        screen.contains("100% 300,000/300,000 rows"),
        "the bar ends at 100%:\n{screen}"
    );
    assert!(screen.contains("scored 300000 rows"), "{screen}");

    // Over a Delta table, the rows to expect come from its log: the bar has a length
    // (the template with a percentage is chosen only when the length is known at the
    // start).
    let table = dir.path().join("delta").display().to_string();
    crate::delta::delta_fixture(&[], &["features", &table, "1000"]);
    let adder = format!("a={}", test_model("adder"));
    let output = dir.path().join("out.parquet").display().to_string();
    let query = ["query", "--model", &adder, "--output", &output];
    let sql = format!("SELECT a(f0) FROM '{table}'");
    let screen = on_terminal(dir.path(), &[&query[..], &[&sql]].concat(), &[]);
    assert!(screen.contains("100% 1,099/1,099 rows"), "{screen}");

    let quiet = [&demo[..], &["--quiet"]].concat();
    let screen = on_terminal(dir.path(), &quiet, &[]);
    assert!(screen.contains("scored 300000 rows"), "{screen}");
    assert!(
        !screen.contains("rows/s, ETA"),
        "--quiet draws no bar:\n{screen}"
    );

    let piped = mlfusion(&demo);
    success(&piped);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        !stderr.contains("ETA"),
        "no bar without a terminal:\n{stderr}"
    );
}

/// `EXPLAIN ANALYZE sql` with the scikit-learn model as `lr` (result type double), and
/// the lines of its `ModelCallsExec` nodes.
fn explain_analyze(model: &str, sql: &str) -> (String, Vec<String>) {
    let out = success(&mlfusion(&[
        "query",
        "--model",
        &format!("lr={model}"),
        "--result-type",
        "lr=double",
        "--batch-size",
        "100",
        "--format",
        "csv",
        &format!("EXPLAIN ANALYZE {sql}"),
    ]));
    let calls = out
        .lines()
        .filter(|l| l.contains("ModelCallsExec: models=[lr]"))
        .map(str::to_owned)
        .collect();
    (out, calls)
}

#[test]
fn explain_analyze_shows_per_model_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sklearn_model(dir.path());
    let data = dir.path().join("t.parquet");
    write_features(&data, 500);
    let (out, calls) = explain_analyze(
        &model,
        &format!(
            "SELECT id, lr(f0, f1, f2) AS p FROM '{}' WHERE lr(f0, f1, f2) > -1000",
            data.display()
        ),
    );
    // The call in WHERE and SELECT is evaluated once, in one projection below the
    // filter: 500 rows in 5 batches of 100.
    assert_eq!(calls.len(), 1, "{out}");
    for line in &calls {
        for metric in [
            "rows_scored[lr]=500",
            "batches_scored[lr]=5",
            "predict_time[lr]=",
            "convert_time[lr]=",
            "queued_time[lr]=",
        ] {
            assert!(line.contains(metric), "{metric} missing: {line}");
        }
    }
    assert!(
        out.lines()
            .any(|l| l.contains("FilterExec: __mlfusion_call_") && l.contains("> -1000")),
        "{out}"
    );

    // Calls inside aggregates are moved into a projection below them, and counted there.
    let (out, calls) = explain_analyze(
        &model,
        &format!(
            "SELECT f0 > 5 AS hi, sum(lr(f0, f1, f2)) FROM '{}' GROUP BY f0 > 5",
            data.display()
        ),
    );
    assert_eq!(calls.len(), 1, "{out}");
    assert!(calls[0].contains("rows_scored[lr]=500"), "{out}");
}
