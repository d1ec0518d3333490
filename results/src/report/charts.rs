//! SVG charts drawn with plotters, from plain data (no file access): grouped
//! bar charts of medians with their 95% CIs and theory marks, and line charts
//! of timelines.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::palette::protocol_color;
use crate::error::ResultsError;

pub const WIDTH: u32 = 900;
pub const HEIGHT: u32 = 480;
const FONT: &str = "sans-serif";

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
    pub protocol: String,
    pub points: Vec<(f64, f64)>,
}

fn chart_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> ResultsError + '_ {
    move |e| ResultsError::Chart {
        what: what.to_string(),
        reason: e.to_string(),
    }
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

/// A legend entry drawn in the strip right of the plot (never over the data).
enum Key {
    Box(String, RGBColor),
    Line(String, RGBColor, u32),
}

const LEGEND_WIDTH: u32 = 150;

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    keys: &[Key],
    what: &str,
) -> Result<(), ResultsError>
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
        }
    }
    Ok(())
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
pub fn grouped_bars_svg(
    title: &str,
    y_desc: &str,
    protocols: &[String],
    groups: &[Group],
) -> Result<String, ResultsError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err(title))?;
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let keys = draw_grouped_bars(&plot, title, y_desc, protocols, groups)?;
        draw_legend(&legend, &keys, title)?;
        root.present().map_err(chart_err(title))?;
    }
    Ok(svg)
}

fn draw_grouped_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    protocols: &[String],
    groups: &[Group],
) -> Result<Vec<Key>, ResultsError>
where
    DB::ErrorType: 'static,
{
    let err = chart_err(title);
    let mut keys = Vec::new();
    let all = groups.iter().flat_map(|g| g.bars.iter());
    let ymax = y_max(all.flat_map(|b| {
        [Some(b.value), b.ci.map(|c| c.1), b.theory]
            .into_iter()
            .flatten()
    }));
    let n = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(14)
        .x_label_area_size(36)
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
                + Text::new(g.label.clone(), (0, 8), label_style.clone())
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
                let top = b.ci.map_or(b.value, |c| c.1.max(b.value));
                EmptyElement::at((x_of(*gi, pi) + width / 2.0, top))
                    + Text::new(format_value(b.value), (0, -3), value_style.clone())
            }))
            .map_err(&err)?;
        // Whiskers: stem and caps.
        for (gi, b) in &bars {
            let Some((lo, hi)) = b.ci else { continue };
            let xc = x_of(*gi, pi) + width / 2.0;
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
        let style = BLACK.stroke_width(3);
        chart
            .draw_series(
                marks
                    .iter()
                    .map(|&(x0, x1, t)| PathElement::new(vec![(x0, t), (x1, t)], style)),
            )
            .map_err(&err)?;
        keys.push(Key::Line("theory".into(), BLACK, 3));
    }
    Ok(keys)
}

/// A bar's value as printed above it: 3 significant digits.
fn format_value(v: f64) -> String {
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

/// Lines, one per protocol, e.g. bytes received against time.
pub fn lines_svg(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<String, ResultsError> {
    let err = chart_err(title);
    let xmax = y_max(series.iter().flat_map(|s| s.points.iter().map(|p| p.0))) / 1.15;
    let ymax = y_max(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(&err)?;
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, (FONT, 18))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0.0..xmax.max(1e-9), 0.0..ymax)
            .map_err(&err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|v| axis_label(*v))
            .y_label_formatter(&|v| axis_label(*v))
            .light_line_style(WHITE)
            .label_style((FONT, 13))
            .draw()
            .map_err(&err)?;
        let mut keys = Vec::new();
        for s in series {
            let color = protocol_color(&s.protocol);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(&err)?;
            keys.push(Key::Line(s.protocol.clone(), color, 2));
        }
        draw_legend(&legend, &keys, title)?;
        root.present().map_err(&err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(p: &str, v: f64, theory: Option<f64>) -> Bar {
        Bar {
            protocol: p.into(),
            value: v,
            ci: Some((v * 0.9, v * 1.1)),
            ci_exact: true,
            theory,
        }
    }

    #[test]
    fn bars_with_theory_marks() {
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
        let svg = grouped_bars_svg("TTFB", "RTTs", &protocols, &groups).unwrap();
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
            "theory",
            "h2",
            "h3",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        assert!(
            svg.contains("\n3.10\n") && svg.contains("\n2.05\n"),
            "values printed"
        );
        // Empty data still draws an (empty) chart rather than failing.
        assert!(grouped_bars_svg("empty", "x", &[], &[])
            .unwrap()
            .contains("empty"));
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
    fn lines() {
        let s = vec![
            Series {
                protocol: "h3".into(),
                points: vec![(0.0, 0.0), (100.0, 5e5), (200.0, 1e6)],
            },
            Series {
                protocol: "h1.1-tls".into(),
                points: vec![(0.0, 0.0), (300.0, 1e6)],
            },
        ];
        let svg = lines_svg("migration", "ms", "bytes", &s).unwrap();
        assert!(svg.contains("#0072B2") && svg.contains("#009E73"));
        assert!(lines_svg("none", "ms", "bytes", &[]).is_ok());
    }
}
