//! SVG charts drawn with plotters, from plain data (no file access).
//!
//! Every chart has a title, axis labels with units, a legend in a strip right
//! of the plot (never over the data) and a note line at the bottom that says
//! which link(s) and how many samples it shows. Colours come from
//! [`crate::palette`]: fixed per protocol across every chart.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::palette::protocol_color;

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 480;
pub(crate) const FONT: &str = "sans-serif";
pub(crate) const LEGEND_WIDTH: u32 = 170;
pub(crate) const NOTE_HEIGHT: u32 = 22;

/// A chart failed to draw (plotters' error, with the chart's title).
#[derive(Debug, thiserror::Error)]
#[error("chart {what:?}: {reason}")]
pub struct ChartError {
    pub what: String,
    pub reason: String,
}

fn chart_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> ChartError + '_ {
    move |e| ChartError {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

/// Title and bottom note of a chart.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub title: &'a str,
    /// Link spec(s) and n, drawn at the bottom.
    pub note: &'a str,
}

/// One bar: a protocol's median in one group, its CI and an optional theory
/// value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub protocol: String,
    pub value: f64,
    /// The CI of the median; `None` draws no whisker (e.g. a fraction).
    pub ci: Option<(f64, f64)>,
    /// False for a [min, max] interval of fewer than 6 samples: drawn grey.
    pub ci_exact: bool,
    pub theory: Option<f64>,
}

/// Bars side by side under one x label (a link, a variant...).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    pub bars: Vec<Bar>,
}

/// One line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
    /// `(x, low, high)`: a translucent band (e.g. a 95% CI).
    pub band: Vec<(f64, f64, f64)>,
    /// Draw a marker at every point (for sparse lines).
    pub markers: bool,
}

impl Series {
    /// A plain line in the protocol's colour.
    pub fn protocol(protocol: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: protocol.to_string(),
            color: protocol_color(protocol),
            points,
            band: Vec::new(),
            markers: false,
        }
    }
}

/// A line chart: axes, series, vertical marks.
#[derive(Debug, Clone, Default)]
pub struct LineChart {
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<Series>,
    /// Vertical dashed lines with a label (e.g. the migration event).
    pub vlines: Vec<(f64, String)>,
    /// Logarithmic x axis (latency CDFs).
    pub x_log: bool,
    /// Fixed y range (e.g. 0..1 for a CDF).
    pub y_range: Option<(f64, f64)>,
    /// Tick labels of the x axis at these values (e.g. loss rates), instead
    /// of the automatic ones.
    pub x_ticks: Option<Vec<(f64, String)>>,
}

/// Axis labels: at most 4 significant digits, SI suffix from 10⁴ up (so
/// 1000000 reads "1M"), no trailing ".0".
pub fn axis_label(v: f64) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    let s = if s == "-0" { "0" } else { s };
    format!("{s}{suffix}")
}

/// A bar's value as printed above it: 3 significant digits.
pub fn format_value(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if a >= 1e4 {
        return axis_label(v);
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

/// A legend entry.
enum Key {
    Box(String, RGBColor),
    Line(String, RGBColor, u32),
    Dashed(String, RGBColor),
    Hatch(String),
    Text(String),
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    keys: &[Key],
    what: &str,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let err = chart_err(what);
    let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, k) in keys.iter().enumerate() {
        let y = 60 + 22 * i as i32;
        match k {
            Key::Box(label, c) => {
                area.draw(&Rectangle::new([(8, y - 7), (24, y + 7)], c.filled()))
                    .map_err(&err)?;
                area.draw(&Text::new(label.clone(), (32, y), style.clone()))
                    .map_err(&err)?;
            }
            Key::Line(label, c, w) => {
                area.draw(&PathElement::new(vec![(6, y), (26, y)], c.stroke_width(*w)))
                    .map_err(&err)?;
                area.draw(&Text::new(label.clone(), (32, y), style.clone()))
                    .map_err(&err)?;
            }
            Key::Dashed(label, c) => {
                for x in [6, 13, 20] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 5, y)],
                        c.stroke_width(1),
                    ))
                    .map_err(&err)?;
                }
                area.draw(&Text::new(label.clone(), (32, y), style.clone()))
                    .map_err(&err)?;
            }
            Key::Hatch(label) => {
                area.draw(&Rectangle::new([(8, y - 7), (24, y + 7)], BLACK))
                    .map_err(&err)?;
                area.draw(&PathElement::new(
                    vec![(8, y + 7), (24, y - 7)],
                    BLACK.stroke_width(1),
                ))
                .map_err(&err)?;
                area.draw(&Text::new(label.clone(), (32, y), style.clone()))
                    .map_err(&err)?;
            }
            Key::Text(label) => {
                area.draw(&Text::new(label.clone(), (8, y), style.clone()))
                    .map_err(&err)?;
            }
        }
    }
    Ok(())
}

