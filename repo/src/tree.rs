//! Snapshot trees: one tree blob per directory, listing its entries.
//!
//! A tree is canonical JSON (`{"nodes":[...]}`, nodes sorted by the bytes of their names,
//! fields in a fixed order, absent fields omitted), stored as a blob of kind Tree. Names and
//! link targets that are valid UTF-8 are stored in `name` / `target`; any other byte string in
//! `name_b64` / `target_b64` (standard base64), so no name is lost.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Fifo,
}

/// A piece of a file: data in a chunk, or a hole (a sparse region that reads as zeros).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Extent {
    Data { chunk: String, len: u64 },
    Hole { hole: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_b64: Option<String>,
    pub kind: NodeKind,
    /// Permission and special bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<Extent>,
    /// Id of the directory's own tree blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_b64: Option<String>,
    /// Files with the same link group in one snapshot are hard links of one another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_group: Option<u64>,
}

fn split_bytes(b: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(B64.encode(b))),
    }
}

fn join_bytes(s: &Option<String>, b64: &Option<String>) -> Option<Vec<u8>> {
    match (s, b64) {
        (Some(s), _) => Some(s.as_bytes().to_vec()),
        (None, Some(b)) => B64.decode(b).ok(),
        (None, None) => None,
    }
}

impl Node {
    pub fn new(name: &[u8], kind: NodeKind) -> Node {
        let (name, name_b64) = split_bytes(name);
        Node {
            name,
            name_b64,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            content: Vec::new(),
            subtree: None,
            target: None,
            target_b64: None,
            link_group: None,
        }
    }

    pub fn name_bytes(&self) -> Vec<u8> {
        join_bytes(&self.name, &self.name_b64).unwrap_or_default()
    }

    pub fn name_os(&self) -> OsString {
        OsString::from_vec(self.name_bytes())
    }

    pub fn set_target(&mut self, target: &std::ffi::OsStr) {
        (self.target, self.target_b64) = split_bytes(target.as_bytes());
    }

    pub fn target_os(&self) -> Option<OsString> {
        join_bytes(&self.target, &self.target_b64).map(OsString::from_vec)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Canonical bytes: nodes sorted by name bytes.
    pub fn encode(mut self) -> Vec<u8> {
        self.nodes.sort_by_key(|a| a.name_bytes());
        self.encode_as_is()
    }

    /// The nodes in the order given, without sorting. Backups use [`Tree::encode`]; this is
    /// for tests that must write what a forged or damaged repository could hold (readers
    /// refuse it).
    pub fn encode_as_is(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("trees serialize")
    }

    /// Parses a tree and checks it as a reader must before trusting its names: every name is
    /// one path component (not empty, not `.` or `..`, no `/` or NUL), given once (as text or
    /// base64, valid), and the names are strictly sorted by their bytes, so no name appears
    /// twice. A tree that breaks this is damaged or forged, and refused.
    pub fn decode(b: &[u8], what: &str) -> crate::error::Result<Tree> {
        let bad = |detail: String| crate::error::RepoError::corrupt(what, detail);
        let t: Tree = serde_json::from_slice(b).map_err(|e| bad(format!("tree: {e}")))?;
        let mut prev: Option<Vec<u8>> = None;
        for (i, n) in t.nodes.iter().enumerate() {
            let name = match (&n.name, &n.name_b64) {
                (Some(s), None) => s.as_bytes().to_vec(),
                (None, Some(b)) => {
                    B64.decode(b).map_err(|_| bad(format!("tree: entry {i} has a name that is not base64")))?
                }
                _ => return Err(bad(format!("tree: entry {i} must have exactly one of name and name_b64"))),
            };
            if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
                return Err(bad(format!(
                    "tree: unsafe entry name {:?} (a name is one path component)",
                    String::from_utf8_lossy(&name)
                )));
            }
            if let Some(p) = &prev
                && *p >= name
            {
                let why = if *p == name { "appears twice" } else { "is out of order" };
                return Err(bad(format!("tree: entry name {:?} {why}", String::from_utf8_lossy(&name))));
            }
            if n.kind != NodeKind::Dir && n.subtree.is_some() {
                return Err(bad(format!(
                    "tree: {:?} is not a directory but has a subtree",
                    String::from_utf8_lossy(&name)
                )));
            }
            prev = Some(name);
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_names_survive() {
        let raw = b"caf\xe9.txt";
        let n = Node::new(raw, NodeKind::File);
        assert!(n.name.is_none());
        let t = Tree { nodes: vec![n, Node::new(b"a", NodeKind::Dir)] }.encode();
        let back = Tree::decode(&t, "t").unwrap();
        assert_eq!(back.nodes[0].name_bytes(), b"a");
        assert_eq!(back.nodes[1].name_bytes(), raw);
    }

    #[test]
    fn duplicate_unsorted_and_unsafe_names_are_refused() {
        let t = |names: &[&[u8]]| Tree { nodes: names.iter().map(|n| Node::new(n, NodeKind::File)).collect() };
        let err = |names: &[&[u8]]| Tree::decode(&t(names).encode_as_is(), "t").unwrap_err().to_string();
        assert!(err(&[b"a", b"a"]).contains("appears twice"));
        assert!(err(&[b"b", b"a"]).contains("out of order"));
        for name in [&b".."[..], b".", b"", b"a/b", b"x\0y"] {
            assert!(err(&[name]).contains("unsafe entry name"), "{name:?}");
        }
        assert!(Tree::decode(&t(&[b"a", b"b"]).encode_as_is(), "t").is_ok());
    }
}
