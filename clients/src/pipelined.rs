//! HTTP/1.1 pipelining (hand-written on httparse). STUB: to be implemented.
use std::sync::Arc;

use crate::{ClientError, ConnInfo, Request, RequestRecord, Shared};

#[derive(Debug)]
pub struct PipelinedConn {
    info: ConnInfo,
}

impl PipelinedConn {
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        let _ = shared;
        Err(ClientError::Setup("pipelined not implemented yet".into()))
    }
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
    pub async fn run(&mut self, reqs: &[Request]) -> Vec<RequestRecord> {
        let _ = reqs;
        Vec::new()
    }
    pub async fn close(self) {}
}
