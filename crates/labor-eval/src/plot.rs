//! SVG plots (text is left to the browser's sans-serif font): the calibration plots through
//! plotters' SVG backend, and the interval plots (one row per model, a point estimate and its
//! 95% interval, optionally on a log axis) written out by hand so that tick labels can be
//! placed where they never collide.
//!
//! Every plot of a report gives a model the same colour ([`model_colors`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;

/// An sRGB colour.
pub type Rgb = (u8, u8, u8);

/// The oracle's colour in every plot: a neutral dark grey.
pub const ORACLE_COLOR: Rgb = (80, 80, 80);

/// A qualitative palette (d3's category10 without its grey, which is the oracle's).
const PALETTE: [Rgb; 9] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
];

/// The `i`-th colour of the palette; beyond it, hues a golden angle apart.
pub fn palette_color(i: usize) -> Rgb {
    if let Some(c) = PALETTE.get(i) {
        return *c;
    }
    let h = ((i - PALETTE.len()) as f64 * 137.507_764 + 15.0) % 360.0;
    hsl_to_rgb(h, 0.6, 0.45)
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> Rgb {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let u = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    (u(r), u(g), u(b))
}

/// One colour per model, the same in every plot of a report: the models other than the oracle
/// in name order take the palette's colours in turn; the oracle is always [`ORACLE_COLOR`].
pub fn model_colors<'a>(
    names: impl IntoIterator<Item = &'a str>,
    oracle: Option<&str>,
) -> BTreeMap<String, Rgb> {
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    let mut out = BTreeMap::new();
    let mut i = 0;
    for n in names {
        if Some(n) == oracle {
            out.insert(n.to_string(), ORACLE_COLOR);
        } else {
            out.insert(n.to_string(), palette_color(i));
            i += 1;
        }
    }
    out
}

fn hex(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// A named series of (x, y) points in its model's colour.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: Rgb,
    pub points: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (720, 480);

/// Curves of observed vs predicted on [0, 1]² with the diagonal (perfect calibration).
pub fn reliability(title: &str, x: &str, y: &str, series: &[Series]) -> String {
    unit_square(title, x, y, series, true)
}

/// Points of observed vs predicted on [0, 1]² with the diagonal.
pub fn scatter(title: &str, x: &str, y: &str, series: &[Series]) -> String {
    unit_square(title, x, y, series, false)
}

fn unit_square(title: &str, x: &str, y: &str, series: &[Series], lines: bool) -> String {
    let mut svg = String::new();
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.0, p.1]))
        .fold(0.0f64, f64::max);
    // Calibration points crowd near 0: zoom to the data with some margin.
    let hi = if lines {
        1.0
    } else {
        (max * 1.1).clamp(0.02, 1.0)
    };
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = draw_unit(&root, title, x, y, series, lines, hi);
        let _ = root.present();
    }
    svg
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw_unit<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x: &str,
    y: &str,
    series: &[Series],
    lines: bool,
    hi: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..hi, 0f64..hi)?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart.draw_series(LineSeries::new(
        vec![(0.0, 0.0), (hi, hi)],
        BLACK.mix(0.4).stroke_width(1),
    ))?;
    for s in series {
        let c = RGBColor(s.color.0, s.color.1, s.color.2);
        if lines {
            chart
                .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
        } else {
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&p| Circle::new(p, 3, c.mix(0.7).filled())),
                )?
                .label(s.name.clone())
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
        }
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    Ok(())
}

/// One marker of an interval plot: a point estimate and its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    pub value: f64,
    pub ci: Option<(f64, f64)>,
}

/// One model's row of an interval plot.
#[derive(Debug, Clone)]
pub struct IntervalRow {
    pub name: String,
    pub color: Rgb,
    /// One entry per [`IntervalPlot::marks`]; `None` where the model has no such estimate.
    pub marks: Vec<Option<Mark>>,
}

/// Rows of point estimates with their intervals, one row per model.
#[derive(Debug, Clone, Default)]
pub struct IntervalPlot {
    pub title: String,
    pub x_label: String,
    /// What each marker of a row shows (e.g. `t ≥ 2`, `all records`), for the legend; the
    /// first is drawn filled, the others hollow.
    pub marks: Vec<String>,
    pub rows: Vec<IntervalRow>,
    /// A log10 axis (ticks at 1, 2, 5, 10, …, chosen so that labels never collide).
    pub log: bool,
    /// A dashed vertical reference line (e.g. 1 = the oracle) and its legend label.
    pub reference: Option<(f64, String)>,
    /// Appended to each value label (e.g. `×`).
    pub suffix: String,
}

