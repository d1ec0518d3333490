//! HTTP/3 over QUIC (h3 + h3-quinn). STUB: to be implemented.
use std::sync::Arc;

use crate::{ClientError, ConnInfo, Request, RequestRecord, Shared};

#[derive(Debug)]
pub struct H3Conn {
    info: ConnInfo,
}

impl H3Conn {
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        let _ = shared;
        Err(ClientError::Setup("h3 not implemented yet".into()))
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
