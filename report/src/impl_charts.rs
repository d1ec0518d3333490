//! The charts of the implementations page, from plain data (no file access):
//! a server × client heatmap and a per-protocol range/dot plot.
//!
//! Written as SVG text rather than with plotters: every cell and dot carries
//! a `<title>` tooltip (a failure's reason, a pair's interval), which
//! plotters' SVG backend cannot emit. Style follows [`crate::charts`]: same
//! font and sizes, title on top, legend strip on the right, a note line at
//! the bottom, protocol colours from [`crate::palette`].

use std::fmt::Write as _;

use plotters::style::RGBColor;

use crate::charts::{axis_label, format_value, ratio_color, FONT, LEGEND_WIDTH, NOTE_HEIGHT};
use crate::html::esc;
use crate::palette::{hex, protocol_color};

/// What one server × client square shows.
#[derive(Debug, Clone, PartialEq)]
pub enum PairKind {
    /// Ok cells: text lines (the median first) and the colour's ratio to the
    /// reference pair (`None`: drawn neutral grey, e.g. no reference).
    Value {
        lines: Vec<String>,
        ratio: Option<f64>,
    },
    /// The pair cannot run this variant: hatched grey, labelled (`n/a`).
    NotApplicable { label: String },
    /// Every cell of the pair failed: a red ✗.
    Failed,
}

/// One square of the heatmap; pairs not in the run have none (blank).
#[derive(Debug, Clone, PartialEq)]
pub struct PairSquare {
    /// Index into the servers (rows).
    pub server: usize,
    /// Index into the clients (columns).
    pub client: usize,
    pub kind: PairKind,
    /// The tooltip: plain text, escaped here.
    pub tooltip: String,
}

/// A server × client heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct PairHeat {
    pub title: String,
    pub note: String,
    pub servers: Vec<String>,
    pub clients: Vec<String>,
    pub squares: Vec<PairSquare>,
    /// What the colour is relative to, short, for the legend ("our pair's median").
    pub reference: String,
}

/// The failure colour of the site's CSS (`.fail`).
const FAIL: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const GREY: RGBColor = RGBColor(0xEE, 0xEE, 0xEE);
const TEXT: &str = "#222222";

fn open_svg(s: &mut String, w: u32, h: u32, title: &str, note: &str) {
    let _ = write!(
        s,
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\" font-family=\"{FONT}\">\n\
<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#FFFFFF\"/>\n"
    );
    text(
        s,
        w.saturating_sub(LEGEND_WIDTH) as f64 / 2.0,
        24.0,
        18,
        "middle",
        title,
    );
    let _ = writeln!(
        s,
        "<text x=\"10\" y=\"{}\" font-size=\"12\" fill=\"#444444\" dominant-baseline=\"middle\">{}</text>",
        h - NOTE_HEIGHT / 2,
        esc(note)
    );
}

fn text(s: &mut String, x: f64, y: f64, size: u32, anchor: &str, t: &str) {
    let _ = writeln!(
        s,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"{anchor}\" dominant-baseline=\"middle\" fill=\"{TEXT}\">{}</text>",
        esc(t)
    );
}

/// Text with a white halo, legible on the darkest fills.
fn halo_text(s: &mut String, x: f64, y: f64, size: u32, bold: bool, t: &str) {
    let _ = writeln!(
        s,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\"{} text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"{TEXT}\" stroke=\"#FFFFFF\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>",
        if bold { " font-weight=\"bold\"" } else { "" },
        esc(t)
    );
}

fn hatch(s: &mut String, x: f64, y: f64, w: f64, h: f64) {
    for i in 1..10 {
        let f = i as f64 / 10.0;
        let _ = writeln!(
            s,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999999\" stroke-width=\"1\"/>",
            x + f * w,
            y + h,
            x,
            y + h - f * h
        );
        let _ = writeln!(
            s,
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999999\" stroke-width=\"1\"/>",
            x + f * w,
            y,
            x + w,
            y + h - f * h
        );
    }
}