const WIDTH: f64 = 760.0;
/// Approximate advance of one character of 12 px sans-serif (digits are ~6.7 px).
const CHAR_W: f64 = 7.0;
/// The most ticks an axis gets.
const MAX_TICKS: usize = 10;
/// Blank space between two tick labels, in pixels.
const TICK_GAP: f64 = 12.0;

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn superscript(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            '9' => '⁹',
            '-' => '⁻',
            c => c,
        })
        .collect()
}

/// `m×10ᵉ` (or `10ᵉ` when m = 1) with `d` decimals in the mantissa, trailing zeros dropped.
fn scientific(v: f64, d: usize) -> String {
    let mut e = v.abs().log10().floor() as i32;
    let mut m = v / 10f64.powi(e);
    // Rounding may carry the mantissa to 10.
    if format!("{:.d$}", m.abs()).starts_with("10") {
        e += 1;
        m /= 10.0;
    }
    let ms = trim_zeros(&format!("{m:.d$}"));
    let exp = superscript(&e.to_string());
    if ms == "1" {
        format!("10{exp}")
    } else if ms == "-1" {
        format!("-10{exp}")
    } else {
        format!("{ms}×10{exp}")
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

fn is_large(v: f64) -> bool {
    v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-3)
}

/// A tick label: scientific notation for large (≥ 10⁴) and tiny values, otherwise `decimals`
/// decimals (or the shortest form when `None`).
pub fn tick_label(v: f64, decimals: Option<usize>) -> String {
    if is_large(v) {
        return scientific(v, 2);
    }
    match decimals {
        Some(d) => format!("{v:.d$}"),
        None => trim_zeros(&format!("{v:.4}")),
    }
}

/// A point estimate's label: three significant figures up to 10⁴, then scientific notation.
pub fn value_label(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if is_large(v) {
        return scientific(v, 2);
    }
    let d = if v.abs() < 10.0 {
        2
    } else if v.abs() < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.d$}")
}