/// The canvas of every chart: white background, the note at the bottom, the
/// plot area and the legend strip. `draw` gets (plot, legend).
fn canvas<F>(frame: Frame, width: u32, height: u32, draw: F) -> Result<String, ChartError>
where
    F: FnOnce(
        &DrawingArea<SVGBackend, Shift>,
        &DrawingArea<SVGBackend, Shift>,
    ) -> Result<(), ChartError>,
{
    let err = chart_err(frame.title);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let (main, note) = root.split_vertically(height - NOTE_HEIGHT);
        let (plot, legend) = main.split_horizontally(width - LEGEND_WIDTH);
        let style = TextStyle::from((FONT, 12).into_font())
            .color(&RGBColor(0x44, 0x44, 0x44))
            .pos(Pos::new(HPos::Left, VPos::Center));
        note.draw(&Text::new(
            frame.note.to_string(),
            (10, NOTE_HEIGHT as i32 / 2),
            style,
        ))
        .map_err(&err)?;
        draw(&plot, &legend)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

/// A vertical axis that holds every value with some headroom (and a sane one
/// when everything is 0).
fn y_max(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
    if m > 0.0 {
        m * 1.15
    } else {
        1.0
    }
}

/// Grouped bars: one group per x label, one bar per protocol (the order and
/// colours of `protocols`), whiskers for the CI, a black tick for theory.
/// The chart widens with the number of bars.
pub fn grouped_bars_svg(
    frame: Frame,
    x_desc: &str,
    y_desc: &str,
    protocols: &[String],
    groups: &[Group],
) -> Result<String, ChartError> {
    let nbars: usize = groups.iter().map(|g| g.bars.len()).sum();
    let width = WIDTH.max(LEGEND_WIDTH + 120 + 36 * nbars as u32).min(2400);
    canvas(frame, width, HEIGHT, |plot, legend| {
        let keys = draw_grouped_bars(plot, frame.title, x_desc, y_desc, protocols, groups)?;
        draw_legend(legend, &keys, frame.title)
    })
}

fn draw_grouped_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    protocols: &[String],
    groups: &[Group],
) -> Result<Vec<Key>, ChartError>
where
    DB::ErrorType: 'static,
{
    let err = chart_err(title);
    let mut keys = Vec::new();
    let all = || groups.iter().flat_map(|g| g.bars.iter());
    // The axis holds every CI, unless a few wide ones would squash the bars:
    // then it stops at 2.5× the largest bar or theory and those whiskers are
    // cut with an arrow and their upper bound printed.
    let full = y_max(all().flat_map(|b| {
        [Some(b.value), b.ci.map(|c| c.1), b.theory]
            .into_iter()
            .flatten()
    }));
    let bars_top = y_max(all().flat_map(|b| [Some(b.value), b.theory].into_iter().flatten()));
    let ymax = full.min(bars_top * 2.5);
    let n = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..n, 0.0..ymax)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|v| axis_label(*v))
        .light_line_style(WHITE)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 13))
        .draw()
        .map_err(&err)?;

    let slots = protocols.len().max(1) as f64;
    let width = 0.8 / slots;
    let x_of = |g: usize, p: usize| g as f64 + 0.1 + p as f64 * width;

    let label_style =
        TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    chart
        .draw_series(groups.iter().enumerate().map(|(i, g)| {
            EmptyElement::at((i as f64 + 0.5, 0.0))
                + Text::new(g.label.clone(), (0, 6), label_style.clone())
        }))
        .map_err(&err)?;

    for (pi, proto) in protocols.iter().enumerate() {
        let color = protocol_color(proto);
        let bars: Vec<(usize, &Bar)> = groups
            .iter()
            .enumerate()
            .filter_map(|(gi, g)| {
                g.bars
                    .iter()
                    .find(|b| &b.protocol == proto)
                    .map(|b| (gi, b))
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        chart
            .draw_series(bars.iter().map(|(gi, b)| {
                let x0 = x_of(*gi, pi);
                Rectangle::new(
                    [(x0 + width * 0.05, 0.0), (x0 + width * 0.95, b.value)],
                    color.filled(),
                )
            }))
            .map_err(&err)?;
        keys.push(Key::Box(proto.clone(), color));
        // The value above each bar (so a zero is visible too), above the
        // whisker when there is one.
        let value_style =
            TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series(bars.iter().map(|(gi, b)| {
                let top = match b.ci {
                    Some((_, hi)) if hi > ymax => b.value,
                    Some((_, hi)) => hi.max(b.value),
                    None => b.value,
                };
                EmptyElement::at((x_of(*gi, pi) + width / 2.0, top))
                    + Text::new(format_value(b.value), (0, -3), value_style.clone())
            }))
            .map_err(&err)?;
        // Whiskers: stem and caps.
        for (gi, b) in &bars {
            let Some((lo, hi_full)) = b.ci else { continue };
            let hi = hi_full.min(ymax);
            let xc = x_of(*gi, pi) + width / 2.0;
            if hi_full > ymax {
                let st =
                    TextStyle::from((FONT, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at((xc, ymax))
                            + Text::new(format!("↑{}", format_value(hi_full)), (3, 2), st),
                    ))
                    .map_err(&err)?;
            }
            let cap = width * 0.2;
            let style = if b.ci_exact {
                BLACK.stroke_width(1)
            } else {
                RGBColor(0x88, 0x88, 0x88).stroke_width(1)
            };
            // A white halo under the whisker keeps it visible on dark bars.
            for st in [WHITE.stroke_width(3), style] {
                chart
                    .draw_series([
                        PathElement::new(vec![(xc, lo), (xc, hi)], st),
                        PathElement::new(vec![(xc - cap, lo), (xc + cap, lo)], st),
                        PathElement::new(vec![(xc - cap, hi), (xc + cap, hi)], st),
                    ])
                    .map_err(&err)?;
            }
        }
    }
    // Theory marks last, over the bars.
    let marks: Vec<(f64, f64, f64)> = groups
        .iter()
        .enumerate()
        .flat_map(|(gi, g)| {
            protocols.iter().enumerate().filter_map(move |(pi, p)| {
                let b = g.bars.iter().find(|b| &b.protocol == p)?;
                let t = b.theory?;
                let x0 = x_of(gi, pi);
                Some((x0, x0 + width, t))
            })
        })
        .collect();
    if !marks.is_empty() {
        for style in [WHITE.stroke_width(5), BLACK.stroke_width(3)] {
            chart
                .draw_series(
                    marks
                        .iter()
                        .map(|&(x0, x1, t)| PathElement::new(vec![(x0, t), (x1, t)], style)),
                )
                .map_err(&err)?;
        }
        keys.push(Key::Line("theoretical min.".into(), BLACK, 3));
    }
    if groups.iter().flat_map(|g| &g.bars).any(|b| b.ci.is_some()) {
        keys.push(Key::Text("whisker: 95% CI".into()));
    }
    Ok(keys)
}

/// Lines (one per series) with optional CI bands, markers and vertical marks.
pub fn lines_svg(frame: Frame, spec: &LineChart) -> Result<String, ChartError> {
    canvas(frame, WIDTH, HEIGHT, |plot, legend| {
        let keys = if spec.x_log {
            draw_lines_log(plot, frame.title, spec)?
        } else {
            draw_lines_linear(plot, frame.title, spec)?
        };
        draw_legend(legend, &keys, frame.title)
    })
}

fn x_extent(spec: &LineChart) -> (f64, f64) {
    let xs = spec
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(spec.vlines.iter().map(|v| v.0))
        .filter(|v| v.is_finite());
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi)
    }
}

