//! Azure's naming and size rules for what a disk becomes: containers and block blobs. Checked
//! before anything is written, so nothing on a shipped disk is renamed (`DataBox-<GUID>`) or
//! refused at upload.

/// A block blob's largest size on a Data Box Disk (the 2022 limits: 7 TiB).
pub const MAX_BLOCK_BLOB: u64 = 7 << 40;
/// Containers one Data Box Disk order takes.
pub const MAX_CONTAINERS: usize = 512;

/// A container name: 3-63 lowercase letters, digits and '-', a letter or digit first and
/// last, no "--". `$root` is not one a seed uses.
pub fn container(name: &str) -> Result<(), String> {
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends = name.bytes().next().is_some_and(|b| b != b'-') && name.bytes().last().is_some_and(|b| b != b'-');
    if !(3..=63).contains(&name.len()) || !ok_chars || !ends || name.contains("--") {
        return Err(format!(
            "{name:?} is not a valid Azure container name (3-63 lowercase letters, digits and '-', a letter or digit first and last, no \"--\")"
        ));
    }
    Ok(())
}

/// A blob name as a disk carries it: 1-1024 characters, at most 254 '/'-separated segments,
/// none empty, "." or "..", no '\' (a Windows separator on the volume), no control
/// characters, and not ending in '/' or '.'.
pub fn blob(name: &str) -> Result<(), String> {
    let why = if name.is_empty() || name.chars().count() > 1024 {
        Some("1-1024 characters")
    } else if name.split('/').count() > 254 {
        Some("at most 254 path segments")
    } else if name.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        Some("no empty, '.' or '..' segments")
    } else if name.chars().any(|c| c.is_control() || c == '\\') {
        Some("no control characters or '\\'")
    } else if name.ends_with('.') {
        Some("no '.' at the end")
    } else {
        None
    };
    match why {
        Some(rule) => Err(format!("{name:?} is not a blob name Azure keeps as it is ({rule})")),
        None => Ok(()),
    }
}

/// A blob of `size` bytes fits a block blob.
pub fn blob_size(name: &str, size: u64) -> Result<(), String> {
    if size > MAX_BLOCK_BLOB {
        return Err(format!("{name} is {size} bytes; a block blob holds at most {MAX_BLOCK_BLOB}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_and_blob_names_follow_azures_rules() {
        for ok in ["abc", "import-sd-1a2b", "a1-b2", &"a".repeat(63)] {
            assert!(container(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "Abc", "-abc", "abc-", "a--b", "a_b", "$root", &"a".repeat(64)] {
            assert!(container(bad).unwrap_err().contains("not a valid Azure container name"), "{bad}");
        }
        for ok in ["data/00/ab12", "manifest.json", "a b/c"] {
            assert!(blob(ok).is_ok(), "{ok}");
        }
        let deep = vec!["x"; 255].join("/");
        for bad in ["", "a//b", "a/../b", "./a", "a/", "a\\b", "a\u{7}b", "a.", deep.as_str(), &"x".repeat(1025)] {
            assert!(blob(bad).is_err(), "{bad:?}");
        }
        assert!(blob_size("x", MAX_BLOCK_BLOB).is_ok());
        assert!(blob_size("x", MAX_BLOCK_BLOB + 1).is_err());
    }
}
