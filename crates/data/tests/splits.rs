//! Split lists: every UniMatch list shipped in `datasets/splits` parses with the documented counts and is
//! byte-identical to the upstream files (committed sha256 digests); seeded subsets are deterministic.

use std::collections::HashSet;
use std::path::Path;

use data::splits::{builtin_splits_dir, parse_split, read_split, seeded_subset};
use sha2::{Digest, Sha256};

#[test]
fn pascal_and_cityscapes_counts_and_disjointness() {
    let pascal = [
        ("92", 92, 10490),
        ("183", 183, 10399),
        ("366", 366, 10216),
        ("732", 732, 9850),
        ("1464", 1464, 9118),
        ("1_16", 662, 9920),
        ("1_8", 1323, 9259),
        ("1_4", 2646, 7936),
        ("u2pl_1_16", 662, 9920),
        ("u2pl_1_8", 1323, 9259),
        ("u2pl_1_4", 2646, 7936),
    ];
    let city = [("1_30", 100, 2875), ("1_16", 186, 2789), ("1_8", 372, 2603), ("1_4", 744, 2231), ("1_2", 1488, 1487)];
    for (ds, table) in [("pascal", &pascal[..]), ("cityscapes", &city[..])] {
        for &(split, nl, nu) in table {
            let dir = builtin_splits_dir().join(ds).join(split);
            let l = read_split(&dir.join("labeled.txt")).unwrap();
            let u = read_split(&dir.join("unlabeled.txt")).unwrap();
            assert_eq!((l.len(), u.len()), (nl, nu), "{ds}/{split}");
            let lid: HashSet<String> = l.iter().map(|e| e.id()).collect();
            assert_eq!(lid.len(), nl, "no duplicate ids in {ds}/{split}");
            assert!(u.iter().all(|e| !lid.contains(&e.id())), "{ds}/{split} disjoint");
            assert!(l.iter().all(|e| e.mask.is_some()));
        }
    }
    assert_eq!(read_split(&builtin_splits_dir().join("pascal/val.txt")).unwrap().len(), 1449);
    assert_eq!(read_split(&builtin_splits_dir().join("cityscapes/val.txt")).unwrap().len(), 500);
}

/// `datasets/splits/SHA256SUMS` holds the digests of the upstream lists (the 34 files of `SOURCE.md`): every
/// shipped list matches its digest, and no list is missing from or added to it.
#[test]
fn shipped_lists_match_their_committed_sha256() {
    let dir = builtin_splits_dir();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut listed = Vec::new();
    for line in sums.lines() {
        let (digest, file) = line.split_once("  ").unwrap();
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let hex: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, digest, "{file} differs from the upstream list");
        listed.push(file.to_string());
    }
    let mut on_disk = Vec::new();
    for ds in ["pascal", "cityscapes"] {
        on_disk.push(format!("{ds}/val.txt"));
        for e in std::fs::read_dir(dir.join(ds)).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                let split = p.file_name().unwrap().to_string_lossy().into_owned();
                on_disk.extend(["labeled", "unlabeled"].map(|n| format!("{ds}/{split}/{n}.txt")));
            }
        }
    }
    listed.sort();
    on_disk.sort();
    assert_eq!(listed, on_disk);
    assert_eq!(listed.len(), 34);
}

#[test]
fn seeded_subset_is_a_deterministic_partition_in_list_order() {
    let ids: Vec<String> = (0..367).map(|i| format!("id{i:03}")).collect();
    let (a, rest) = seeded_subset(&ids, 46, 0, 7).unwrap();
    assert_eq!((a.len(), rest.len()), (46, 321));
    assert_eq!(seeded_subset(&ids, 46, 0, 7).unwrap().0, a, "same seed, same draw");
    assert_ne!(seeded_subset(&ids, 46, 1, 7).unwrap().0, a, "another seed draws other ids");
    assert_ne!(seeded_subset(&ids, 46, 0, 8).unwrap().0, a, "another stream draws other ids");
    let mut all: Vec<String> = a.iter().chain(&rest).cloned().collect();
    all.sort();
    assert_eq!(all, ids, "drawn ∪ rest = the list, disjoint");
    assert!(a.windows(2).all(|w| w[0] < w[1]) && rest.windows(2).all(|w| w[0] < w[1]), "list order kept");
    assert!(a.iter().any(|id| id.as_str() > "id200"), "drawn from the whole list, not a prefix");
    assert_eq!(seeded_subset(&ids, 367, 3, 7).unwrap().1.len(), 0);
    assert!(seeded_subset(&ids, 368, 0, 7).unwrap_err().to_string().contains("368 of 367"));
}

#[test]
fn parser_accepts_one_column_crlf_and_rejects_bad_lines() {
    let p = Path::new("x.txt");
    let e = parse_split("a/b.jpg m/b.png\r\nc/d.png\n\n", p).unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].mask.as_deref(), Some("m/b.png"));
    assert_eq!(e[1].mask, None);
    assert_eq!(e[1].line, 2);
    let city = parse_split("leftImg8bit/train/jena/jena_000078_000019_leftImg8bit.png g.png", p).unwrap();
    assert_eq!(city[0].id(), "jena_000078_000019");
    let err = parse_split("a b c\n", p).unwrap_err().to_string();
    assert!(err.contains("x.txt:1") && err.contains("found 3"), "{err}");
    let err = parse_split("ok.jpg\n../../etc/passwd\n", p).unwrap_err().to_string();
    assert!(err.contains("x.txt:2"), "{err}");
}
