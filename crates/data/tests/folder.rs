//! Folder datasets on real files: the CamVid, Weizmann Horse and Stanford Background presets load their fixture
//! crops (counts, label values, remap), seeded splits, the loader, and `check-data` on clean and faulty copies.

use std::path::{Path, PathBuf};

use candle_core::Device;
use data::check::ProblemKind;
use data::folder::{check_folder, FolderConfig, FolderDataset, Preset};
use data::io::{read_mask, write_gray_png};
use data::{AugConfig, Dataset, Loader, LoaderConfig};

mod common;
use common::faults::{copy_dir, faulty_copy};

fn real(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real")).join(name)
}

fn preset(p: Preset) -> FolderConfig {
    FolderConfig { preset: Some(p), ..Default::default() }
}

/// Pixel counts of each raw file value over the given mask files.
fn raw_histogram(files: &[PathBuf]) -> [u64; 256] {
    let mut h = [0u64; 256];
    for f in files {
        read_mask(f).unwrap().mask.data.iter().for_each(|&v| h[v as usize] += 1);
    }
    h
}

fn pngs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn ids(ds: &data::FileDataset) -> Vec<String> {
    ds.entries().iter().map(|e| e.id()).collect()
}

#[test]
fn camvid_preset_reads_segnet_lists_and_maps_11_to_ignore() {
    let cfg = preset(Preset::Camvid);
    let ds = FolderDataset::open(&cfg, real("camvid"), None).unwrap();
    let run = ds.run_splits(&cfg).unwrap();
    assert!(run.problems.is_empty(), "{:?}", run.problems);
    assert_eq!((run.labeled.entries().len(), run.val.entries().len()), (3, 2));
    assert_eq!(run.test.as_ref().map(|t| t.entries().len()), Some(2));
    assert!(run.unlabeled.is_none());
    assert_eq!(run.labeled.entries()[0].image, "train/0001TP_006690.png");
    assert_eq!(run.labeled.entries()[0].mask.as_deref(), Some("trainannot/0001TP_006690.png"));
    let labeled = Dataset::Files(run.labeled);
    assert_eq!(labeled.num_classes(), 11);
    assert_eq!(labeled.class_names()[0], "Sky");
    assert_eq!(labeled.class_names()[10], "Bicyclist");
    assert_eq!(labeled.palette()[3], [128, 64, 128]);
    for i in 0..3 {
        let s = labeled.sample(i).unwrap();
        let raw = read_mask(&real("camvid").join(format!("trainannot/{}.png", s.id))).unwrap().mask;
        let m = s.mask.unwrap();
        assert_eq!((m.width, m.height, s.image.width, s.image.height), (120, 90, 120, 90));
        let elevens = raw.data.iter().filter(|&&v| v == 11).count();
        assert!(elevens > 0, "the fixture keeps CamVid's void value");
        assert_eq!(m.data.iter().filter(|&&v| v == 255).count(), elevens, "11 → 255");
        assert!(m.data.iter().all(|&v| v < 11 || v == 255));
        let kept = raw.data.iter().zip(&m.data).filter(|(r, _)| **r != 11).all(|(r, l)| r == l);
        assert!(kept, "every other value is unchanged");
    }
}

