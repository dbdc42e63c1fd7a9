//! The drive manifest of a customer disk, in the "Import/Export Service Manifest File Format"
//! (`<DriveManifest Version="2014-11-01">`) that the Azure datacenter reads from the disk's
//! NTFS volume.
//!
//! ```xml
//! <DriveManifest Version="2014-11-01">
//!   <Drive>
//!     <DriveId>WD-WCC4E1234567</DriveId>                 the disk's serial, before any BlobList
//!     <ContainerSas>?sv=...&sig=...</ContainerSas>         exactly one of it or StorageAccountKey
//!     <ClientCreator>seedship 0.1.0</ClientCreator>
//!     <BlobList Id="session#1-0">
//!       <Blob>
//!         <BlobPath>import-sd-x/data/00/0a1b...</BlobPath>   container-relative
//!         <FilePath>\seedship\data\00\0a1b...</FilePath>    relative to the drive root
//!         <Length>33554432</Length>
//!         <ImportDisposition>overwrite</ImportDisposition>
//!         <BlockList>                                       contiguous, covering the file,
//!           <Block Offset="0" Length="4194304" Hash="9E10..."/>   at most 4 MiB each,
//!         </BlockList>                                      at most 50,000; MD5 in upper hex
//!       </Blob>
//!     </BlobList>
//!   </Drive>
//! </DriveManifest>
//! ```
//!
//! [`DriveManifest::to_xml`] writes it; [`DriveManifest::parse`] reads it back and refuses,
//! with the datacenter's codes, anything that breaks the format: `ManifestFormatInvalid` for
//! the document and the drive, `BlobListFormatInvalid` for a blob or its blocks. The job
//! carries only the manifest's path and its MD5 ([`manifest_hash`]).

use std::fmt::Write as _;

use md5::{Digest, Md5};
use quick_xml::Reader;
use quick_xml::events::Event;

/// The format's version attribute.
pub const VERSION: &str = "2014-11-01";
/// Where the manifest lives on the volume, as the job names it.
pub const MANIFEST_PATH: &str = "\\DriveManifest.xml";
/// The largest block of a block list.
pub const MAX_BLOCK: u64 = 4 << 20;
/// The most blocks one blob may have.
pub const MAX_BLOCKS: usize = 50_000;
/// A manifest larger than this is not read (the datacenter would not either).
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// One block of a blob: where it is in the file, how long, and its MD5 (upper-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub offset: u64,
    pub length: u64,
    pub hash: String,
}

/// One file on the volume and the blob it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBlob {
    /// `<container>/<blob name>`.
    pub blob_path: String,
    /// Relative to the volume's root, with `\` separators and a leading `\`.
    pub file_path: String,
    pub length: u64,
    pub blocks: Vec<Block>,
}

/// How the datacenter may write into the storage account. A secret: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub enum Access {
    ContainerSas(String),
    StorageAccountKey(String),
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::ContainerSas(_) => f.write_str("ContainerSas(<redacted>)"),
            Access::StorageAccountKey(_) => f.write_str("StorageAccountKey(<redacted>)"),
        }
    }
}

/// A whole drive manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveManifest {
    pub drive_id: String,
    pub access: Access,
    pub client_creator: String,
    pub blobs: Vec<ManifestBlob>,
}

/// What is wrong with a manifest, as the datacenter names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("ManifestFormatInvalid: {0}")]
    FormatInvalid(String),
    #[error("BlobListFormatInvalid: {0}")]
    BlobListInvalid(String),
}

impl ManifestError {
    /// The datacenter's code.
    pub fn code(&self) -> &'static str {
        match self {
            ManifestError::FormatInvalid(_) => "ManifestFormatInvalid",
            ManifestError::BlobListInvalid(_) => "BlobListFormatInvalid",
        }
    }
}

/// The MD5 of a manifest file's bytes in upper-case hex, as the job's `manifestHash`.
pub fn manifest_hash(bytes: &[u8]) -> String {
    hex::encode_upper(Md5::digest(bytes))
}

/// Builds a blob's block list while its bytes go by: feed every byte in order, then
/// [`Blocks::finish`].
#[derive(Default)]
pub struct Blocks {
    done: Vec<Block>,
    md5: Md5,
    start: u64,
    len: u64,
}