fn y_extent(spec: &LineChart) -> (f64, f64) {
    if let Some(r) = spec.y_range {
        return r;
    }
    let top = y_max(spec.series.iter().flat_map(|s| {
        s.points
            .iter()
            .map(|p| p.1)
            .chain(s.band.iter().map(|b| b.2))
    }));
    (0.0, top)
}

fn draw_lines_linear<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    spec: &LineChart,
) -> Result<Vec<Key>, ChartError>
where
    DB::ErrorType: 'static,
{
    let err = chart_err(title);
    let (x0, x1) = x_extent(spec);
    let x0 = x0.min(0.0);
    let pad = ((x1 - x0) * 0.03).max(1e-9);
    let (x0, x1) = if spec.x_ticks.is_some() {
        (x0 - pad, x1 + pad)
    } else {
        (x0, x1.max(x0 + 1e-9))
    };
    let (y0, y1) = y_extent(spec);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(&err)?;
    let ticks = spec.x_ticks.clone();
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(spec.x_desc.as_str())
        .y_desc(spec.y_desc.as_str())
        .y_label_formatter(&|v| axis_label(*v))
        .light_line_style(WHITE)
        .label_style((FONT, 13));
    let fmt_auto = |v: &f64| axis_label(*v);
    let fmt_ticks = |v: &f64| {
        ticks
            .as_ref()
            .and_then(|t| {
                t.iter()
                    .find(|(x, _)| (x - v).abs() <= pad * 0.5)
                    .map(|(_, l)| l.clone())
            })
            .unwrap_or_default()
    };
    if spec.x_ticks.is_some() {
        mesh.x_label_formatter(&fmt_ticks)
            .x_labels(60)
            .disable_x_mesh();
    } else {
        mesh.x_label_formatter(&fmt_auto);
    }
    mesh.draw().map_err(&err)?;
    let mut keys = Vec::new();
    for s in &spec.series {
        if s.band.len() >= 2 {
            let mut poly: Vec<(f64, f64)> = s.band.iter().map(|b| (b.0, b.2)).collect();
            poly.extend(s.band.iter().rev().map(|b| (b.0, b.1)));
            chart
                .draw_series(std::iter::once(Polygon::new(poly, s.color.mix(0.18))))
                .map_err(&err)?;
        }
        // CI bars at each point too, so a band of one point is visible.
        chart
            .draw_series(s.band.iter().map(|&(x, lo, hi)| {
                PathElement::new(vec![(x, lo), (x, hi)], s.color.mix(0.6).stroke_width(2))
            }))
            .map_err(&err)?;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                s.color.stroke_width(2),
            ))
            .map_err(&err)?;
        if s.markers {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&p| Circle::new(p, 4, s.color.filled())),
                )
                .map_err(&err)?;
        }
        keys.push(Key::Line(s.label.clone(), s.color, 2));
    }
    for (x, label) in &spec.vlines {
        let dash = (0..40).map(|i| {
            let a = y0 + (y1 - y0) * i as f64 / 40.0;
            let b = y0 + (y1 - y0) * (i as f64 + 0.5) / 40.0;
            PathElement::new(vec![(*x, a), (*x, b)], BLACK.stroke_width(2))
        });
        chart.draw_series(dash).map_err(&err)?;
        let st = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((*x, y1)) + Text::new(label.clone(), (4, 4), st),
            ))
            .map_err(&err)?;
    }
    if !spec.vlines.is_empty() {
        keys.push(Key::Line("event (dashed)".into(), BLACK, 2));
    }
    if spec.series.iter().any(|s| !s.band.is_empty()) {
        keys.push(Key::Text("band: 95% CI".into()));
    }
    Ok(keys)
}