/// The heatmap: servers as rows, clients as columns, one square per pair
/// in the run; the value's colour is its ratio to the reference pair
/// ([`ratio_color`]: the scale of the HOL heatmaps).
pub fn pair_heatmap_svg(p: &PairHeat) -> String {
    const LEFT: f64 = 130.0;
    const TOP: f64 = 78.0;
    const CW: f64 = 132.0;
    const CH: f64 = 66.0;
    let nx = p.clients.len().max(1);
    let ny = p.servers.len().max(1);
    let w = (LEFT + CW * nx as f64 + 20.0) as u32 + LEGEND_WIDTH;
    // At least the legend's height, and the note's width.
    let w = w.max(720);
    let h = (TOP + CH * ny as f64 + 30.0) as u32 + NOTE_HEIGHT;
    let h = h.max(360);
    let mut s = String::new();
    open_svg(&mut s, w, h, &p.title, &p.note);
    text(
        &mut s,
        LEFT + CW * nx as f64 / 2.0,
        46.0,
        13,
        "middle",
        "client →",
    );
    for (i, c) in p.clients.iter().enumerate() {
        text(&mut s, LEFT + CW * (i as f64 + 0.5), 64.0, 13, "middle", c);
    }
    text(&mut s, 12.0, 46.0, 13, "start", "server ↓");
    for (i, sv) in p.servers.iter().enumerate() {
        text(
            &mut s,
            LEFT - 8.0,
            TOP + CH * (i as f64 + 0.5),
            13,
            "end",
            sv,
        );
    }
    for q in &p.squares {
        let (x, y) = (LEFT + CW * q.client as f64, TOP + CH * q.server as f64);
        let (cx, cy) = (x + CW / 2.0, y + CH / 2.0);
        let _ = writeln!(s, "<g class=\"pair\"><title>{}</title>", esc(&q.tooltip));
        let fill = match &q.kind {
            PairKind::Value { ratio, .. } => ratio.map(ratio_color).unwrap_or(GREY),
            PairKind::NotApplicable { .. } => GREY,
            PairKind::Failed => RGBColor(0xFB, 0xE3, 0xD6),
        };
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{CW:.1}\" height=\"{CH:.1}\" fill=\"{}\" stroke=\"#FFFFFF\" stroke-width=\"2\"/>",
            hex(fill)
        );
        match &q.kind {
            PairKind::Value { lines, .. } => {
                let n = lines.len() as f64;
                for (i, l) in lines.iter().enumerate() {
                    let ly = cy + (i as f64 - (n - 1.0) / 2.0) * 16.0;
                    halo_text(&mut s, cx, ly, if i == 0 { 15 } else { 11 }, i == 0, l);
                }
            }
            PairKind::NotApplicable { label } => {
                hatch(&mut s, x + 1.0, y + 1.0, CW - 2.0, CH - 2.0);
                halo_text(&mut s, cx, cy, 15, true, label);
            }
            PairKind::Failed => {
                let _ = writeln!(
                    s,
                    "<text x=\"{cx:.1}\" y=\"{cy:.1}\" font-size=\"28\" font-weight=\"bold\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"{}\">✗</text>",
                    hex(FAIL)
                );
            }
        }
        s.push_str("</g>\n");
    }
    // Legend: the colour scale, then the other kinds of square.
    let lx = (w - LEGEND_WIDTH) as f64 + 8.0;
    text(&mut s, lx, 56.0, 12, "start", "colour: median /");
    text(&mut s, lx, 72.0, 12, "start", &p.reference);
    let mut y = 92.0;
    for r in [4.0, 2.0, 1.41, 1.0, 0.71, 0.5, 0.25] {
        let _ = writeln!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"20\" height=\"16\" fill=\"{}\" stroke=\"#CCCCCC\"/>",
            y - 8.0,
            hex(ratio_color(r))
        );
        text(
            &mut s,
            lx + 26.0,
            y,
            12,
            "start",
            &format!("×{}", format_value(r)),
        );
        y += 20.0;
    }
    y += 6.0;
    let _ = writeln!(
        s,
        "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"20\" height=\"16\" fill=\"{}\"/>",
        y - 8.0,
        hex(GREY)
    );
    hatch(&mut s, lx, y - 8.0, 20.0, 16.0);
    text(&mut s, lx + 26.0, y, 12, "start", "n/a: cannot run");
    y += 22.0;
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{y:.1}\" font-size=\"16\" font-weight=\"bold\" text-anchor=\"middle\" dominant-baseline=\"middle\" fill=\"{}\">✗</text>",
        lx + 10.0,
        hex(FAIL)
    );
    text(&mut s, lx + 26.0, y, 12, "start", "failed");
    y += 22.0;
    let _ = writeln!(
        s,
        "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"20\" height=\"16\" fill=\"#FFFFFF\" stroke=\"#CCCCCC\" stroke-dasharray=\"3 2\"/>",
        y - 8.0
    );
    text(&mut s, lx + 26.0, y, 12, "start", "blank: not run");
    y += 22.0;
    text(&mut s, lx, y, 11, "start", "hover: interval, reason");
    s.push_str("</svg>\n");
    s
}

