//! The copy logs the Data Box service writes per disk into the `databoxcopylog` container of
//! the job's storage account: `<order>_<serial>_CopyLog_<jobID>.xml` (always) and
//! `<order>_<serial>_VerboseLog_<jobID>.xml` (with `logCollectionLevel: Verbose`).
//!
//! The copy log (`DriveLogVersion` 2021-08-01) is a sequence of elements without one root: an
//! `ErroredEntity` per file that was not imported, then a `CopyLog` summary. The verbose log is
//! a `File` element per file imported. The reader takes what it knows and skips the rest, so a
//! log with more fields still reads; a text that is not such a log reads as no entities.

/// The container the service writes the copy logs to.
pub const LOG_CONTAINER: &str = "databoxcopylog";

/// One file the copy could not import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErroredEntity {
    pub path: String,
    /// `UploadErrorDataValidationError`, `UploadErrorCloudHttp`, `UploadErrorWin32`, ...
    pub category: String,
    pub code: i32,
    pub message: String,
}

/// The `CopyLog` summary of one disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    pub drive_id: String,
    pub status: String,
    pub total: i64,
    pub errored: i64,
}

pub fn copy_log_name(order: &str, serial: &str, job_id: &str) -> String {
    format!("{order}_{serial}_CopyLog_{job_id}.xml")
}

pub fn verbose_log_name(order: &str, serial: &str, job_id: &str) -> String {
    format!("{order}_{serial}_VerboseLog_{job_id}.xml")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// A copy log: the errored entities, then the summary.
pub fn write(entities: &[ErroredEntity], summary: &Summary) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    for e in entities {
        x.push_str(&format!(
            "<ErroredEntity CloudFormat=\"BlockBlob\" Path=\"{}\"><Category>{}</Category><ErrorCode>{}</ErrorCode><ErrorMessage>{}</ErrorMessage><Type>File</Type></ErroredEntity>\n",
            escape(&e.path),
            escape(&e.category),
            e.code,
            escape(&e.message)
        ));
    }
    let mut categories = std::collections::BTreeMap::<&str, usize>::new();
    for e in entities {
        *categories.entry(e.category.as_str()).or_default() += 1;
    }
    x.push_str(&format!(
        "<CopyLog Summary=\"Summary\"><DriveLogVersion>2021-08-01</DriveLogVersion><DriveId>{}</DriveId><Status>{}</Status><TotalFiles_Blobs>{}</TotalFiles_Blobs><FilesErrored>{}</FilesErrored><Summary><ValidationErrors><None Count=\"{}\"/></ValidationErrors><CopyErrors>",
        escape(&summary.drive_id),
        escape(&summary.status),
        summary.total,
        summary.errored,
        summary.total - summary.errored
    ));
    for (c, n) in categories {
        x.push_str(&format!("<Category Count=\"{n}\" Description=\"{}\"/>", escape(c)));
    }
    x.push_str("</CopyErrors></Summary></CopyLog>\n");
    x
}

/// A verbose log: one `File` per imported file (path, bytes).
pub fn write_verbose(files: &[(String, u64)]) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    for (path, size) in files {
        x.push_str(&format!("<File CloudFormat=\"BlockBlob\" Path=\"{}\" Size=\"{size}\"></File>\n", escape(path)));
    }
    x
}

fn element(block: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let a = block.find(&open)? + open.len();
    let b = block[a..].find(&close)?;
    Some(unescape(&block[a..a + b]))
}

/// The errored entities of a copy log.
pub fn parse(xml: &str) -> Vec<ErroredEntity> {
    xml.split("<ErroredEntity")
        .skip(1)
        .filter_map(|rest| {
            let block = &rest[..rest.find("</ErroredEntity>")?];
            let head = &block[..block.find('>')?];
            let path = head.split("Path=\"").nth(1)?.split('"').next()?;
            Some(ErroredEntity {
                path: unescape(path),
                category: element(block, "Category").unwrap_or_default(),
                code: element(block, "ErrorCode").and_then(|c| c.trim().parse().ok()).unwrap_or(0),
                message: element(block, "ErrorMessage").unwrap_or_default(),
            })
        })
        .collect()
}

/// The summary of a copy log, when it has one.
pub fn parse_summary(xml: &str) -> Option<Summary> {
    let block = &xml[xml.find("<CopyLog")?..];
    Some(Summary {
        drive_id: element(block, "DriveId").unwrap_or_default(),
        status: element(block, "Status").unwrap_or_default(),
        total: element(block, "TotalFiles_Blobs").and_then(|v| v.trim().parse().ok()).unwrap_or(0),
        errored: element(block, "FilesErrored").and_then(|v| v.trim().parse().ok()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_log_reads_back_what_was_written() {
        let entities = vec![
            ErroredEntity {
                path: "import-s1/packs/ab/c\"d<e>.pack".into(),
                category: "UploadErrorDataValidationError".into(),
                code: 23,
                message: "CRC & MD5 mismatch".into(),
            },
            ErroredEntity { path: "x".into(), category: "UploadErrorCloudHttp".into(), code: 2, message: "503".into() },
        ];
        let summary =
            Summary { drive_id: "WD-123".into(), status: "CompletedWithErrors".into(), total: 10, errored: 2 };
        let xml = write(&entities, &summary);
        assert_eq!(parse(&xml), entities);
        assert_eq!(parse_summary(&xml), Some(summary));
        assert!(xml.contains("<DriveLogVersion>2021-08-01</DriveLogVersion>"));
    }

    #[test]
    fn a_log_from_the_service_with_more_fields_reads_and_junk_reads_as_nothing() {
        let xml = "<ErroredEntity CloudFormat=\"BlockBlob\" Path=\"c/b.bin\"><Category>UploadErrorWin32</Category>\
                   <ErrorCode>5</ErrorCode><ErrorMessage>Access is denied.</ErrorMessage><ETag>0x1</ETag>\
                   <Type>File</Type></ErroredEntity>";
        assert_eq!(
            parse(xml),
            vec![ErroredEntity {
                path: "c/b.bin".into(),
                category: "UploadErrorWin32".into(),
                code: 5,
                message: "Access is denied.".into()
            }]
        );
        assert!(parse("not xml <ErroredEntity").is_empty());
        assert_eq!(parse_summary("nothing"), None);
        assert_eq!(copy_log_name("job1", "S1", "abc"), "job1_S1_CopyLog_abc.xml");
    }
}
