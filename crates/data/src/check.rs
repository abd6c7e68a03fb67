//! Dataset validation (`cargo xtask check-data`) and the training pre-flight check.
//!
//! Every problem names its file: missing files (images, and masks of labelled ids), undecodable or truncated
//! images, mask/image size mismatches, label values outside `{0..K−1, 255}`, split ids missing from the dataset,
//! duplicate ids and ids that are both labelled and unlabelled. Nothing is skipped silently. Folder datasets
//! are checked by [`crate::folder::check_folder`] on the same per-file checks.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dataset::{class_names_of, default_num_classes, DatasetKind, FileDataset};
use crate::error::{Error, Result};
use crate::io;
use crate::splits::{self, SplitEntry};

/// Category of a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProblemKind {
    /// A split list line names a file that does not exist (the id is missing from the dataset).
    MissingFile,
    /// A file does not decode, or is truncated.
    Undecodable,
    /// Mask and image sizes differ.
    SizeMismatch,
    /// Mask values outside `{0..K−1, 255}` (or a colour / 16-bit mask).
    BadLabel,
    /// The same id appears twice in one list.
    DuplicateId,
    /// An id is in both `labeled.txt` and `unlabeled.txt` of a split.
    LabeledUnlabeledOverlap,
    /// A split list cannot be read or parsed.
    BadSplitList,
}

/// One problem found, naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The offending file (image, mask or split list).
    pub path: PathBuf,
    /// Category.
    pub kind: ProblemKind,
    /// Human-readable description.
    pub msg: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}: {}", self.path.display(), self.kind, self.msg)
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Split lists read.
    pub lists: Vec<PathBuf>,
    /// Distinct image and mask files checked.
    pub files_checked: usize,
    /// Everything wrong, sorted by path.
    pub problems: Vec<Problem>,
    /// Histogram of label values (after any remap) over all labelled masks that decoded.
    pub histogram: Vec<u64>,
    /// The K class names, for [`Report::histogram_table`].
    pub class_names: Vec<String>,
    /// Remarks that are not problems (e.g. images that no split lists).
    pub notes: Vec<String>,
}

impl Report {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// One summary line, e.g. `checked 3 lists, 12 files: 2 problems (1 MissingFile, 1 BadLabel)`.
    pub fn summary(&self) -> String {
        let mut by_kind: BTreeMap<ProblemKind, usize> = BTreeMap::new();
        self.problems.iter().for_each(|p| *by_kind.entry(p.kind).or_default() += 1);
        let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k:?}")).collect();
        let state = if self.is_ok() { "OK".to_string() } else { format!("{} problems", self.problems.len()) };
        let detail = if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) };
        format!("checked {} lists, {} files: {state}{detail}", self.lists.len(), self.files_checked)
    }

    /// The class histogram, one line per class (`label name pixels %`), then any value outside the classes, then
    /// ignore (255); percentages are of all mask pixels.
    pub fn histogram_table(&self) -> String {
        const OUTSIDE: &str = "(outside the classes)";
        let total: u64 = self.histogram.iter().sum();
        let pct = |n: u64| if total == 0 { 0.0 } else { 100.0 * n as f64 / total as f64 };
        let k = self.class_names.len();
        let count = |v: usize| self.histogram.get(v).copied().unwrap_or(0);
        let mut rows: Vec<(usize, &str)> = self.class_names.iter().enumerate().map(|(v, n)| (v, n.as_str())).collect();
        rows.extend((k..255).filter(|&v| count(v) > 0).map(|v| (v, OUTSIDE)));
        rows.push((usize::from(crate::palette::IGNORE), "ignore"));
        let width = rows.iter().map(|(_, n)| n.chars().count()).max().unwrap_or(0);
        let mut out = format!("{:>5}  {:<width$}  {:>12}  {:>7}\n", "label", "class", "pixels", "%");
        for (v, name) in rows {
            out.push_str(&format!("{v:>5}  {name:<width$}  {:>12}  {:>7.3}\n", count(v), pct(count(v))));
        }
        out.push_str(&format!("{:>5}  {:<width$}  {total:>12}  {:>7.3}", "", "total", pct(total)));
        out
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Label convention.
    pub kind: DatasetKind,
    /// Dataset root.
    pub root: PathBuf,
    /// Split directory (UniMatch layout); `None` picks a default (see [`default_split_lists`]).
    pub splits: Option<PathBuf>,
    /// Class count (default per kind).
    pub num_classes: Option<usize>,
}

