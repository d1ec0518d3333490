pub mod conns;
pub mod get;
pub mod link;
pub mod report;
pub mod run;
pub mod serve;

/// A multi-threaded tokio runtime for a command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(0)
}

/// A tokio runtime of `threads` workers: 1 is a current-thread runtime (every
/// task on the calling thread: a QUIC connection's driver, the endpoint's and
/// the request's tasks wake each other without crossing threads, as quinn's
/// own perf tool runs); 0 is one worker per core.
pub fn runtime_with(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = match threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if threads > 1 {
        b.worker_threads(threads);
    }
    Ok(b.enable_all().build()?)
}
