use std::io::Write;

fn main() {
    let code = mlfusion_engine::main(std::env::args_os());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // Ends the process without exit()'s handlers: the runtime's threads may still be
    // dropping what the run left (Arrow buffers that pyarrow owns, with a model in the
    // embedded interpreter), and libarrow's C++ static destructors running beside them
    // corrupted the heap (glibc aborted in malloc_consolidate in ~1 of 600 runs). The
    // interpreter is never finalized, so nothing of Python's is skipped.
    // SAFETY: fflush(NULL) flushes C stdio; _exit(2) ends the process at once.
    #[allow(unsafe_code)]
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(i32::from(code));
    }
}
