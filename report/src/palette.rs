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

/// Shade `k` of `n` of a colour, for several lines or areas of one protocol
/// (e.g. two h3 flows): the first is the colour itself, the others step
/// towards white (up to 55% of the way), so every shade stays on the
/// protocol's hue.
pub fn shade(c: RGBColor, k: usize, n: usize) -> RGBColor {
    if n <= 1 || k == 0 {
        return c;
    }
    let t = 0.55 * k.min(n - 1) as f64 / (n - 1) as f64;
    let mix = |v: u8| (v as f64 + (255.0 - v as f64) * t).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
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
        let h3 = protocol_color("h3");
        assert_eq!(shade(h3, 0, 3), h3);
        assert_eq!(shade(h3, 5, 1), h3);
        let (a, b) = (shade(h3, 1, 3), shade(h3, 2, 3));
        assert!(a != h3 && b != a && b.0 > a.0 && b.2 > a.2, "{a:?} {b:?}");
    }
}
