//! A sans-IO HTTP/1.x response parser: bytes in, events out, no I/O, no
//! allocation of bodies. Written by hand because the pipelining client needs to
//! read responses back to back off one connection, and hyper's client offers no
//! pipelining (it waits for each response before writing the next request).
//! `httparse` parses the head; body framing (Content-Length, chunked with
//! extensions and trailers, read-until-close, bodiless statuses) is here.
//!
//! The caller keeps a buffer, calls [`ResponseParser::advance`] with what it
//! holds, drops the `used` bytes the parser consumed, handles the [`Event`], and
//! reads more from the socket on [`Event::NeedMore`]. A response may arrive
//! split at any byte: the parser never consumes a partial head and keeps its
//! place inside chunk framing. Errors are sticky: a connection whose framing is
//! lost cannot be resynchronised.

/// Largest response head accepted by default.
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
/// Most header fields in a response head.
pub const MAX_HEADERS: usize = 64;
/// Longest chunk-size line extension or trailer section accepted.
const MAX_FRAMING: usize = 8 * 1024;

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub status: u16,
    /// Content-Length, if the response framed its body with one.
    pub content_length: Option<u64>,
    /// Body in chunked transfer coding.
    pub chunked: bool,
    /// First byte position of a `Content-Range: bytes a-b/n`.
    pub content_range_start: Option<u64>,
    /// The connection stays open after this response (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with `Connection: keep-alive`, and the body
    /// is not delimited by the close).
    pub keep_alive: bool,
    /// Bytes of the head (status line through the empty line).
    pub head_len: usize,
}

/// What [`ResponseParser::advance`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// Everything usable was consumed: read more input.
    NeedMore,
    /// A final (non-1xx) response head.
    Head(ResponseHead),
    /// Body bytes (a slice of the input).
    Data(&'a [u8]),
    /// The response is complete; the parser is ready for the next one.
    End,
}

