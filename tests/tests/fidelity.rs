//! Fidelity to Azure, judged by tools we did not write: the `jsonschema` package checks bodies
//! against Azure's own `Microsoft.DataBox` document (`tests/py/armcheck.py`).

use std::ffi::OsStr;

use seedship_e2e::azure::{Emulator, RG, SUB, account_id, armcheck, customer_disk_job_json, databox_spec, python};

/// The checker itself: every official example passes it, and a body with a field the document
/// does not name, a wrong type or an unknown kind does not.
#[test]
fn the_schema_checker_passes_every_official_example_and_fails_a_wrong_body() {
    let examples = databox_spec().join("examples");
    let report = armcheck(&[OsStr::new("--examples"), examples.as_os_str()]).unwrap();
    assert!(report.contains("28 examples, 24 bodies; 0 problems"), "{report}");

    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let wrong = |file: &str, change: &dyn Fn(&mut serde_json::Value)| {
        let p = dir.path().join(file);
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        change(&mut v);
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    };
    wrong("JobsGet.json", &|v| {
        v["responses"]["200"]["body"]["properties"]["details"]["contactDetails"]["phoneX"] = "1".into()
    });
    wrong("JobsList.json", &|v| v["responses"]["200"]["body"]["value"][0]["properties"]["status"] = 5.into());
    wrong("JobsCreate.json", &|v| {
        v["parameters"]["body"]["properties"]["details"]["jobDetailsType"] = "DataBoxNope".into()
    });
    let err = armcheck(&[OsStr::new("--examples"), dir.path().as_os_str()]).unwrap_err().to_string();
    assert!(err.contains("JobsGet.json response 200: properties/details/contactDetails: Unevaluated properties are not allowed ('phoneX' was unexpected)"), "{err}");
    assert!(err.contains("JobsList.json response 200: value/0/properties/status: 5 is not of type 'string'"), "{err}");
    assert!(err.contains("JobsCreate.json request: properties/details"), "{err}");
}

/// Microsoft's own management SDK for Python (`azure-mgmt-databox`) drives the emulator: create,
/// get, list with paging, update with If-Match, mark shipped, list credentials, cancel, delete
/// and the errors. Every call succeeds and parses, and every exchange validates against the
/// document.
#[test]
fn microsofts_python_sdk_drives_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start_with(dir.path(), false, &["--page-size", "2"]).unwrap();
    let out = std::process::Command::new(python().unwrap())
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/sdk_databox.py"))
        .args([emu.url.as_str(), emu.ca().to_str().unwrap(), SUB, RG, &account_id()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("all SDK calls succeeded"), "{text}");
    for step in ["jobs.list_by_resource_group, paged", "a stale If-Match is refused (412", "(ResourceGroupNotFound)"] {
        assert!(text.contains(step), "{step} missing from:\n{text}");
    }
    let report = emu.check_record().unwrap();
    assert!(report.contains("; 0 problems") && report.contains("Jobs_ListCredentials 1"), "{report}");
}