#[test]
fn seeded_labelled_subset_leaves_the_rest_unlabelled_without_masks() {
    let cfg = FolderConfig { num_labeled: Some(1), split_seed: 3, ..preset(Preset::Camvid) };
    let ds = FolderDataset::open(&cfg, real("camvid"), None).unwrap();
    let run = ds.run_splits(&cfg).unwrap();
    let unl = run.unlabeled.clone().unwrap();
    assert_eq!((run.labeled.entries().len(), unl.entries().len()), (1, 2));
    assert!(unl.entries().iter().all(|e| e.mask.is_none()), "unlabelled ids carry no mask path");
    let mut all = [ids(&run.labeled), ids(&unl)].concat();
    all.sort();
    assert_eq!(all, ["0001TP_006690", "0001TP_006720", "0001TP_006750"]);
    assert_eq!(ids(&ds.run_splits(&cfg).unwrap().labeled), ids(&run.labeled), "same seed, same subset");
    let draws: std::collections::HashSet<Vec<String>> = (0..16)
        .map(|seed| ids(&ds.run_splits(&FolderConfig { split_seed: seed, ..cfg.clone() }).unwrap().labeled))
        .collect();
    assert!(draws.len() > 1, "the seed chooses the subset");
    let too_many = FolderConfig { num_labeled: Some(4), ..cfg.clone() };
    let err = ds.run_splits(&too_many).unwrap_err().to_string();
    assert!(err.contains("num_labeled") && err.contains("4 of 3"), "{err}");
    // The semi-supervised loader reads the unlabelled images only.
    let aug = AugConfig { crop_size: 48, ..Default::default() };
    let lcfg = LoaderConfig { batch_size: 1, batch_size_u: 2, ..Default::default() };
    let loader = Loader::new(Dataset::Files(run.labeled), Some(Dataset::Files(unl)), aug, lcfg, Device::Cpu).unwrap();
    let batches: Vec<_> = loader.epoch(0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(batches.len(), 1);
    let m: Vec<u32> = batches[0].labeled.mask.flatten_all().unwrap().to_vec1().unwrap();
    assert!(m.iter().all(|&v| v < 11 || v == 255), "labels after the remap only");
    assert_eq!(batches[0].unlabeled_pair().unwrap().0.ids.len(), 2);
}

#[test]
fn unlabelled_split_ids_need_no_mask_files() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&real("weizmann-horse"), dir.path());
    std::fs::copy(dir.path().join("images/horse001.jpg"), dir.path().join("images/extra.jpg")).unwrap();
    std::fs::write(dir.path().join("splits/unlabeled.txt"), "extra\nhorse005\n").unwrap();
    let cfg = FolderConfig { unlabeled: Some("unlabeled".into()), ..preset(Preset::WeizmannHorse) };
    let run = FolderDataset::open(&cfg, dir.path(), None).unwrap().run_splits(&cfg).unwrap();
    assert!(run.problems.is_empty(), "{:?}", run.problems);
    let unl = Dataset::Files(run.unlabeled.unwrap());
    assert_eq!(unl.len(), 2);
    assert_eq!(unl.image_only(0).unwrap().id, "extra");
    let overlap = FolderConfig { unlabeled: Some("train".into()), ..cfg };
    let run = FolderDataset::open(&overlap, dir.path(), None).unwrap().run_splits(&overlap).unwrap();
    assert_eq!(run.problems.len(), 3, "every labelled id listed as unlabelled is named");
    assert!(run.problems.iter().all(|p| p.kind == ProblemKind::LabeledUnlabeledOverlap));
}

#[test]
fn horse_preset_loads_two_classes() {
    let cfg = preset(Preset::WeizmannHorse);
    let run = FolderDataset::open(&cfg, real("weizmann-horse"), None).unwrap().run_splits(&cfg).unwrap();
    assert_eq!(ids(&run.labeled), ["horse002", "horse003", "horse004"]);
    assert_eq!((ids(&run.val), ids(run.test.as_ref().unwrap())), (vec!["horse005".into()], vec!["horse001".into()]));
    let val = Dataset::Files(run.val);
    assert_eq!(val.class_names(), ["background", "horse"]);
    let s = val.sample(0).unwrap();
    let m = s.mask.unwrap();
    assert_eq!((m.width, m.height), (s.image.width, s.image.height));
    assert!(m.data.contains(&0) && m.data.contains(&1) && m.data.iter().all(|&v| v <= 1));
}

