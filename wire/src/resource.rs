//! The resources every quicbench HTTP server serves, parsed in one place so that
//! HTTP/1.x, HTTP/2 and HTTP/3 answer byte-for-byte the same thing.

/// Default cap on `/bytes/N` (1 GiB): above it the answer is 413.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Body of `GET /`.
pub const HEALTH_BODY: &[u8] = b"quicbench ok\n";

/// Content type of every `/bytes/N` response.
pub const BYTES_CONTENT_TYPE: &str = "application/octet-stream";

/// What a request path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `GET /`: a tiny health response.
    Health,
    /// `GET /bytes/N`: exactly N bytes of [`crate::pattern`].
    Bytes(u64),
    /// `/bytes/N` with a bad N: 400, with the reason.
    BadRequest(String),
    /// `/bytes/N` with N above the cap: 413.
    TooLarge { asked: String, cap: u64 },
    /// Anything else: 404.
    NotFound,
}

impl Resource {
    /// Parse a request target (path plus optional query, which is ignored).
    pub fn parse(target: &str, cap: u64) -> Resource {
        let path = target.split(['?', '#']).next().unwrap_or("");
        if path == "/" {
            return Resource::Health;
        }
        let Some(rest) = path.strip_prefix("/bytes/") else {
            return Resource::NotFound;
        };
        // `/bytes/N/<tag>`: the same N bytes; the tag tells apart requests of
        // one size, so a static file server can hold one file per request
        // (docs/endpoints.md) and clients name downloads by it.
        let n = match rest.split_once('/') {
            Some((n, tag)) if is_tag(tag) => n,
            Some(_) => return Resource::NotFound,
            None => rest,
        };
        if n.is_empty() {
            return Resource::BadRequest("missing N in /bytes/N".into());
        }
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            return Resource::BadRequest(format!(
                "N in /bytes/N must be a non-negative decimal integer, got {n:?}"
            ));
        }
        match n.parse::<u64>() {
            Ok(v) if v <= cap => Resource::Bytes(v),
            // All digits but beyond u64 or the cap: a number, just too large.
            _ => Resource::TooLarge {
                asked: n.to_string(),
                cap,
            },
        }
    }

    /// HTTP status code of the response.
    pub fn status(&self) -> u16 {
        match self {
            Resource::Health | Resource::Bytes(_) => 200,
            Resource::BadRequest(_) => 400,
            Resource::TooLarge { .. } => 413,
            Resource::NotFound => 404,
        }
    }

    /// Body of an error (or health) response; `None` for `/bytes/N`.
    pub fn small_body(&self) -> Option<Vec<u8>> {
        match self {
            Resource::Health => Some(HEALTH_BODY.to_vec()),
            Resource::Bytes(_) => None,
            Resource::BadRequest(r) => Some(format!("400 bad request: {r}\n").into_bytes()),
            Resource::TooLarge { asked, cap } => {
                Some(format!("413 too large: {asked} bytes asked, cap is {cap}\n").into_bytes())
            }
            Resource::NotFound => Some(b"404 not found\n".to_vec()),
        }
    }
}

/// A request tag of `/bytes/N/<tag>`: 1-64 of `[A-Za-z0-9._-]`, not `.`/`..`.
pub fn is_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 64
        && tag != "."
        && tag != ".."
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The path of the `tag`-th object of `size` bytes: `/bytes/<size>/<tag>`.
pub fn tagged_path(size: u64, tag: &str) -> String {
    format!("/bytes/{size}/{tag}")
}

/// A satisfiable byte range `start..end` (end exclusive) of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Parse a `Range` header value for a body of `len` bytes: `bytes=a-`, `bytes=a-b`
/// or `bytes=-suffix`. `Ok(None)`: no usable range (serve the whole body, as RFC
/// 9110 allows for syntax we do not support, e.g. multiple ranges).
/// `Err(())`: unsatisfiable (416).
#[allow(clippy::result_unit_err)]
pub fn parse_range(value: &str, len: u64) -> Result<Option<ByteRange>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(suffix) = b.parse::<u64>() else {
            return Ok(None);
        };
        if suffix == 0 {
            return Err(());
        }
        ByteRange {
            start: len.saturating_sub(suffix),
            end: len,
        }
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Ok(None);
        };
        let end = if b.is_empty() {
            len
        } else {
            match b.parse::<u64>() {
                Ok(last) if last >= start => last.saturating_add(1).min(len),
                _ => return Ok(None),
            }
        };
        ByteRange { start, end }
    };
    if range.start >= len {
        return Err(());
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let cap = 1000;
        assert_eq!(Resource::parse("/", cap), Resource::Health);
        assert_eq!(Resource::parse("/?x=1", cap), Resource::Health);
        assert_eq!(Resource::parse("/bytes/0", cap), Resource::Bytes(0));
        assert_eq!(Resource::parse("/bytes/1000", cap), Resource::Bytes(1000));
        assert_eq!(
            Resource::parse("/bytes/12?nocache=3", cap),
            Resource::Bytes(12)
        );
        assert_eq!(Resource::parse("/bytes/1001", cap).status(), 413);
        assert_eq!(
            Resource::parse("/bytes/999999999999999999999999", cap).status(),
            413
        );
        for bad in [
            "/bytes/-1",
            "/bytes/abc",
            "/bytes/",
            "/bytes/1e3",
            "/bytes/ 1",
            "/bytes/+5",
        ] {
            assert_eq!(Resource::parse(bad, cap).status(), 400, "{bad}");
        }
        assert_eq!(Resource::parse("/bytes/12/0", cap), Resource::Bytes(12));
        assert_eq!(
            Resource::parse("/bytes/12/a-1.b_c", cap),
            Resource::Bytes(12)
        );
        assert_eq!(
            Resource::parse(&tagged_path(7, "3"), cap),
            Resource::Bytes(7)
        );
        assert_eq!(Resource::parse("/bytes/x/0", cap).status(), 400);
        for nf in ["/bytes/1/", "/bytes/1/..", "/bytes/1/a/b", "/bytes/1/a b"] {
            assert_eq!(Resource::parse(nf, cap), Resource::NotFound, "{nf}");
        }
        assert!(!is_tag(&"x".repeat(65)));
        for nf in ["/bytes", "/x", "", "//"] {
            let r = Resource::parse(nf, cap);
            assert!(matches!(r.status(), 404 | 400), "{nf}: {r:?}");
        }
        assert_eq!(Resource::parse("/nope", cap), Resource::NotFound);
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=10-", 100),
            Ok(Some(ByteRange {
                start: 10,
                end: 100
            }))
        );
        assert_eq!(
            parse_range("bytes=10-19", 100),
            Ok(Some(ByteRange { start: 10, end: 20 }))
        );
        assert_eq!(
            parse_range("bytes=10-1000", 100),
            Ok(Some(ByteRange {
                start: 10,
                end: 100
            }))
        );
        assert_eq!(
            parse_range("bytes=-30", 100),
            Ok(Some(ByteRange {
                start: 70,
                end: 100
            }))
        );
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=x-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=5-2", 100), Ok(None));
    }
}