async fn call(
    emu: &Emulator,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let url = if path.starts_with("https://") { path.to_string() } else { format!("{}{path}", emu.url) };
    let mut req = emu.client().request(method, url).bearer_auth("emulated");
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let text = r.text().await.unwrap();
    (status, headers, if text.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn job_body(serial: &str, contact: &str) -> serde_json::Value {
    customer_disk_job_json(serial, contact)
}

/// Polls a monitor until it answers other than 202; the last answer.
async fn follow(emu: &Emulator, mut location: String) -> (u16, String) {
    for _ in 0..20 {
        let (status, headers, _) = call(emu, reqwest::Method::GET, &location, None).await;
        if status != 202 {
            return (status, location);
        }
        let next = headers["location"].to_str().unwrap().to_string();
        if next.contains("/jobs/") {
            return (202, next);
        }
        location = next;
    }
    panic!("the operation never ended");
}

/// What ARM does that the old emulator did not: an unknown resource group is 404, a PUT that
/// changes a job changes it, lists page, every answer has request ids, a 401 says how to
/// authenticate, path segments match in any case, the operations list is served, a DELETE of a
/// job already gone is 204; and the LRO monitors look and end as Azure's do.
#[tokio::test]
async fn the_emulator_answers_as_azure_resource_manager_does() {
    use reqwest::Method;
    let dir = tempfile::tempdir().unwrap();
    let emu = Emulator::start_with(dir.path(), false, &["--page-size", "1", "--retry-after", "0", "--async-operation"])
        .unwrap();
    let job = |name: &str| {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DataBox/jobs/{name}?api-version=2025-02-01"
        )
    };

    // No token: 401 with WWW-Authenticate; a wrong api-version: 400.
    let r = emu.client().get(format!("{}{}", emu.url, job("job-1"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer "));
    let (s, _, e) = call(&emu, Method::GET, &job("job-1").replace("2025-02-01", "2021-01-01"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("InvalidApiVersionParameter")));

    // An unknown resource group.
    let (s, h, e) = call(&emu, Method::PUT, &job("job-1").replace(RG, "nope-rg"), Some(job_body("S1", "Ops"))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("ResourceGroupNotFound")), "{e}");
    assert!(h.contains_key("x-ms-request-id") && h.contains_key("x-ms-correlation-request-id"));

    // Create: 202, a ~3 KB opaque monitor (and the async-operation one), then the job itself.
    let (s, h, b) = call(&emu, Method::PUT, &job("job-1"), Some(job_body("S1", "Ops"))).await;
    assert_eq!((s, b), (202, serde_json::Value::Null));
    let location = h["location"].to_str().unwrap().to_string();
    assert!(location.len() > 2500 && location.contains("/operationResults/"), "{}", location.len());
    assert!(h.contains_key("azure-asyncoperation") && h["retry-after"] == "0");
    let (s, at) = follow(&emu, location).await;
    assert_eq!(s, 202);
    assert!(at.ends_with(&job("job-1")), "{at}");

    // A PUT that changes the job changes it (a new contact), in any case of the path.
    let (s, h, _) = call(
        &emu,
        Method::PUT,
        &job("job-1")
            .replace("/subscriptions/", "/SUBSCRIPTIONS/")
            .replace("/providers/Microsoft.DataBox/", "/PROVIDERS/microsoft.databox/"),
        Some(job_body("S1", "Night ops")),
    )
    .await;
    assert_eq!(s, 202);
    follow(&emu, h["location"].to_str().unwrap().to_string()).await;
    let (s, _, j) = call(&emu, Method::GET, &format!("{}&$expand=details", job("JOB-1")), None).await;
    assert_eq!(s, 200);
    assert_eq!(j["properties"]["details"]["contactDetails"]["contactName"], "Night ops");
    assert!(j["properties"]["details"]["importDiskDetailsCollection"]["S1"].get("bitLockerKey").is_none());

    // The same disk serial in a second active job is refused.
    let (s, _, e) = call(&emu, Method::PUT, &job("job-2"), Some(job_body("S1", "Ops"))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("DuplicateDiskSerial")), "{e}");
    for (name, serial) in [("job-2", "S2"), ("job-3", "S3")] {
        let (s, h, _) = call(&emu, Method::PUT, &job(name), Some(job_body(serial, "Ops"))).await;
        assert_eq!(s, 202);
        follow(&emu, h["location"].to_str().unwrap().to_string()).await;
    }

    // Lists page one job at a time with nextLink and $skipToken.
    let mut names = Vec::new();
    let mut next = Some(format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DataBox/jobs?api-version=2025-02-01"
    ));
    while let Some(url) = next {
        let (s, _, page) = call(&emu, Method::GET, &url, None).await;
        assert_eq!(s, 200);
        assert_eq!(page["value"].as_array().unwrap().len(), 1);
        names.push(page["value"][0]["name"].as_str().unwrap().to_string());
        next = page["nextLink"].as_str().map(str::to_string);
        if let Some(n) = &next {
            assert!(n.contains("$skipToken="), "{n}");
        }
    }
    assert_eq!(names, ["job-1", "job-2", "job-3"]);

    // The operations list; cancel; delete twice (the second: 204).
    let (s, _, ops) =
        call(&emu, Method::GET, "/providers/Microsoft.DataBox/operations?api-version=2025-02-01", None).await;
    assert!(s == 200 && !ops["value"].as_array().unwrap().is_empty());
    let (s, _, e) = call(&emu, Method::DELETE, &job("job-3"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("JobNotDeletable")));
    let cancel = job("job-3").replace("?api", "/cancel?api");
    let (s, _, _) = call(&emu, Method::POST, &cancel, Some(serde_json::json!({"reason": "test"}))).await;
    assert_eq!(s, 204);
    let (s, h, _) = call(&emu, Method::DELETE, &job("job-3"), None).await;
    assert_eq!(s, 202);
    let location = h["location"].to_str().unwrap().to_string();
    assert!(location.contains("-deleteorder"), "{location}");
    assert_eq!(follow(&emu, location).await.0, 204);
    assert_eq!(call(&emu, Method::GET, &job("job-3"), None).await.0, 404);
    assert_eq!(call(&emu, Method::DELETE, &job("job-3"), None).await.0, 204);

    let report = emu.check_record().unwrap();
    assert!(report.contains("; 0 problems"), "{report}");
}