fn label_width(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// Tick values and labels for an axis showing [lo, hi] (values, not logs) over `px` pixels:
/// of several nested candidate sets (decades, then 1-2-5, finer mantissas, then plain steps),
/// the one with the most ticks (at most [`MAX_TICKS`]) whose labels do not overlap. On a log
/// axis the candidates are log-spaced mantissas, on a linear one evenly spaced steps.
pub fn ticks(lo: f64, hi: f64, log: bool, px: f64) -> Vec<(f64, String)> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || (log && lo <= 0.0) {
        return Vec::new();
    }
    let pos = |v: f64| {
        if log {
            (v.log10() - lo.log10()) / (hi.log10() - lo.log10()) * px
        } else {
            (v - lo) / (hi - lo) * px
        }
    };
    let tol = (hi - lo) * 1e-9;
    let in_range = |v: f64| {
        if log {
            v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9)
        } else {
            v >= lo - tol && v <= hi + tol
        }
    };
    let mut candidates: Vec<Vec<(f64, String)>> = Vec::new();
    if log {
        let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        for k in [10, 5, 3, 2] {
            let v: Vec<f64> = (a.div_euclid(k)..=b.div_euclid(k) + 1)
                .map(|j| 10f64.powi(j * k))
                .collect();
            candidates.push(v.into_iter().map(|v| (v, tick_label(v, None))).collect());
        }
        let fine: Vec<f64> = (10..20)
            .map(|i| i as f64 / 10.0)
            .chain((4..10).map(|i| i as f64 / 2.0))
            .chain((5..10).map(|i| i as f64))
            .collect();
        let sets: [&[f64]; 5] = [
            &[1.0],
            &[1.0, 2.0, 5.0],
            &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0],
            &[1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            &fine,
        ];
        for set in sets {
            let mut v = Vec::new();
            for e in a - 1..=b {
                for m in set {
                    let x = m * 10f64.powi(e);
                    // Round away the binary noise of m × 10^e.
                    let x = format!("{x:.12e}").parse::<f64>().unwrap_or(x);
                    v.push(x);
                }
            }
            candidates.push(v.into_iter().map(|v| (v, tick_label(v, None))).collect());
        }
    }
    // Evenly spaced steps s × 10^m, coarse to fine.
    let top = (hi - lo).log10().ceil() as i32;
    for m in (top - 4..=top).rev() {
        for s in [5.0, 2.0, 1.0] {
            let step = s * 10f64.powi(m);
            let d = (-m).max(0) as usize;
            let (k0, k1) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
            if k1 - k0 > 4 * MAX_TICKS as i64 {
                continue;
            }
            candidates.push(
                (k0..=k1)
                    .map(|k| k as f64 * step)
                    .filter(|v| !log || *v > 0.0)
                    .map(|v| (v, tick_label(v, Some(d))))
                    .collect(),
            );
        }
    }
    let fits = |t: &[(f64, String)]| {
        t.windows(2).all(|w| {
            pos(w[1].0) - pos(w[0].0)
                >= (label_width(&w[0].1) + label_width(&w[1].1)) / 2.0 + TICK_GAP
        })
    };
    let mut best: Option<Vec<(f64, String)>> = None;
    let mut fallback: Option<Vec<(f64, String)>> = None;
    for c in candidates {
        let mut t: Vec<(f64, String)> = c.into_iter().filter(|(v, _)| in_range(*v)).collect();
        t.sort_by(|x, y| x.0.total_cmp(&y.0));
        t.dedup_by(|x, y| (x.0 - y.0).abs() <= 1e-9 * x.0.abs().max(y.0.abs()));
        if t.is_empty() {
            continue;
        }
        if fallback.is_none() {
            fallback = Some(t.clone());
        }
        if t.len() >= 2
            && t.len() <= MAX_TICKS
            && fits(&t)
            && best.as_ref().is_none_or(|b| t.len() > b.len())
        {
            best = Some(t);
        }
    }
    if let Some(b) = best {
        return unify(b);
    }
    // Nothing fits: thin the coarsest set from the left, or label the two ends.
    let mut out: Vec<(f64, String)> = Vec::new();
    for t in fallback.unwrap_or_default() {
        if out.last().is_none_or(|l| fits(&[l.clone(), t.clone()])) {
            out.push(t);
        }
    }
    if out.is_empty() {
        out = vec![(lo, value_label(lo)), (hi, value_label(hi))];
        if !fits(&out) {
            out.pop();
        }
    }
    unify(out)
}

/// Once an axis has a tick in scientific notation, its thousands are written that way too
/// (`10³`, not `1000`, beside `10⁴`); the labels only get shorter.
fn unify(mut t: Vec<(f64, String)>) -> Vec<(f64, String)> {
    if t.iter().any(|(v, _)| v.abs() >= 1e4) {
        for (v, l) in &mut t {
            if v.abs() >= 1e3 {
                *l = scientific(*v, 2);
            }
        }
    }
    t
}

