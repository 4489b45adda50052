//! Reports of a run: metrics as CSV, loss and accuracy curves as SVG, and
//! accuracy per class with a confusion matrix.

use crate::atomic::write_atomic;
use crate::learner::EpochMetrics;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why a report could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The plotting library refused a drawing step.
    #[error("drawing the plot: {0}")]
    Draw(String),
    /// Writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A drawing step's error.
fn draw(e: impl std::fmt::Display) -> ReportError {
    ReportError::Draw(e.to_string())
}

/// Writes `svg` to `path` atomically.
fn write_svg(path: &Path, svg: &str) -> Result<(), ReportError> {
    write_atomic(path, svg.as_bytes()).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The per-epoch metrics as CSV text.
pub fn metrics_csv(history: &[EpochMetrics]) -> String {
    let mut s =
        String::from("epoch,train_loss,train_acc,val_loss,val_acc,lr,samples_per_sec,seconds\n");
    let opt = |v: Option<f32>| v.map(|x| format!("{x:.6}")).unwrap_or_default();
    for m in history {
        let _ = writeln!(
            s,
            "{},{:.6},{},{},{},{:.6e},{:.1},{:.3}",
            m.epoch,
            m.train_loss,
            opt(m.train_acc),
            opt(m.val_loss),
            opt(m.val_acc),
            m.lr,
            m.samples_per_sec,
            m.seconds
        );
    }
    s
}

/// Writes the metrics CSV atomically.
pub fn write_metrics(path: &Path, history: &[EpochMetrics]) -> std::io::Result<()> {
    write_atomic(path, metrics_csv(history).as_bytes())
}

/// Draws loss (left) and accuracy (right) per epoch as an SVG file.
pub fn plot_curves(path: &Path, history: &[EpochMetrics]) -> Result<(), ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(draw)?;
        let (left, right) = root.split_horizontally(480);
        let series = |f: &dyn Fn(&EpochMetrics) -> Option<f32>| -> Vec<(f32, f32)> {
            history
                .iter()
                .filter_map(|m| f(m).map(|v| (m.epoch as f32, v)))
                .collect()
        };
        let n = history.len().max(1) as f32;
        draw_panel(
            &left,
            "loss",
            n,
            series(&|m| Some(m.train_loss)),
            series(&|m| m.val_loss),
        )?;
        draw_panel(
            &right,
            "accuracy",
            n,
            series(&|m| m.train_acc),
            series(&|m| m.val_acc),
        )?;
        root.present().map_err(draw)?;
    }
    write_svg(path, &svg)
}

/// Draws each target's predictions against its true values as an SVG
/// file (one panel per target, side by side, at most 4; the diagonal is a
/// perfect fit): `predictions` and `truth` row-major with `names.len()`
/// values per sample.
pub fn plot_predictions(
    path: &Path,
    predictions: &[f32],
    truth: &[f32],
    names: &[String],
) -> Result<(), ReportError> {
    let width = names.len().max(1);
    let panels = width.min(4);
    let mut svg = String::new();
    {
        let size = (400 * panels as u32, 400);
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw)?;
        for (j, area) in root.split_evenly((1, panels)).iter().enumerate() {
            let points: Vec<(f32, f32)> = truth
                .iter()
                .zip(predictions)
                .skip(j)
                .step_by(width)
                .map(|(&t, &p)| (t, p))
                .filter(|(t, p)| t.is_finite() && p.is_finite())
                .collect();
            let (lo, hi) = points
                .iter()
                .fold((f32::MAX, f32::MIN), |(lo, hi), &(t, p)| {
                    (lo.min(t).min(p), hi.max(t).max(p))
                });
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 1.0) };
            let pad = ((hi - lo) * 0.05).max(1e-3);
            let range = lo - pad..hi + pad;
            let name = names.get(j).map_or("target", String::as_str);
            let mut chart = ChartBuilder::on(area)
                .caption(name, ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(range.clone(), range)
                .map_err(draw)?;
            chart
                .configure_mesh()
                .x_desc("true")
                .y_desc("predicted")
                .draw()
                .map_err(draw)?;
            chart
                .draw_series(LineSeries::new(
                    [(lo - pad, lo - pad), (hi + pad, hi + pad)],
                    &BLACK.mix(0.4),
                ))
                .map_err(draw)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 2, BLUE.filled())))
                .map_err(draw)?;
        }
        root.present().map_err(draw)?;
    }
    write_svg(path, &svg)
}

