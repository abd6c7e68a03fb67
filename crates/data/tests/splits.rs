//! Split lists: every shared UniMatch list parses with the documented counts; the repo copy is identical.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use data::splits::{builtin_splits_dir, parse_split, read_split};

fn shared_splits() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/datasets/splits"))
}

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
            let dir = shared_splits().join(ds).join(split);
            let l = read_split(&dir.join("labeled.txt")).unwrap();
            let u = read_split(&dir.join("unlabeled.txt")).unwrap();
            assert_eq!((l.len(), u.len()), (nl, nu), "{ds}/{split}");
            let lid: HashSet<String> = l.iter().map(|e| e.id()).collect();
            assert_eq!(lid.len(), nl, "no duplicate ids in {ds}/{split}");
            assert!(u.iter().all(|e| !lid.contains(&e.id())), "{ds}/{split} disjoint");
            assert!(l.iter().all(|e| e.mask.is_some()));
        }
    }
    assert_eq!(read_split(&shared_splits().join("pascal/val.txt")).unwrap().len(), 1449);
    assert_eq!(read_split(&shared_splits().join("cityscapes/val.txt")).unwrap().len(), 500);
}

#[test]
fn repository_copy_equals_shared_lists() {
    for f in ["pascal/1_16/labeled.txt", "cityscapes/1_30/unlabeled.txt", "pascal/val.txt"] {
        let a = std::fs::read(shared_splits().join(f)).unwrap();
        let b = std::fs::read(builtin_splits_dir().join(f)).unwrap();
        assert_eq!(a, b, "{f}");
    }
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
