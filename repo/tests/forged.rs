//! A forged repository must not reach outside the restore target. Each snapshot here is
//! written through the format's own writer (packs, index, snapshot), with the test choosing
//! the trees' names and their order; the escapes point at a folder the test owns and checks.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use seedship_repo::index::Index;
use seedship_repo::pack::PackWriter;
use seedship_repo::restore::{RestoreOptions, restore_with};
use seedship_repo::snapshot::{Snapshot, SnapshotStats};
use seedship_repo::tree::{Extent, Node, NodeKind, Tree};
use seedship_repo::{CreateOptions, KdfParams, Kind, Repository, blob};

struct Forge {
    repo: Repository,
    pack: Option<PackWriter>,
    n: u64,
}

impl Forge {
    fn new(root: &Path) -> Forge {
        let opts = CreateOptions { kdf: KdfParams { memory_kib: 1024, ..Default::default() }, ..Default::default() };
        let (repo, _) = Repository::create(root, "forged passphrase", &opts).unwrap();
        Forge { repo, pack: None, n: 0 }
    }

    fn blob(&mut self, kind: Kind, data: &[u8]) -> String {
        let (id, sealed) = blob::encode(self.repo.crypto(), kind, data, 3);
        if self.pack.is_none() {
            self.n += 1;
            self.pack = Some(PackWriter::create(&self.repo.root, self.n).unwrap());
        }
        self.pack.as_mut().unwrap().add(kind, id, &sealed, data.len()).unwrap();
        hex::encode(id)
    }

    /// A tree with the nodes in exactly the order given (no sorting, no checks).
    fn tree(&mut self, nodes: Vec<Node>) -> String {
        self.blob(Kind::Tree, &Tree { nodes }.encode_as_is())
    }

    fn file(&mut self, name: &str, data: &[u8], mode: u32) -> Node {
        let chunk = self.blob(Kind::Data, data);
        let mut n = Node::new(name.as_bytes(), NodeKind::File);
        n.mode = mode;
        n.size = data.len() as u64;
        n.mtime_ns = 86_400_000_000_000;
        n.content = vec![Extent::Data { chunk, len: data.len() as u64 }];
        n
    }

    fn dir(&mut self, name: &str, children: Vec<Node>) -> Node {
        let sub = self.tree(children);
        let mut n = Node::new(name.as_bytes(), NodeKind::Dir);
        n.mode = 0o755;
        n.mtime_ns = 86_400_000_000_000;
        n.subtree = Some(sub);
        n
    }

    fn link(name: &str, target: &Path) -> Node {
        let mut n = Node::new(name.as_bytes(), NodeKind::Symlink);
        n.mode = 0o777;
        n.set_target(target.as_os_str());
        n
    }

    /// Seals the pack, writes the index and a snapshot of `root_nodes`; returns it.
    fn snapshot(mut self, root_nodes: Vec<Node>) -> (Repository, Index, Snapshot) {
        let tree = self.tree(root_nodes);
        let done = self.pack.take().unwrap().finish(self.repo.crypto(), &self.repo.root).unwrap();
        let mut index = Index::default();
        index.add_pack(&done.id, &done.entries).unwrap();
        self.repo.write_index(&index).unwrap();
        let snap = Snapshot {
            version: 1,
            time: "2026-01-01T00:00:00Z".into(),
            hostname: "forger".into(),
            paths: vec!["/src".into()],
            tree,
            parent: None,
            stats: SnapshotStats::default(),
        };
        self.repo.write_snapshot(&snap).unwrap();
        let (index, _) = self.repo.load_index().unwrap();
        (self.repo, index, snap)
    }
}

fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let (repo, target, outside) = (d.path().join("repo"), d.path().join("target"), d.path().join("outside"));
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("keep"), b"the test's own file").unwrap();
    fs::set_permissions(outside.join("keep"), fs::Permissions::from_mode(0o600)).unwrap();
    (d, repo, target, outside)
}

/// What the escape would have touched: nothing new in `outside`, and `keep` unchanged.
fn assert_untouched(outside: &Path) {
    let names: Vec<_> = fs::read_dir(outside).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep")], "something was written outside the target");
    let m = fs::metadata(outside.join("keep")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600, "the outside file's mode was changed");
    assert_eq!(fs::read(outside.join("keep")).unwrap(), b"the test's own file");
    let mtime = m.modified().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_ne!(mtime, 86_400, "the outside file's time was set");
    let dm = fs::metadata(outside).unwrap();
    assert_ne!(dm.permissions().mode() & 0o7777, 0o777, "the outside folder's mode was changed");
}

