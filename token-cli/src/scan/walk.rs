//! Walking the paths to scan: files, directories (through the `ignore` crate, so `.gitignore`,
//! `.ignore` and git's exclude files are respected unless told otherwise) and stdin (`-`).
//!
//! Hidden files are scanned (`.env` is where tokens leak most); the `.git` directory is not.
//! `.gitignore` files apply also outside a git repository.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// How to walk.
///
/// ```
/// let options = token_cli::scan::walk::WalkOptions { respect_ignore_files: false, ..Default::default() };
/// assert_eq!(options.max_file_size, 256 * 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Skip what `.gitignore`, `.ignore` and git's exclude files name (default `true`).
    pub respect_ignore_files: bool,
    /// Skip files larger than this many bytes (default 256 MiB).
    pub max_file_size: u64,
}

impl Default for WalkOptions {
    fn default() -> Self {
        Self {
            respect_ignore_files: true,
            max_file_size: 256 * 1024 * 1024,
        }
    }
}

/// One text to scan.
#[derive(Debug)]
pub struct Source {
    /// The path as reported (`-` for stdin).
    pub path: String,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// A path that could not be scanned, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The path.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The name stdin is reported under.
pub const STDIN: &str = "-";

/// Calls `visit` with every file under `paths` (and stdin for `-`), in walk order; returns the
/// paths it could not read.
pub fn walk(
    paths: &[PathBuf],
    options: &WalkOptions,
    mut visit: impl FnMut(Source),
) -> Vec<Skipped> {
    let mut skipped = Vec::new();
    for root in paths {
        if root.as_os_str() == STDIN {
            let mut bytes = Vec::new();
            match std::io::stdin().lock().read_to_end(&mut bytes) {
                Ok(_) => visit(Source {
                    path: STDIN.to_owned(),
                    bytes,
                }),
                Err(e) => skipped.push(Skipped {
                    path: STDIN.to_owned(),
                    reason: format!("cannot read stdin: {e}"),
                }),
            }
            continue;
        }
        if !root.exists() {
            skipped.push(Skipped {
                path: display(root),
                reason: "no such file or directory".to_owned(),
            });
            continue;
        }
        let walker = ignore::WalkBuilder::new(root)
            .standard_filters(options.respect_ignore_files)
            .hidden(false)
            .require_git(false)
            .filter_entry(|entry| entry.file_name() != ".git")
            .build();
        for entry in walker {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    skipped.push(Skipped {
                        path: display(root),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            match read(path, options.max_file_size) {
                Ok(bytes) => visit(Source {
                    path: display(path),
                    bytes,
                }),
                Err(reason) => skipped.push(Skipped {
                    path: display(path),
                    reason,
                }),
            }
        }
    }
    skipped
}

fn read(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > max {
        return Err(format!(
            "{size} bytes is larger than --max-file-size {max}; raise it to scan this file"
        ));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

fn display(path: &Path) -> String {
    let text = path.to_string_lossy();
    text.strip_prefix("./").unwrap_or(&text).to_owned()
}
