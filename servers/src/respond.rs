//! The one response builder of every HTTP server (HTTP/1.x, HTTP/2, HTTP/3), so
//! each protocol answers the same status, the same header set and the same body
//! bytes for the same request. See docs/servers.md for the exact header set.
//!
//! Protocol-neutral: [`reply`] maps (method, target, Range) to a [`Reply`] (status,
//! headers, body plan); [`PatternChunks`] generates a `/bytes/N` body lazily in
//! [`CHUNK`]-sized pieces (N may be 1 GiB: never allocate it at once); [`Body`]
//! is the same thing as a hyper body (HTTP/1.x, HTTP/2). HTTP/3 iterates
//! [`PatternChunks`] and calls `send_data` per chunk.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use quicbench_wire::resource::{parse_range, ByteRange, Resource, BYTES_CONTENT_TYPE};

use crate::ServerCtx;

/// `Server` header of every response.
pub const SERVER_NAME: &str = "quicbench";
/// Size of each generated body chunk (one `poll_frame` / `send_data`).
pub const CHUNK: usize = 64 * 1024;
const TEXT: &str = "text/plain; charset=utf-8";

/// What a response carries after its head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body (HEAD, or an empty range of nothing).
    Empty,
    /// A small fixed body (health, errors).
    Small(Bytes),
    /// Pattern bytes `start..end` of `/bytes/N`.
    Pattern(ByteRange),
}

impl BodyPlan {
    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            BodyPlan::Empty => 0,
            BodyPlan::Small(b) => b.len() as u64,
            BodyPlan::Pattern(r) => r.end - r.start,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A response: status, the full header set, and the body to send.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: BodyPlan,
}

impl Reply {
    /// A `Response` head with this status and headers (any protocol).
    pub fn head(&self) -> http::Response<()> {
        let mut r = http::Response::new(());
        *r.status_mut() = self.status;
        *r.headers_mut() = self.headers.clone();
        r
    }

    /// A 4xx: counted in `Stats::bad_requests`.
    pub fn is_client_error(&self) -> bool {
        self.status.is_client_error()
    }

    /// Split into a hyper response whose body streams the plan; body bytes are
    /// counted in `ctx.stats.bytes_sent` as they are handed to hyper.
    pub fn into_hyper(self, ctx: Option<Arc<ServerCtx>>) -> http::Response<Body> {
        let head = self.head();
        let (parts, ()) = head.into_parts();
        http::Response::from_parts(parts, Body::new(self.body, ctx))
    }
}

fn base_headers(content_type: &'static str, len: u64) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(6);
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_NAME));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

fn small(status: StatusCode, body: Vec<u8>, head_only: bool) -> Reply {
    let headers = base_headers(TEXT, body.len() as u64);
    Reply {
        status,
        headers,
        body: if head_only {
            BodyPlan::Empty
        } else {
            BodyPlan::Small(Bytes::from(body))
        },
    }
}

/// The answer to `method target` with an optional `Range` header value, under a
/// `/bytes/N` cap of `max_bytes`.
pub fn reply(method: &Method, target: &str, range: Option<&HeaderValue>, max_bytes: u64) -> Reply {
    let head_only = *method == Method::HEAD;
    if *method != Method::GET && !head_only {
        let mut r = small(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("405 method not allowed: {method} (only GET and HEAD)\n").into_bytes(),
            false,
        );
        r.headers
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let res = Resource::parse(target, max_bytes);
    let n = match res {
        Resource::Bytes(n) => n,
        other => {
            let status = StatusCode::from_u16(other.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return small(status, other.small_body().unwrap_or_default(), head_only);
        }
    };
    // A Range header that is not valid UTF-8 is ignored (served whole), like any
    // range syntax we do not support (RFC 9110 §14.2 allows ignoring Range).
    let range = range.and_then(|v| v.to_str().ok());
    let parsed = match range {
        None => Ok(None),
        Some(v) => parse_range(v, n),
    };
    match parsed {
        Err(()) => {
            let mut r = small(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "416 range not satisfiable: {} for a body of {n} bytes\n",
                    range.unwrap_or("")
                )
                .into_bytes(),
                head_only,
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{n}")) {
                r.headers.insert(header::CONTENT_RANGE, v);
            }
            r
        }
        Ok(None) => {
            let mut headers = base_headers(BYTES_CONTENT_TYPE, n);
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            Reply {
                status: StatusCode::OK,
                headers,
                body: if head_only {
                    BodyPlan::Empty
                } else {
                    BodyPlan::Pattern(ByteRange { start: 0, end: n })
                },
            }
        }
        Ok(Some(r)) => {
            let mut headers = base_headers(BYTES_CONTENT_TYPE, r.end - r.start);
            headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{n}", r.start, r.end - 1)) {
                headers.insert(header::CONTENT_RANGE, v);
            }
            Reply {
                status: StatusCode::PARTIAL_CONTENT,
                headers,
                body: if head_only {
                    BodyPlan::Empty
                } else {
                    BodyPlan::Pattern(r)
                },
            }
        }
    }
}

