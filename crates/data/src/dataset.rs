//! The [`Dataset`] abstraction over VOC, Cityscapes, folder datasets (files listed in split lists) and synthetic
//! scenes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::folder::LabelMap;
use crate::io::{self, Mask, RgbImage};
use crate::palette::{self, IGNORE};
use crate::sparse::SparseConfig;
use crate::splits::{self, SplitEntry};
use crate::synthetic::SyntheticDataset;

/// Which label convention a file dataset follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    /// PASCAL VOC 2012 (+SBD): 21 classes.
    Voc,
    /// Cityscapes: 19 trainIds; `*_labelIds.png` masks are converted on load.
    Cityscapes,
    /// Synthetic scenes written in VOC layout (K classes, default 6).
    Synthetic,
    /// A folder dataset ([`crate::folder`]): generic layout or a preset; masks go through its label map.
    Folder,
}

/// One raw sample: an RGB image and, when requested and available, its label mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSample {
    /// Sample id (file stem or synthetic index).
    pub id: String,
    /// The image, HWC u8.
    pub image: RgbImage,
    /// The label mask, HW u8 (255 = ignore); `None` for unlabelled reads.
    pub mask: Option<Mask>,
}

/// Checks every mask value is in `{0..num_classes-1, 255}`; the error names the file and the offending values.
pub fn validate_mask(mask: &Mask, num_classes: usize, path: &Path) -> Result<()> {
    let mut hist = [0usize; 256];
    for &v in &mask.data {
        hist[v as usize] += 1;
    }
    let bad: Vec<String> = (0..256)
        .filter(|&v| hist[v] > 0 && v != IGNORE as usize && v >= num_classes)
        .map(|v| format!("{v} ({} px)", hist[v]))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        let msg = format!("label values outside {{0..{}, 255}}: {}", num_classes.saturating_sub(1), bad.join(", "));
        Err(Error::invalid(path, msg))
    }
}

/// Maps a Cityscapes `*_labelIds.png` mask to trainIds in place; other files are left as they are.
pub fn convert_cityscapes_mask(mask: &mut Mask, path: &Path) {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.ends_with("_labelIds.png") {
        let lut = palette::cityscapes_id_to_train_id();
        mask.data.iter_mut().for_each(|v| *v = lut[*v as usize]);
    }
}

/// A dataset of image (and mask) files under a root, listed by split entries.
#[derive(Debug, Clone)]
pub struct FileDataset {
    root: PathBuf,
    kind: DatasetKind,
    entries: Vec<SplitEntry>,
    num_classes: usize,
    labels: Option<Arc<LabelMap>>,
    scale: f64,
}

impl FileDataset {
    /// A dataset of `entries` under `root`; `num_classes` is 21 for VOC, 19 for Cityscapes, K for synthetic.
    pub fn new(kind: DatasetKind, root: impl Into<PathBuf>, entries: Vec<SplitEntry>, num_classes: usize) -> Self {
        Self { root: root.into(), kind, entries, num_classes, labels: None, scale: 1.0 }
    }

    /// The same dataset whose masks go through `labels` on load (its class count replaces this one's).
    pub fn with_labels(self, labels: Arc<LabelMap>) -> Self {
        Self { num_classes: labels.num_classes(), labels: Some(labels), ..self }
    }

    /// The same dataset with images (bilinear) and masks (nearest) resized by `scale` on load.
    pub fn with_scale(self, scale: f64) -> Self {
        Self { scale, ..self }
    }

    /// The same dataset (kind, classes, label map, scale) over other entries.
    pub fn with_entries(&self, entries: Vec<SplitEntry>) -> Self {
        Self { entries, ..self.clone() }
    }

    /// A dataset with the kind's default class count, from a split list file.
    pub fn from_split_file(kind: DatasetKind, root: impl Into<PathBuf>, list: &Path) -> Result<Self> {
        let k = default_num_classes(kind).ok_or_else(|| {
            Error::Config("a folder dataset is opened with data::folder::FolderDataset, not from a list file".into())
        })?;
        Ok(Self::new(kind, root, splits::read_split(list)?, k))
    }

