//! The scan: walk the sources once, in a fixed order, and record what is there.
//!
//! The order is depth-first with entries sorted by the bytes of their names, so the same
//! source always gives the same sequence of files, chunks and packs: that is what lets an
//! interrupted backup resume into exactly the staging set an uninterrupted one writes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use seedship_repo::tree::NodeKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub size: u64,
}

impl Meta {
    pub fn of(m: &fs::Metadata) -> Meta {
        Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            size: m.len(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub path: PathBuf,
    pub kind: NodeKind,
    pub meta: Meta,
    pub children: Vec<usize>,
    pub target: Option<OsString>,
    /// Position in `Scan::files` (regular files only).
    pub file: Option<usize>,
    pub link_group: Option<u64>,
    /// For the second and later names of a hard-linked file: the entry read for it.
    pub link_first: Option<usize>,
}

/// Something not backed up, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<Entry>,
    pub roots: Vec<usize>,
    /// Entry indexes of regular files, in read order.
    pub files: Vec<usize>,
    pub total_bytes: u64,
    pub skipped: Vec<Skipped>,
    /// Entries with extended attributes (POSIX ACLs, file capabilities, SELinux labels, user
    /// attributes): backed up without them, and said so.
    pub xattrs_not_kept: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("source {path} cannot be read: {source}")]
    Source { path: PathBuf, source: std::io::Error },
    #[error("two sources have the same name {0:?}; give sources with different last components")]
    SameName(String),
}

impl Scan {
    pub fn run(sources: &[PathBuf]) -> Result<Scan, ScanError> {
        let mut s = Scan::default();
        let mut links: HashMap<(u64, u64), (usize, u64)> = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for src in sources {
            let meta = fs::symlink_metadata(src).map_err(|source| ScanError::Source { path: src.clone(), source })?;
            let name = root_name(src);
            if !names.insert(name.clone()) {
                return Err(ScanError::SameName(String::from_utf8_lossy(&name).into_owned()));
            }
            if let Some(i) = s.add(src.clone(), name, &meta, &mut links) {
                s.roots.push(i);
            }
        }
        Ok(s)
    }

    fn add(
        &mut self,
        path: PathBuf,
        name: Vec<u8>,
        meta: &fs::Metadata,
        links: &mut HashMap<(u64, u64), (usize, u64)>,
    ) -> Option<usize> {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File
        } else if ft.is_symlink() {
            NodeKind::Symlink
        } else if ft.is_fifo() {
            NodeKind::Fifo
        } else {
            let what = if ft.is_socket() { "a socket" } else { "a device file" };
            self.skipped.push(Skipped { path, reason: format!("{what}; not backed up") });
            return None;
        };
        if rustix::fs::llistxattr_query(&path).is_ok_and(|n| n > 0) {
            self.xattrs_not_kept.push(path.clone());
        }
        let idx = self.entries.len();
        let mut e = Entry {
            name,
            path: path.clone(),
            kind,
            meta: Meta::of(meta),
            children: Vec::new(),
            target: None,
            file: None,
            link_group: None,
            link_first: None,
        };
        match kind {
            NodeKind::File => {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    match links.get(&key) {
                        Some((first, group)) => {
                            e.link_first = Some(*first);
                            e.link_group = Some(*group);
                        }
                        None => {
                            let group = links.len() as u64 + 1;
                            links.insert(key, (idx, group));
                            e.link_group = Some(group);
                        }
                    }
                }
                if e.link_first.is_none() {
                    self.total_bytes += meta.len();
                }
                e.file = Some(self.files.len());
                self.files.push(idx);
            }
            NodeKind::Symlink => match fs::read_link(&path) {
                Ok(t) => e.target = Some(t.into_os_string()),
                Err(err) => {
                    self.skipped.push(Skipped { path, reason: format!("symlink cannot be read: {err}") });
                    return None;
                }
            },
            _ => {}
        }
        self.entries.push(e);
        if kind == NodeKind::Dir {
            let mut kids: Vec<(Vec<u8>, PathBuf)> = match fs::read_dir(&path) {
                Ok(rd) => rd
                    .filter_map(|r| match r {
                        Ok(d) => Some((d.file_name().as_bytes().to_vec(), d.path())),
                        Err(err) => {
                            self.skipped.push(Skipped { path: path.clone(), reason: format!("listing failed: {err}") });
                            None
                        }
                    })
                    .collect(),
                Err(err) => {
                    self.skipped
                        .push(Skipped { path: path.clone(), reason: format!("directory cannot be listed: {err}") });
                    Vec::new()
                }
            };
            kids.sort();
            let mut children = Vec::with_capacity(kids.len());
            for (name, p) in kids {
                match fs::symlink_metadata(&p) {
                    Ok(m) => {
                        if let Some(c) = self.add(p, name, &m, links) {
                            children.push(c);
                        }
                    }
                    Err(err) => {
                        self.skipped.push(Skipped { path: p, reason: format!("vanished or unreadable: {err}") })
                    }
                }
            }
            self.entries[idx].children = children;
        }
        Some(idx)
    }
}

/// The name a source gets at the top of the snapshot: its last path component.
fn root_name(p: &Path) -> Vec<u8> {
    match p.file_name() {
        Some(n) => n.as_bytes().to_vec(),
        None => b"root".to_vec(),
    }
}
