//! The HTTP/1.1 pipelining client parses whatever the server sends back
//! (`clients::pipelined::parse::ResponseParser`). It must never panic, never
//! loop without progress, and give the same responses whether the bytes
//! arrive at once or split at arbitrary points (TCP may split anywhere).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicbench_clients::pipelined::parse::{Event, ResponseHead, ResponseParser};

#[derive(Debug, PartialEq)]
enum Seen {
    Head(ResponseHead),
    End,
}

/// Feed `input` in pieces of the given sizes (cycled), as the client does:
/// keep unconsumed bytes, read more on NeedMore. Returns the heads/ends seen,
/// the body bytes, and whether parsing failed (and EOF was not clean).
fn drive(input: &[u8], splits: &[usize], head_every: u8) -> (Vec<Seen>, Vec<u8>, bool) {
    let mut p = ResponseParser::with_max_head(4096);
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0usize;
    let mut split = splits.iter().cycle();
    let (mut seen, mut body) = (Vec::new(), Vec::new());
    let mut responses = 0u32;
    // Every event either consumes a byte, ends a response or asks for input:
    // a bound far above what a correct parser needs catches a stuck loop.
    let budget = 4 * input.len() + 64;
    for _ in 0..budget {
        if p.is_idle() {
            p.set_head_request(head_every != 0 && responses.is_multiple_of(u32::from(head_every)));
        }
        let (used, ev) = match p.advance(&buf) {
            Ok(x) => x,
            Err(_) => {
                assert!(
                    p.advance(b"HTTP/1.1 200 OK\r\n\r\n").is_err(),
                    "errors are sticky"
                );
                return (seen, body, true);
            }
        };
        assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
        match ev {
            Event::NeedMore => {
                if fed == input.len() {
                    buf.drain(..used);
                    return (seen, body, p.eof().is_err());
                }
                let n = (*split.next().unwrap_or(&1)).clamp(1, input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
            Event::Head(h) => {
                assert!(
                    !(100..200).contains(&h.status),
                    "interim responses are skipped"
                );
                assert!(h.head_len <= 4096);
                seen.push(Seen::Head(h));
            }
            Event::Data(d) => {
                assert!(!d.is_empty(), "empty data event");
                body.extend_from_slice(d);
            }
            Event::End => {
                responses += 1;
                seen.push(Seen::End);
            }
        }
        buf.drain(..used);
    }
    panic!("no progress after {budget} events");
}

fuzz_target!(|data: &[u8]| {
    // First bytes: HEAD-request pattern and split sizes; the rest is the stream.
    if data.len() < 3 {
        return;
    }
    let head_every = data[0] % 4;
    let splits: Vec<usize> = data[1..3]
        .iter()
        .map(|&b| usize::from(b % 32) + 1)
        .collect();
    let input = &data[3..];
    let whole = drive(input, &[usize::MAX], head_every);
    let pieces = drive(input, &splits, head_every);
    let bytewise = drive(input, &[1], head_every);
    assert_eq!(whole, pieces, "splits {splits:?} change the result");
    assert_eq!(whole, bytewise, "byte-at-a-time changes the result");
});
