//! A copy of the horse fixture with planted faults, shared by the data crate's and the CLI's `check-data` tests.

use std::path::Path;

use data::check::ProblemKind;
use data::io::{read_mask, write_gray_png};

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// A generic-layout copy of the horse crops (`horse`: the fixture folder) with one planted fault of each kind;
/// returns the expected `(file name, kind)` pairs.
pub fn faulty_copy(horse: &Path, root: &Path) -> Vec<(String, ProblemKind)> {
    copy_dir(horse, root);
    std::fs::write(root.join("classes.csv"), "index,name,r,g,b\n0,background,0,0,0\n1,horse,128,0,0\n").unwrap();
    // Mask of another size.
    let m = read_mask(&root.join("masks/horse002.png")).unwrap().mask;
    let small = data::io::resize_mask_nearest(&m, m.width - 3, m.height);
    write_gray_png(&root.join("masks/horse002.png"), &small).unwrap();
    // A label outside {0, 1, 255}.
    let mut m = read_mask(&root.join("masks/horse003.png")).unwrap().mask;
    m.data[10] = 7;
    write_gray_png(&root.join("masks/horse003.png"), &m).unwrap();
    // A labelled id without a mask.
    std::fs::remove_file(root.join("masks/horse004.png")).unwrap();
    // An unreadable image.
    let mut j = std::fs::read(root.join("images/horse005.jpg")).unwrap();
    j[2..200].iter_mut().enumerate().for_each(|(i, b)| *b = (i * 31 % 251) as u8);
    std::fs::write(root.join("images/horse005.jpg"), j).unwrap();
    // An id with no image, and an unlabelled id (no mask) that is fine.
    std::fs::write(root.join("splits/train.txt"), "horse002\nhorse003\nhorse004\nhorse999\n").unwrap();
    std::fs::copy(root.join("images/horse001.jpg"), root.join("images/extra.jpg")).unwrap();
    std::fs::write(root.join("splits/unlabeled.txt"), "extra\n").unwrap();
    vec![
        ("horse002.png".into(), ProblemKind::SizeMismatch),
        ("horse003.png".into(), ProblemKind::BadLabel),
        ("horse004.png".into(), ProblemKind::MissingFile),
        ("horse005.jpg".into(), ProblemKind::Undecodable),
        ("train.txt".into(), ProblemKind::MissingFile),
    ]
}
