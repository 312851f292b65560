//! Figures for results, written as PNG and SVG side by side with plotters.
//! Text needs a TrueType font: `$NSED_FONT`, else DejaVu Sans or Liberation
//! Sans from the usual system paths (Debian: `fonts-dejavu-core`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

/// Why a figure could not be written.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// No TrueType font could be read (neither `$NSED_FONT` nor a usual system path).
    #[error("no TrueType font for figure text: install fonts-dejavu-core or set NSED_FONT to a .ttf file")]
    NoFont,
    /// Drawing or writing one of the figure's files failed.
    #[error("cannot draw {path}: {message}")]
    Draw {
        /// The PNG or SVG file being drawn.
        path: PathBuf,
        /// The plotting library's error.
        message: String,
    },
}

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];
const FAMILY: &str = "sans-serif";

/// Register a font once per process; false if none is readable.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let candidates = std::env::var("NSED_FONT")
            .ok()
            .into_iter()
            .chain(FONT_PATHS.iter().map(|s| s.to_string()));
        for path in candidates {
            if let Ok(bytes) = std::fs::read(&path) {
                // plotters keeps fonts for the whole process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FAMILY, FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// One named line of a chart.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// The series' name in the legend.
    pub name: String,
    /// The (x, y) points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Per point, the (low, high) of its y interval, drawn as an error bar
    /// (empty: none).
    pub intervals: Vec<(f64, f64)>,
    /// Draw the points as markers only, not joined by a line: separate
    /// measurements (say, each model alone) are not a curve.
    pub unjoined: bool,
}

/// A line chart: axes, labels and ranges.
pub struct LineChart<'a> {
    /// The chart's title.
    pub title: String,
    /// The x axis's label.
    pub x_label: &'a str,
    /// The y axis's label.
    pub y_label: &'a str,
    /// The x axis's (min, max).
    pub x_range: (f64, f64),
    /// The y axis's (min, max).
    pub y_range: (f64, f64),
    /// Category names for integer x positions (e.g. length bins), if any.
    pub x_names: Option<&'a [&'a str]>,
    /// Draw the diagonal y = x (ROC charts).
    pub diagonal: bool,
}

/// Write `<stem>.png` and `<stem>.svg`.
pub fn lines(stem: &Path, chart: &LineChart, series: &[Series]) -> Result<(), FigureError> {
    if !font_ready() {
        return Err(FigureError::NoFont);
    }
    let png = with_suffix(stem, "png");
    let svg = with_suffix(stem, "svg");
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: String| FigureError::Draw {
            path: path.clone(),
            message: e,
        }
    };
    draw(
        BitMapBackend::new(&png, (800, 560)).into_drawing_area(),
        chart,
        series,
    )
    .map_err(err(&png))?;
    draw(
        SVGBackend::new(&svg, (800, 560)).into_drawing_area(),
        chart,
        series,
    )
    .map_err(err(&svg))?;
    Ok(())
}

/// `<stem>.<ext>`, keeping any dots already in the stem: `Path::with_extension`
/// would turn `roc-substitute-qwen2.5-coder-0.5b` into `roc-substitute-qwen2.png`.
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_os_string();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

const PALETTE: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    chart: &LineChart,
    series: &[Series],
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    area.fill(&WHITE).map_err(|x| e(&x))?;
    let mut c = ChartBuilder::on(&area)
        .caption(&chart.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(
            chart.x_range.0..chart.x_range.1,
            chart.y_range.0..chart.y_range.1,
        )
        .map_err(|x| e(&x))?;
    let names = chart.x_names;
    let x_fmt = |x: &f64| match names {
        Some(n) if (x.fract()).abs() < 1e-9 && *x >= 0.0 => {
            n.get(*x as usize).map_or(String::new(), |s| s.to_string())
        }
        Some(_) => String::new(),
        None => format!("{x:.2}"),
    };
    let mut mesh = c.configure_mesh();
    mesh.x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style((FAMILY, 14))
        .x_label_formatter(&x_fmt);
    if let Some(n) = names {
        mesh.x_labels(n.len());
    }
    mesh.draw().map_err(|x| e(&x))?;
    if chart.diagonal {
        let lo = chart.x_range.0.max(chart.y_range.0);
        let hi = chart.x_range.1.min(chart.y_range.1);
        c.draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.mix(0.3)))
            .map_err(|x| e(&x))?;
    }
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if s.unjoined {
            c.draw_series(s.points.iter().map(|&p| Circle::new(p, 5, color.filled())))
                .map_err(|x| e(&x))?
                .label(s.name.as_str())
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
        } else {
            c.draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
            // Categories and short series (one point per budget) get markers.
            if names.is_some() || s.points.len() <= 12 {
                c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|x| e(&x))?;
            }
        }
        // Error bars: a vertical segment per point with short caps.
        let cap = 0.006 * (chart.x_range.1 - chart.x_range.0);
        for (&(x, _), &(lo, hi)) in s.points.iter().zip(&s.intervals) {
            let style = color.mix(0.7).stroke_width(1);
            c.draw_series([
                PathElement::new([(x, lo), (x, hi)], style),
                PathElement::new([(x - cap, lo), (x + cap, lo)], style),
                PathElement::new([(x - cap, hi), (x + cap, hi)], style),
            ])
            .map_err(|x| e(&x))?;
        }
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, 13))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|x| e(&x))?;
    area.present().map_err(|x| e(&x))?;
    Ok(())
}

/// A point with its 95% interval per named category (e.g. each judge's AUC).
pub struct IntervalChart<'a> {
    /// The chart's title.
    pub title: String,
    /// The y axis's label.
    pub y_label: &'a str,
    /// The y axis's (min, max).
    pub y_range: (f64, f64),
    /// A dashed horizontal line (chance level), if any.
    pub reference: Option<f64>,
    /// The categories along the x axis, in order.
    pub names: &'a [String],
}

