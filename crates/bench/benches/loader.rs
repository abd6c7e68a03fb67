//! Criterion benchmark of the data pipeline's throughput (images per second): reading a VOC-layout dataset
//! from disk (PNG images and paletted masks, written by the synthetic generator at VOC's typical 500×375-ish
//! size) or generating synthetic scenes in memory, then UniMatch's augmentation at crop 321 (labelled view,
//! weak + two strong unlabelled views, CutMix boxes, the mix stream) and batching, 8 + 8 images per step.

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use data::synthetic::{write_voc_layout, SynthConfig, SyntheticDataset, WriteOptions};
use data::{AugConfig, Dataset, DatasetKind, FileDataset, Loader, LoaderConfig};

const STEPS: usize = 4;
const BATCH: usize = 8;

fn bench_loader(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = SynthConfig { size: 448, ..SynthConfig::default() };
    let opts = WriteOptions { cfg: cfg.clone(), seed: 3, num_train: 96, num_val: 1, fractions: vec![2] };
    write_voc_layout(dir.path(), &opts).expect("write dataset");
    let list = dir.path().join("splits/1_2/labeled.txt");
    let files = Dataset::Files(FileDataset::from_split_file(DatasetKind::Voc, dir.path(), &list).expect("split"));
    let synth = Dataset::Synthetic(SyntheticDataset::new(cfg, 3, 48).expect("synthetic"));
    let mut group = c.benchmark_group("loader");
    group.sample_size(10);
    // Images decoded/generated and augmented per step: labelled + unlabelled + mix stream.
    group.throughput(Throughput::Elements((STEPS * BATCH * 3) as u64));
    for (name, ds) in [("voc-layout-png-448", files), ("synthetic-448", synth)] {
        let lc = LoaderConfig { batch_size: BATCH, batch_size_u: BATCH, ..LoaderConfig::default() };
        let loader = Loader::new(ds.clone(), Some(ds), AugConfig::default(), lc, Device::Cpu).expect("loader");
        let mut epoch = 0;
        group.bench_function(format!("unimatch-crop321-{BATCH}+{BATCH}-{name}"), |b| {
            b.iter(|| {
                epoch += 1;
                let batches = loader.epoch(epoch).expect("epoch");
                for batch in batches.take(STEPS) {
                    batch.expect("batch");
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_loader);
criterion_main!(benches);
