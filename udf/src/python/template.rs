//! A template process: it loads the model once, then forks each worker of its pool, so
//! N workers cost one import of MLflow and one load instead of N, and share the pages of
//! what they imported copy-on-write.
//!
//! The template is the worker program run with `--template` (see `worker.py`). After the
//! load it answers `fork` requests, one per worker: the child connects to a Unix socket
//! of the pool's private directory and answers predict requests there, as a started
//! worker does on its pipes. The template reaps its children and reports how each ended.
//! It forks only while it is the one thread of its process (a thread would not exist in
//! the child, and whatever lock it held would stay locked there): a model whose load
//! starts threads gets workers started on their own instead.

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, BufWriter};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::Result;
use crate::python::messages::{read_message, write_message};

/// How long a fork may take: the reply, then the child's connection.
const FORK_TIMEOUT: Duration = Duration::from_secs(30);

/// A running template process with the model loaded.
#[derive(Debug)]
pub(crate) struct Template {
    child: Mutex<Child>,
    requests: Mutex<BufWriter<ChildStdin>>,
    replies: Arc<Replies>,
    /// A directory only this user may enter, for the workers' sockets.
    sockets: tempfile::TempDir,
    next: AtomicU64,
}

/// What the template said: answers to fork requests, in order, and its children's ends.
#[derive(Debug, Default)]
struct Replies {
    state: Mutex<ReplyState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct ReplyState {
    answers: VecDeque<Value>,
    /// Exit codes by pid (negative: the signal that killed it).
    exits: HashMap<u32, i32>,
    /// The template's output ended: it is gone.
    closed: bool,
}

impl Replies {
    fn lock(&self) -> MutexGuard<'_, ReplyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `found` finds something in the state, or `timeout`.
    fn wait_for<T>(
        &self,
        timeout: Duration,
        mut found: impl FnMut(&mut ReplyState) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(value) = found(&mut state) {
                return Some(value);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .changed
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// How a template start ended.
pub(crate) enum Started {
    /// Loaded, and alone in its process: ready to fork workers.
    Ready(Template),
    /// Loaded, but running this many threads (or they cannot be counted): no forks.
    Threaded(Option<u64>),
}

impl Template {
    /// Runs `command` (the worker program with `--template`) and loads the model with
    /// `load`; a load that fails is `Err(the load's answer)`, as a worker's would be.
    pub(crate) fn start(
        mut command: Command,
        load: &Value,
    ) -> std::io::Result<Result<Started, Value>> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("stdin and stdout are piped");
        };
        let mut requests = BufWriter::new(stdin);
        let mut answers = BufReader::new(stdout);
        let loaded =
            write_message(&mut requests, load, &[]).and_then(|()| read_message(&mut answers));
        let header = match loaded {
            Ok((header, _)) => header,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        if header["ok"].as_bool() != Some(true) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Err(header));
        }
        let threads = header["threads"].as_u64();
        if threads != Some(1) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Ok(Started::Threaded(threads)));
        }
        let replies = Arc::new(Replies::default());
        let reader = Arc::clone(&replies);
        std::thread::spawn(move || {
            while let Ok((message, _)) = read_message(&mut answers) {
                let mut state = reader.lock();
                if message["op"] == "exited" {
                    let pid = message["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
                    let code = message["code"].as_i64().and_then(|c| i32::try_from(c).ok());
                    if let (Some(pid), Some(code)) = (pid, code) {
                        state.exits.insert(pid, code);
                    }
                } else {
                    state.answers.push_back(message);
                }
                reader.changed.notify_all();
            }
            reader.lock().closed = true;
            reader.changed.notify_all();
        });
        let sockets = tempfile::Builder::new()
            .prefix("mlfusion-workers-")
            .tempdir()?;
        Ok(Ok(Started::Ready(Self {
            child: Mutex::new(child),
            requests: Mutex::new(requests),
            replies,
            sockets,
            next: AtomicU64::new(0),
        })))
    }

    /// Forks a worker: its pid and the socket it answers on.
    pub(crate) fn fork(&self) -> std::result::Result<(u32, UnixStream), String> {
        let path = self.sockets.path().join(format!(
            "{}.sock",
            self.next.fetch_add(1, Ordering::Relaxed)
        ));
        let listener = UnixListener::bind(&path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        let _ = listener.set_nonblocking(true);
        // One fork at a time: the answer read next is this request's.
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let request = json!({"op": "fork", "socket": path});
        write_message(&mut *requests, &request, &[])
            .map_err(|e| format!("the template process is gone ({e})"))?;
        let answer = self
            .replies
            .wait_for(FORK_TIMEOUT, |s| {
                s.answers
                    .pop_front()
                    .or_else(|| s.closed.then(|| json!({"ok": false, "closed": true})))
            })
            .ok_or("the template process did not answer")?;
        let Some(pid) = answer["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) else {
            return Err(match answer["threads"].as_u64() {
                Some(n) => format!("the template process runs {n} threads"),
                None => "the template process is gone".into(),
            });
        };
        let deadline = Instant::now() + FORK_TIMEOUT;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self.exit_code(pid, Duration::ZERO).is_some() || Instant::now() > deadline {
                        return Err(format!("the forked worker {pid} did not connect"));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(format!("cannot accept the forked worker {pid}: {e}")),
            }
        };
        drop(requests);
        let _ = std::fs::remove_file(&path);
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        widen(&stream);
        Ok((pid, stream))
    }

    /// The exit code of child `pid` once the template reports it (negative: killed by
    /// that signal), waiting up to `timeout`.
    pub(crate) fn exit_code(&self, pid: u32, timeout: Duration) -> Option<i32> {
        self.replies
            .wait_for(timeout, |s| s.exits.get(&pid).copied())
    }
}

/// A large send buffer for `stream`: a batch of megabytes goes out in few wakeups (the
/// worker widens its own, as started workers widen their pipes).
#[allow(unsafe_code)]
fn widen(stream: &UnixStream) {
    let size: libc::c_int = 1 << 22;
    // SAFETY: setsockopt(2) on a socket this process owns, reading one c_int.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        // Its children end with it: they watch their parent.
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}