impl Blocks {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = (MAX_BLOCK - self.len) as usize;
            let take = room.min(data.len());
            self.md5.update(&data[..take]);
            self.len += take as u64;
            data = &data[take..];
            if self.len == MAX_BLOCK {
                self.cut();
            }
        }
    }

    fn cut(&mut self) {
        let hash = hex::encode_upper(std::mem::take(&mut self.md5).finalize());
        self.done.push(Block { offset: self.start, length: self.len, hash });
        self.start += self.len;
        self.len = 0;
    }

    /// The blocks, and the file's length.
    pub fn finish(mut self) -> (Vec<Block>, u64) {
        if self.len > 0 {
            self.cut();
        }
        (self.done, self.start)
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

impl DriveManifest {
    /// The manifest as the file the volume holds (UTF-8, CRLF line ends, as Windows tools
    /// write it).
    pub fn to_xml(&self) -> String {
        let mut x = String::new();
        x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n");
        let _ = write!(x, "<DriveManifest Version=\"{VERSION}\">\r\n  <Drive>\r\n");
        let _ = write!(x, "    <DriveId>{}</DriveId>\r\n", escape(&self.drive_id));
        match &self.access {
            Access::ContainerSas(s) => {
                let _ = write!(x, "    <ContainerSas>{}</ContainerSas>\r\n", escape(s));
            }
            Access::StorageAccountKey(k) => {
                let _ = write!(x, "    <StorageAccountKey>{}</StorageAccountKey>\r\n", escape(k));
            }
        }
        let _ = write!(x, "    <ClientCreator>{}</ClientCreator>\r\n", escape(&self.client_creator));
        x.push_str("    <BlobList Id=\"session#1-0\">\r\n");
        for b in &self.blobs {
            x.push_str("      <Blob>\r\n");
            let _ = write!(x, "        <BlobPath>{}</BlobPath>\r\n", escape(&b.blob_path));
            let _ = write!(x, "        <FilePath>{}</FilePath>\r\n", escape(&b.file_path));
            let _ = write!(x, "        <Length>{}</Length>\r\n", b.length);
            x.push_str("        <ImportDisposition>overwrite</ImportDisposition>\r\n");
            x.push_str("        <BlockList>\r\n");
            for k in &b.blocks {
                let _ = write!(
                    x,
                    "          <Block Offset=\"{}\" Length=\"{}\" Hash=\"{}\"/>\r\n",
                    k.offset, k.length, k.hash
                );
            }
            x.push_str("        </BlockList>\r\n      </Blob>\r\n");
        }
        x.push_str("    </BlobList>\r\n  </Drive>\r\n</DriveManifest>\r\n");
        x
    }

    /// Reads a manifest, checking the format: the order of the drive's elements, one access
    /// element, and per blob a path, a file path, a length and a block list that is
    /// contiguous, covers the file, has blocks of at most 4 MiB (at most 50,000) and an MD5
    /// each.
    pub fn parse(bytes: &[u8]) -> Result<DriveManifest, ManifestError> {
        let bad = |m: String| ManifestError::FormatInvalid(m);
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(bad(format!("the manifest is {} bytes; at most {MAX_MANIFEST_BYTES} are read", bytes.len())));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("the manifest is not UTF-8".into()))?;
        let tree = Node::parse(text).map_err(bad)?;
        if tree.name != "DriveManifest" {
            return Err(bad(format!("the root element is <{}>, not <DriveManifest>", tree.name)));
        }
        match tree.attr("Version") {
            Some(VERSION) => {}
            v => return Err(bad(format!("DriveManifest Version is {v:?}, not {VERSION:?}"))),
        }
        let [drive] = tree.children.as_slice() else {
            return Err(bad("a DriveManifest holds exactly one <Drive>".into()));
        };
        if drive.name != "Drive" {
            return Err(bad(format!("<{}> where <Drive> belongs", drive.name)));
        }
        let mut it = drive.children.iter().peekable();
        let drive_id = match it.next() {
            Some(n) if n.name == "DriveId" && !n.text.trim().is_empty() => n.text.trim().to_string(),
            _ => return Err(bad("<DriveId> must come first in <Drive>, before any <BlobList>".into())),
        };
        let access = match it.next() {
            Some(n) if n.name == "ContainerSas" => Access::ContainerSas(n.text.clone()),
            Some(n) if n.name == "StorageAccountKey" => Access::StorageAccountKey(n.text.clone()),
            _ => return Err(bad("an import drive names exactly one of <StorageAccountKey> or <ContainerSas>".into())),
        };
        let mut client_creator = String::new();
        if let Some(n) = it.peek()
            && n.name == "ClientCreator"
        {
            client_creator = n.text.clone();
            it.next();
        }
        let mut blobs = Vec::new();
        let mut lists = 0;
        for n in it {
            if n.name != "BlobList" {
                return Err(bad(format!("<{}> is not allowed in <Drive> here", n.name)));
            }
            lists += 1;
            for b in &n.children {
                if matches!(b.name.as_str(), "MetadataPath" | "PropertiesPath") {
                    continue;
                }
                blobs.push(ManifestBlob::from_node(b)?);
            }
        }
        if lists == 0 {
            return Err(bad("the drive has no <BlobList>".into()));
        }
        Ok(DriveManifest { drive_id, access, client_creator, blobs })
    }
}

