//! The channel–concept scores: a channel equal to the indicator of class c gets IoU_{k,c} = 1
//! and point-biserial correlation 1 (also for a class rarer than the quantile's tail); a constant channel is
//! never on; on continuous activations the threshold keeps ≈ the top 1 − q of the pixels; ignored pixels count
//! nowhere.

mod support;

use aux_recon::channels::{score_in_memory, ChannelStats, Phase, DEFAULT_BINS, IOU_HIT};
use core_seg::Result;

const IGNORE: u32 = 255;

/// 4 images of 400 pixels, 3 classes (class 2 rare: 1 pixel in 400 of image 0 only), a few ignored pixels.
fn labels() -> Vec<Vec<u32>> {
    (0..4)
        .map(|i| {
            (0..400)
                .map(|p| match p {
                    _ if p % 97 == 5 => IGNORE,
                    _ if i == 0 && p == 7 => 2,
                    _ if (p / 20 + i) % 3 == 0 => 1,
                    _ => 0,
                })
                .collect()
        })
        .collect()
}

/// Channels: [1 = class 1], [1 = class 2], constant 0.7, continuous noise, −[class 0] (anti-correlated).
fn activations(labels: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let mut k = 0u64;
    labels
        .iter()
        .map(|y| {
            let mut a = Vec::new();
            a.extend(y.iter().map(|&c| (c == 1) as u8 as f32));
            a.extend(y.iter().map(|&c| (c == 2) as u8 as f32));
            a.extend(y.iter().map(|_| 0.7f32));
            k += 1;
            a.extend(support::values(y.len(), k).iter().map(|&v| v as f32));
            a.extend(y.iter().map(|&c| -((c == 0) as u8 as f32)));
            a
        })
        .collect()
}

#[test]
fn indicator_channels_score_one_and_a_constant_channel_none() -> Result<()> {
    let y = labels();
    let mut stats = ChannelStats::new(5, 3, 0.995, DEFAULT_BINS, IGNORE)?;
    let s = score_in_memory(&activations(&y), &y, &mut stats)?;
    let iou = |k: usize, c: usize| s.iou[k * 3 + c];
    let corr = |k: usize, c: usize| s.corr[k * 3 + c];
    let best_image = |k: usize, c: usize| s.best_image[k * 3 + c];
    assert!((iou(0, 1) - 1.0).abs() < 1e-12, "indicator of class 1: IoU {}", iou(0, 1));
    assert!((corr(0, 1) - 1.0).abs() < 1e-9, "indicator of class 1: r {}", corr(0, 1));
    assert!((iou(1, 2) - 1.0).abs() < 1e-12, "indicator of a rare class: IoU {}", iou(1, 2));
    assert!((corr(1, 2) - 1.0).abs() < 1e-9);
    assert!((0..3).all(|c| iou(2, c) <= IOU_HIT && corr(2, c) == 0.0), "constant channel: {:?}", &s.iou[6..9]);
    assert_eq!(s.threshold[2], None);
    assert!((corr(4, 0) + 1.0).abs() < 1e-9, "anti-indicator: r {}", corr(4, 0));
    assert_eq!(s.best_class()[0], (1, 1.0));
    assert_eq!(s.top_channels(2), vec![0, 1]);
    assert_eq!(s.top_for_class(2, 1), vec![1]);
    assert_eq!(best_image(1, 2), 0, "class 2 only occurs in image 0");
    assert!(s.channels_above(IOU_HIT) >= 2);
    assert!(s.mean_best_iou() > 0.6);
    Ok(())
}

/// On continuous activations, `M_k` holds about the top 0.5 % of the non-ignored pixels (bin resolution).
#[test]
fn threshold_keeps_the_top_quantile() -> Result<()> {
    let n = 20_000;
    let act: Vec<f32> = support::values(n, 99).iter().map(|&v| v as f32).collect();
    let y = vec![0u32; n];
    let mut stats = ChannelStats::new(1, 1, 0.995, DEFAULT_BINS, IGNORE)?;
    let s = score_in_memory(std::slice::from_ref(&act), &[y], &mut stats)?;
    let t = s.threshold[0].expect("a varying channel has a threshold") as f32;
    let on = act.iter().filter(|&&a| a >= t).count() as f64 / n as f64;
    assert!((on - 0.005).abs() < 0.002, "fraction on {on}");
    // One class covering everything: IoU = fraction on.
    assert!((s.iou[0] - on).abs() < 1e-3, "{} vs {on}", s.iou[0]);
    Ok(())
}

#[test]
fn ignored_pixels_never_count_and_passes_are_ordered() -> Result<()> {
    let y = vec![vec![1u32, IGNORE, 0, 1]];
    let a = vec![vec![1f32, 1e6, 0.0, 1.0]];
    let mut stats = ChannelStats::new(1, 2, 0.5, 16, IGNORE)?;
    assert!(stats.scores().is_err(), "no scores before the passes");
    let s = score_in_memory(&a, &y, &mut stats)?;
    assert_eq!(stats.phase(), Phase::Done);
    assert_eq!(s.iou[1], 1.0, "the huge ignored value must not stretch the range");
    assert!(stats.observe(0, &a[0], &y[0]).is_err());
    assert!(ChannelStats::new(1, 2, 0.5, 16, IGNORE)?.observe(0, &[1.0], &[0, 1]).is_err(), "size mismatch");
    assert!(ChannelStats::new(1, 2, 0.5, 16, IGNORE)?.observe(0, &[1.0], &[7]).is_err(), "label out of range");
    assert!(ChannelStats::new(1, 2, 1.0, 16, IGNORE).is_err());
    Ok(())
}