/// 503 for a connection over `max_connections` (HTTP/1.x adds `Connection: close`).
pub fn refused() -> Reply {
    small(
        StatusCode::SERVICE_UNAVAILABLE,
        b"503 service unavailable: too many connections\n".to_vec(),
        false,
    )
}

/// Lazily generated pattern bytes `start..end`, in chunks of at most `CHUNK`
/// bytes aligned to absolute multiples of `CHUNK` (so a range body is cut at the
/// same offsets as a whole one).
#[derive(Debug, Clone)]
pub struct PatternChunks {
    next: u64,
    end: u64,
}

impl PatternChunks {
    pub fn new(r: ByteRange) -> Self {
        PatternChunks {
            next: r.start,
            end: r.end,
        }
    }
    /// Bytes not yet generated.
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.next)
    }
}

impl Iterator for PatternChunks {
    type Item = Bytes;
    fn next(&mut self) -> Option<Bytes> {
        if self.next >= self.end {
            return None;
        }
        let boundary = (self.next / CHUNK as u64 + 1) * CHUNK as u64;
        let stop = boundary.min(self.end);
        let c = quicbench_wire::pattern::chunk(self.next, (stop - self.next) as usize);
        self.next = stop;
        Some(Bytes::from(c))
    }
}

/// A hyper body streaming a [`BodyPlan`] with an exact size hint (so hyper
/// never falls back to chunked encoding: HTTP/1.0 clients could not read it).
#[derive(Debug)]
pub struct Body {
    small: Option<Bytes>,
    pattern: Option<PatternChunks>,
    len: u64,
    ctx: Option<Arc<ServerCtx>>,
}

impl Body {
    pub fn new(plan: BodyPlan, ctx: Option<Arc<ServerCtx>>) -> Self {
        let len = plan.len();
        let (small, pattern) = match plan {
            BodyPlan::Empty => (None, None),
            BodyPlan::Small(b) => (Some(b), None),
            BodyPlan::Pattern(r) => (None, Some(PatternChunks::new(r))),
        };
        Body {
            small,
            pattern,
            len,
            ctx,
        }
    }