impl ManifestBlob {
    fn from_node(b: &Node) -> Result<ManifestBlob, ManifestError> {
        let bad = |m: String| ManifestError::BlobListInvalid(m);
        if b.name != "Blob" {
            return Err(bad(format!("<{}> in a <BlobList>", b.name)));
        }
        let child = |name: &str| b.children.iter().find(|c| c.name == name);
        let blob_path = child("BlobPath").map(|c| c.text.clone()).filter(|t| !t.is_empty());
        let blob_path = blob_path.ok_or_else(|| bad("a <Blob> without <BlobPath>".into()))?;
        let file_path = child("FilePath").map(|c| c.text.clone()).filter(|t| !t.is_empty());
        let file_path = file_path.ok_or_else(|| bad(format!("blob {blob_path} has no <FilePath>")))?;
        let length: u64 = child("Length")
            .and_then(|c| c.text.trim().parse().ok())
            .ok_or_else(|| bad(format!("blob {blob_path} has no numeric <Length>")))?;
        if child("PageRangeList").is_some() {
            return Err(bad(format!("blob {blob_path} is a page blob; seedship ships block blobs only")));
        }
        let list = child("BlockList").ok_or_else(|| bad(format!("blob {blob_path} has no <BlockList>")))?;
        if list.children.len() > MAX_BLOCKS {
            return Err(bad(format!("blob {blob_path} has {} blocks; at most {MAX_BLOCKS}", list.children.len())));
        }
        let mut blocks = Vec::with_capacity(list.children.len());
        let mut at = 0u64;
        for k in &list.children {
            let num = |a: &str| k.attr(a).and_then(|v| v.parse::<u64>().ok());
            let (Some(offset), Some(length)) = (num("Offset"), num("Length")) else {
                return Err(bad(format!("a block of blob {blob_path} lacks a numeric Offset or Length")));
            };
            if k.name != "Block" || offset != at || length == 0 || length > MAX_BLOCK {
                return Err(bad(format!(
                    "blob {blob_path}: the block at {offset} (length {length}) breaks the list: blocks are contiguous from 0, 1 byte to 4 MiB each"
                )));
            }
            let hash = k.attr("Hash").unwrap_or_default();
            if hash.len() != 32 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!("blob {blob_path}: the block at {offset} has no Base16 MD5 Hash")));
            }
            blocks.push(Block { offset, length, hash: hash.to_ascii_uppercase() });
            at += length;
        }
        if at != length {
            return Err(bad(format!("blob {blob_path}: the blocks cover {at} bytes of its {length}")));
        }
        Ok(ManifestBlob { blob_path, file_path, length, blocks })
    }
}