/// Why a response could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed response head: {0}")]
    Head(String),
    #[error("response head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("invalid Content-Length: {0}")]
    ContentLength(String),
    #[error("invalid chunked body: {0}")]
    Chunk(&'static str),
    #[error("unsupported response: {0}")]
    Unsupported(String),
    #[error("connection closed {0}")]
    UnexpectedEof(String),
    #[error("parser stopped after an earlier error")]
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size; `digits` so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Skipping a chunk extension up to CR; `len` bytes so far.
    Ext {
        value: u64,
        len: usize,
    },
    /// Saw the CR ending a size line.
    SizeLf {
        value: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// In the trailer section: `line` bytes on the current line, `total` overall.
    Trailer {
        line: usize,
        total: usize,
    },
    /// Saw a CR in the trailer section.
    TrailerLf {
        line: usize,
        total: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed { remaining: u64 },
    Chunked(Chunk),
    UntilClose,
    Failed,
}

/// The parser; one per connection (it carries state between responses).
#[derive(Debug, Clone)]
pub struct ResponseParser {
    state: State,
    head_request: bool,
    max_head: usize,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseParser {
    pub fn new() -> Self {
        Self::with_max_head(DEFAULT_MAX_HEAD)
    }

    pub fn with_max_head(max_head: usize) -> Self {
        ResponseParser {
            state: State::Head,
            head_request: false,
            max_head,
        }
    }

    /// The next response answers a HEAD request (no body whatever the headers say).
    pub fn set_head_request(&mut self, head: bool) {
        self.head_request = head;
    }

    /// Between responses (nothing of the next one consumed yet).
    pub fn is_idle(&self) -> bool {
        self.state == State::Head
    }

    /// Consume from `input` (the caller's unconsumed bytes) and report one event.
    /// Returns `(used, event)`: the caller drops `used` bytes from its buffer
    /// (after handling the event, whose data borrows them).
    pub fn advance<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Event<'a>), ParseError> {
        let r = self.step(input);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// The peer closed the connection (no more input will come). `Ok` when that
    /// ends the current response (a body delimited by the close).
    pub fn eof(&mut self) -> Result<(), ParseError> {
        let r = match self.state {
            State::UntilClose => {
                self.state = State::Head;
                return Ok(());
            }
            State::Head => Err(ParseError::UnexpectedEof(
                "before a complete response head".into(),
            )),
            State::Fixed { remaining } => Err(ParseError::UnexpectedEof(format!(
                "with {remaining} body bytes still due (Content-Length)"
            ))),
            State::Chunked(_) => Err(ParseError::UnexpectedEof("inside a chunked body".into())),
            State::Failed => Err(ParseError::Failed),
        };
        self.state = State::Failed;
        r
    }

    fn step<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Event<'a>), ParseError> {
        let mut off = 0usize;
        loop {
            match self.state {
                State::Failed => return Err(ParseError::Failed),
                State::Head => {
                    let Some((head, len)) = self.parse_head(&input[off..])? else {
                        return Ok((off, Event::NeedMore));
                    };
                    off += len;
                    if (100..200).contains(&head.status) {
                        // Interim response (100 Continue, 103 Early Hints): skip it.
                        continue;
                    }
                    return Ok((off, Event::Head(head)));
                }
                State::Fixed { remaining } => {
                    if remaining == 0 {
                        self.state = State::Head;
                        self.head_request = false;
                        return Ok((off, Event::End));
                    }
                    let avail = &input[off..];
                    if avail.is_empty() {
                        return Ok((off, Event::NeedMore));
                    }
                    let take = avail
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    self.state = State::Fixed {
                        remaining: remaining - take as u64,
                    };
                    return Ok((off + take, Event::Data(&avail[..take])));
                }
                State::UntilClose => {
                    let avail = &input[off..];
                    if avail.is_empty() {
                        return Ok((off, Event::NeedMore));
                    }
                    return Ok((input.len(), Event::Data(avail)));
                }
                State::Chunked(Chunk::Data { remaining }) => {
                    let avail = &input[off..];
                    if avail.is_empty() {
                        return Ok((off, Event::NeedMore));
                    }
                    let take = avail
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    let left = remaining - take as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data { remaining: left }
                    });
                    return Ok((off + take, Event::Data(&avail[..take])));
                }
                State::Chunked(c) => {
                    let Some(&b) = input.get(off) else {
                        return Ok((off, Event::NeedMore));
                    };
                    off += 1;
                    match self.chunk_byte(c, b)? {
                        Some(next) => self.state = State::Chunked(next),
                        None => {
                            self.state = State::Head;
                            self.head_request = false;
                            return Ok((off, Event::End));
                        }
                    }
                }
            }
        }
    }

    /// One byte of chunk framing; `None` when the chunked body is complete.
    fn chunk_byte(&self, c: Chunk, b: u8) -> Result<Option<Chunk>, ParseError> {
        let hex = |b: u8| (b as char).to_digit(16).map(u64::from);
        Ok(Some(match c {
            Chunk::Size { value, digits } => match (hex(b), b) {
                (Some(d), _) => {
                    if digits >= 16 {
                        return Err(ParseError::Chunk("chunk size has more than 16 hex digits"));
                    }
                    Chunk::Size {
                        value: value * 16 + d,
                        digits: digits + 1,
                    }
                }
                (None, _) if digits == 0 => {
                    return Err(ParseError::Chunk("chunk size is not hexadecimal"))
                }
                (None, b'\r') => Chunk::SizeLf { value },
                (None, b';' | b' ' | b'\t') => Chunk::Ext { value, len: 1 },
                _ => return Err(ParseError::Chunk("unexpected byte after the chunk size")),
            },
            Chunk::Ext { value, len } => match b {
                b'\r' => Chunk::SizeLf { value },
                b'\n' => return Err(ParseError::Chunk("bare LF in a chunk extension")),
                _ if len >= MAX_FRAMING => {
                    return Err(ParseError::Chunk("chunk extension too long"))
                }
                _ => Chunk::Ext {
                    value,
                    len: len + 1,
                },
            },
            Chunk::SizeLf { value } => match (b, value) {
                (b'\n', 0) => Chunk::Trailer { line: 0, total: 0 },
                (b'\n', v) => Chunk::Data { remaining: v },
                _ => return Err(ParseError::Chunk("chunk size line not ended by CRLF")),
            },
            // `step` consumes chunk data in bulk and never gets here with it.
            Chunk::Data { .. } => {
                return Err(ParseError::Chunk(
                    "internal: chunk data on the framing path",
                ))
            }
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => {
                    return Err(ParseError::Chunk(
                        "chunk data not followed by CRLF (longer than its size?)",
                    ))
                }
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size {
                    value: 0,
                    digits: 0,
                },
                _ => return Err(ParseError::Chunk("chunk data not followed by CRLF")),
            },
            Chunk::Trailer { line, total } => {
                if total >= MAX_FRAMING {
                    return Err(ParseError::Chunk("trailer section too long"));
                }
                match b {
                    b'\r' => Chunk::TrailerLf {
                        line,
                        total: total + 1,
                    },
                    b'\n' => return Err(ParseError::Chunk("bare LF in the trailer section")),
                    _ => Chunk::Trailer {
                        line: line + 1,
                        total: total + 1,
                    },
                }
            }
            Chunk::TrailerLf { line, total } => match (b, line) {
                (b'\n', 0) => return Ok(None),
                (b'\n', _) => Chunk::Trailer {
                    line: 0,
                    total: total + 1,
                },
                _ => return Err(ParseError::Chunk("trailer line not ended by CRLF")),
            },
        }))
    }

    /// Parse a whole head at the start of `buf`; `None` if incomplete. Sets the
    /// body state for a final response.
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, ParseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() >= self.max_head {
                    return Err(ParseError::HeadTooLarge {
                        limit: self.max_head,
                    });
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ParseError::Head(format!(
                    "more than {MAX_HEADERS} header fields"
                )));
            }
            Err(e) => return Err(ParseError::Head(e.to_string())),
        };
        if len > self.max_head {
            return Err(ParseError::HeadTooLarge {
                limit: self.max_head,
            });
        }
        let (Some(version), Some(status)) = (resp.version, resp.code) else {
            return Err(ParseError::Head("incomplete status line".into()));
        };
        let mut content_length: Option<u64> = None;
        let mut te: Option<bool> = None; // Some(chunked is the final coding)
        let mut conn_close = false;
        let mut conn_keep_alive = false;
        let mut content_range_start = None;
        for h in resp.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value)
                    .map_err(|_| ParseError::ContentLength("not ASCII".into()))?;
                for part in v.split(',') {
                    let part = part.trim();
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(ParseError::ContentLength(format!("{v:?}")));
                    }
                    let n: u64 = part
                        .parse()
                        .map_err(|_| ParseError::ContentLength(format!("{v:?} overflows")))?;
                    if content_length.is_some_and(|c| c != n) {
                        return Err(ParseError::ContentLength(format!(
                            "conflicting values ({v:?})"
                        )));
                    }
                    content_length = Some(n);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                let v = String::from_utf8_lossy(h.value);
                let last = v
                    .split(',')
                    .map(str::trim)
                    .rfind(|s| !s.is_empty())
                    .unwrap_or("");
                te = Some(last.eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(h.value);
                for t in v.split(',').map(str::trim) {
                    conn_close |= t.eq_ignore_ascii_case("close");
                    conn_keep_alive |= t.eq_ignore_ascii_case("keep-alive");
                }
            } else if name.eq_ignore_ascii_case("content-range") {
                content_range_start = parse_content_range_start(h.value);
            }
        }
        if status == 101 {
            return Err(ParseError::Unsupported("101 Switching Protocols".into()));
        }
        let mut keep_alive = if version == 1 {
            !conn_close
        } else {
            conn_keep_alive && !conn_close
        };
        let head = |keep_alive, content_length, chunked| ResponseHead {
            version,
            status,
            content_length,
            chunked,
            content_range_start,
            keep_alive,
            head_len: len,
        };
        if (100..200).contains(&status) {
            // Interim: no body, the final response follows.
            return Ok(Some((head(keep_alive, None, false), len)));
        }
        // RFC 9112 §6.3: the body length, in this order.
        let no_body = self.head_request || status == 204 || status == 304;
        let (next, chunked) = if no_body {
            (State::Fixed { remaining: 0 }, false)
        } else if let Some(chunked) = te {
            // Transfer-Encoding overrides Content-Length; a final coding other
            // than chunked is delimited by the close.
            if chunked {
                (
                    State::Chunked(Chunk::Size {
                        value: 0,
                        digits: 0,
                    }),
                    true,
                )
            } else {
                keep_alive = false;
                (State::UntilClose, false)
            }
        } else if let Some(n) = content_length {
            (State::Fixed { remaining: n }, false)
        } else {
            keep_alive = false;
            (State::UntilClose, false)
        };
        if te.is_some() && content_length.is_some() {
            // A smuggling-shaped message: do not trust the rest of the connection.
            keep_alive = false;
        }
        self.state = next;
        let cl = if te.is_some() { None } else { content_length };
        Ok(Some((head(keep_alive, cl, chunked), len)))
    }
}

