//! Files written whole or not at all. The bytes go to a temporary file beside the target (same directory, so
//! the rename never crosses a filesystem), which is then renamed over it: a process killed at any point leaves
//! either the old file or the new one, never a torn one. Checkpoints, records, logs, masks and images all write
//! this way.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary file `write_atomic` stages `path` in: `.NAME.tmp-PID` in the same directory.
pub fn temp_beside(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to the temporary file of `path` (creating the directory), flushed to disk when `sync`; returns
/// that file's path, for callers that rename in a sequence of their own (e.g. checkpoint rotation).
pub fn stage(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<PathBuf> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temp_beside(path);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
        Ok(())
    });
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Replaces `path` by `bytes` atomically (see the module): safe against a killed process. Files that must also
/// survive a power loss (checkpoints) [`stage`] with `sync` and rename themselves.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = stage(path, bytes, false)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The new bytes replace the old ones whole, and no temporary file is left behind.
    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("run.json");
        write_atomic(&path, b"first, longer contents").expect("first write");
        write_atomic(&path, b"second").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["run.json"]);
    }

    /// A write that cannot happen (the target is a directory) keeps the target and removes the staged file.
    #[test]
    fn a_failed_rename_keeps_the_target_and_removes_the_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("inside"), b"x").expect("write");
        assert!(write_atomic(&target, b"bytes").is_err());
        assert!(target.join("inside").is_file());
        assert!(!temp_beside(&target).exists());
    }
}