/// A small element tree: enough for a manifest, with no DTDs, entities of its own or depth
/// beyond 16.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn start(e: &quick_xml::events::BytesStart) -> Result<Node, String> {
        let name = String::from_utf8_lossy(e.name().as_ref()).to_string();
        let mut attrs = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| format!("a bad attribute: {e}"))?;
            let v = a.unescape_value().map_err(|e| format!("a bad attribute value: {e}"))?;
            attrs.push((String::from_utf8_lossy(a.key.as_ref()).to_string(), v.to_string()));
        }
        Ok(Node { name, attrs, ..Default::default() })
    }

    fn parse(text: &str) -> Result<Node, String> {
        let mut r = Reader::from_str(text);
        r.config_mut().trim_text(true);
        let mut stack: Vec<Node> = Vec::new();
        let mut root = None;
        loop {
            let ev = r.read_event().map_err(|e| format!("not well-formed XML at byte {}: {e}", r.buffer_position()))?;
            match ev {
                Event::Start(e) => {
                    if stack.len() >= 16 {
                        return Err("elements nest deeper than a manifest does".into());
                    }
                    stack.push(Node::start(&e)?);
                }
                Event::Empty(e) => {
                    let n = Node::start(&e)?;
                    match stack.last_mut() {
                        Some(p) => p.children.push(n),
                        None => root = Some(n),
                    }
                }
                Event::End(_) => {
                    let n = stack.pop().ok_or("an end tag without a start")?;
                    match stack.last_mut() {
                        Some(p) => p.children.push(n),
                        None if root.is_none() => root = Some(n),
                        None => return Err("more than one root element".into()),
                    }
                }
                Event::Text(t) => {
                    let s = t.unescape().map_err(|e| format!("bad text: {e}"))?;
                    if let Some(n) = stack.last_mut() {
                        n.text.push_str(&s);
                    }
                }
                Event::CData(t) => {
                    if let Some(n) = stack.last_mut() {
                        n.text.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                Event::DocType(_) => return Err("a DOCTYPE is not allowed in a manifest".into()),
                Event::Eof => break,
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err("the document ends inside an element".into());
        }
        root.ok_or_else(|| "no root element".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks_of(data: &[u8]) -> (Vec<Block>, u64) {
        let mut b = Blocks::default();
        for piece in data.chunks(1_000_003) {
            b.update(piece);
        }
        b.finish()
    }

    fn sample() -> DriveManifest {
        let data = vec![7u8; (MAX_BLOCK * 2 + 5) as usize];
        let (blocks, length) = blocks_of(&data);
        DriveManifest {
            drive_id: "WD-WCC4E1234567".into(),
            access: Access::ContainerSas("?sv=2024&sr=c&sig=a%2Bb&se=x".into()),
            client_creator: "seedship test".into(),
            blobs: vec![
                ManifestBlob {
                    blob_path: "import-sd-1/data/00/ab & <c>".into(),
                    file_path: "\\seedship\\data\\00\\ab & <c>".into(),
                    length,
                    blocks,
                },
                ManifestBlob {
                    blob_path: "import-sd-1/empty".into(),
                    file_path: "\\seedship\\empty".into(),
                    length: 0,
                    blocks: vec![],
                },
            ],
        }
    }

    #[test]
    fn blocks_are_4_mib_contiguous_and_hashed_in_upper_hex() {
        let data: Vec<u8> = (0..(MAX_BLOCK * 2 + 5)).map(|i| (i % 251) as u8).collect();
        let (blocks, length) = blocks_of(&data);
        assert_eq!(length, data.len() as u64);
        assert_eq!(
            blocks.iter().map(|b| (b.offset, b.length)).collect::<Vec<_>>(),
            [(0, MAX_BLOCK), (MAX_BLOCK, MAX_BLOCK), (2 * MAX_BLOCK, 5)]
        );
        assert_eq!(blocks[2].hash, hex::encode_upper(Md5::digest(&data[(2 * MAX_BLOCK) as usize..])));
        assert_eq!(blocks_of(&[]), (vec![], 0));
    }

    #[test]
    fn a_manifest_reads_back_as_written_and_its_hash_is_upper_case_md5() {
        let m = sample();
        let xml = m.to_xml();
        assert!(xml.starts_with("<?xml") && xml.contains("<DriveManifest Version=\"2014-11-01\">"), "{xml}");
        let id = xml.find("<DriveId>").unwrap();
        assert!(id < xml.find("<BlobList").unwrap(), "DriveId before any BlobList");
        assert_eq!(DriveManifest::parse(xml.as_bytes()).unwrap(), m);
        let h = manifest_hash(xml.as_bytes());
        assert!(h.len() == 32 && h.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "{h}");
        assert!(!format!("{m:?}").contains("sig="), "the SAS never shows in Debug");
    }

    #[test]
    fn a_broken_manifest_is_refused_with_the_datacenters_code() {
        let good = sample().to_xml();
        let cases: Vec<(String, &str, &str)> = vec![
            ("<DriveManifest".into(), "", "ManifestFormatInvalid"),
            (good.replace("2014-11-01", "2011-01-01"), "Version", "ManifestFormatInvalid"),
            (
                good.replace("<ContainerSas>?sv=2024&amp;sr=c&amp;sig=a%2Bb&amp;se=x</ContainerSas>", ""),
                "exactly one",
                "ManifestFormatInvalid",
            ),
            (
                good.replace("<DriveId>WD-WCC4E1234567</DriveId>\r\n", "")
                    .replace("</ClientCreator>", "</ClientCreator><DriveId>X</DriveId>"),
                "DriveId> must come first",
                "ManifestFormatInvalid",
            ),
            (good.replace("Offset=\"4194304\"", "Offset=\"4194305\""), "contiguous", "BlobListFormatInvalid"),
            (
                good.replace("<Length>8388613</Length>", "<Length>8388614</Length>"),
                "cover 8388613 bytes",
                "BlobListFormatInvalid",
            ),
            (good.replace("<BlobPath>import-sd-1/empty</BlobPath>", ""), "without <BlobPath>", "BlobListFormatInvalid"),
            (format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{good}"), "DOCTYPE", "ManifestFormatInvalid"),
        ];
        for (xml, want, code) in cases {
            let e = DriveManifest::parse(xml.as_bytes()).unwrap_err();
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let huge = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert_eq!(DriveManifest::parse(&huge).unwrap_err().code(), "ManifestFormatInvalid");
    }
}
