//! The UDP probe server and client parse every datagram they receive: the
//! header and the two bodies must never panic, and what parses must write back
//! to the same bytes (the reserved bytes 5..8 are written as zeros).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quicbench_wire::probe::{self, Header, SinkReport, SourceRequest, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::read(data) {
        let mut buf = [0u8; HEADER_LEN];
        h.write(&mut buf).expect("48 bytes hold a header");
        assert_eq!(buf[..5], data[..5], "magic and kind round trip");
        assert_eq!(buf[8..], data[8..HEADER_LEN], "fields round trip");
        assert_eq!(Header::read(&buf), Ok(h));
    }
    if let Ok(r) = SourceRequest::from_datagram(data) {
        assert_eq!(r.to_bytes()[..], data[HEADER_LEN..HEADER_LEN + 12]);
        // The server checks bounds before acting on a request.
        let _ = r.check();
    }
    if let Ok(r) = SinkReport::from_datagram(data) {
        assert_eq!(r.to_bytes()[..], data[HEADER_LEN..HEADER_LEN + 24]);
    }
    if let Some(&b) = data.first() {
        let _ = probe::check_size(usize::from(b) << 8 | data.len());
    }
});