#[test]
fn stanford_preset_carves_validation_from_train_and_tests_on_its_held_out_list() {
    let cfg = preset(Preset::StanfordBackground);
    let ds = FolderDataset::open(&cfg, real("stanford-background"), None).unwrap();
    let err = ds.run_splits(&cfg).unwrap_err().to_string();
    assert!(err.contains("val_from_train") && err.contains("72 of 4"), "the default carve-out is 72: {err}");
    let small = FolderConfig { val_from_train: Some(1), ..cfg.clone() };
    let run = ds.run_splits(&small).unwrap();
    let (lab, val) = (ids(&run.labeled), ids(&run.val));
    assert_eq!((lab.len(), val.len()), (3, 1));
    assert!(!lab.contains(&val[0]), "the carved id leaves the training pool");
    assert_eq!(ids(run.test.as_ref().unwrap()), ["6000240", "6000318"], "the held-out list is the test set");
    let again = ds.run_splits(&small).unwrap();
    assert_eq!((ids(&again.labeled), ids(&again.val)), (lab, val), "seeded: the same carve-out every time");
    let err = ds.run_splits(&FolderConfig { val: Some("val".into()), ..cfg.clone() }).unwrap_err().to_string();
    assert!(err.contains("no split `val`") && err.contains("train, test"), "{err}");
    let both = FolderConfig { val: Some("test".into()), val_from_train: Some(1), ..cfg };
    assert!(ds.run_splits(&both).is_err(), "val and val_from_train together are refused");
    // Unknown pixels are 255 in the files and stay ignore.
    let train = Dataset::Files(ds.split("train", true).unwrap().0);
    let s = train.sample(0).unwrap();
    assert_eq!(s.id, "6000345");
    let m = s.mask.unwrap();
    assert_eq!(m.data.iter().filter(|&&v| v == 255).count(), 5);
    assert!(m.data.iter().all(|&v| v < 8 || v == 255));
    assert_eq!(train.class_names()[7], "foreground object");
}

#[test]
fn scale_resizes_images_and_masks_together() {
    let cfg = FolderConfig { scale: Some(0.5), ..preset(Preset::Camvid) };
    let ds = FolderDataset::open(&cfg, real("camvid"), None).unwrap();
    let s = Dataset::Files(ds.split("val", true).unwrap().0).sample(0).unwrap();
    let m = s.mask.unwrap();
    assert_eq!((s.image.width, s.image.height, m.width, m.height), (60, 45, 60, 45));
    assert!(m.data.iter().all(|&v| v < 11 || v == 255), "nearest: labels stay labels");
    assert!(FolderDataset::open(&FolderConfig { scale: Some(0.0), ..cfg }, real("camvid"), None).is_err());
}

#[test]
fn check_data_passes_on_each_preset_fixture_with_a_named_histogram() {
    for (p, root, k) in [
        (Preset::Camvid, "camvid", 11),
        (Preset::WeizmannHorse, "weizmann-horse", 2),
        (Preset::StanfordBackground, "stanford-background", 8),
    ] {
        let ds = FolderDataset::open(&preset(p), real(root), None).unwrap();
        let report = check_folder(&ds, &[]).unwrap();
        assert!(report.is_ok(), "{root}: {:?}", report.problems);
        let masks: Vec<PathBuf> = match p {
            Preset::Camvid => {
                ["trainannot", "valannot", "testannot"].iter().flat_map(|d| pngs(&real(root).join(d))).collect()
            }
            _ => pngs(&real(root).join("masks")),
        };
        assert_eq!(report.files_checked, 2 * masks.len(), "{root}: every image and mask");
        let raw = raw_histogram(&masks);
        let ignore_raw = if p == Preset::Camvid { raw[11] + raw[255] } else { raw[255] };
        assert_eq!(report.histogram[255], ignore_raw, "{root}: ignore after the remap");
        assert_eq!(&report.histogram[..k], &raw[..k], "{root}: class counts");
        assert_eq!(report.histogram.iter().sum::<u64>(), raw.iter().sum::<u64>());
        let table = report.histogram_table();
        assert_eq!(table.lines().count(), k + 3, "{root}: header, K classes, ignore, total\n{table}");
        for name in ds.labels().names() {
            assert!(table.contains(name.as_str()), "{root}: {name} missing from\n{table}");
        }
        assert!(table.contains("ignore") && table.contains("100.000"), "{table}");
    }
}