    fn count(&self, n: usize) {
        if let Some(ctx) = &self.ctx {
            ctx.stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let next = match this.small.take() {
            Some(b) => Some(b),
            None => this.pattern.as_mut().and_then(Iterator::next),
        };
        match next {
            Some(b) => {
                this.count(b.len());
                this.len -= b.len() as u64;
                Poll::Ready(Some(Ok(hyper::body::Frame::data(b))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.len == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str, range: Option<&str>) -> Reply {
        let h = range.map(|r| HeaderValue::from_str(r).unwrap());
        reply(&Method::GET, target, h.as_ref(), 1 << 20)
    }

    fn hv(r: &Reply, name: header::HeaderName) -> Option<&str> {
        r.headers.get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn bytes_whole_and_ranges() {
        let r = get("/bytes/100000", None);
        assert_eq!(r.status, 200);
        assert_eq!(hv(&r, header::CONTENT_LENGTH), Some("100000"));
        assert_eq!(hv(&r, header::CONTENT_TYPE), Some(BYTES_CONTENT_TYPE));
        assert_eq!(hv(&r, header::CACHE_CONTROL), Some("no-store"));
        assert_eq!(hv(&r, header::SERVER), Some(SERVER_NAME));
        assert_eq!(
            r.body,
            BodyPlan::Pattern(ByteRange {
                start: 0,
                end: 100000
            })
        );

        let r = get("/bytes/100000", Some("bytes=70000-"));
        assert_eq!(r.status, 206);
        assert_eq!(hv(&r, header::CONTENT_LENGTH), Some("30000"));
        assert_eq!(
            hv(&r, header::CONTENT_RANGE),
            Some("bytes 70000-99999/100000")
        );

        let r = get("/bytes/100", Some("bytes=100-"));
        assert_eq!(r.status, 416);
        assert_eq!(hv(&r, header::CONTENT_RANGE), Some("bytes */100"));
        assert_eq!(get("/bytes/0", Some("bytes=0-")).status, 416);
        // Unsupported range syntax: the whole body.
        assert_eq!(get("/bytes/100", Some("bytes=1-2,5-6")).status, 200);
        let r = get("/bytes/0", None);
        assert_eq!((r.status.as_u16(), r.body.len()), (200, 0));
    }

    #[test]
    fn errors_and_methods() {
        assert_eq!(get("/", None).status, 200);
        assert_eq!(get("/bytes/x", None).status, 400);
        assert_eq!(get("/bytes/2000000", None).status, 413);
        assert_eq!(get("/nope", None).status, 404);
        let r = reply(&Method::POST, "/bytes/1", None, 10);
        assert_eq!(r.status, 405);
        assert_eq!(hv(&r, header::ALLOW), Some("GET, HEAD"));
        let r = reply(&Method::HEAD, "/bytes/1000", None, 1 << 20);
        assert_eq!(r.status, 200);
        assert_eq!(hv(&r, header::CONTENT_LENGTH), Some("1000"));
        assert_eq!(r.body, BodyPlan::Empty);
        let r = reply(&Method::HEAD, "/nope", None, 1 << 20);
        assert_eq!(r.body, BodyPlan::Empty);
        assert_ne!(hv(&r, header::CONTENT_LENGTH), Some("0"));
        // Every response carries the same base header names.
        for r in [
            get("/", None),
            get("/x", None),
            get("/bytes/5", None),
            refused(),
        ] {
            for h in [
                header::SERVER,
                header::CONTENT_TYPE,
                header::CONTENT_LENGTH,
                header::CACHE_CONTROL,
            ] {
                assert!(r.headers.contains_key(&h), "{:?} lacks {h}", r.status);
            }
        }
    }

    #[test]
    fn chunks_cover_the_range_exactly_and_verify() {
        for (start, end) in [
            (0u64, 0u64),
            (0, 1),
            (5, 5 + 3 * CHUNK as u64 + 7),
            (CHUNK as u64 - 1, CHUNK as u64 + 1),
        ] {
            let mut v = quicbench_wire::pattern::Verifier::new(start);
            let mut total = 0u64;
            for c in PatternChunks::new(ByteRange { start, end }) {
                assert!(!c.is_empty() && c.len() <= CHUNK);
                v.update(&c);
                total += c.len() as u64;
            }
            assert_eq!(total, end - start);
            assert_eq!(v.first_error(), None);
        }
    }

    #[test]
    fn hyper_body_size_hint_is_exact() {
        use hyper::body::Body as _;
        let b = Body::new(
            BodyPlan::Pattern(ByteRange {
                start: 3,
                end: 200_003,
            }),
            None,
        );
        assert_eq!(b.size_hint().exact(), Some(200_000));
        let b = Body::new(BodyPlan::Empty, None);
        assert!(b.is_end_stream());
    }
}