fn draw_lines_log<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    spec: &LineChart,
) -> Result<Vec<Key>, ChartError>
where
    DB::ErrorType: 'static,
{
    let err = chart_err(title);
    let pos = spec
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = pos.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    let (lo, hi) = if lo > hi { (1.0, 10.0) } else { (lo, hi) };
    let (lo, hi) = (lo * 0.9, (hi * 1.1).max(lo * 2.0));
    let (y0, y1) = y_extent(spec);
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (lo..hi).log_scale().with_key_points(log_ticks(lo, hi)),
            y0..y1,
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc(spec.x_desc.as_str())
        .y_desc(spec.y_desc.as_str())
        .x_label_formatter(&|v| axis_label(*v))
        .y_label_formatter(&|v| axis_label(*v))
        .light_line_style(WHITE)
        .label_style((FONT, 13))
        .draw()
        .map_err(&err)?;
    let mut keys = Vec::new();
    for s in &spec.series {
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied().filter(|p| p.0 > 0.0),
                s.color.stroke_width(2),
            ))
            .map_err(&err)?;
        keys.push(Key::Line(s.label.clone(), s.color, 2));
    }
    Ok(keys)
}

/// Tick values 1-2-5 per decade within `[lo, hi]`: plotters' own log ticks
/// are the powers of ten only, which leaves latency CDFs (mostly 10–100 ms)
/// with one or two labels.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && lo.is_finite() && hi.is_finite()) {
        return vec![];
    }
    let mut out = vec![];
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

/// One cell of a heatmap.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatCell {
    pub x: usize,
    pub y: usize,
    /// The ratio shown (1 = equal); `None`: no data.
    pub ratio: Option<f64>,
    /// False: the difference is not significant (the cell is hatched).
    pub significant: bool,
}

/// Diverging colour for a ratio: blue (< 1, the first protocol better) –
/// white (1) – vermillion (> 1), saturating at ×4 / ÷4 (colour-blind safe).
pub fn ratio_color(ratio: f64) -> RGBColor {
    let t = (ratio.max(1e-9).log2() / 2.0).clamp(-1.0, 1.0);
    let (end, t) = if t < 0.0 {
        ((0x00, 0x72, 0xB2), -t)
    } else {
        ((0xD5, 0x5E, 0x00), t)
    };
    let mix = |e: u8| (255.0 + (e as f64 - 255.0) * t).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// A heatmap of ratios over `x_labels` × `y_labels`; each cell shows its
/// value, non-significant cells are hatched.
pub fn heatmap_svg(
    frame: Frame,
    x_desc: &str,
    y_desc: &str,
    x_labels: &[String],
    y_labels: &[String],
    cells: &[HeatCell],
    legend_what: &str,
) -> Result<String, ChartError> {
    let err = chart_err(frame.title);
    let nx = x_labels.len().max(1);
    let ny = y_labels.len().max(1);
    canvas(frame, WIDTH, HEIGHT, |plot, legend| {
        let mut chart = ChartBuilder::on(plot)
            .caption(frame.title, (FONT, 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..nx as f64, 0.0..ny as f64)
            .map_err(&err)?;
        let xl = |v: &f64| {
            let i = v.floor() as usize;
            if (v - i as f64 - 0.5).abs() < 0.01 {
                x_labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        let yl = |v: &f64| {
            let i = v.floor() as usize;
            if (v - i as f64 - 0.5).abs() < 0.01 {
                y_labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nx * 2 + 1)
            .y_labels(ny * 2 + 1)
            .x_label_formatter(&xl)
            .y_label_formatter(&yl)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 13))
            .draw()
            .map_err(&err)?;
        let grey = RGBColor(0xEE, 0xEE, 0xEE);
        for c in cells {
            let (x0, y0) = (c.x as f64, c.y as f64);
            let fill = c.ratio.map(ratio_color).unwrap_or(grey);
            chart
                .draw_series([
                    Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], fill.filled()),
                    Rectangle::new([(x0, y0), (x0 + 1.0, y0 + 1.0)], WHITE.stroke_width(2)),
                ])
                .map_err(&err)?;
            if c.ratio.is_some() && !c.significant {
                let hatch = RGBColor(0x55, 0x55, 0x55).stroke_width(1);
                chart
                    .draw_series((1..8).map(|i| {
                        let f = i as f64 / 8.0;
                        PathElement::new(vec![(x0 + f, y0 + 0.02), (x0 + 0.02, y0 + f)], hatch)
                    }))
                    .map_err(&err)?;
            }
            let text = match c.ratio {
                Some(r) if c.significant => format!("×{}", format_value(r)),
                Some(r) => format!("×{} (n.s.)", format_value(r)),
                None => "no data".into(),
            };
            let st = TextStyle::from((FONT, 15).into_font().style(FontStyle::Bold))
                .pos(Pos::new(HPos::Center, VPos::Center));
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((x0 + 0.5, y0 + 0.5)) + Text::new(text, (0, 0), st),
                ))
                .map_err(&err)?;
        }
        // Legend: the colour scale and the hatch.
        let e = chart_err(frame.title);
        let st = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        legend
            .draw(&Text::new(legend_what.to_string(), (8, 40), st.clone()))
            .map_err(&e)?;
        for (i, r) in [4.0, 2.0, 1.41, 1.0, 0.71, 0.5, 0.25].iter().enumerate() {
            let y = 64 + 20 * i as i32;
            legend
                .draw(&Rectangle::new(
                    [(8, y - 8), (28, y + 8)],
                    ratio_color(*r).filled(),
                ))
                .map_err(&e)?;
            legend
                .draw(&Text::new(
                    format!("×{}", format_value(*r)),
                    (34, y),
                    st.clone(),
                ))
                .map_err(&e)?;
        }
        draw_legend(
            &legend.clone().shrink((0, 140), (LEGEND_WIDTH, 200)),
            &[Key::Hatch("not significant".into())],
            frame.title,
        )
    })
}