    /// A VOC devkit image set (`ImageSets/Segmentation/<name>.txt`, bare ids). Each id's mask is
    /// `SegmentationClass/<id>.png` (paletted) when present, else `SegmentationClassAug/<id>.png` (SBD, grayscale).
    pub fn voc_image_set(root: impl Into<PathBuf>, name: &str) -> Result<Self> {
        let root = root.into();
        let list = root.join("ImageSets/Segmentation").join(format!("{name}.txt"));
        let text = std::fs::read_to_string(&list).map_err(|e| Error::io(&list, e))?;
        let mut entries = splits::parse_image_set(&text, &list)?;
        for e in &mut entries {
            let id = e.id();
            if !root.join(format!("SegmentationClass/{id}.png")).is_file()
                && root.join(format!("SegmentationClassAug/{id}.png")).is_file()
            {
                e.mask = Some(format!("SegmentationClassAug/{id}.png"));
            }
        }
        Ok(Self::new(DatasetKind::Voc, root, entries, 21))
    }

    /// The dataset root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Label convention.
    pub fn kind(&self) -> DatasetKind {
        self.kind
    }

    /// The split entries, in order.
    pub fn entries(&self) -> &[SplitEntry] {
        &self.entries
    }

    /// Keeps only the entries at `keep` (ascending indices), e.g. after `--skip-bad`.
    pub fn retain_indices(&mut self, keep: &[usize]) {
        let old = std::mem::take(&mut self.entries);
        self.entries = keep.iter().filter_map(|&i| old.get(i).cloned()).collect();
    }

    /// Class count.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The label map of a folder dataset.
    pub fn labels(&self) -> Option<&LabelMap> {
        self.labels.as_deref()
    }

    /// Maps a decoded mask to labels: Cityscapes labelIds → trainIds, or a folder dataset's remap and ignore value.
    pub fn convert_mask(&self, mask: &mut Mask, path: &Path) {
        if let Some(l) = &self.labels {
            l.apply(mask);
        } else if self.kind == DatasetKind::Cityscapes {
            convert_cityscapes_mask(mask, path);
        }
    }

    /// Full path of the image of entry `i`.
    pub fn image_path(&self, i: usize) -> PathBuf {
        self.root.join(&self.entries[i].image)
    }

    /// Full path of the mask of entry `i`, if the line lists one.
    pub fn mask_path(&self, i: usize) -> Option<PathBuf> {
        self.entries[i].mask.as_ref().map(|m| self.root.join(m))
    }

    /// Reads a mask file, converts it ([`Self::convert_mask`]) and validates values (not size).
    pub fn read_mask_file(&self, path: &Path) -> Result<Mask> {
        let mut mask = io::read_mask(path)?.mask;
        self.convert_mask(&mut mask, path);
        validate_mask(&mask, self.num_classes, path)?;
        Ok(mask)
    }

    /// Loads entry `i`; with `with_mask`, also its mask (an error if the line has none or sizes differ).
    pub fn load(&self, i: usize, with_mask: bool) -> Result<RawSample> {
        let entry = self.entries.get(i).ok_or_else(|| Error::Config(format!("index {i} out of range")))?;
        let mut image = io::read_image(&self.image_path(i))?;
        let mut mask = if with_mask {
            let mp = self.mask_path(i).ok_or_else(|| Error::Split {
                path: self.root.join(&entry.image),
                line: entry.line,
                msg: "labelled sample has no mask column".into(),
            })?;
            let mask = self.read_mask_file(&mp)?;
            if (mask.width, mask.height) != (image.width, image.height) {
                let msg = format!(
                    "mask size {}x{} differs from image size {}x{}",
                    mask.width, mask.height, image.width, image.height
                );
                return Err(Error::invalid(mp, msg));
            }
            Some(mask)
        } else {
            None
        };
        if self.scale != 1.0 {
            image = io::resize_image(&image, self.scale);
            mask = mask.map(|m| io::resize_mask_nearest(&m, image.width, image.height));
        }
        Ok(RawSample { id: entry.id(), image, mask })
    }
}

