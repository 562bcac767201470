//! PNG curves of a run: training loss, and evaluation accuracy / agreement, over steps.

use std::path::Path;

use plotters::prelude::*;

use crate::metrics::Record;

/// Registers a system sans-serif font for the labels once; without one, curves are drawn
/// without text.
fn font_available() -> bool {
    static FONT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FONT.get_or_init(|| {
        let candidates = [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ];
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                // The font must live as long as the program; it is loaded once.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// One named curve.
struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Draws `loss.png` and (when there are evaluations) `accuracy.png` into `dir`. Failures
/// are logged and otherwise ignored: plots never stop a run.
pub fn write_plots(dir: &Path, records: &[Record]) {
    let mut loss = Vec::new();
    let (mut student, mut teacher, mut agree) = (Vec::new(), Vec::new(), Vec::new());
    for r in records {
        match r {
            Record::Train { step, loss: l, .. } => loss.push((*step as f64, *l)),
            Record::Eval { step, result, .. } => {
                let s = *step as f64;
                student.push((s, result.student_top1));
                if let Some(t) = result.teacher_top1 {
                    teacher.push((s, t));
                }
                if let Some(a) = result.agreement {
                    agree.push((s, a));
                }
            }
        }
    }
    let loss = vec![Series { name: "train loss", color: BLUE, points: loss }];
    if let Err(e) =
        draw(&dir.join("loss.png"), "training loss", &loss, SeriesLabelPosition::UpperRight)
    {
        tracing::warn!(error = %e, "could not draw loss.png");
    }
    if !student.is_empty() {
        let acc = vec![
            Series { name: "student top-1", color: BLUE, points: student },
            Series { name: "teacher top-1", color: RED, points: teacher },
            Series { name: "top-1 agreement", color: GREEN, points: agree },
        ];
        // Accuracies rise to the right; the legend goes where the curves are not.
        let legend = SeriesLabelPosition::LowerRight;
        if let Err(e) = draw(&dir.join("accuracy.png"), "evaluation accuracy", &acc, legend) {
            tracing::warn!(error = %e, "could not draw accuracy.png");
        }
    }
}

fn draw(
    path: &Path,
    title: &str,
    series: &[Series],
    legend: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    let points = series.iter().flat_map(|s| s.points.iter()).filter(|p| p.1.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Ok(());
    }
    if x1 - x0 < 1.0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let (y0, y1) = (y0 - pad, y1 + pad);

    let text = font_available();
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    // The right margin leaves room for the last x label, centred on the plot's edge.
    builder.margin(15).margin_right(40);
    if text {
        builder.caption(title, ("sans-serif", 24)).x_label_area_size(40).y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
    if text {
        chart.configure_mesh().x_desc("step").x_label_formatter(&|x| format!("{x:.0}")).draw()?;
    } else {
        chart.configure_mesh().disable_x_mesh().disable_y_mesh().draw()?;
    }
    for s in series.iter().filter(|s| !s.points.is_empty()) {
        let color = s.color;
        // Few points (evaluations): mark each, so a reader sees where they were taken.
        let marker = if s.points.len() <= 50 { 3 } else { 0 };
        let line = LineSeries::new(s.points.iter().copied(), color.stroke_width(2));
        let drawn = chart.draw_series(line.point_size(marker))?;
        if text {
            drawn.label(s.name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text {
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