/// Default lists: VOC `ImageSets/Segmentation/*.txt` under the root if present, else the built-in UniMatch
/// lists; Cityscapes the built-in lists; synthetic `ROOT/splits`.
pub fn default_split_lists(kind: DatasetKind, root: &Path) -> Result<Vec<PathBuf>> {
    let dir = match kind {
        DatasetKind::Voc => {
            let sets = root.join("ImageSets/Segmentation");
            let f: Vec<PathBuf> =
                ["train.txt", "val.txt"].iter().map(|n| sets.join(n)).filter(|p| p.is_file()).collect();
            if !f.is_empty() {
                return Ok(f);
            }
            splits::builtin_splits_dir().join("pascal")
        }
        DatasetKind::Cityscapes => splits::builtin_splits_dir().join("cityscapes"),
        DatasetKind::Synthetic | DatasetKind::Folder => root.join("splits"),
    };
    splits::list_split_files(&dir)
}

/// Reads one list (UniMatch pairs, or bare VOC ids under `ImageSets`).
fn read_list(path: &Path) -> Result<Vec<SplitEntry>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bare = path.components().any(|c| c.as_os_str() == "ImageSets");
    if bare {
        splits::parse_image_set(&text, path)
    } else {
        splits::parse_split(&text, path)
    }
}

/// Duplicate ids within one list.
fn duplicates(list: &Path, entries: &[SplitEntry], out: &mut Vec<Problem>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in entries {
        if let Some(first) = seen.insert(e.id(), e.line) {
            let msg = format!("duplicate id {} on line {} (first on line {first})", e.id(), e.line);
            out.push(Problem { path: list.to_path_buf(), kind: ProblemKind::DuplicateId, msg });
        }
    }
}

/// Ids present in both `labeled.txt` and the sibling `unlabeled.txt`.
fn overlaps(lists: &[(PathBuf, Vec<SplitEntry>)], out: &mut Vec<Problem>) {
    for (p, l) in lists.iter().filter(|(p, _)| p.ends_with("labeled.txt")) {
        let sib = p.with_file_name("unlabeled.txt");
        let Some((_, u)) = lists.iter().find(|(q, _)| *q == sib) else {
            continue;
        };
        let uids: std::collections::HashSet<String> = u.iter().map(|e| e.id()).collect();
        for e in l.iter().filter(|e| uids.contains(&e.id())) {
            let msg = format!("id {} is in both {} and {}", e.id(), p.display(), sib.display());
            out.push(Problem { path: p.clone(), kind: ProblemKind::LabeledUnlabeledOverlap, msg });
        }
    }
}

/// Validates a dataset: every list under the split dir and every file they name.
pub fn check_dataset(opts: &CheckOptions) -> Result<Report> {
    let k = opts.num_classes.or(default_num_classes(opts.kind)).ok_or_else(|| {
        Error::Config("folder datasets are checked with data::folder::check_folder (their layout and labels)".into())
    })?;
    let list_paths = match &opts.splits {
        Some(d) => splits::list_split_files(d)?,
        None => default_split_lists(opts.kind, &opts.root)?,
    };
    let mut problems = Vec::new();
    let mut lists = Vec::new();
    for p in &list_paths {
        match read_list(p) {
            Ok(entries) => {
                duplicates(p, &entries, &mut problems);
                lists.push((p.clone(), entries));
            }
            Err(e) => problems.push(Problem { path: p.clone(), kind: ProblemKind::BadSplitList, msg: e.to_string() }),
        }
    }
    overlaps(&lists, &mut problems);
    let labelled: Vec<(Vec<SplitEntry>, bool)> =
        lists.into_iter().map(|(p, e)| (e, !p.ends_with("unlabeled.txt"))).collect();
    let template = FileDataset::new(opts.kind, &opts.root, Vec::new(), k);
    let mut report = check_files(&template, &labelled, problems);
    report.lists = list_paths;
    report.class_names = class_names_of(opts.kind, k);
    Ok(report)
}

/// Checks every distinct image named by `lists` (`(entries, labelled)`), with its mask when a labelled list
/// names one, using `template`'s root, kind, classes and label map; `problems` found earlier are kept.
pub fn check_files(template: &FileDataset, lists: &[(Vec<SplitEntry>, bool)], mut problems: Vec<Problem>) -> Report {
    let mut files: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (entries, labelled) in lists {
        for e in entries {
            let slot = files.entry(e.image.clone()).or_default();
            if *labelled && slot.is_none() {
                *slot = e.mask.clone();
            }
        }
    }
    let items: Vec<SplitEntry> = files.into_iter().map(|(image, mask)| SplitEntry { image, mask, line: 0 }).collect();
    let ds = template.with_entries(items);
    let results: Vec<(Vec<Problem>, Vec<u64>, usize)> =
        (0..ds.entries().len()).into_par_iter().map(|i| check_entry(&ds, i)).collect();
    let mut histogram = vec![0u64; 256];
    let mut files_checked = 0;
    for (p, h, n) in results {
        problems.extend(p);
        histogram.iter_mut().zip(h).for_each(|(a, b)| *a += b);
        files_checked += n;
    }
    problems.sort_by(|a, b| (&a.path, a.kind).cmp(&(&b.path, b.kind)));
    Report { files_checked, problems, histogram, ..Default::default() }
}