/// Write `<stem>.png` and `<stem>.svg`: one dot and whisker per category;
/// `points[i]` = (value, low, high) of `names[i]`.
pub fn intervals(
    stem: &Path,
    chart: &IntervalChart,
    points: &[(f64, f64, f64)],
) -> Result<(), FigureError> {
    if !font_ready() {
        return Err(FigureError::NoFont);
    }
    for (ext, size) in [("png", (900, 560)), ("svg", (900, 560))] {
        let path = with_suffix(stem, ext);
        let drawn = if ext == "png" {
            draw_intervals(
                BitMapBackend::new(&path, size).into_drawing_area(),
                chart,
                points,
            )
        } else {
            draw_intervals(
                SVGBackend::new(&path, size).into_drawing_area(),
                chart,
                points,
            )
        };
        drawn.map_err(|message| FigureError::Draw {
            path: path.clone(),
            message,
        })?;
    }
    Ok(())
}

fn draw_intervals<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    chart: &IntervalChart,
    points: &[(f64, f64, f64)],
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    area.fill(&WHITE).map_err(|x| e(&x))?;
    let n = chart.names.len().max(1) as f64;
    let mut c = ChartBuilder::on(&area)
        .caption(&chart.title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5..n - 0.5, chart.y_range.0..chart.y_range.1)
        .map_err(|x| e(&x))?;
    let names = chart.names;
    let x_fmt = |x: &f64| {
        let i = x.round();
        match (i - x).abs() < 1e-9 && i >= 0.0 {
            true => names.get(i as usize).cloned().unwrap_or_default(),
            false => String::new(),
        }
    };
    c.configure_mesh()
        .y_desc(chart.y_label)
        .label_style((FAMILY, 13))
        .x_labels(names.len().max(1) * 2 + 1)
        .x_label_formatter(&x_fmt)
        .disable_x_mesh()
        .draw()
        .map_err(|x| e(&x))?;
    if let Some(y) = chart.reference {
        c.draw_series(DashedLineSeries::new(
            [(-0.5, y), (n - 0.5, y)],
            6,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(|x| e(&x))?;
    }
    for (i, &(v, lo, hi)) in points.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let x = i as f64;
        c.draw_series(LineSeries::new([(x, lo), (x, hi)], color.stroke_width(2)))
            .map_err(|x| e(&x))?;
        c.draw_series([Circle::new((x, v), 5, color.filled())])
            .map_err(|x| e(&x))?;
    }
    area.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_png_and_svg_with_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A dotted model name must survive: roc-qwen2.5-coder-0.5b.png.
        let stem = dir.path().join("roc-qwen2.5-coder-0.5b");
        let chart = LineChart {
            title: "ROC".into(),
            x_label: "honest flagged",
            y_label: "fraud detected",
            x_range: (0.0, 1.0),
            y_range: (0.0, 1.0),
            x_names: None,
            diagonal: true,
        };
        let series = [Series {
            name: "distance".into(),
            points: vec![(0.0, 0.0), (0.1, 0.8), (1.0, 1.0)],
            ..Default::default()
        }];
        lines(&stem, &chart, &series).expect("draw");
        let png = std::fs::read(dir.path().join("roc-qwen2.5-coder-0.5b.png")).expect("png");
        assert_eq!(&png[1..4], b"PNG");
        let svg =
            std::fs::read_to_string(dir.path().join("roc-qwen2.5-coder-0.5b.svg")).expect("svg");
        assert!(svg.contains("<svg") && svg.contains("fraud detected") && svg.contains("distance"));
    }

    #[test]
    fn error_bars_and_unjoined_points_are_drawn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chart = LineChart {
            title: "budgets".into(),
            x_label: "tokens",
            y_label: "accuracy",
            x_range: (0.0, 100.0),
            y_range: (0.0, 1.0),
            x_names: None,
            diagonal: false,
        };
        let line = Series {
            name: "nsed".into(),
            points: vec![(10.0, 0.2), (50.0, 0.5)],
            ..Default::default()
        };
        let alone = Series {
            name: "model alone".into(),
            points: vec![(5.0, 0.6)],
            unjoined: true,
            ..Default::default()
        };
        let polylines = |series: &[Series], name: &str| {
            let stem = dir.path().join(name);
            lines(&stem, &chart, series).expect("draw");
            let svg = std::fs::read_to_string(with_suffix(&stem, "svg")).expect("svg");
            assert!(
                svg.contains("model alone"),
                "the lone point is in the legend"
            );
            svg.matches("<polyline").count()
        };
        let bare = polylines(&[line.clone(), alone.clone()], "bare");
        let with_bars = Series {
            intervals: vec![(0.1, 0.35), (0.3, 0.7)],
            ..line
        };
        let barred = polylines(&[with_bars, alone], "barred");
        // Each interval is a bar and two caps.
        assert_eq!(barred - bare, 6, "{bare} → {barred}");
    }

    #[test]
    fn interval_charts_name_every_category() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stem = dir.path().join("judges");
        let names = vec![
            "qwen (generative)".to_string(),
            "gemma (logprob)".to_string(),
        ];
        let chart = IntervalChart {
            title: "AUC".into(),
            y_label: "AUC",
            y_range: (0.0, 1.0),
            reference: Some(0.5),
            names: &names,
        };
        intervals(&stem, &chart, &[(0.7, 0.6, 0.8), (0.5, 0.4, 0.6)]).expect("draw");
        let svg = std::fs::read_to_string(dir.path().join("judges.svg")).expect("svg");
        assert!(svg.contains("qwen (generative)") && svg.contains("gemma (logprob)"));
        assert!(dir.path().join("judges.png").exists());
    }
}