/// One implementation pair's value in the range plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Dot {
    pub median: f64,
    /// The interval of the median; `None`: n too small.
    pub ci: Option<(f64, f64)>,
    /// Our own pair (drawn as a diamond, and its median dashed across).
    pub ours: bool,
    pub tooltip: String,
}

/// One protocol's row: its pairs' medians.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRow {
    pub protocol: String,
    pub dots: Vec<Dot>,
}

/// "Protocol or implementation": one row per protocol, every pair's median
/// as a dot with its interval, the band from the lowest to the highest
/// median, and each protocol's own-pair median dashed across all rows, so
/// the gap between protocols can be held against the spread within one.
pub fn range_svg(title: &str, note: &str, x_desc: &str, rows: &[RangeRow]) -> String {
    const LEFT: f64 = 120.0;
    const TOP: f64 = 70.0;
    const RH: f64 = 46.0;
    const RIGHT: f64 = 70.0;
    let w = crate::charts::WIDTH;
    let plot_w = (w - LEGEND_WIDTH) as f64 - LEFT - RIGHT;
    let ny = rows.len().max(1);
    let h = (TOP + RH * ny as f64 + 54.0) as u32 + NOTE_HEIGHT;
    let top_value = rows
        .iter()
        .flat_map(|r| &r.dots)
        .flat_map(|d| [Some(d.median), d.ci.map(|c| c.1)].into_iter().flatten())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let xmax = if top_value > 0.0 {
        top_value * 1.08
    } else {
        1.0
    };
    let xp = |v: f64| LEFT + (v.clamp(0.0, xmax) / xmax) * plot_w;
    let y_bottom = TOP + RH * ny as f64;
    let mut s = String::new();
    open_svg(&mut s, w, h, title, note);
    // Axis and ticks.
    let _ = writeln!(
        s,
        "<line x1=\"{LEFT:.1}\" y1=\"{y_bottom:.1}\" x2=\"{:.1}\" y2=\"{y_bottom:.1}\" stroke=\"#000000\"/>",
        LEFT + plot_w
    );
    for t in nice_ticks(xmax) {
        let x = xp(t);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{TOP:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#EEEEEE\"/>",
            y_bottom + 5.0
        );
        text(&mut s, x, y_bottom + 16.0, 13, "middle", &axis_label(t));
    }
    text(
        &mut s,
        LEFT + plot_w / 2.0,
        y_bottom + 38.0,
        13,
        "middle",
        x_desc,
    );
    for (i, r) in rows.iter().enumerate() {
        let yc = TOP + RH * (i as f64 + 0.5);
        let c = hex(protocol_color(&r.protocol));
        text(
            &mut s,
            LEFT - 10.0,
            yc,
            13,
            "end",
            &format!("{} ({})", r.protocol, r.dots.len()),
        );
        let meds: Vec<f64> = r.dots.iter().map(|d| d.median).collect();
        let lo = meds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = meds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if lo <= hi {
            let _ = writeln!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{c}\" fill-opacity=\"0.22\"/>",
                xp(lo) - 3.0,
                yc - 7.0,
                xp(hi) - xp(lo) + 6.0
            );
            if r.dots.len() > 1 && lo > 0.0 {
                text(
                    &mut s,
                    LEFT + plot_w + 8.0,
                    yc,
                    12,
                    "start",
                    &format!("{}×", ratio_text(hi / lo)),
                );
            }
        }
        // Dots offset a little per pair so equal medians stay apart.
        let n = r.dots.len() as f64;
        for (j, d) in r.dots.iter().enumerate() {
            let dy = yc + (j as f64 - (n - 1.0) / 2.0) * (10.0 / n.max(1.0)).min(4.0);
            let _ = writeln!(s, "<g class=\"pair\"><title>{}</title>", esc(&d.tooltip));
            if let Some((a, b)) = d.ci {
                let _ = writeln!(
                    s,
                    "<line x1=\"{:.1}\" y1=\"{dy:.1}\" x2=\"{:.1}\" y2=\"{dy:.1}\" stroke=\"{c}\" stroke-width=\"2\"/>",
                    xp(a),
                    xp(b)
                );
            }
            let x = xp(d.median);
            if d.ours {
                let _ = writeln!(
                    s,
                    "<path d=\"M {x:.1} {:.1} L {:.1} {dy:.1} L {x:.1} {:.1} L {:.1} {dy:.1} Z\" fill=\"{c}\" stroke=\"#000000\" stroke-width=\"1.5\"/>",
                    dy - 8.0,
                    x + 8.0,
                    dy + 8.0,
                    x - 8.0
                );
            } else {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{x:.1}\" cy=\"{dy:.1}\" r=\"5\" fill=\"{c}\" stroke=\"#FFFFFF\" stroke-width=\"1\"/>"
                );
            }
            s.push_str("</g>\n");
        }
    }
    // Own-pair medians across every row: the protocol gap at a glance.
    for r in rows {
        if let Some(d) = r.dots.iter().find(|d| d.ours) {
            let x = xp(d.median);
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{y_bottom:.1}\" stroke=\"{}\" stroke-width=\"1.5\" stroke-dasharray=\"5 4\"/>",
                TOP - 6.0,
                hex(protocol_color(&r.protocol))
            );
        }
    }
    let lx = (w - LEGEND_WIDTH) as f64 + 8.0;
    let keys = [
        "◆ our own pair",
        "● another pair",
        "line: its interval",
        "band: range of medians",
        "dashed: own-pair median",
        "n×: highest / lowest",
        "(n): pairs",
    ];
    for (i, k) in keys.iter().enumerate() {
        text(&mut s, lx, 60.0 + 20.0 * i as f64, 12, "start", k);
    }
    s.push_str("</svg>\n");
    s
}