/// Classifies a decoding error into a problem for `path` (`is_mask`: the file is a labelled id's mask).
fn problem_from(err: Error, path: &Path, is_mask: bool) -> Problem {
    let kind = match &err {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ProblemKind::MissingFile,
        Error::Invalid { .. } => ProblemKind::BadLabel,
        _ => ProblemKind::Undecodable,
    };
    let msg = match kind {
        ProblemKind::MissingFile if is_mask => "mask not found (a labelled id needs a mask)".to_string(),
        ProblemKind::MissingFile => "file not found (split id missing from the dataset)".to_string(),
        _ => err.to_string(),
    };
    Problem { path: path.to_path_buf(), kind, msg }
}

/// True unless the bytes are a JPEG or PNG without its end marker: a JPEG must have an EOI (`FF D9`) after
/// its last start-of-scan (`FF DA`; entropy-coded data cannot contain `FF D9`), a PNG an `IEND` chunk in its
/// last 32 bytes (tolerating trailing padding). Other formats pass.
pub fn has_trailer(bytes: &[u8]) -> bool {
    let find_last = |hay: &[u8], pat: &[u8]| hay.windows(pat.len()).rposition(|w| w == pat);
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let sos = find_last(bytes, &[0xFF, 0xDA]).unwrap_or(0);
        find_last(&bytes[sos..], &[0xFF, 0xD9]).is_some()
    } else if bytes.starts_with(b"\x89PNG") {
        find_last(&bytes[bytes.len().saturating_sub(32)..], b"IEND").is_some()
    } else {
        true
    }
}

/// Reads and fully decodes a file, flagging truncation.
fn load_checked<T>(path: &Path, decode: impl Fn(&[u8], &Path) -> Result<T>) -> Result<T> {
    let bytes = io::read_bytes(path)?;
    let value = decode(&bytes, path)?;
    if !has_trailer(&bytes) {
        return Err(Error::decode(path, "truncated file (no end marker)"));
    }
    Ok(value)
}

/// Checks entry `i` (image, and mask if listed): problems, label histogram, files checked.
pub fn check_entry(ds: &FileDataset, i: usize) -> (Vec<Problem>, Vec<u64>, usize) {
    let mut problems = Vec::new();
    let mut hist = vec![0u64; 256];
    let ipath = ds.image_path(i);
    let img = load_checked(&ipath, io::decode_image).map_err(|e| problems.push(problem_from(e, &ipath, false))).ok();
    let Some(mpath) = ds.mask_path(i) else {
        return (problems, hist, 1);
    };
    let mask = load_checked(&mpath, |b, p| io::decode_mask(b, p).map(|d| d.mask));
    match mask {
        Err(e) => problems.push(problem_from(e, &mpath, true)),
        Ok(mut m) => {
            ds.convert_mask(&mut m, &mpath);
            m.data.iter().for_each(|&v| hist[v as usize] += 1);
            if let Err(e) = crate::dataset::validate_mask(&m, ds.num_classes(), &mpath) {
                problems.push(problem_from(e, &mpath, true));
            }
            if let Some(img) = &img {
                if (img.width, img.height) != (m.width, m.height) {
                    let msg = format!(
                        "mask size {}x{} differs from image {} size {}x{}",
                        m.width,
                        m.height,
                        ipath.display(),
                        img.width,
                        img.height
                    );
                    problems.push(Problem { path: mpath.clone(), kind: ProblemKind::SizeMismatch, msg });
                }
            }
        }
    }
    (problems, hist, 2)
}

/// Training pre-flight: checks every entry (with masks when `labelled`). Any problem is an error listing
/// all of them, unless `skip_bad`, in which case bad entries are removed and every problem is returned so
/// the caller can list each skipped file.
pub fn preflight(ds: &mut FileDataset, labelled: bool, skip_bad: bool) -> Result<Vec<Problem>> {
    let mut probe = ds.clone();
    if !labelled {
        probe = ds.with_entries(ds.entries().iter().map(|e| SplitEntry { mask: None, ..e.clone() }).collect());
    }
    let per: Vec<Vec<Problem>> = (0..probe.entries().len()).into_par_iter().map(|i| check_entry(&probe, i).0).collect();
    let keep: Vec<usize> = per.iter().enumerate().filter(|(_, p)| p.is_empty()).map(|(i, _)| i).collect();
    let problems: Vec<Problem> = per.into_iter().flatten().collect();
    if problems.is_empty() {
        return Ok(problems);
    }
    if !skip_bad {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(Error::Check(format!("{} problems (use --skip-bad to skip):\n{}", list.len(), list.join("\n"))));
    }
    ds.retain_indices(&keep);
    Ok(problems)
}
