//! Fidelity to Azure: every request and response body of the official examples reads into
//! these types and writes back as the same JSON (so no field is unknown, renamed or retyped).

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/importexport")
}

fn example(name: &str) -> Value {
    let p = fixtures().join(name);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// Drops `null` members (an absent optional field) so they compare equal to skipped ones.
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(what: &str, v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(back, strip_nulls(v), "{what} does not write back as it was read");
    t
}

fn responses(e: &Value) -> Vec<(String, Value)> {
    e["responses"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r.get("body").is_some_and(|b| !b.is_null()))
        .map(|(c, r)| (c.clone(), r["body"].clone()))
        .collect()
}

#[test]
fn every_example_request_and_response_reads_and_writes_back_unchanged() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if !name.ends_with(".json") {
            continue;
        }
        let e = example(&name);
        assert_eq!(e["parameters"]["api-version"], API_VERSION, "{name}");
        let body = e["parameters"].get("body").cloned();
        for (code, r) in responses(&e) {
            let what = format!("{name} response {code}");
            match name.as_str() {
                "CreateJob.json"
                | "CreateExportJob.json"
                | "GetJob.json"
                | "GetExportJob.json"
                | "UpdateJob.json"
                | "UpdateExportJob.json" => {
                    let j: JobResponse = round_trip(&what, &r);
                    assert_eq!(j.kind.as_deref(), Some(JOB_TYPE));
                }
                "ListJobsInResourceGroup.json" | "ListJobsInSubscription.json" => {
                    let l: ListJobsResponse = round_trip(&what, &r);
                    assert!(!l.value.unwrap_or_default().is_empty());
                }
                "ListLocations.json" => {
                    let l: LocationsResponse = round_trip(&what, &r);
                    assert!(l.value.unwrap_or_default().iter().all(|l| l.kind.as_deref() == Some(LOCATION_TYPE)));
                }
                "GetLocation.json" => {
                    let l: Location = round_trip(&what, &r);
                    assert!(!l.properties.unwrap_or_default().address_lines().is_empty());
                }
                "ListBitLockerKeys.json" => {
                    let k: GetBitLockerKeysResponse = round_trip(&what, &r);
                    assert!(
                        !format!("{k:?}")
                            .contains(k.value.as_ref().unwrap()[0].bit_locker_key.as_ref().unwrap().0.as_str())
                    );
                }
                "ListOperations.json" => {
                    round_trip::<ListOperationsResponse>(&what, &r);
                }
                other => panic!("{other}: no type for this example; add one"),
            }
            seen += 1;
        }
        match (name.as_str(), body) {
            ("CreateJob.json" | "CreateExportJob.json", Some(b)) => {
                round_trip::<PutJobParameters>(&format!("{name} request"), &b);
                seen += 1;
            }
            ("UpdateJob.json" | "UpdateExportJob.json", Some(b)) => {
                round_trip::<UpdateJobParameters>(&format!("{name} request"), &b);
                seen += 1;
            }
            (_, None) => {}
            (other, Some(_)) => panic!("{other}: a request body without a type"),
        }
    }
    assert!(seen >= 17, "only {seen} bodies checked");
}

#[test]
fn states_parse_and_unknown_ones_stay_raw() {
    let e = example("GetJob.json");
    let j: JobResponse = serde_json::from_value(e["responses"]["200"]["body"].clone()).unwrap();
    let p = j.properties.unwrap();
    assert_eq!(p.state.as_deref().and_then(JobState::parse), Some(JobState::Creating));
    let d = &p.drive_list.unwrap()[0];
    assert_eq!(d.state.as_deref().and_then(DriveState::parse), Some(DriveState::Specified));
    assert_eq!(JobState::parse("SomethingNew"), None);
    let odd: DriveStatus = serde_json::from_str(r#"{"driveId":"X","state":"Quarantined"}"#).unwrap();
    assert_eq!(odd.state.as_deref(), Some("Quarantined"));
    for s in JobState::ALL {
        assert_eq!(JobState::parse(s.as_str()), Some(s));
    }
    for s in DriveState::ALL {
        assert_eq!(DriveState::parse(s.as_str()), Some(s));
    }
}

#[test]
fn the_error_envelope_and_names() {
    let e = ErrorResponse::new("InvalidApiVersionParameter", "The api-version '2016-11-01' is invalid.");
    assert_eq!(
        serde_json::to_value(&e).unwrap(),
        serde_json::json!({"error": {"code": "InvalidApiVersionParameter", "message": "The api-version '2016-11-01' is invalid."}})
    );
    assert!(paths::valid_job_name("seed-2026_11"));
    assert!(!paths::valid_job_name("-x") && !paths::valid_job_name("a") && !paths::valid_job_name("bad name"));
    assert_eq!(
        paths::job_id("s", "rg", "j"),
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ImportExport/jobs/j"
    );
}

/// The definition each example body must fit.
fn definition_of(name: &str, request: bool) -> &'static str {
    match (name, request) {
        ("CreateJob.json" | "CreateExportJob.json", true) => "PutJobParameters",
        ("UpdateJob.json" | "UpdateExportJob.json", true) => "UpdateJobParameters",
        ("ListJobsInResourceGroup.json" | "ListJobsInSubscription.json", _) => "ListJobsResponse",
        ("ListLocations.json", _) => "LocationsResponse",
        ("GetLocation.json", _) => "Location",
        ("ListBitLockerKeys.json", _) => "GetBitLockerKeysResponse",
        ("ListOperations.json", _) => "ListOperationsResponse",
        _ => "JobResponse",
    }
}

#[test]
fn the_schema_checker_accepts_every_official_example_and_names_what_does_not_fit() {
    let spec = crate::openapi::Spec::official();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if !name.ends_with(".json") || name == "DeleteJob.json" {
            continue;
        }
        let e = example(&name);
        for (code, r) in responses(&e) {
            let bad = spec.check(definition_of(&name, false), &r);
            assert!(bad.is_empty(), "{name} {code}: {bad:?}");
        }
        if let Some(b) = e["parameters"].get("body") {
            let bad = spec.check(definition_of(&name, true), b);
            assert!(bad.is_empty(), "{name} request: {bad:?}");
        }
    }
    // And it refuses what Azure would not send or take.
    let mut j = example("GetJob.json")["responses"]["200"]["body"].clone();
    j["properties"]["percentComplete"] = serde_json::json!("half");
    j["properties"]["driveList"][0]["driveID"] = serde_json::json!("x");
    j["properties"]["returnAddress"].as_object_mut().unwrap().remove("email");
    let bad = spec.check("JobResponse", &j).join("\n");
    assert!(bad.contains("percentComplete: expected integer"), "{bad}");
    assert!(bad.contains("field driveID is not in the API"), "{bad}");
    assert!(bad.contains("required field email is missing"), "{bad}");
    assert!(spec.check("ErrorResponse", &serde_json::to_value(ErrorResponse::new("X", "m")).unwrap()).is_empty());
}