/// One panel: a training curve and, when present, a validation curve, from 0 up.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    name: &str,
    epochs: f32,
    train: Vec<(f32, f32)>,
    val: Vec<(f32, f32)>,
) -> Result<(), ReportError> {
    let ymax = train
        .iter()
        .chain(val.iter())
        .map(|p| p.1)
        .fold(0.0f32, f32::max)
        .max(1e-3)
        * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(name, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5f32..epochs + 0.5, 0.0f32..ymax)
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(draw)?;
    chart
        .draw_series(LineSeries::new(train, &BLUE))
        .map_err(draw)?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val, &RED))
            .map_err(draw)?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    }
    // Loss falls and accuracy rises: put the legend where the curves are not.
    let corner = if name == "loss" {
        SeriesLabelPosition::UpperRight
    } else {
        SeriesLabelPosition::LowerRight
    };
    chart
        .configure_series_labels()
        .position(corner)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(draw)
}

/// Confusion matrix: `m[true][predicted]`.
pub fn confusion(labels: &[usize], predictions: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0usize; classes]; classes];
    for (&y, &p) in labels.iter().zip(predictions) {
        if y < classes && p < classes {
            m[y][p] += 1;
        }
    }
    m
}

/// Accuracy, accuracy per class and the confusion matrix, as text.
pub fn classification_report(labels: &[usize], predictions: &[usize], names: &[String]) -> String {
    let classes = names
        .len()
        .max(labels.iter().chain(predictions).max().map_or(0, |m| m + 1));
    confusion_report(&confusion(labels, predictions, classes), names)
}

/// The text of [`classification_report`] from a confusion matrix
/// `m[true][predicted]` (as [`confusion`] makes it, or
/// [`Classification::confusion`](crate::eval::Classification::confusion)):
/// accuracy, accuracy per class and the matrix. Classes beyond the matrix
/// that `names` names have no samples; a row shorter than the others
/// counts zeros.
pub fn confusion_report(m: &[Vec<usize>], names: &[String]) -> String {
    let classes = names.len().max(m.len());
    let cell = |t: usize, p: usize| m.get(t).and_then(|r| r.get(p)).copied().unwrap_or(0);
    let row_total = |t: usize| m.get(t).map_or(0, |r| r.iter().sum::<usize>());
    let total: usize = (0..classes).map(row_total).sum();
    let correct: usize = (0..classes).map(|c| cell(c, c)).sum();
    let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
    let mut s = format!(
        "accuracy: {:.4} ({correct}/{total})\n\nper class:\n",
        correct as f64 / total.max(1) as f64,
    );
    for c in 0..classes {
        let n = row_total(c);
        let acc = if n == 0 {
            0.0
        } else {
            cell(c, c) as f64 / n as f64
        };
        let _ = writeln!(
            s,
            "  {:>2} {:<12} {:.4} ({}/{n})",
            c,
            name(c),
            acc,
            cell(c, c)
        );
    }
    s.push_str("\nconfusion matrix (rows: true class, columns: predicted):\n    ");
    for c in 0..classes {
        let _ = write!(s, "{c:>6}");
    }
    s.push('\n');
    for t in 0..classes {
        let _ = write!(s, "  {t:>2}");
        for p in 0..classes {
            let _ = write!(s, "{:>6}", cell(t, p));
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_report() {
        let y = [0, 0, 1, 1, 2];
        let p = [0, 1, 1, 1, 0];
        let m = confusion(&y, &p, 3);
        assert_eq!(m, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        let r = classification_report(&y, &p, &["a".into(), "b".into(), "c".into()]);
        assert!(r.starts_with("accuracy: 0.6000 (3/5)"), "{r}");
        assert!(r.contains(" 1 b            1.0000 (2/2)"), "{r}");
    }

    #[test]
    fn csv_and_svg() {
        let h: Vec<EpochMetrics> = (1..=3)
            .map(|e| EpochMetrics {
                epoch: e,
                train_loss: 1.0 / e as f32,
                train_acc: Some(0.5 + 0.1 * e as f32),
                val_loss: Some(1.1 / e as f32),
                val_acc: Some(0.45 + 0.1 * e as f32),
                lr: 1e-3,
                samples_per_sec: 1000.0,
                seconds: 1.0,
            })
            .collect();
        let csv = metrics_csv(&h);
        assert_eq!(csv.lines().count(), 4);
        assert!(csv
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("1,1.000000,0.600000,1.100000,0.550000,"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.svg");
        plot_curves(&p, &h).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("polyline"),
            "{}",
            &svg[..200.min(svg.len())]
        );
    }
}
