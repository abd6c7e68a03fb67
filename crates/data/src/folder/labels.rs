//! Class names, colours and the mask value map of a folder dataset (`classes.csv`, remap, ignore value).

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::Mask;
use crate::palette::{self, IGNORE};

/// One row of a `classes.csv` table (`index,name,r,g,b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassRow {
    /// Class index (or the ignore value, whose colour is then used for ignored pixels).
    pub index: u8,
    /// Display name.
    pub name: String,
    /// Display colour.
    pub rgb: [u8; 3],
}

/// Parses `index,name,r,g,b` rows; a first line starting with `index` is a header. `path` names the file in errors.
pub fn parse_classes_csv(text: &str, path: &Path) -> Result<Vec<ClassRow>> {
    let mut rows = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("index")) {
            continue;
        }
        let bad = |msg: String| Error::Split { path: path.into(), line: i + 1, msg };
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let [index, name, r, g, b] = f.as_slice() else {
            return Err(bad(format!("expected 5 columns index,name,r,g,b, found {}", f.len())));
        };
        let num = |what: &str, v: &str| v.parse::<u8>().map_err(|_| bad(format!("{what} {v:?} is not in 0..=255")));
        let row = ClassRow {
            index: num("index", index)?,
            name: name.to_string(),
            rgb: [num("r", r)?, num("g", g)?, num("b", b)?],
        };
        if rows.iter().any(|r: &ClassRow| r.index == row.index) {
            return Err(bad(format!("class index {} is listed twice", row.index)));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The class count a table implies: one more than its largest index below 255, if any.
pub fn classes_in_table(rows: &[ClassRow]) -> Option<usize> {
    rows.iter().filter(|r| r.index != IGNORE).map(|r| r.index as usize + 1).max()
}

/// How mask values become labels, and how labels are named and coloured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    lut: [u8; 256],
    num_classes: usize,
    ignore: u8,
    names: Vec<String>,
    palette: [[u8; 3]; 256],
}

impl LabelMap {
    /// `num_classes` labels `0..K−1`; mask values first go through `remap` (`[from, to]` pairs), then the value
    /// `ignore` becomes 255, the pipeline's ignore label. `classes` (from `classes.csv`) names and colours the
    /// classes; unnamed classes are `class<i>`, uncoloured ones take the VOC colour map.
    pub fn new(num_classes: usize, ignore: u8, remap: &[[u8; 2]], classes: &[ClassRow], origin: &Path) -> Result<Self> {
        if !(2..=255).contains(&num_classes) {
            return Err(Error::Config(format!("num_classes = {num_classes} must be in 2..=255")));
        }
        if (ignore as usize) < num_classes {
            return Err(Error::Config(format!("ignore_index {ignore} is a class index (num_classes = {num_classes})")));
        }
        let mut lut: [u8; 256] = std::array::from_fn(|i| i as u8);
        for (i, &[from, to]) in remap.iter().enumerate() {
            if remap[..i].iter().any(|p| p[0] == from) {
                return Err(Error::Config(format!("remap lists the value {from} twice")));
            }
            if (to as usize) >= num_classes && to != ignore && to != IGNORE {
                let msg =
                    format!("remap [{from}, {to}]: {to} is neither a class (< {num_classes}) nor the ignore value");
                return Err(Error::Config(msg));
            }
            lut[from as usize] = to;
        }
        lut.iter_mut().filter(|v| **v == ignore).for_each(|v| *v = IGNORE);
        let mut names: Vec<String> = (0..num_classes).map(|i| format!("class{i}")).collect();
        let mut palette = palette::voc_palette();
        for r in classes {
            // A row for a value that maps to ignore (the ignore value itself, or e.g. CamVid's 11) colours ignore.
            let slot = if lut[r.index as usize] == IGNORE { IGNORE } else { r.index };
            if slot != IGNORE && slot as usize >= num_classes {
                let msg = format!("class index {} is not below num_classes = {num_classes}", r.index);
                return Err(Error::invalid(origin, msg));
            }
            if slot != IGNORE {
                names[slot as usize] = r.name.clone();
            }
            palette[slot as usize] = r.rgb;
        }
        Ok(Self { lut, num_classes, ignore, names, palette })
    }

    /// Maps a mask's values in place (remap, then ignore → 255).
    pub fn apply(&self, mask: &mut Mask) {
        mask.data.iter_mut().for_each(|v| *v = self.lut[*v as usize]);
    }

    /// The label a mask value becomes.
    pub fn map(&self, value: u8) -> u8 {
        self.lut[value as usize]
    }

    /// Class count K.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The mask value that means "ignore" in the files.
    pub fn ignore(&self) -> u8 {
        self.ignore
    }

    /// The K class names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// 256-entry colour table (class colours, 255 = ignore colour).
    pub fn palette(&self) -> [[u8; 3]; 256] {
        self.palette
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_then_ignore_and_classes_csv() {
        let p = Path::new("classes.csv");
        let rows = parse_classes_csv("index,name,r,g,b\n0,sky,1,2,3\n2,road,4,5,6\n9,void,7,8,9\n", p).unwrap();
        assert_eq!(classes_in_table(&rows), Some(10));
        let m = LabelMap::new(3, 9, &[[11, 9], [7, 1]], &rows[..2], p).unwrap();
        assert_eq!((m.map(11), m.map(9), m.map(7), m.map(2), m.map(5)), (255, 255, 1, 2, 5));
        assert_eq!(m.names(), ["sky", "class1", "road"]);
        assert_eq!(m.palette()[2], [4, 5, 6]);
        let with_void = LabelMap::new(3, 9, &[], &[rows[2].clone()], p).unwrap();
        assert_eq!(with_void.palette()[255], [7, 8, 9]);
        let unlabelled = ClassRow { index: 11, name: "Unlabelled".into(), rgb: [1, 1, 1] };
        let camvid_like = LabelMap::new(3, 255, &[[11, 255]], &[unlabelled], p).unwrap();
        assert_eq!(camvid_like.palette()[255], [1, 1, 1], "a row for a remapped-to-ignore value colours ignore");
        let beyond = ClassRow { index: 5, name: "x".into(), rgb: [0, 0, 0] };
        let err = LabelMap::new(3, 9, &[], &[beyond], p).unwrap_err().to_string();
        assert!(err.contains("classes.csv") && err.contains("index 5"), "{err}");
        assert!(LabelMap::new(3, 2, &[], &[], p).is_err(), "ignore inside the classes");
        assert!(LabelMap::new(3, 255, &[[4, 5]], &[], p).is_err(), "remap target outside the classes");
        assert!(LabelMap::new(3, 255, &[[4, 1], [4, 2]], &[], p).is_err(), "remap source twice");
        let err = parse_classes_csv("0,sky,1,2\n", p).unwrap_err().to_string();
        assert!(err.contains("classes.csv:1") && err.contains("5 columns"), "{err}");
        assert!(parse_classes_csv("0,a,1,2,300\n", p).is_err());
        assert!(parse_classes_csv("0,a,1,2,3\n0,b,1,2,3\n", p).is_err());
    }
}
