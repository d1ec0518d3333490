//! Colours: the Okabe-Ito palette (Okabe & Ito, "Color Universal Design",
//! 2008), distinguishable under the common forms of colour blindness, fixed per
//! protocol so a protocol has the same colour in every chart of every run.

use plotters::style::RGBColor;

/// Protocols in display order with their colour. HTTP/3 gets the strongest
/// blue, HTTP/2 the vermillion that contrasts most with it; yellow, the
/// faintest on white, goes to the oldest protocol; black to the raw UDP
/// baseline.
pub const PROTOCOLS: [(&str, RGBColor); 8] = [
    ("h1.0", RGBColor(0xF0, 0xE4, 0x42)),           // yellow
    ("h1.0-tls", RGBColor(0xE6, 0x9F, 0x00)),       // orange
    ("h1.1", RGBColor(0x56, 0xB4, 0xE9)),           // sky blue
    ("h1.1-tls", RGBColor(0x00, 0x9E, 0x73)),       // bluish green
    ("h1.1-pipelined", RGBColor(0xCC, 0x79, 0xA7)), // reddish purple
    ("h2", RGBColor(0xD5, 0x5E, 0x00)),             // vermillion
    ("h3", RGBColor(0x00, 0x72, 0xB2)),             // blue
    ("udp", RGBColor(0x00, 0x00, 0x00)),            // black
];

/// For protocols this build does not know.
pub const OTHER: RGBColor = RGBColor(0x99, 0x99, 0x99);

pub fn protocol_color(protocol: &str) -> RGBColor {
    PROTOCOLS
        .iter()
        .find(|(p, _)| *p == protocol)
        .map(|(_, c)| *c)
        .unwrap_or(OTHER)
}

/// Sort key: known protocols in [`PROTOCOLS`] order, then others by name.
pub fn protocol_rank(protocol: &str) -> (usize, String) {
    let i = PROTOCOLS
        .iter()
        .position(|(p, _)| *p == protocol)
        .unwrap_or(PROTOCOLS.len());
    (i, protocol.to_string())
}

/// `#RRGGBB` for HTML.
pub fn hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_has_its_own_okabe_ito_colour() {
        let mut seen: Vec<String> = PROTOCOLS.iter().map(|(_, c)| hex(*c)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8);
        assert_eq!(hex(protocol_color("h3")), "#0072B2");
        assert_eq!(protocol_color("h9"), OTHER);
        assert!(protocol_rank("h2") < protocol_rank("h3"));
        assert!(protocol_rank("udp") < protocol_rank("zzz"));
    }
}