/// One object of a waterfall: request start (0), first byte, end, and its
/// progress as (t_ms, fraction of its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub label: String,
    pub first_byte: Option<f64>,
    pub end: Option<f64>,
    pub progress: Vec<(f64, f64)>,
}

/// A waterfall: one row per stream, grouped by protocol (`panels`), light
/// bar from the request to the last byte, the stream's own progress drawn as
/// a filled curve in the row (0 at the bottom, all bytes at the top).
pub fn waterfall_svg(frame: Frame, panels: &[(String, Vec<Stream>)]) -> Result<String, ChartError> {
    let err = chart_err(frame.title);
    let rows: usize = panels.iter().map(|p| p.1.len() + 1).sum::<usize>().max(1);
    let height = (HEIGHT).max(120 + 12 * rows as u32).min(2400);
    let xmax = panels
        .iter()
        .flat_map(|p| &p.1)
        .flat_map(|s| s.end.into_iter().chain(s.progress.last().map(|p| p.0)))
        .fold(0.0_f64, f64::max)
        .max(1e-6)
        * 1.03;
    canvas(frame, WIDTH, height, |plot, legend| {
        let mut chart = ChartBuilder::on(plot)
            .caption(frame.title, (FONT, 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..xmax, 0.0..rows as f64)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .y_label_formatter(&|_| String::new())
            .x_label_formatter(&|v| axis_label(*v))
            .light_line_style(WHITE)
            .x_desc("time since the requests were sent [ms]")
            .y_desc("objects (one row each)")
            .label_style((FONT, 13))
            .draw()
            .map_err(&err)?;
        let mut keys = Vec::new();
        let mut row = rows as f64;
        for (proto, streams) in panels {
            let color = protocol_color(proto);
            row -= 1.0;
            let st =
                TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((0.0, row + 0.5)) + Text::new(format!("{proto}:"), (2, 0), st),
                ))
                .map_err(&err)?;
            for s in streams {
                row -= 1.0;
                let (y0, y1) = (row + 0.1, row + 0.9);
                if let Some(end) = s.end.or(s.progress.last().map(|p| p.0)) {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(0.0, y0), (end, y1)],
                            color.mix(0.15).filled(),
                        )))
                        .map_err(&err)?;
                }
                if let (Some(&(t_first, _)), Some(&(t_last, _))) =
                    (s.progress.first(), s.progress.last())
                {
                    // From the first byte (0 received) through every progress
                    // point; at least a sliver wide, so an object that came
                    // in one burst still shows.
                    let start = s.first_byte.unwrap_or(t_first).min(t_first);
                    let end = t_last.max(start + xmax * 0.004);
                    let mut poly = vec![(start, y0)];
                    poly.extend(
                        s.progress
                            .iter()
                            .map(|&(t, f)| (t, y0 + f.clamp(0.0, 1.0) * (y1 - y0))),
                    );
                    poly.push((end, y1));
                    poly.push((end, y0));
                    chart
                        .draw_series(std::iter::once(Polygon::new(poly, color.mix(0.85))))
                        .map_err(&err)?;
                }
                if let Some(fb) = s.first_byte {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(fb, y0), (fb, y1)],
                            BLACK.stroke_width(1),
                        )))
                        .map_err(&err)?;
                }
            }
            keys.push(Key::Box(proto.clone(), color));
        }
        keys.push(Key::Text("light: waiting".into()));
        keys.push(Key::Text("filled: bytes received".into()));
        keys.push(Key::Line("first byte".into(), BLACK, 1));
        draw_legend(legend, &keys, frame.title)
    })
}

