//! UniMatch-style split lists (`<split>/labeled.txt`, `<split>/unlabeled.txt`, `val.txt`) and VOC `ImageSets`.
//!
//! A line is `<image relpath> <mask relpath>` (or just `<image relpath>` for unlabelled data), relative to the
//! dataset root. Copies of UniMatch's lists live in the repository's `datasets/splits/`.

use std::path::{Path, PathBuf};

use core_seg::rng::SegRng;

use crate::error::{Error, Result};

/// One line of a split list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitEntry {
    /// Image path relative to the dataset root.
    pub image: String,
    /// Mask path relative to the dataset root (absent in one-column lines).
    pub mask: Option<String>,
    /// 1-based line number in its file (0 when synthesised).
    pub line: usize,
}

impl SplitEntry {
    /// The sample id: the image file stem without a Cityscapes `_leftImg8bit` suffix.
    pub fn id(&self) -> String {
        let stem = Path::new(&self.image).file_stem().and_then(|s| s.to_str()).unwrap_or(&self.image);
        stem.strip_suffix("_leftImg8bit").unwrap_or(stem).to_string()
    }
}

/// The repository's copy of the UniMatch split lists (`datasets/splits`, with `pascal/` and `cityscapes/`).
pub fn builtin_splits_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/splits")
}

fn check_rel(p: &str, path: &Path, line: usize) -> Result<()> {
    let bad = p.starts_with('/') || p.split('/').any(|c| c == "..") || p.contains('\\');
    if bad {
        return Err(Error::Split {
            path: path.into(),
            line,
            msg: format!("path {p:?} must be relative, without '..'"),
        });
    }
    Ok(())
}

/// Parses a split list; `path` names the file in errors. Blank lines are skipped; CRLF is tolerated.
pub fn parse_split(text: &str, path: &Path) -> Result<Vec<SplitEntry>> {
    let mut out = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (image, mask) = match cols.as_slice() {
            [img] => (img.to_string(), None),
            [img, m] => (img.to_string(), Some(m.to_string())),
            _ => {
                let msg = format!("expected 1 or 2 columns, found {}", cols.len());
                return Err(Error::Split { path: path.into(), line: i + 1, msg });
            }
        };
        check_rel(&image, path, i + 1)?;
        if let Some(m) = &mask {
            check_rel(m, path, i + 1)?;
        }
        out.push(SplitEntry { image, mask, line: i + 1 });
    }
    Ok(out)
}

/// Reads and parses a split list file.
pub fn read_split(path: &Path) -> Result<Vec<SplitEntry>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::decode(path, "split list is not UTF-8"))?;
    parse_split(&text, path)
}

/// Parses a VOC devkit `ImageSets/Segmentation/*.txt` list of bare ids into layout-A entries.
pub fn parse_image_set(text: &str, path: &Path) -> Result<Vec<SplitEntry>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let id = raw.trim();
        if id.is_empty() {
            continue;
        }
        if id.contains(char::is_whitespace) || id.contains('/') {
            return Err(Error::Split { path: path.into(), line: i + 1, msg: format!("bad id {id:?}") });
        }
        out.push(SplitEntry {
            image: format!("JPEGImages/{id}.jpg"),
            mask: Some(format!("SegmentationClass/{id}.png")),
            line: i + 1,
        });
    }
    Ok(out)
}

/// All split list files under a split directory: `val.txt` and every `<split>/{labeled,unlabeled}.txt`.
pub fn list_split_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let val = dir.join("val.txt");
    if val.is_file() {
        files.push(val);
    }
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut subdirs: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    subdirs.sort();
    for sub in subdirs {
        for name in ["labeled.txt", "unlabeled.txt"] {
            let f = sub.join(name);
            if f.is_file() {
                files.push(f);
            }
        }
    }
    Ok(files)
}

/// The three lists of one semi-supervised split.
#[derive(Debug, Clone)]
pub struct SplitSet {
    /// Labelled training samples.
    pub labeled: Vec<SplitEntry>,
    /// Unlabelled training samples (masks, if listed, are never opened by the loader).
    pub unlabeled: Vec<SplitEntry>,
    /// Validation samples.
    pub val: Vec<SplitEntry>,
}

/// Loads `<dir>/<split>/labeled.txt`, `<dir>/<split>/unlabeled.txt` and `<dir>/val.txt`.
pub fn load_split_set(dir: &Path, split: &str) -> Result<SplitSet> {
    Ok(SplitSet {
        labeled: read_split(&dir.join(split).join("labeled.txt"))?,
        unlabeled: read_split(&dir.join(split).join("unlabeled.txt"))?,
        val: read_split(&dir.join("val.txt"))?,
    })
}

/// Draws `n` of `items` with a seeded shuffle (`SegRng::stream(seed, &[stream])`) and returns `(drawn, rest)`,
/// each in the original list order. The draw depends only on the list, `n`, `seed` and `stream`, never on the
/// files behind the items, so a labelled subset or a validation carve-out is the same on every machine.
pub fn seeded_subset<T: Clone>(items: &[T], n: usize, seed: u64, stream: u64) -> Result<(Vec<T>, Vec<T>)> {
    if n > items.len() {
        return Err(Error::Config(format!("cannot draw {n} of {} ids", items.len())));
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    SegRng::stream(seed, &[stream]).shuffle(&mut order);
    let mut drawn = vec![false; items.len()];
    order[..n].iter().for_each(|&i| drawn[i] = true);
    let (a, b): (Vec<_>, Vec<_>) = items.iter().zip(&drawn).partition(|(_, &d)| d);
    Ok((a.into_iter().map(|(t, _)| t.clone()).collect(), b.into_iter().map(|(t, _)| t.clone()).collect()))
}