/// 21 for VOC, 19 for Cityscapes, 6 for synthetic; none for folder datasets (their config or preset says).
pub fn default_num_classes(kind: DatasetKind) -> Option<usize> {
    match kind {
        DatasetKind::Voc => Some(21),
        DatasetKind::Cityscapes => Some(19),
        DatasetKind::Synthetic => Some(crate::synthetic::DEFAULT_CLASSES),
        DatasetKind::Folder => None,
    }
}

/// The class names of a kind with `k` classes (folder datasets without a label map: `class<i>`).
pub fn class_names_of(kind: DatasetKind, k: usize) -> Vec<String> {
    match kind {
        DatasetKind::Voc => palette::VOC_CLASSES.iter().map(|s| s.to_string()).collect(),
        DatasetKind::Cityscapes => palette::cityscapes_classes(),
        DatasetKind::Synthetic => crate::synthetic::class_names(k),
        DatasetKind::Folder => (0..k).map(|i| format!("class{i}")).collect(),
    }
}

/// A dataset: files on disk or procedurally generated scenes.
#[derive(Debug, Clone)]
pub enum Dataset {
    /// Files listed by a split list.
    Files(FileDataset),
    /// In-memory synthetic scenes.
    Synthetic(SyntheticDataset),
    /// Another dataset whose masks keep only a fraction of their labelled pixels ([`crate::sparse`]).
    Sparse(Box<Dataset>, SparseConfig),
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Dataset::Files(f) => f.entries.len(),
            Dataset::Synthetic(s) => s.len(),
            Dataset::Sparse(d, _) => d.len(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i` with its mask.
    pub fn sample(&self, i: usize) -> Result<RawSample> {
        match self {
            Dataset::Files(f) => f.load(i, true),
            Dataset::Synthetic(s) => s.sample(i),
            Dataset::Sparse(d, cfg) => {
                let mut r = d.sample(i)?;
                if let Some(m) = r.mask.as_mut() {
                    cfg.apply(&r.id, &mut m.data);
                }
                Ok(r)
            }
        }
    }

    /// Sample `i` without opening (or returning) its mask: the unlabelled path.
    pub fn image_only(&self, i: usize) -> Result<RawSample> {
        match self {
            Dataset::Files(f) => f.load(i, false),
            Dataset::Synthetic(s) => s.sample(i).map(|r| RawSample { mask: None, ..r }),
            Dataset::Sparse(d, _) => d.image_only(i),
        }
    }

    /// Class count K.
    pub fn num_classes(&self) -> usize {
        match self {
            Dataset::Files(f) => f.num_classes,
            Dataset::Synthetic(s) => s.config().num_classes,
            Dataset::Sparse(d, _) => d.num_classes(),
        }
    }

    /// Class names (K entries).
    pub fn class_names(&self) -> Vec<String> {
        match self.labels() {
            Some(l) => l.names().to_vec(),
            None => class_names_of(self.kind(), self.num_classes()),
        }
    }

    /// The label map of a folder dataset.
    pub fn labels(&self) -> Option<&LabelMap> {
        match self {
            Dataset::Files(f) => f.labels(),
            Dataset::Synthetic(_) => None,
            Dataset::Sparse(d, _) => d.labels(),
        }
    }

    /// The label convention.
    pub fn kind(&self) -> DatasetKind {
        match self {
            Dataset::Files(f) => f.kind,
            Dataset::Synthetic(_) => DatasetKind::Synthetic,
            Dataset::Sparse(d, _) => d.kind(),
        }
    }

    /// 256-entry palette for coloured masks.
    pub fn palette(&self) -> [[u8; 3]; 256] {
        match (self.labels(), self.kind()) {
            (Some(l), _) => l.palette(),
            (None, DatasetKind::Cityscapes) => palette::cityscapes_palette(),
            _ => palette::voc_palette(),
        }
    }
}