#[test]
fn a_link_then_a_directory_of_the_same_name_is_refused() {
    let (_d, repo, target, outside) = dirs();
    let mut f = Forge::new(&repo);
    let payload = f.file("keep", b"written by a forged snapshot", 0o777);
    let payload2 = f.file("new", b"written by a forged snapshot", 0o777);
    let dir = f.dir("a", vec![payload, payload2]);
    let top = f.dir("src", vec![Forge::link("a", &outside), dir]);
    let (repo, index, snap) = f.snapshot(vec![top]);
    let e = restore_with(&repo, &index, &snap, &target, &RestoreOptions::default());
    let failed = match &e {
        Ok(st) => st.failed.iter().map(|(p, w)| format!("{}: {w}", p.display())).collect::<Vec<_>>().join("\n"),
        Err(e) => e.to_string(),
    };
    assert!(failed.contains("appears twice"), "the duplicate name is named: {failed}");
    assert_untouched(&outside);
}

#[test]
fn a_relative_dotdot_link_is_not_followed() {
    let (_d, repo, target, outside) = dirs();
    let mut f = Forge::new(&repo);
    let payload = f.file("new", b"written by a forged snapshot", 0o777);
    // A directory `a`, then a link `a -> ../../outside` (the same name twice, out of order).
    let dir = f.dir("a", vec![payload]);
    let up = Path::new("../../outside");
    let top = f.dir("src", vec![dir, Forge::link("a", up)]);
    let (repo, index, snap) = f.snapshot(vec![top]);
    let r = restore_with(&repo, &index, &snap, &target, &RestoreOptions::default());
    let text = match &r {
        Ok(st) => format!("{:?}", st.failed),
        Err(e) => e.to_string(),
    };
    assert!(text.contains("appears twice") || text.contains("out of order"), "{text}");
    assert_untouched(&outside);
}

#[test]
fn unsorted_names_are_refused_and_a_link_in_the_snapshot_is_only_a_link() {
    let (_d, repo, target, outside) = dirs();
    let mut f = Forge::new(&repo);
    let b = f.file("b", b"b", 0o644);
    let a = f.file("a", b"a", 0o644);
    let unsorted = f.dir("unsorted", vec![b, a]);
    let top = f.dir("src", vec![Forge::link("out", &outside), unsorted]);
    let (repo, index, snap) = f.snapshot(vec![top]);
    let st = restore_with(&repo, &index, &snap, &target, &RestoreOptions::default()).unwrap();
    let text = format!("{:?}", st.failed);
    assert!(text.contains("out of order"), "{text}");
    // The link itself is restored as a link, and nothing went through it.
    assert_eq!(fs::read_link(target.join("src/out")).unwrap(), outside);
    assert_untouched(&outside);
}

#[test]
fn overwrite_never_follows_a_link_already_in_the_target() {
    let (_d, repo, target, outside) = dirs();
    let mut f = Forge::new(&repo);
    let payload = f.file("keep", b"written through a link in the target", 0o777);
    let payload2 = f.file("new", b"written through a link in the target", 0o777);
    let dir = f.dir("a", vec![payload, payload2]);
    let top = f.dir("src", vec![dir]);
    let (repo, index, snap) = f.snapshot(vec![top]);
    // The target already holds `src/a -> outside`, where the snapshot has a directory; and
    // `src/b -> outside` that the snapshot does not name.
    fs::create_dir_all(target.join("src")).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("src/a")).unwrap();
    // Without overwrite: refused (that entry, listed), nothing written through it.
    let st = restore_with(&repo, &index, &snap, &target, &RestoreOptions::default()).unwrap();
    let e = format!("{:?}", st.failed);
    assert!(e.contains("symbolic link"), "{e}");
    assert_untouched(&outside);
    // With overwrite: the link is replaced by a directory, still nothing outside.
    let opts = RestoreOptions { overwrite: true, ..Default::default() };
    let st = restore_with(&repo, &index, &snap, &target, &opts).unwrap();
    assert!(st.failed.is_empty(), "{:?}", st.failed);
    assert!(fs::symlink_metadata(target.join("src/a")).unwrap().is_dir());
    assert_eq!(fs::read(target.join("src/a/new")).unwrap(), b"written through a link in the target");
    assert_untouched(&outside);
}

#[test]
fn a_file_where_the_target_has_a_link_replaces_the_link_not_its_target() {
    let (_d, repo, target, outside) = dirs();
    let mut f = Forge::new(&repo);
    let payload = f.file("x", b"new content", 0o777);
    let top = f.dir("src", vec![payload]);
    let (repo, index, snap) = f.snapshot(vec![top]);
    fs::create_dir_all(target.join("src")).unwrap();
    std::os::unix::fs::symlink(outside.join("keep"), target.join("src/x")).unwrap();
    let opts = RestoreOptions { overwrite: true, ..Default::default() };
    let st = restore_with(&repo, &index, &snap, &target, &opts).unwrap();
    assert!(st.failed.is_empty(), "{:?}", st.failed);
    assert!(fs::symlink_metadata(target.join("src/x")).unwrap().is_file());
    assert_eq!(fs::read(target.join("src/x")).unwrap(), b"new content");
    assert_untouched(&outside);
}
