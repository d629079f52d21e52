//! SVG plots (plotters, SVG backend; text is left to the browser's sans-serif font).

use plotters::prelude::*;

/// A named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const SIZE: (u32, u32) = (720, 480);

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

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
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
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

/// A labelled point estimate with its interval.
pub type Estimate = (String, f64, Option<(f64, f64)>);

/// One row per model: a point estimate with its interval.
pub fn dots(title: &str, rows: &[Estimate]) -> String {
    let mut svg = String::new();
    {
        let h = (90 + 28 * rows.len() as u32).max(200);
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, h)).into_drawing_area();
        let _ = draw_dots(&root, title, rows);
        let _ = root.present();
    }
    svg
}

fn draw_dots<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    rows: &[Estimate],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let lo = rows
        .iter()
        .map(|r| r.2.map_or(r.1, |c| c.0))
        .fold(f64::INFINITY, f64::min);
    let hi = rows
        .iter()
        .map(|r| r.2.map_or(r.1, |c| c.1))
        .fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return Ok(());
    }
    let pad = ((hi - lo) * 0.08).max(0.05);
    let n = rows.len() as i32;
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(150)
        .build_cartesian_2d((lo - pad).max(0.0)..hi + pad, -1i32..n)?;
    chart
        .configure_mesh()
        .y_labels((n + 1) as usize)
        .y_label_formatter(&|y| {
            usize::try_from(n - 1 - *y)
                .ok()
                .and_then(|i| names.get(i).cloned())
                .unwrap_or_default()
        })
        .x_desc("perplexity")
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for (i, (_, p, ci)) in rows.iter().enumerate() {
        let y = n - 1 - i as i32;
        let c = color(i);
        if let Some((a, b)) = ci {
            chart.draw_series(LineSeries::new(vec![(*a, y), (*b, y)], c.stroke_width(2)))?;
        }
        chart.draw_series(std::iter::once(Circle::new((*p, y), 5, c.filled())))?;
    }
    Ok(())
}
