//! Synthetic scenes: determinism, class coverage, knobs, sparse labels, VOC-layout writer.

use core_seg::rng::SegRng;
use data::check::{check_dataset, CheckOptions};
use data::synthetic::{generate, write_voc_layout, SynthConfig, SyntheticDataset, WriteOptions};
use data::{Dataset, DatasetKind};

#[test]
fn same_seed_same_scene_and_different_seeds_differ() {
    let cfg = SynthConfig::default();
    let a = generate(&cfg, &mut SegRng::new(5));
    let b = generate(&cfg, &mut SegRng::new(5));
    let c = generate(&cfg, &mut SegRng::new(6));
    assert_eq!(a, b);
    assert_ne!(a.0, c.0);
    assert_eq!((a.0.width, a.0.height, a.0.data.len()), (64, 64, 64 * 64 * 3));
}

#[test]
fn all_classes_appear_with_plausible_foreground_fraction() {
    let ds = SyntheticDataset::new(SynthConfig::default(), 1, 200).unwrap();
    let mut hist = [0usize; 256];
    for i in 0..ds.len() {
        ds.sample(i).unwrap().mask.unwrap().data.iter().for_each(|&v| hist[v as usize] += 1);
    }
    assert!(hist[..6].iter().all(|&n| n > 0), "{:?}", &hist[..7]);
    assert_eq!(hist[6..].iter().sum::<usize>(), 0, "only labels 0..5");
    let fg = hist[1..6].iter().sum::<usize>() as f64 / (200.0 * 64.0 * 64.0);
    assert!((0.05..0.6).contains(&fg), "foreground fraction {fg}");
}

#[test]
fn class_colour_distributions_overlap() {
    // Mean colour per class over many scenes: the classes are not separable by mean colour alone.
    let ds = SyntheticDataset::new(SynthConfig::default(), 2, 100).unwrap();
    let mut sum = [[0f64; 3]; 6];
    let mut n = [0f64; 6];
    for i in 0..ds.len() {
        let s = ds.sample(i).unwrap();
        for (p, &m) in s.mask.unwrap().data.iter().enumerate() {
            (0..3).for_each(|c| sum[m as usize][c] += s.image.data[p * 3 + c] as f64);
            n[m as usize] += 1.0;
        }
    }
    let means: Vec<[f64; 3]> = (0..6).map(|k| sum[k].map(|v| v / n[k].max(1.0))).collect();
    for a in 1..6 {
        for b in a + 1..6 {
            let d: f64 = (0..3).map(|c| (means[a][c] - means[b][c]).powi(2)).sum::<f64>().sqrt();
            assert!(d < 120.0, "classes {a},{b} mean colours {d:.0} apart");
        }
    }
}

#[test]
fn knobs_size_classes_and_sparse_labels() {
    let cfg = SynthConfig { size: 96, num_classes: 9, label_fraction: 0.1, ..Default::default() };
    let dense = SyntheticDataset::new(SynthConfig { label_fraction: 1.0, ..cfg.clone() }, 4, 3).unwrap();
    let sparse = SyntheticDataset::new(cfg, 4, 3).unwrap();
    for i in 0..3 {
        let d = dense.sample(i).unwrap();
        let s = sparse.sample(i).unwrap();
        assert_eq!(d.image, s.image, "sparse mode changes labels only");
        let (dm, sm) = (d.mask.unwrap(), s.mask.unwrap());
        assert_eq!(dm.width, 96);
        let kept = sm.data.iter().filter(|&&v| v != 255).count();
        assert_eq!(kept, (0.1f64 * (96.0 * 96.0)).round() as usize);
        assert!(sm.data.iter().zip(&dm.data).all(|(s, d)| *s == 255 || s == d));
        assert!(dm.data.iter().all(|&v| v < 9));
    }
    assert!(SynthConfig { num_classes: 1, ..Default::default() }.validate().is_err());
    assert_eq!(Dataset::Synthetic(dense).class_names()[1], "disc-stripes");
    assert!(serde_json::from_str::<SynthConfig>(r#"{"sizee": 3}"#).is_err());
}

#[test]
fn voc_layout_writer_output_passes_check_data_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WriteOptions { num_train: 32, num_val: 8, ..Default::default() };
    write_voc_layout(dir.path(), &opts).unwrap();
    let report = check_dataset(&CheckOptions {
        kind: DatasetKind::Synthetic,
        root: dir.path().into(),
        splits: None,
        num_classes: None,
    })
    .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.lists.len(), 9);
    let l = data::splits::read_split(&dir.path().join("splits/1_16/labeled.txt")).unwrap();
    assert_eq!(l.len(), 2);
    let files =
        data::FileDataset::from_split_file(DatasetKind::Synthetic, dir.path(), &dir.path().join("splits/val.txt"))
            .unwrap();
    let on_disk = Dataset::Files(files).sample(3).unwrap();
    let mem = SyntheticDataset::new(opts.cfg.clone(), opts.seed + 1, 8).unwrap().sample(3).unwrap();
    assert_eq!(on_disk.image, mem.image);
    assert_eq!(on_disk.mask, mem.mask);
}