/// `bytes a-b/n` → a.
fn parse_content_range_start(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let rest = s.strip_prefix("bytes")?.trim_start();
    let (a, _) = rest.split_once('-')?;
    a.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a response stream parses to, collected.
    #[derive(Debug, Default, PartialEq, Eq, Clone)]
    struct Collected {
        heads: Vec<ResponseHead>,
        bodies: Vec<Vec<u8>>,
        ends: usize,
        error: Option<ParseError>,
        eof: Option<Result<(), ParseError>>,
    }

    /// Feed `parts` one after the other (like reads from a socket), then EOF.
    fn run(parts: &[&[u8]], head_requests: &[bool]) -> Collected {
        let mut p = ResponseParser::new();
        let mut c = Collected::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut resp_i = 0;
        p.set_head_request(head_requests.first().copied().unwrap_or(false));
        let mut feed = |buf: &mut Vec<u8>, p: &mut ResponseParser, c: &mut Collected| -> bool {
            loop {
                let (used, ev) = match p.advance(buf) {
                    Ok(x) => x,
                    Err(e) => {
                        c.error = Some(e);
                        return false;
                    }
                };
                let need = ev == Event::NeedMore;
                match ev {
                    Event::Head(h) => {
                        c.heads.push(h);
                        c.bodies.push(Vec::new());
                    }
                    Event::Data(d) => {
                        assert!(!d.is_empty(), "empty Data event");
                        c.bodies
                            .last_mut()
                            .expect("data before head")
                            .extend_from_slice(d);
                    }
                    Event::End => {
                        c.ends += 1;
                        resp_i += 1;
                        p.set_head_request(head_requests.get(resp_i).copied().unwrap_or(false));
                    }
                    Event::NeedMore => {}
                }
                assert!(used <= buf.len());
                buf.drain(..used);
                if need {
                    return true;
                }
            }
        };
        for part in parts {
            buf.extend_from_slice(part);
            if !feed(&mut buf, &mut p, &mut c) {
                return c;
            }
        }
        let eof = p.eof();
        if eof.is_ok() {
            c.ends += 1;
        }
        c.eof = Some(eof);
        c
    }

    const STREAM: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-12/100\r\ncontent-length: 3\r\n\r\nabc\
HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n4;ext=1\r\nwiki\r\n5 \r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n\
HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n\
HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok\
HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end";

    // The 5th final response answers a HEAD request: its Content-Length is not a body.
    const HEADS: &[bool] = &[false, false, false, false, true];

    fn expected() -> Collected {
        let c = run(&[STREAM], HEADS);
        assert_eq!(c.error, None);
        assert_eq!(c.eof, Some(Ok(())));
        let statuses: Vec<u16> = c.heads.iter().map(|h| h.status).collect();
        assert_eq!(statuses, [200, 206, 200, 204, 200, 200, 200, 200]);
        let bodies: Vec<&[u8]> = c.bodies.iter().map(|b| b.as_slice()).collect();
        assert_eq!(
            bodies,
            [
                &b"hello"[..],
                b"abc",
                b"wikipedia in\r\n\r\nchunks.",
                b"",
                b"",
                b"",
                b"ok",
                b"until the end"
            ]
        );
        assert_eq!(c.ends, 8);
        assert_eq!(c.heads[1].content_range_start, Some(10));
        assert!(c.heads[2].chunked && c.heads[2].content_length.is_none());
        assert!(c.heads[6].keep_alive && c.heads[6].version == 0);
        assert!(!c.heads[7].keep_alive);
        c
    }

    #[test]
    fn whole_stream() {
        expected();
    }

    #[test]
    fn split_at_every_byte_into_two() {
        let want = expected();
        for i in 0..=STREAM.len() {
            let got = run(&[&STREAM[..i], &STREAM[i..]], HEADS);
            assert_eq!(got, want, "split at {i}");
        }
    }

    #[test]
    fn split_at_every_pair_of_bytes_into_three() {
        let want = expected();
        // Every (i, j) split of the first 260 bytes (the chunked response's framing
        // is there) and a stride over the rest keeps this under a second.
        for i in 0..=STREAM.len() {
            for j in (i..=STREAM.len()).step_by(if i < 260 { 1 } else { 7 }) {
                let got = run(&[&STREAM[..i], &STREAM[i..j], &STREAM[j..]], HEADS);
                assert_eq!(got, want, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let want = expected();
        let parts: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(run(&parts, HEADS), want);
    }

    #[test]
    fn random_splits_seeded() {
        let want = expected();
        let mut x: u64 = 0x5eed;
        for _ in 0..2000 {
            let mut parts = Vec::new();
            let mut i = 0;
            while i < STREAM.len() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let n = 1 + (x % 40) as usize;
                let j = (i + n).min(STREAM.len());
                parts.push(&STREAM[i..j]);
                i = j;
            }
            assert_eq!(run(&parts, HEADS), want);
        }
    }

    fn err_of(input: &[u8]) -> ParseError {
        let c = run(&[input], &[]);
        match (c.error, c.eof) {
            (Some(e), _) => e,
            (None, Some(Err(e))) => e,
            other => panic!(
                "no error for {:?}: {other:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    #[test]
    fn bad_input_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"garbage\r\n\r\n", "malformed"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed"),
            (b"HTTP/2.0 200 OK\r\n\r\n", "malformed"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                "conflicting",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                "overflows",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "hexadecimal",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
                "16 hex",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                "CRLF",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nab",
                "after the chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n",
                "bare LF",
            ),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "5 body bytes still due",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
                "before a complete",
            ),
            (b"", "before a complete"),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                "chunked body",
            ),
        ];
        for (input, needle) in cases {
            let e = err_of(input).to_string();
            assert!(
                e.contains(needle),
                "{:?}: {e}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn oversized_head_and_too_many_headers() {
        let mut p = ResponseParser::with_max_head(100);
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', 200));
        assert!(matches!(
            p.advance(&big),
            Err(ParseError::HeadTooLarge { limit: 100 })
        ));
        // Sticky.
        assert_eq!(
            p.advance(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(ParseError::Failed)
        );
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..MAX_HEADERS + 1 {
            many.extend(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        let e = ResponseParser::new().advance(&many).unwrap_err();
        assert!(e.to_string().contains("header fields"), "{e}");
    }

    #[test]
    fn keep_alive_rules() {
        let head = |s: &[u8]| match ResponseParser::new().advance(s) {
            Ok((_, Event::Head(h))) => h,
            other => panic!("{other:?}"),
        };
        assert!(head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            !head(b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(!head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
                .keep_alive
        );
        assert!(
            !head(b"HTTP/1.1 200 OK\r\n\r\n").keep_alive,
            "close-delimited"
        );
        let h = head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.chunked && h.content_length.is_none() && !h.keep_alive);
        assert_eq!(parse_content_range_start(b"bytes 5-9/10"), Some(5));
        assert_eq!(parse_content_range_start(b"bytes */10"), None);
    }

    #[test]
    fn large_body_is_streamed_not_buffered() {
        let mut p = ResponseParser::new();
        let (used, ev) = p
            .advance(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
            .unwrap();
        assert!(matches!(ev, Event::Head(_)));
        assert!(used > 0);
        let block = vec![7u8; 1 << 16];
        let mut total = 0u64;
        while total < 1 << 30 {
            match p.advance(&block).unwrap() {
                (n, Event::Data(d)) => {
                    assert_eq!(n, d.len());
                    total += n as u64;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(p.advance(&block).unwrap(), (0, Event::End));
        assert!(p.is_idle());
    }

    #[test]
    fn never_panics_on_random_bytes() {
        // Seeded xorshift: random garbage and mutated valid streams.
        let mut x: u64 = 0xC0FFEE;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut input: Vec<u8> = if round % 2 == 0 {
                (0..(next() % 300)).map(|_| next() as u8).collect()
            } else {
                STREAM.to_vec()
            };
            // Mutate a few bytes, biased towards framing characters.
            for _ in 0..(next() % 6) {
                if input.is_empty() {
                    break;
                }
                let i = (next() as usize) % input.len();
                input[i] =
                    [b'\r', b'\n', b'0', b'f', b':', b' ', next() as u8][(next() % 7) as usize];
            }
            let cut = (next() as usize) % (input.len() + 1);
            let _ = run(&[&input[..cut], &input[cut..]], &[]);
        }
    }
}
