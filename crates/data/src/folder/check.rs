//! `check-data` for folder datasets: every split list, every id, every image and every labelled id's mask.

use std::collections::{HashMap, HashSet};

use crate::check::{check_files, Problem, ProblemKind, Report};
use crate::error::Result;
use crate::folder::{is_unlabeled_name, FolderDataset, ListedId, IMAGE_EXTENSIONS};
use crate::splits::SplitEntry;

/// Checks every split of `ds`. Ids of the splits in `unlabeled` (and of splits named `unlabeled*`) need no
/// mask; every other id needs an image and a mask of the image's size whose values, after the remap, are
/// classes or ignore. Problems name the file (and the list line for ids without an image).
pub fn check_folder(ds: &FolderDataset, unlabeled: &[String]) -> Result<Report> {
    let names = ds.split_names()?;
    if let Some(bad) = unlabeled.iter().find(|u| !names.contains(u)) {
        let msg = format!("no split `{bad}` to treat as unlabelled; splits: {}", names.join(", "));
        return Err(crate::Error::Config(msg));
    }
    let mut problems = Vec::new();
    let mut lists = Vec::new();
    let mut list_paths = Vec::new();
    let mut listed: HashSet<String> = HashSet::new();
    for name in &names {
        let path = ds.list_path(name)?;
        list_paths.push(path.clone());
        let ids = match ds.read_list(name) {
            Ok(ids) => ids,
            Err(e) => {
                let kind = ProblemKind::BadSplitList;
                problems.push(Problem { path: path.clone(), kind, msg: e.to_string() });
                continue;
            }
        };
        duplicates(&path, &ids, &mut problems);
        let labelled = !unlabeled.contains(name) && !is_unlabeled_name(name);
        let (entries, missing) = ds.resolve(&path, &ids, labelled);
        problems.extend(missing);
        listed.extend(entries.iter().map(SplitEntry::id));
        lists.push((entries, labelled));
    }
    let mut report = check_files(&ds.file_dataset(Vec::new()), &lists, problems);
    report.lists = list_paths;
    report.class_names = ds.labels().names().to_vec();
    if ds.preset().is_none() {
        report.notes.extend(unlisted_images(ds, &listed));
    }
    Ok(report)
}

/// Duplicate ids within one list.
fn duplicates(list: &std::path::Path, ids: &[ListedId], out: &mut Vec<Problem>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for l in ids {
        if let Some(first) = seen.insert(&l.id, l.line) {
            let msg = format!("duplicate id {} on line {} (first on line {first})", l.id, l.line);
            out.push(Problem { path: list.to_path_buf(), kind: ProblemKind::DuplicateId, msg });
        }
    }
}

/// A note counting the images under `images/` that no split lists (they are not part of the dataset).
fn unlisted_images(ds: &FolderDataset, listed: &HashSet<String>) -> Option<String> {
    let rd = std::fs::read_dir(ds.root().join("images")).ok()?;
    let mut unlisted: Vec<String> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|x| x.to_str()).is_some_and(|x| IMAGE_EXTENSIONS.contains(&x)))
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_string))
        .filter(|id| !listed.contains(id))
        .collect();
    unlisted.sort();
    let shown: Vec<&str> = unlisted.iter().take(5).map(String::as_str).collect();
    let more = if unlisted.len() > 5 { ", …" } else { "" };
    (!unlisted.is_empty())
        .then(|| format!("{} images in images/ are in no split list: {}{more}", unlisted.len(), shown.join(", ")))
}
