//! A generated Cityscapes-layout fixture: labelId → trainId for all 34 ids, labelTrainIds taken as is.

use data::io::{write_gray_png, write_rgb, Mask, RgbImage};
use data::splits::SplitEntry;
use data::{Dataset, DatasetKind, FileDataset};

/// (labelId, trainId) from the label table file, parsed here independently of the crate's embedded copy.
fn csv_table() -> Vec<(u8, u8)> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/cityscapes_labels.csv");
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let id: i32 = f[1].parse().unwrap();
            let t: i32 = f[2].parse().unwrap();
            (id >= 0).then(|| (id as u8, if (0..19).contains(&t) { t as u8 } else { 255 }))
        })
        .collect()
}

fn fixture() -> (tempfile::TempDir, Vec<SplitEntry>) {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (34usize, 3usize);
    let stem = "jena_000078_000019";
    let img_rel = format!("leftImg8bit/train/jena/{stem}_leftImg8bit.png");
    let ids_rel = format!("gtFine/train/jena/{stem}_gtFine_labelIds.png");
    let tid_rel = format!("gtFine/train/jena/{stem}_gtFine_labelTrainIds.png");
    for d in ["leftImg8bit/train/jena", "gtFine/train/jena"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let img = RgbImage { width: w, height: h, data: (0..w * h * 3).map(|i| (i * 7 % 256) as u8).collect() };
    write_rgb(&dir.path().join(&img_rel), &img).unwrap();
    // Row 0: labelIds 0..33; rows 1-2: 255 and repeated ids.
    let mut m: Vec<u8> = (0..34).collect();
    m.extend(std::iter::repeat_n(255u8, 34));
    m.extend((0..34).rev());
    write_gray_png(&dir.path().join(&ids_rel), &Mask { width: w, height: h, data: m }).unwrap();
    let t: Vec<u8> = (0..w * h).map(|i| if i % 5 == 0 { 255 } else { (i % 19) as u8 }).collect();
    write_gray_png(&dir.path().join(&tid_rel), &Mask { width: w, height: h, data: t }).unwrap();
    let entries = vec![
        SplitEntry { image: img_rel.clone(), mask: Some(ids_rel), line: 1 },
        SplitEntry { image: img_rel, mask: Some(tid_rel), line: 2 },
    ];
    (dir, entries)
}

#[test]
fn label_ids_map_to_train_ids_for_all_34_ids() {
    let table = csv_table();
    assert_eq!(table.len(), 34);
    let (dir, entries) = fixture();
    let ds = Dataset::Files(FileDataset::new(DatasetKind::Cityscapes, dir.path(), entries, 19));
    let s = ds.sample(0).unwrap();
    let m = s.mask.unwrap();
    assert_eq!(s.id, "jena_000078_000019");
    for (id, train) in &table {
        assert_eq!(m.data[*id as usize], *train, "labelId {id}");
        assert_eq!(m.data[2 * 34 + 33 - *id as usize], *train, "labelId {id} (row 2)");
        assert_eq!(data::palette::cityscapes_id_to_train_id()[*id as usize], *train);
    }
    assert!(m.data[34..68].iter().all(|&v| v == 255), "unknown id 255 stays ignore");
    assert_eq!(ds.num_classes(), 19);
    assert_eq!(ds.class_names()[13], "car");
    assert_eq!(ds.palette()[0], [128, 64, 128]);
}

#[test]
fn label_train_ids_are_accepted_as_is() {
    let (dir, entries) = fixture();
    let ds = Dataset::Files(FileDataset::new(DatasetKind::Cityscapes, dir.path(), entries, 19));
    let m = ds.sample(1).unwrap().mask.unwrap();
    let expect: Vec<u8> = (0..102).map(|i| if i % 5 == 0 { 255 } else { (i % 19) as u8 }).collect();
    assert_eq!(m.data, expect);
}
