pub mod conns;
pub mod get;
pub mod link;
pub mod report;
pub mod run;
pub mod serve;

/// A multi-threaded tokio runtime for a command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