/// A ratio with two significant digits ("2.5", "0.71", "14").
pub fn ratio_text(r: f64) -> String {
    if !r.is_finite() {
        return format!("{r}");
    }
    if r >= 10.0 {
        format!("{r:.0}")
    } else if r >= 1.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

/// Ticks at 1-2-5 steps from 0 to `max`, about five of them.
pub fn nice_ticks(max: f64) -> Vec<f64> {
    if !(max > 0.0 && max.is_finite()) {
        return vec![0.0];
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (0..)
        .map(|i| i as f64 * step)
        .take_while(|t| *t <= max * (1.0 + 1e-9))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_ratios() {
        assert_eq!(nice_ticks(10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(nice_ticks(33.0), vec![0.0, 10.0, 20.0, 30.0]);
        assert_eq!(nice_ticks(0.0), vec![0.0]);
        assert_eq!(ratio_text(2.512), "2.5");
        assert_eq!(ratio_text(0.714), "0.71");
        assert_eq!(ratio_text(14.3), "14");
    }

    #[test]
    fn range_plot_marks_our_pair_and_tooltips() {
        let rows = vec![RangeRow {
            protocol: "h3".into(),
            dots: vec![
                Dot {
                    median: 12.1,
                    ci: Some((11.0, 13.0)),
                    ours: true,
                    tooltip: "quicbench → quicbench <ours>".into(),
                },
                Dot {
                    median: 30.4,
                    ci: None,
                    ours: false,
                    tooltip: "ngtcp2 → quicbench".into(),
                },
            ],
        }];
        let svg = range_svg("t", "n", "ttfb [ms]", &rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("<title>quicbench → quicbench &lt;ours&gt;</title>"));
        assert!(svg.contains("2.5×") && svg.contains("h3 (2)"));
        assert!(
            svg.contains("stroke-dasharray=\"5 4\""),
            "own-pair median line"
        );
        assert!(range_svg("t", "n", "x", &[]).contains("</svg>"));
    }
}
