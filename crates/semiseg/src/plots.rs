//! Report figures: learning curves (loss and mIoU vs iteration) with `plotters`, and a qualitative grid
//! (image | ground truth | each method's prediction) in the dataset palette.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::{Error, Result};

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static FONT_ONCE: Once = Once::new();

fn register_font() {
    FONT_ONCE.call_once(|| {
        // The embedded DejaVu Sans (see assets/DejaVuSans.LICENSE); no system fonts needed.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Per method, per seed: (mIoU curve, loss curve).
type Curves = [(String, Vec<(Vec<(usize, f64)>, Vec<(usize, f64)>)>)];

fn smooth(xs: &[(usize, f64)], window: usize) -> Vec<(f64, f64)> {
    xs.chunks(window.max(1))
        .map(|c| {
            (
                c.iter().map(|p| p.0 as f64).sum::<f64>() / c.len() as f64,
                c.iter().map(|p| p.1).sum::<f64>() / c.len() as f64,
            )
        })
        .collect()
}

/// What plotters returns; turned into [`Error::Plot`] naming the file.
type Drawn = std::result::Result<(), Box<dyn std::error::Error>>;

fn plotted(path: &Path, drawn: Drawn) -> Result<()> {
    drawn.map_err(|e| Error::Plot { path: path.to_path_buf(), msg: e.to_string() })
}

/// Two panels: training loss (seed 0, smoothed) and evaluation mIoU vs iteration, one colour per method.
pub fn learning_curves(path: &Path, curves: &Curves) -> Result<()> {
    plotted(path, draw_curves(path, curves))
}

fn draw_curves(path: &Path, curves: &Curves) -> Drawn {
    register_font();
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(600);
    let max_it =
        curves.iter().flat_map(|c| c.1.iter().flat_map(|r| r.1.iter().map(|p| p.0))).max().unwrap_or(1).max(1) as f64;
    let max_loss =
        curves.iter().flat_map(|c| c.1.iter().flat_map(|r| r.1.iter().map(|p| p.1))).fold(0.0, f64::max).max(1e-3);
    let mut ch = ChartBuilder::on(&left)
        .caption("training loss (loss_all)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..max_it, 0.0..max_loss * 1.05)?;
    ch.configure_mesh().x_desc("iteration").y_desc("loss").draw()?;
    for (i, (name, runs)) in curves.iter().enumerate() {
        let Some(first) = runs.first() else { continue };
        let c = COLORS[i % COLORS.len()];
        let pts = smooth(&first.1, (first.1.len() / 60).max(1));
        ch.draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    ch.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    let mut ch = ChartBuilder::on(&right)
        .caption("validation mIoU (%)", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..max_it * 1.02, miou_range(curves))?;
    ch.configure_mesh().x_desc("iteration").y_desc("mIoU %").draw()?;
    for (i, (name, runs)) in curves.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        for (s, run) in runs.iter().enumerate() {
            let pts: Vec<(f64, f64)> = run.0.iter().map(|p| (p.0 as f64, p.1)).collect();
            ch.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?;
            let series = ch.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
            if s == 0 {
                series.label(name.clone()).legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
            }
        }
    }
    ch.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// The mIoU axis: the data's range with a 2-point margin (differences of a point stay visible), within 0..100.
fn miou_range(curves: &Curves) -> std::ops::Range<f64> {
    let all = curves.iter().flat_map(|c| c.1.iter().flat_map(|r| r.0.iter().map(|p| p.1)));
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..100.0;
    }
    (lo - 2.0).floor().max(0.0)..(hi + 2.0).ceil().min(100.0)
}

/// Grid rows = samples; columns = image, ground truth, then one prediction per method (palette colours), each
/// column named above its first tile. Tiles smaller than 128 px are enlarged by an integer factor (nearest
/// neighbour) so they stay readable.
pub fn qualitative_grid(
    path: &Path,
    images: &[data::RgbImage],
    gts: &[Vec<u8>],
    preds: &[(String, Vec<Vec<u8>>)],
    palette: &[[u8; 3]; 256],
) -> Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    // Every cell is as large as the largest image; each image (and its maps) fills its own size from the top left.
    let sw = images.iter().map(|i| i.width).max().unwrap_or(1);
    let sh = images.iter().map(|i| i.height).max().unwrap_or(1);
    let zoom = (128 / sw.max(sh).max(1)).max(1);
    let (w, h, gap) = (sw * zoom, sh * zoom, 4);
    let cols = 2 + preds.len();
    let head = 20;
    let (gw, gh) = (cols * (w + gap), head + images.len() * (h + gap));
    let mut buf = vec![255u8; gw * gh * 3];
    let mut put = |col: usize, row: usize, (iw, ih): (usize, usize), px: &dyn Fn(usize) -> [u8; 3]| {
        for y in 0..ih * zoom {
            for x in 0..iw * zoom {
                let o = ((head + row * (h + gap) + y) * gw + col * (w + gap) + x) * 3;
                buf[o..o + 3].copy_from_slice(&px((y / zoom) * iw + x / zoom));
            }
        }
    };
    let at = |labels: &[u8], i: usize| palette[labels.get(i).copied().unwrap_or(255) as usize];
    for (r, img) in images.iter().enumerate() {
        let size = (img.width, img.height);
        put(0, r, size, &|i| [img.data[3 * i], img.data[3 * i + 1], img.data[3 * i + 2]]);
        put(1, r, size, &|i| at(&gts[r], i));
        for (m, (_, p)) in preds.iter().enumerate() {
            put(2 + m, r, size, &|i| at(&p[r], i));
        }
    }
    let names: Vec<&str> = ["image", "ground truth"].into_iter().chain(preds.iter().map(|p| p.0.as_str())).collect();
    plotted(path, label_columns(&mut buf, (gw, gh), w + gap, &names))?;
    data::io::write_rgb(path, &data::RgbImage { width: gw, height: gh, data: buf })?;
    Ok(())
}

/// Writes each column's name into the white strip above it (shortened with "…" where it would not fit).
fn label_columns(buf: &mut [u8], (gw, gh): (usize, usize), col_w: usize, names: &[&str]) -> Drawn {
    register_font();
    let root = BitMapBackend::with_buffer(buf, (gw as u32, gh as u32)).into_drawing_area();
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    for (c, name) in names.iter().enumerate() {
        let fits = |t: &str| root.estimate_text_size(t, &font).is_ok_and(|(tw, _)| (tw as usize) + 4 <= col_w);
        let mut text = name.to_string();
        while !fits(&text) && text.chars().count() > 1 {
            let keep = text.trim_end_matches('…').chars().count() - 1;
            text = name.chars().take(keep).collect::<String>() + "…";
        }
        root.draw_text(&text, &font, ((c * col_w) as i32, 3))?;
    }
    root.present()?;
    Ok(())
}

/// One row of a channel grid: the image, one channel's activation map (same size, any scale), a class mask.
pub struct GridRow {
    pub image: data::RgbImage,
    pub heat: Vec<f32>,
    pub mask: Vec<bool>,
    pub caption: String,
}

/// Black → red → yellow → white for `t ∈ [0, 1]`.
fn heat_color(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let ch = |x: f64| (x.clamp(0.0, 1.0) * 255.0) as u8;
    RGBColor(ch(3.0 * t), ch(3.0 * t - 1.0), ch(3.0 * t - 2.0))
}

/// Rows = channels: image | activation heat map (min–max of the row) | class mask, each with its caption above.
pub fn channel_grid(path: &Path, rows: &[GridRow], title: &str) -> Result<()> {
    plotted(path, draw_channel_grid(path, rows, title))
}

fn draw_channel_grid(path: &Path, rows: &[GridRow], title: &str) -> Drawn {
    register_font();
    let Some(first) = rows.first() else { return Ok(()) };
    let (w, h) = (first.image.width, first.image.height);
    let scale = (160 / w.max(h)).max(1);
    let (cw, ch, gap, cap, head) = (w * scale, h * scale, 8, 20, 30);
    let size = ((3 * (cw + gap) + gap) as u32, (head + rows.len() * (ch + cap + gap)) as u32);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    root.draw_text(title, &("sans-serif", 18).into_font().color(&BLACK), (gap as i32, 6))?;
    for (r, row) in rows.iter().enumerate() {
        if row.image.width != w || row.image.height != h || row.heat.len() != w * h || row.mask.len() != w * h {
            return Err(format!("channel grid: row {r} does not match the first image's {w}x{h}").into());
        }
        let y0 = head + r * (ch + cap + gap);
        root.draw_text(&row.caption, &("sans-serif", 14).into_font().color(&BLACK), (gap as i32, y0 as i32))?;
        let (lo, hi) = row.heat.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let span = (hi - lo).max(1e-12) as f64;
        for y in 0..ch {
            for x in 0..cw {
                let i = (y / scale) * w + x / scale;
                let px = &row.image.data[3 * i..3 * i + 3];
                let cols = [
                    RGBColor(px[0], px[1], px[2]),
                    heat_color((row.heat[i] - lo) as f64 / span),
                    if row.mask[i] { WHITE } else { BLACK },
                ];
                for (c, col) in cols.iter().enumerate() {
                    let (gx, gy) = (gap + c * (cw + gap) + x, y0 + cap + y);
                    root.draw_pixel((gx as i32, gy as i32), col)?;
                }
            }
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The grid has a strip of column names above the tiles: dark text pixels in it, over every column, and the
    /// tiles below it unchanged.
    #[test]
    fn qualitative_grid_names_its_columns() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("grid.png");
        let img = data::RgbImage { width: 64, height: 64, data: vec![200; 64 * 64 * 3] };
        let mut palette = [[0u8; 3]; 256];
        palette[1] = [0, 0, 255];
        let preds = vec![("unimatch+classwise-mim+fa".to_string(), vec![vec![1u8; 64 * 64]])];
        super::qualitative_grid(&path, &[img], &[vec![1u8; 64 * 64]], &preds, &palette)?;
        let g = data::io::read_image(&path)?;
        let (col_w, head) = (128 + 4, 20);
        assert_eq!((g.width, g.height), (3 * col_w, head + 128 + 4));
        let px = |x: usize, y: usize| &g.data[3 * (y * g.width + x)..3 * (y * g.width + x) + 3];
        for c in 0..3 {
            let dark = (0..head).flat_map(|y| (c * col_w..(c + 1) * col_w).map(move |x| (x, y)));
            assert!(dark.filter(|&(x, y)| px(x, y)[0] < 128).count() > 10, "column {c} has no name");
        }
        assert_eq!(px(10, head + 10), [200, 200, 200]);
        assert_eq!(px(col_w + 10, head + 10), [0, 0, 255]);
        Ok(())
    }
}
