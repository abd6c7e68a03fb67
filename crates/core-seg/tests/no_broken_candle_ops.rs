//! Guard: Candle ops with wrong or missing gradients never appear in library code of any
//! crate — `max_pool2d` (gradient scaled by 1/k², no stride ≠ kernel), `upsample_bilinear2d` (no backward),
//! `softmax_last_dim` (silently detached).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn library_code_never_calls_candle_ops_with_broken_gradients() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).expect("crates dir").flatten() {
        rust_files(&krate.path().join("src"), &mut files);
    }
    rust_files(&root.join("xtask/src"), &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let banned = ["max_pool2d", "upsample_bilinear2d", "softmax_last_dim"];
    let mut hits = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable source");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if banned.iter().any(|b| code.contains(&format!("{b}(")) || code.contains(&format!("::{b}"))) {
                hits.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(hits.is_empty(), "banned Candle ops on library paths:\n{}", hits.join("\n"));
}
