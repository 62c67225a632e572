//! The growth chart: cost per call and memory per reservation against open
//! reservations per key (log scale), as SVG.

use plotters::prelude::*;

pub fn growth(path: &str, points: &[(u64, f64, f64)]) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(450);
    let max_n = points.iter().map(|p| p.0).max().unwrap_or(10) as f64;
    let max_cost = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.3 + 0.1;
    let max_mem = points.iter().map(|p| p.2).fold(0.0, f64::max) * 1.3 + 1.0;
    for (area, title, max_y, pick) in [
        (&left, "INV.RESERVE usec_per_call", max_cost, 1usize),
        (&right, "bytes per open reservation", max_mem, 2usize),
    ] {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d((900f64..max_n * 1.2).log_scale(), 0f64..max_y)?;
        chart
            .configure_mesh()
            .x_desc("open reservations on the key")
            .draw()?;
        let series: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.0 as f64, if pick == 1 { p.1 } else { p.2 }))
            .collect();
        chart.draw_series(LineSeries::new(series.clone(), &BLUE))?;
        chart.draw_series(
            series
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 4, BLUE.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}