/// A histogram: `bins` of (low, high, count), one colour, optional vertical marks.
pub fn histogram_svg(
    frame: Frame,
    x_desc: &str,
    color: RGBColor,
    label: &str,
    bins: &[(f64, f64, u64)],
    vlines: &[(f64, String)],
) -> Result<String, ChartError> {
    let err = chart_err(frame.title);
    let lo = bins
        .iter()
        .map(|b| b.0)
        .chain(vlines.iter().map(|v| v.0))
        .fold(f64::INFINITY, f64::min);
    let hi = bins
        .iter()
        .map(|b| b.1)
        .chain(vlines.iter().map(|v| v.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo < hi { (lo, hi) } else { (0.0, 1.0) };
    let pad = (hi - lo) * 0.05;
    let ymax = y_max(bins.iter().map(|b| b.2 as f64));
    canvas(frame, WIDTH, HEIGHT, |plot, legend| {
        let mut chart = ChartBuilder::on(plot)
            .caption(frame.title, (FONT, 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d((lo - pad)..(hi + pad), 0.0..ymax)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("packets [count]")
            .x_label_formatter(&|v| axis_label(*v))
            .y_label_formatter(&|v| axis_label(*v))
            .light_line_style(WHITE)
            .label_style((FONT, 13))
            .draw()
            .map_err(&err)?;
        chart
            .draw_series(
                bins.iter()
                    .map(|&(a, b, n)| Rectangle::new([(a, 0.0), (b, n as f64)], color.filled())),
            )
            .map_err(&err)?;
        let mut keys = vec![Key::Box(label.to_string(), color)];
        for (x, l) in vlines {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*x, 0.0), (*x, ymax)],
                    RGBColor(0xD5, 0x5E, 0x00).stroke_width(2),
                )))
                .map_err(&err)?;
            keys.push(Key::Line(l.clone(), RGBColor(0xD5, 0x5E, 0x00), 2));
        }
        draw_legend(legend, &keys, frame.title)
    })
}

/// One layer of a stacked chart: a flow's value in each window.
#[derive(Debug, Clone, PartialEq)]
pub struct StackLayer {
    pub label: String,
    pub color: RGBColor,
    /// One value per window (`StackedChart::edges.len() - 1`).
    pub values: Vec<f64>,
}

/// A line under the stacked chart, on the same time axis (e.g. the queue).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LowerPanel {
    pub y_desc: String,
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Layers stacked over windows of time, drawn as steps (each window's value
/// is its mean); a second view of the same layers as thin dashed step lines
/// at each cumulative top; a horizontal reference line; and an optional
/// panel below on the same x axis.
#[derive(Debug, Clone, Default)]
pub struct StackedChart {
    pub x_desc: String,
    pub y_desc: String,
    /// Window edges: n + 1 increasing values for n windows.
    pub edges: Vec<f64>,
    /// Bottom to top.
    pub layers: Vec<StackLayer>,
    /// The same layers in the same order as another observer saw them (n
    /// values each); empty: none drawn.
    pub outline: Vec<Vec<f64>>,
    /// Legend of the dashed outline.
    pub outline_label: String,
    /// A horizontal line (e.g. the link's rate) and its legend.
    pub hline: Option<(f64, String)>,
    pub lower: Option<LowerPanel>,
}

/// The step path of one value per window.
fn steps(edges: &[f64], values: &[f64]) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| Some([(edges[i], *v), (*edges.get(i + 1)?, *v)]))
        .flatten()
        .collect()
}

/// Cumulative sums of `layers` (each one value per window): the top of
/// layer k in window i is `out[k][i]`.
pub fn stack_tops(layers: &[&[f64]], n: usize) -> Vec<Vec<f64>> {
    let mut acc = vec![0.0; n];
    layers
        .iter()
        .map(|l| {
            for (i, a) in acc.iter_mut().enumerate() {
                *a += l.get(i).copied().filter(|v| v.is_finite()).unwrap_or(0.0);
            }
            acc.clone()
        })
        .collect()
}