/// An interval plot as an SVG document: a row per model (its name beside a swatch of its
/// colour), each marker with its interval and its value written beside it, ticks from
/// [`ticks`].
pub fn intervals(p: &IntervalPlot) -> String {
    let n_marks = p.marks.len().max(1);
    let row_h = 14.0 * n_marks as f64 + 12.0;
    let name_w = p
        .rows
        .iter()
        .map(|r| label_width(&r.name))
        .fold(0.0, f64::max);
    let left = (name_w + 34.0).clamp(90.0, 260.0);
    let right = 78.0;
    let (x0, x1) = (left, WIDTH - right);
    let y0 = 62.0;
    let y1 = y0 + row_h * p.rows.len().max(1) as f64;
    let height = y1 + 54.0;
    let ok = |v: f64| v.is_finite() && (!p.log || v > 0.0);
    // The axis covers every estimate, interval and the reference.
    let mut vals: Vec<f64> = p
        .rows
        .iter()
        .flat_map(|r| r.marks.iter().flatten())
        .flat_map(|m| {
            let (a, b) = m.ci.unwrap_or((m.value, m.value));
            [m.value, a, b]
        })
        .filter(|v| ok(*v))
        .collect();
    if let Some((r, _)) = &p.reference {
        vals.push(*r);
    }
    let f = |v: f64| if p.log { v.log10() } else { v };
    let finv = |u: f64| if p.log { 10f64.powf(u) } else { u };
    let (mut a, mut b) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(f(*v)), b.max(f(*v)))
        });
    if !a.is_finite() {
        (a, b) = (0.0, 1.0);
    }
    let min_span = if p.log {
        0.02
    } else {
        (a.abs() * 0.05).max(1e-6)
    };
    if b - a < min_span {
        let c = (a + b) / 2.0;
        (a, b) = (c - min_span / 2.0, c + min_span / 2.0);
    }
    let pad = (b - a) * 0.04;
    let (a, b) = (a - pad, b + pad);
    let x = |v: f64| x0 + (f(v) - a) / (b - a) * (x1 - x0);

    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\" font-weight=\"bold\" \
         text-anchor=\"middle\">{}</text>\n",
        WIDTH / 2.0,
        xml_escape(&p.title)
    );
    // Legend: marker kinds, then the reference line.
    let mut lx = x0;
    for (j, m) in p.marks.iter().enumerate() {
        let fill = if j == 0 { "#444" } else { "white" };
        let _ = writeln!(
            s,
            "<circle cx=\"{}\" cy=\"42\" r=\"4.5\" fill=\"{fill}\" stroke=\"#444\" \
             stroke-width=\"1.5\"/><text x=\"{}\" y=\"46\">{}</text>",
            lx + 5.0,
            lx + 14.0,
            xml_escape(m)
        );
        lx += 14.0 + label_width(m) + 22.0;
    }
    if let Some((_, label)) = &p.reference {
        let _ = writeln!(
            s,
            "<line x1=\"{lx}\" y1=\"42\" x2=\"{}\" y2=\"42\" stroke=\"#444\" \
             stroke-dasharray=\"4 3\" stroke-width=\"1.5\"/><text x=\"{}\" y=\"46\">{}</text>",
            lx + 18.0,
            lx + 24.0,
            xml_escape(label)
        );
    }
    if p.rows
        .iter()
        .flat_map(|r| r.marks.iter().flatten())
        .any(|m| m.ci.is_some())
    {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"46\" fill=\"#666\" text-anchor=\"end\">bars: 95% interval</text>",
            WIDTH - 8.0
        );
    }
    // Row bands, grid and ticks.
    for i in (1..p.rows.len()).step_by(2) {
        let _ = writeln!(
            s,
            "<rect x=\"4\" y=\"{}\" width=\"{}\" height=\"{row_h}\" fill=\"#f5f5f5\"/>",
            y0 + row_h * i as f64,
            WIDTH - 8.0
        );
    }
    let t = ticks(finv(a), finv(b), p.log, x1 - x0);
    for (v, label) in &t {
        let tx = x(*v);
        let _ = writeln!(
            s,
            "<line x1=\"{tx:.1}\" y1=\"{y0}\" x2=\"{tx:.1}\" y2=\"{y1}\" stroke=\"#ddd\"/>\
             <line x1=\"{tx:.1}\" y1=\"{y1}\" x2=\"{tx:.1}\" y2=\"{}\" stroke=\"#888\"/>\
             <text x=\"{tx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            y1 + 5.0,
            y1 + 18.0,
            xml_escape(label)
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{x0}\" y1=\"{y1}\" x2=\"{x1}\" y2=\"{y1}\" stroke=\"#888\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
        (x0 + x1) / 2.0,
        y1 + 40.0,
        xml_escape(&p.x_label)
    );
    if let Some((r, _)) = &p.reference {
        let rx = x(*r);
        let _ = writeln!(
            s,
            "<line x1=\"{rx:.1}\" y1=\"{}\" x2=\"{rx:.1}\" y2=\"{y1}\" stroke=\"#444\" \
             stroke-dasharray=\"4 3\" stroke-width=\"1.5\"/>",
            y0 - 4.0
        );
    }
    // Rows.
    let max_name = ((left - 34.0) / CHAR_W).floor().max(4.0) as usize;
    for (i, r) in p.rows.iter().enumerate() {
        let top = y0 + row_h * i as f64;
        let c = hex(r.color);
        let name = if r.name.chars().count() > max_name {
            r.name.chars().take(max_name - 1).collect::<String>() + "…"
        } else {
            r.name.clone()
        };
        let cy = top + row_h / 2.0;
        let _ = writeln!(
            s,
            "<rect x=\"10\" y=\"{}\" width=\"11\" height=\"11\" fill=\"{c}\"/>\
             <text x=\"27\" y=\"{}\">{}</text>",
            cy - 5.5,
            cy + 4.0,
            xml_escape(&name)
        );
        for (j, m) in r.marks.iter().enumerate() {
            let y = top + 6.0 + 14.0 * j as f64 + 7.0;
            let Some(m) = m.filter(|m| ok(m.value)) else {
                if r.marks.get(j).is_some_and(|m| m.is_some()) {
                    let _ = writeln!(
                        s,
                        "<text x=\"{}\" y=\"{}\" fill=\"#999\" font-size=\"11\">n/a</text>",
                        x0 + 4.0,
                        y + 4.0
                    );
                }
                continue;
            };
            let (lo, hi) = match m.ci {
                Some((lo, hi)) if ok(lo) && ok(hi) => (lo.min(m.value), hi.max(m.value)),
                _ => (m.value, m.value),
            };
            if hi > lo {
                let _ = writeln!(
                    s,
                    "<line x1=\"{:.1}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\" stroke=\"{c}\" \
                     stroke-width=\"2\"/><line x1=\"{:.1}\" y1=\"{}\" x2=\"{:.1}\" y2=\"{}\" \
                     stroke=\"{c}\" stroke-width=\"1.5\"/><line x1=\"{:.1}\" y1=\"{}\" \
                     x2=\"{:.1}\" y2=\"{}\" stroke=\"{c}\" stroke-width=\"1.5\"/>",
                    x(lo),
                    x(hi),
                    x(lo),
                    y - 4.0,
                    x(lo),
                    y + 4.0,
                    x(hi),
                    y - 4.0,
                    x(hi),
                    y + 4.0
                );
            }
            let fill = if j == 0 { c.as_str() } else { "white" };
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{y}\" r=\"4.5\" fill=\"{fill}\" stroke=\"{c}\" \
                 stroke-width=\"2\"/>",
                x(m.value)
            );
            let label = format!("{}{}", value_label(m.value), p.suffix);
            let w = label_width(&label);
            let (tx, anchor) = if x(hi) + 6.0 + w <= WIDTH - 4.0 {
                (x(hi) + 6.0, "start")
            } else {
                (x(lo) - 6.0, "end")
            };
            let _ = writeln!(
                s,
                "<text x=\"{tx:.1}\" y=\"{}\" font-size=\"11\" fill=\"#222\" \
                 text-anchor=\"{anchor}\">{}</text>",
                y + 4.0,
                xml_escape(&label)
            );
        }
    }
    s + "</svg>\n"
}

