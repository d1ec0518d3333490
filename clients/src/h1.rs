//! HTTP/1.0 (a connection per request) and HTTP/1.1 keep-alive (hyper). STUB: to be implemented.
use std::sync::Arc;

use crate::{ClientError, ConnInfo, Request, RequestRecord, Shared};

#[derive(Debug)]
pub struct H10Conn {
    info: ConnInfo,
}

impl H10Conn {
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        let _ = shared;
        Err(ClientError::Setup("h1.0 not implemented yet".into()))
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

#[derive(Debug)]
pub struct H11Conn {
    info: ConnInfo,
}

impl H11Conn {
    pub async fn connect(shared: Arc<Shared>) -> Result<Self, ClientError> {
        let _ = shared;
        Err(ClientError::Setup("h1.1 not implemented yet".into()))
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