/// A stacked step chart ([`StackedChart`]): the layers filled, each
/// bounded by a white line so shades of one colour stay apart.
pub fn stacked_svg(frame: Frame, spec: &StackedChart) -> Result<String, ChartError> {
    let err = chart_err(frame.title);
    let n = spec.edges.len().saturating_sub(1);
    let (x0, x1) = match (spec.edges.first(), spec.edges.last()) {
        (Some(a), Some(b)) if b > a => (*a, *b),
        _ => (0.0, 1.0),
    };
    let tops = stack_tops(
        &spec
            .layers
            .iter()
            .map(|l| l.values.as_slice())
            .collect::<Vec<_>>(),
        n,
    );
    let outline = stack_tops(
        &spec.outline.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        n,
    );
    let ymax = y_max(
        tops.iter()
            .chain(outline.iter())
            .flatten()
            .copied()
            .chain(spec.hline.iter().map(|h| h.0)),
    );
    let height = if spec.lower.is_some() { 640 } else { HEIGHT };
    canvas(frame, WIDTH, height, |plot, legend| {
        let (upper, lower) = match &spec.lower {
            Some(_) => {
                let (u, l) = plot.split_vertically(height - NOTE_HEIGHT - 200);
                (u, Some(l))
            }
            None => (plot.clone(), None),
        };
        let mut chart = ChartBuilder::on(&upper)
            .caption(frame.title, (FONT, 18))
            .margin(14)
            .x_label_area_size(if lower.is_some() { 24 } else { 44 })
            .y_label_area_size(72)
            .build_cartesian_2d(x0..x1, 0.0..ymax)
            .map_err(&err)?;
        let mut mesh = chart.configure_mesh();
        mesh.y_desc(spec.y_desc.as_str())
            .x_label_formatter(&|v| axis_label(*v))
            .y_label_formatter(&|v| axis_label(*v))
            .light_line_style(WHITE)
            .label_style((FONT, 13));
        if lower.is_none() {
            mesh.x_desc(spec.x_desc.as_str());
        }
        mesh.draw().map_err(&err)?;
        let mut keys = Vec::new();
        let zero = vec![0.0; n];
        for (k, l) in spec.layers.iter().enumerate() {
            let below = if k == 0 { &zero } else { &tops[k - 1] };
            let top = steps(&spec.edges, &tops[k]);
            let mut poly = top.clone();
            poly.extend(steps(&spec.edges, below).into_iter().rev());
            if poly.len() >= 3 {
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, l.color.filled())))
                    .map_err(&err)?;
                chart
                    .draw_series(LineSeries::new(top, WHITE.stroke_width(1)))
                    .map_err(&err)?;
            }
            keys.push(Key::Box(l.label.clone(), l.color));
        }
        let dark = RGBColor(0x22, 0x22, 0x22);
        for top in &outline {
            chart
                .draw_series(DashedLineSeries::new(
                    steps(&spec.edges, top),
                    6,
                    4,
                    dark.stroke_width(1),
                ))
                .map_err(&err)?;
        }
        if !outline.is_empty() {
            keys.push(Key::Dashed(spec.outline_label.clone(), dark));
        }
        if let Some((y, label)) = &spec.hline {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x0, *y), (x1, *y)],
                    BLACK.stroke_width(2),
                )))
                .map_err(&err)?;
            keys.push(Key::Line(label.clone(), BLACK, 2));
        }
        if let (Some(area), Some(p)) = (lower, &spec.lower) {
            let ymax = y_max(p.points.iter().map(|q| q.1));
            let mut c = ChartBuilder::on(&area)
                .margin(14)
                .margin_top(4)
                .x_label_area_size(44)
                .y_label_area_size(72)
                .build_cartesian_2d(x0..x1, 0.0..ymax)
                .map_err(&err)?;
            c.configure_mesh()
                .x_desc(spec.x_desc.as_str())
                .y_desc(p.y_desc.as_str())
                .x_label_formatter(&|v| axis_label(*v))
                .y_label_formatter(&|v| axis_label(*v))
                .y_labels(4)
                .light_line_style(WHITE)
                .label_style((FONT, 13))
                .draw()
                .map_err(&err)?;
            let grey = RGBColor(0x55, 0x55, 0x55);
            c.draw_series(LineSeries::new(
                p.points.iter().copied().filter(|q| q.0 >= x0 && q.0 <= x1),
                grey.stroke_width(1),
            ))
            .map_err(&err)?;
            keys.push(Key::Text(String::new()));
            keys.push(Key::Line(p.label.clone(), grey, 1));
        }
        draw_legend(legend, &keys, frame.title)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_1_2_5_per_decade() {
        assert_eq!(
            log_ticks(18.0, 1200.0),
            vec![20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(log_ticks(0.9, 2.0), vec![1.0, 2.0]);
        assert!(log_ticks(0.0, 10.0).is_empty());
        assert!(log_ticks(5.0, 5.0).is_empty());
        assert!(log_ticks(f64::NAN, 10.0).is_empty());
    }

    fn bar(p: &str, v: f64, theory: Option<f64>) -> Bar {
        Bar {
            protocol: p.into(),
            value: v,
            ci: Some((v * 0.9, v * 1.1)),
            ci_exact: true,
            theory,
        }
    }

    const F: Frame = Frame {
        title: "TTFB",
        note: "link: delay 10ms · n = 12",
    };

    #[test]
    fn bars_with_theory_marks() -> Result<(), ChartError> {
        let protocols = vec!["h2".to_string(), "h3".to_string()];
        let groups = vec![
            Group {
                label: "rtt50".into(),
                bars: vec![bar("h2", 3.1, Some(3.0)), bar("h3", 2.05, Some(2.0))],
            },
            Group {
                label: "rtt200-loss1".into(),
                bars: vec![bar("h3", 2.2, Some(2.0))],
            },
        ];
        let svg = grouped_bars_svg(F, "link", "RTTs", &protocols, &groups)?;
        assert!(svg.starts_with("<svg"), "{}", &svg[..50]);
        assert!(
            svg.contains("#0072B2") && svg.contains("#D55E00"),
            "protocol colours"
        );
        for text in [
            "TTFB",
            "RTTs",
            "rtt50",
            "rtt200-loss1",
            "theoretical min.",
            "h2",
            "h3",
            "n = 12",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert!(
            svg.contains("\n3.10\n") && svg.contains("\n2.05\n"),
            "values printed"
        );
        // Empty data still draws an (empty) chart rather than failing.
        assert!(grouped_bars_svg(F, "x", "y", &[], &[])?.contains("TTFB"));
        Ok(())
    }

    #[test]
    fn labels() {
        assert_eq!(axis_label(1_000_000.0), "1M");
        assert_eq!(axis_label(2_500_000.0), "2.5M");
        assert_eq!(axis_label(12_000_000.0), "12M");
        assert_eq!(axis_label(300_000.0), "300k");
        assert_eq!(axis_label(2.5), "2.5");
        assert_eq!(axis_label(3.0), "3");
        assert_eq!(axis_label(0.0), "0");
        assert_eq!(axis_label(-0.0001), "0");
        assert_eq!(format_value(3.0666), "3.07");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(123.4), "123");
        assert_eq!(format_value(0.01234), "0.0123");
    }

    #[test]
    fn lines_cdf_heatmap_waterfall_histogram() -> Result<(), ChartError> {
        let s = vec![
            Series::protocol("h3", vec![(0.0, 0.0), (100.0, 5e5), (200.0, 1e6)]),
            Series::protocol("h1.1-tls", vec![(0.0, 0.0), (300.0, 1e6)]),
        ];
        let spec = LineChart {
            x_desc: "time [ms]".into(),
            y_desc: "bytes".into(),
            series: s.clone(),
            vlines: vec![(150.0, "rebind".into())],
            ..Default::default()
        };
        let svg = lines_svg(F, &spec)?;
        assert!(svg.contains("#0072B2") && svg.contains("#009E73"));
        assert!(svg.contains("rebind") && svg.contains("time [ms]"));
        assert!(lines_svg(F, &LineChart::default()).is_ok());
        let cdf = LineChart {
            x_log: true,
            y_range: Some((0.0, 1.0)),
            series: vec![Series::protocol("h2", vec![(20.0, 0.1), (400.0, 1.0)])],
            ..Default::default()
        };
        assert!(lines_svg(F, &cdf)?.contains("#D55E00"));
        let band = LineChart {
            series: vec![Series {
                band: vec![(0.0, 1.0, 3.0), (2.0, 2.0, 4.0)],
                markers: true,
                ..Series::protocol("h3", vec![(0.0, 2.0), (2.0, 3.0)])
            }],
            x_ticks: Some(vec![(0.0, "0%".into()), (2.0, "2%".into())]),
            ..Default::default()
        };
        assert!(lines_svg(F, &band)?.contains("95% CI"));
        let heat = heatmap_svg(
            F,
            "RTT",
            "loss",
            &["10 ms".into(), "40 ms".into()],
            &["1%".into()],
            &[
                HeatCell {
                    x: 0,
                    y: 0,
                    ratio: Some(0.5),
                    significant: true,
                },
                HeatCell {
                    x: 1,
                    y: 0,
                    ratio: Some(1.1),
                    significant: false,
                },
            ],
            "h3 / h2",
        )?;
        assert!(heat.contains("(n.s.)") && heat.contains("not significant"));
        assert_eq!(ratio_color(1.0), RGBColor(255, 255, 255));
        assert_eq!(ratio_color(100.0), RGBColor(0xD5, 0x5E, 0x00));
        let wf = waterfall_svg(
            F,
            &[(
                "h3".into(),
                vec![Stream {
                    label: "0".into(),
                    first_byte: Some(20.0),
                    end: Some(40.0),
                    progress: vec![(20.0, 0.1), (40.0, 1.0)],
                }],
            )],
        )?;
        assert!(wf.contains("first byte"));
        let h = histogram_svg(
            F,
            "RTT [ms]",
            BLACK,
            "udp",
            &[(10.0, 11.0, 5), (11.0, 12.0, 3)],
            &[(10.0, "nominal".into())],
        )?;
        assert!(h.contains("nominal") && h.contains("packets [count]"));
        Ok(())
    }

    #[test]
    fn stacked_flows_with_outline_rate_and_queue() -> Result<(), ChartError> {
        assert_eq!(
            stack_tops(&[&[1.0, 2.0], &[3.0, f64::NAN]], 2),
            vec![vec![1.0, 2.0], vec![4.0, 2.0]]
        );
        assert_eq!(
            steps(&[0.0, 1.0, 2.0], &[5.0, 6.0]),
            vec![(0.0, 5.0), (1.0, 5.0), (1.0, 6.0), (2.0, 6.0)]
        );
        let spec = StackedChart {
            x_desc: "time [ms]".into(),
            y_desc: "throughput [Mbit/s]".into(),
            edges: vec![0.0, 500.0, 1000.0, 1500.0],
            layers: vec![
                StackLayer {
                    label: "flow 0 h3@bbr".into(),
                    color: protocol_color("h3"),
                    values: vec![12.0, 11.0, 10.0],
                },
                StackLayer {
                    label: "flow 1 h2@cubic".into(),
                    color: protocol_color("h2"),
                    values: vec![6.0, 8.0, 9.0],
                },
            ],
            outline: vec![vec![12.5, 11.2, 10.1], vec![6.1, 8.2, 9.3]],
            outline_label: "the link's view".into(),
            hline: Some((20.0, "link rate 20 Mbit/s".into())),
            lower: Some(LowerPanel {
                y_desc: "queue [ms]".into(),
                label: "queueing delay".into(),
                points: vec![(0.0, 1.0), (700.0, 19.0), (1400.0, 18.0)],
            }),
        };
        let svg = stacked_svg(F, &spec)?;
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("#0072B2") && svg.contains("#D55E00"));
        for text in [
            "flow 0 h3@bbr",
            "flow 1 h2@cubic",
            "the link&apos;s view",
            "link rate 20 Mbit/s",
            "queueing delay",
            "queue [ms]",
            "n = 12",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert!(svg.contains("<polygon"), "filled layers");
        assert!(svg.contains("stroke-dasharray") || svg.matches("<polyline").count() > 4);
        // No data: an empty chart, not an error.
        assert!(stacked_svg(F, &StackedChart::default())?.contains("TTFB"));
        Ok(())
    }
}