/// Curves of a quantity (from 0 up) against a whole-number x (e.g. the forecast horizon), one
/// per series, with markers and a legend.
pub fn lines(title: &str, x: &str, y: &str, series: &[Series]) -> String {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo - 0.3, hi + 0.3)
    } else {
        (0.0, 1.0)
    };
    let ymax = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let ytop = if ymax > 0.0 { ymax * 1.15 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let _ = draw_lines(&root, title, x, y, series, (lo, hi), ytop);
        let _ = root.present();
    }
    svg
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x: &str,
    y: &str,
    series: &[Series],
    (lo, hi): (f64, f64),
    ytop: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(lo..hi, 0f64..ytop)?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .x_labels(((hi - lo).round() as usize).clamp(2, 12))
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-6 {
                format!("{}", v.round() as i64)
            } else {
                String::new()
            }
        })
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for s in series {
        let c = RGBColor(s.color.0, s.color.1, s.color.2);
        chart
            .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_overlap(t: &[(f64, String)], lo: f64, hi: f64, log: bool, px: f64) {
        let pos = |v: f64| {
            if log {
                (v.log10() - lo.log10()) / (hi.log10() - lo.log10()) * px
            } else {
                (v - lo) / (hi - lo) * px
            }
        };
        for w in t.windows(2) {
            let gap = pos(w[1].0) - pos(w[0].0);
            let need = (label_width(&w[0].1) + label_width(&w[1].1)) / 2.0;
            assert!(gap >= need, "{t:?}: {} and {} overlap", w[0].1, w[1].1);
        }
    }

    #[test]
    fn log_ticks_never_collide_and_use_scientific_notation() {
        for (lo, hi) in [
            (0.95, 2.0e9),
            (0.98, 1.35),
            (1.0, 400.0),
            (2.31, 2.45),
            (1.001, 1.004),
            (0.9, 12.0),
            (5.0, 3.0e5),
        ] {
            let t = ticks(lo, hi, true, 600.0);
            assert!(t.len() >= 2, "{lo}..{hi}: {t:?}");
            assert!(t.iter().all(|(v, _)| *v >= lo && *v <= hi), "{t:?}");
            no_overlap(&t, lo, hi, true, 600.0);
        }
        let t = ticks(0.95, 2.0e9, true, 600.0);
        let labels: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert!(
            labels.contains(&"1") && labels.contains(&"10³") && labels.contains(&"10⁹"),
            "{labels:?}"
        );
        let t = ticks(0.98, 1.35, true, 600.0);
        assert!(t.len() >= 4, "{t:?}");
        assert_eq!(tick_label(2.0e5, None), "2×10⁵");
        assert_eq!(tick_label(1.5, None), "1.5");
        assert_eq!(value_label(3.16e9), "3.16×10⁹");
        assert_eq!(value_label(9.999e4), "10⁵");
        assert_eq!(value_label(1.1234), "1.12");
    }

    #[test]
    fn linear_ticks_are_even_steps() {
        let t = ticks(2.3, 7.9, false, 600.0);
        let v: Vec<f64> = t.iter().map(|x| x.0).collect();
        assert!(v.len() >= 3, "{v:?}");
        let d = v[1] - v[0];
        assert!(v.windows(2).all(|w| (w[1] - w[0] - d).abs() < 1e-9));
        no_overlap(&t, 2.3, 7.9, false, 600.0);
    }

    #[test]
    fn colours_are_keyed_by_name_and_the_oracle_is_neutral() {
        let a = model_colors(["lm", "oracle", "markov1"], Some("oracle"));
        let b = model_colors(["markov1", "lm", "oracle", "lm"], Some("oracle"));
        assert_eq!(a, b);
        assert_eq!(a["oracle"], ORACLE_COLOR);
        assert_eq!(a["lm"], palette_color(0));
        assert_eq!(a["markov1"], palette_color(1));
        let many: Vec<Rgb> = (0..30).map(palette_color).collect();
        for (i, c) in many.iter().enumerate() {
            assert!(!many[..i].contains(c), "colour {i} repeats");
            assert_ne!(*c, ORACLE_COLOR);
        }
    }

    #[test]
    fn interval_plot_is_svg_with_every_row() {
        let p = IntervalPlot {
            title: "t".into(),
            x_label: "ratio".into(),
            marks: vec!["t ≥ 2".into(), "all".into()],
            rows: vec![
                IntervalRow {
                    name: "a<b".into(),
                    color: palette_color(0),
                    marks: vec![
                        Some(Mark {
                            value: 1.1,
                            ci: Some((1.05, 1.2)),
                        }),
                        None,
                    ],
                },
                IntervalRow {
                    name: "huge".into(),
                    color: palette_color(1),
                    marks: vec![
                        Some(Mark {
                            value: 1e9,
                            ci: None,
                        }),
                        Some(Mark {
                            value: f64::INFINITY,
                            ci: None,
                        }),
                    ],
                },
            ],
            log: true,
            reference: Some((1.0, "oracle".into())),
            suffix: "×".into(),
        };
        let s = intervals(&p);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("a&lt;b") && s.contains("1.10×") && s.contains("10⁹×"));
        assert!(s.contains("n/a") && !s.contains("NaN") && !s.contains("inf"));
    }

    #[test]
    fn horizon_lines_name_every_series() {
        let series = vec![
            Series {
                name: "mnl".into(),
                color: palette_color(0),
                points: vec![(1.0, 0.02), (2.0, 0.03)],
            },
            Series {
                name: "oracle".into(),
                color: ORACLE_COLOR,
                points: vec![(1.0, 0.01), (2.0, 0.01)],
            },
        ];
        let svg = lines("Forecast", "horizon", "TV", &series);
        assert!(svg.starts_with("<svg") && svg.contains("\nmnl\n") && svg.contains("\noracle\n"));
    }
}