#[test]
fn check_data_names_every_planted_fault() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = faulty_copy(&real("weizmann-horse"), dir.path());
    let ds = FolderDataset::open(&FolderConfig::default(), dir.path(), None).unwrap();
    assert_eq!(ds.labels().names(), ["background", "horse"], "classes.csv gives the class count and names");
    let report = check_folder(&ds, &[]).unwrap();
    let mut found: Vec<(String, ProblemKind)> =
        report.problems.iter().map(|p| (p.path.file_name().unwrap().to_string_lossy().into_owned(), p.kind)).collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "{:#?}", report.problems);
    let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has("7 (1 px)") && has("horse999") && has("line 4") && has("needs a mask"), "{text:#?}");
    assert!(has("differs from image"), "{text:#?}");
    assert!(report.summary().contains("5 problems"), "{}", report.summary());
    // The training path refuses the same data: the missing id at once, the rest in the pre-flight check.
    let run = ds.run_splits(&FolderConfig::default()).unwrap();
    assert_eq!(run.problems.len(), 1);
    let mut labeled = run.labeled;
    let err = data::check::preflight(&mut labeled, true, false).unwrap_err().to_string();
    assert!(err.contains("horse002.png") && err.contains("horse003.png") && err.contains("horse004.png"), "{err}");
}

#[test]
fn values_outside_the_classes_after_the_remap_are_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&real("camvid"), dir.path());
    let f = dir.path().join("valannot/0016E5_07961.png");
    let mut m = read_mask(&f).unwrap().mask;
    m.data[..4].copy_from_slice(&[12, 12, 13, 11]);
    write_gray_png(&f, &m).unwrap();
    let ds = FolderDataset::open(&preset(Preset::Camvid), dir.path(), None).unwrap();
    let report = check_folder(&ds, &[]).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!((p.path.clone(), p.kind), (f, ProblemKind::BadLabel));
    assert!(p.msg.contains("12 (2 px)") && p.msg.contains("13 (1 px)") && !p.msg.contains("11 ("), "{}", p.msg);
    let table = report.histogram_table();
    assert!(table.contains("(outside the classes)"), "{table}");
}

#[test]
fn generic_layout_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&real("weizmann-horse"), dir.path());
    let err = FolderDataset::open(&FolderConfig::default(), dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("num_classes") && err.contains("classes.csv"), "class count unknown: {err}");
    let cfg = FolderConfig { num_classes: Some(2), ..Default::default() };
    let ds = FolderDataset::open(&cfg, dir.path(), None).unwrap();
    std::fs::write(dir.path().join("splits/val.txt"), "horse005\nimages/horse001.jpg\n").unwrap();
    let err = ds.read_list("val").unwrap_err().to_string();
    assert!(err.contains("val.txt:2") && err.contains("one id per line"), "{err}");
    let report = check_folder(&ds, &[]).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, ProblemKind::BadSplitList);
    std::fs::copy(dir.path().join("images/horse001.jpg"), dir.path().join("images/stray.jpg")).unwrap();
    std::fs::write(dir.path().join("splits/val.txt"), "horse005\n").unwrap();
    let report = check_folder(&ds, &[]).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.notes.iter().any(|n| n.contains("1 images") && n.contains("stray")), "{:?}", report.notes);
    let bad = FolderConfig { ignore_index: Some(1), ..cfg.clone() };
    assert!(FolderDataset::open(&bad, dir.path(), None).unwrap_err().to_string().contains("ignore_index 1"));
    let remap = FolderConfig { remap: Some(vec![[1, 0]]), ..cfg };
    let ds = FolderDataset::open(&remap, dir.path(), None).unwrap();
    let s = Dataset::Files(ds.split("train", true).unwrap().0).sample(0).unwrap();
    assert!(s.mask.unwrap().data.iter().all(|&v| v == 0), "remap 1 → 0");
}
