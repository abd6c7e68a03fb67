//! Class names, palettes and the Cityscapes labelId → trainId table (embedded from `datasets/`).

use std::sync::OnceLock;

/// Label value that means "ignore" in every mask.
pub const IGNORE: u8 = 255;

/// The 21 PASCAL VOC class names (devkit spelling).
pub const VOC_CLASSES: [&str; 21] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

const CITYSCAPES_CSV: &str = include_str!("../../../datasets/cityscapes_labels.csv");

/// The VOC devkit bit-interleaving colour map for all 256 labels (255 → (224,224,192)).
pub fn voc_palette() -> [[u8; 3]; 256] {
    let mut pal = [[0u8; 3]; 256];
    for (i, entry) in pal.iter_mut().enumerate() {
        let mut c = i;
        let (mut r, mut g, mut b) = (0u8, 0u8, 0u8);
        for j in 0..8 {
            r |= ((c & 1) as u8) << (7 - j);
            g |= (((c >> 1) & 1) as u8) << (7 - j);
            b |= (((c >> 2) & 1) as u8) << (7 - j);
            c >>= 3;
        }
        *entry = [r, g, b];
    }
    pal
}

/// One row of the Cityscapes label table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CityscapesLabel {
    /// Label name, e.g. `road`.
    pub name: String,
    /// labelId (−1 for license plate).
    pub id: i32,
    /// trainId (0..18, 255 ignore; −1 for license plate, treated as 255).
    pub train_id: i32,
    /// Display colour.
    pub color: [u8; 3],
}

/// The embedded Cityscapes label table (35 rows, as in `cityscapesscripts` 2.3.0).
pub fn cityscapes_labels() -> &'static [CityscapesLabel] {
    static TABLE: OnceLock<Vec<CityscapesLabel>> = OnceLock::new();
    TABLE.get_or_init(|| parse_cityscapes_csv(CITYSCAPES_CSV))
}

fn parse_cityscapes_csv(text: &str) -> Vec<CityscapesLabel> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 7 {
                return None;
            }
            let c = |k: usize| f[k].trim().parse::<u8>().ok();
            Some(CityscapesLabel {
                name: f[0].to_string(),
                id: f[1].trim().parse().ok()?,
                train_id: f[2].trim().parse().ok()?,
                color: [c(4)?, c(5)?, c(6)?],
            })
        })
        .collect()
}

/// Lookup table labelId (0..=255) → trainId; every id that is not one of the 19 classes maps to 255.
pub fn cityscapes_id_to_train_id() -> &'static [u8; 256] {
    static LUT: OnceLock<[u8; 256]> = OnceLock::new();
    LUT.get_or_init(|| {
        let mut lut = [IGNORE; 256];
        for l in cityscapes_labels() {
            if (0..256).contains(&l.id) && (0..19).contains(&l.train_id) {
                lut[l.id as usize] = l.train_id as u8;
            }
        }
        lut
    })
}

/// The 19 Cityscapes trainId class names, in trainId order.
pub fn cityscapes_classes() -> Vec<String> {
    let mut v: Vec<(i32, String)> = cityscapes_labels()
        .iter()
        .filter(|l| (0..19).contains(&l.train_id))
        .map(|l| (l.train_id, l.name.clone()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

/// Palette indexed by trainId (0..18 = class colours, every other entry black except 255 = VOC void colour).
pub fn cityscapes_palette() -> [[u8; 3]; 256] {
    let mut pal = [[0u8; 3]; 256];
    for l in cityscapes_labels() {
        if (0..19).contains(&l.train_id) {
            pal[l.train_id as usize] = l.color;
        }
    }
    pal[255] = [224, 224, 192];
    pal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cityscapes_table_has_19_classes_and_35_rows() {
        assert_eq!(cityscapes_labels().len(), 35);
        let names = cityscapes_classes();
        assert_eq!(names.len(), 19);
        assert_eq!(names[0], "road");
        assert_eq!(names[18], "bicycle");
        assert_eq!(cityscapes_id_to_train_id()[26], 13);
        assert_eq!(cityscapes_id_to_train_id()[34], 255);
    }
}
