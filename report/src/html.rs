//! HTML helpers: escaping, number formatting, the page shell (navigation,
//! inline CSS: nothing external is loaded), figures and tables.

use std::fmt::Write as _;

use quicbench_results::SummaryRow;

use crate::palette::{hex, protocol_color};

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

/// Four significant digits, no exponent for everyday magnitudes.
pub fn num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if !(1e-3..1e9).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

/// Up to 3 decimals, trailing zeros removed ("20", "2.5", "0.125").
pub fn num_short(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// File-name safe form.
pub fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A colour swatch and the protocol name.
pub fn proto_cell(p: &str) -> String {
    format!(
        "<span class=\"sw\" style=\"background:{}\"></span>{}",
        hex(protocol_color(p)),
        esc(p)
    )
}

/// "median [low, high]" with the interval's method and confidence, or the
/// median alone marked "n too small" when no interval can be given.
pub fn median_ci(r: &SummaryRow) -> String {
    match (r.ci_low, r.ci_high, r.ci_confidence) {
        (Some(l), Some(h), Some(c)) => {
            let flag = if r.ci_method == "order-statistic" {
                String::new()
            } else {
                format!(
                    "<span class=\"warn\" title=\"{} of {} cells: approximate\">*</span>",
                    esc(&r.ci_method),
                    r.n
                )
            };
            let pct = c * 100.0;
            let pct = if (pct - pct.round()).abs() < 1e-9 {
                format!("{pct:.0}")
            } else {
                format!("{pct:.2}")
            };
            format!(
                "{} <span class=\"ci\">[{}, {}] {pct}% {}</span>{flag}",
                num(r.median),
                num(l),
                num(h),
                esc(&r.ci_method)
            )
        }
        _ => format!(
            "{} <span class=\"ci\">(n = {}: n too small for an interval)</span>",
            num(r.median),
            r.n
        ),
    }
}

pub const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1500px;margin:0 auto;padding:0 1em 3em;color:#222;line-height:1.45}\
nav{position:sticky;top:0;background:#fff;border-bottom:2px solid #0072B2;padding:.5em 0;z-index:1}\
nav a{margin-right:1em;text-decoration:none;color:#0072B2}nav a.cur{font-weight:bold;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.6em}\
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts figure{margin:0;flex:1 1 640px;max-width:900px}\
.row{display:flex;gap:12px;flex-wrap:wrap}.row figure{flex:1 1 600px}\
figure img{width:100%;height:auto;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}\
table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}.ci{color:#666}\
.sw{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle;border:1px solid #999}\
.warn,.fail{color:#D55E00}.ok{color:#009E73}details{margin:1em 0}summary{cursor:pointer}\
.missing{padding:2em;border:1px dashed #bbb;color:#777}.svg svg{max-width:100%;height:auto;border:1px solid #ddd}.wide{overflow-x:auto}\
.finding{background:#f6f9fc;border-left:4px solid #0072B2;padding:.4em 1em;margin:.6em 0}\
footer{margin-top:3em;font-size:.85em;color:#666}code{font-size:.9em}";

/// One page of the site.
pub struct Page {
    pub file: String,
    pub nav_title: String,
    pub title: String,
    pub body: String,
}

/// The full HTML of a page with the navigation of all `pages`.
pub fn render(page: &Page, pages: &[(String, String)], footer: &str) -> String {
    let mut h = String::with_capacity(page.body.len() + 4096);
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style></head><body>\n<nav>",
        esc(&page.title)
    );
    for (file, t) in pages {
        let cls = if *file == page.file {
            " class=\"cur\""
        } else {
            ""
        };
        let _ = write!(h, "<a href=\"{}\"{cls}>{}</a>", esc(file), esc(t));
    }
    h.push_str("</nav>\n<main>\n");
    h.push_str(&page.body);
    let _ = write!(h, "</main>\n<footer>{footer}</footer>\n</body></html>\n");
    h
}

/// One chart of one run, written under charts/.
#[derive(Debug, Clone)]
pub struct Fig {
    /// Identifies "the same chart" across compared runs.
    pub key: String,
    pub title: String,
    /// Path relative to the site root.
    pub file: String,
    /// Shown open; the others go under "more charts".
    pub primary: bool,
}

/// Figures of every run, charts with the same key side by side (one column
/// per run when runs are compared).
pub fn figures(per_run: &[Vec<Fig>], run_labels: &[String], html: &mut String) {
    let mut keys: Vec<(String, bool)> = Vec::new();
    for figs in per_run {
        for f in figs {
            if !keys.iter().any(|(k, _)| *k == f.key) {
                keys.push((f.key.clone(), f.primary));
            }
        }
    }
    let (primary, more): (Vec<_>, Vec<_>) = keys.into_iter().partition(|k| k.1);
    let (primary, more) = if primary.is_empty() && !more.is_empty() {
        (more[..1].to_vec(), more[1..].to_vec())
    } else {
        (primary, more)
    };
    let block = |keys: &[(String, bool)], html: &mut String| {
        html.push_str("<div class=\"charts\">\n");
        for (k, _) in keys {
            if per_run.len() == 1 {
                if let Some(f) = per_run[0].iter().find(|f| &f.key == k) {
                    fig(f, None, html);
                }
            } else {
                html.push_str("<div class=\"row\" style=\"flex-basis:100%\">\n");
                for (i, figs) in per_run.iter().enumerate() {
                    let label = run_labels.get(i).map(String::as_str).unwrap_or("");
                    match figs.iter().find(|f| &f.key == k) {
                        Some(f) => fig(f, Some(label), html),
                        None => {
                            let _ = writeln!(
                                html,
                                "<figure><div class=\"missing\">not in run {}: {}</div></figure>",
                                i + 1,
                                esc(label)
                            );
                        }
                    }
                }
                html.push_str("</div>\n");
            }
        }
        html.push_str("</div>\n");
    };
    block(&primary, html);
    if !more.is_empty() {
        let _ = writeln!(
            html,
            "<details><summary>{} more chart(s)</summary>",
            more.len()
        );
        block(&more, html);
        html.push_str("</details>\n");
    }
}

fn fig(f: &Fig, run: Option<&str>, html: &mut String) {
    let cap = match run {
        Some(r) => format!("{} — {}", esc(r), esc(&f.title)),
        None => esc(&f.title),
    };
    let _ = writeln!(
        html,
        "<figure><a href=\"{0}\"><img src=\"{0}\" alt=\"{1}\" loading=\"eager\"></a><figcaption>{cap}</figcaption></figure>",
        esc(&f.file),
        esc(&f.title)
    );
}

/// A table from a header and rows of already escaped HTML cells.
pub fn table(head: &[&str], rows: &[Vec<String>], html: &mut String) {
    html.push_str("<div class=\"wide\"><table><thead><tr>");
    for h in head {
        let _ = write!(html, "<th>{}</th>", esc(h));
    }
    html.push_str("</tr></thead><tbody>\n");
    for r in rows {
        html.push_str("<tr>");
        for c in r {
            let _ = write!(html, "<td>{c}</td>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_for_people() {
        assert_eq!(num(123.456), "123.5");
        assert_eq!(num(0.012345), "0.01235");
        assert_eq!(num(3.0), "3.000");
        assert_eq!(num(12345.6), "12346");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(2e-5), "2.000e-5");
        assert_eq!(num_short(20.0), "20");
        assert_eq!(num_short(2.5), "2.5");
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(slug("a/b c.svg"), "a_b_c.svg");
    }
}
