//! Fidelity to Azure: every request and response body of the official examples reads into the
//! generated types and writes back as the same JSON (no field unknown, renamed or retyped), and
//! the generated model is what the generator writes from the official document.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::*;

pub fn spec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec/databox-2025-02-01")
}

fn read(p: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
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

fn def_of(schema: &Value) -> Option<String> {
    schema.get("$ref").and_then(Value::as_str).map(|r| r.rsplit('/').next().unwrap_or(r).to_string())
}

/// What the document says of one example file: its operation, the definition of the request
/// body, and status → the definition of the answer.
struct ExampleOf {
    operation: String,
    body: Option<String>,
    responses: BTreeMap<String, String>,
}

/// Example file → its operation, from the document's `x-ms-examples`.
fn examples_by_operation() -> BTreeMap<String, ExampleOf> {
    let spec = read(&spec_dir().join("databox.json"));
    let mut out = BTreeMap::new();
    for (_, ops) in spec["paths"].as_object().unwrap() {
        for (_, op) in ops.as_object().unwrap() {
            let Some(examples) = op.get("x-ms-examples").and_then(Value::as_object) else { continue };
            let id = op["operationId"].as_str().unwrap().to_string();
            let body = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["in"] == "body")
                .and_then(|p| def_of(&p["schema"]));
            let responses = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter_map(|(code, r)| r.get("schema").and_then(def_of).map(|d| (code.clone(), d)))
                .collect::<BTreeMap<_, _>>();
            for (_, e) in examples {
                let file = e["$ref"].as_str().unwrap().trim_start_matches("./examples/").to_string();
                out.insert(file, ExampleOf { operation: id.clone(), body: body.clone(), responses: responses.clone() });
            }
        }
    }
    out
}

fn check(what: &str, def: &str, v: &Value) {
    let back = model::reserialize(def, v)
        .unwrap_or_else(|| panic!("{what}: no type for definition {def}"))
        .unwrap_or_else(|e| panic!("{what}: does not read as {def}: {e}"));
    assert_eq!(back, strip_nulls(v), "{what} does not write back as it was read ({def})");
}

#[test]
fn every_official_example_reads_and_writes_back_unchanged() {
    let ops = examples_by_operation();
    let dir = spec_dir().join("examples");
    let mut files = 0;
    let mut bodies = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let of = ops.get(&name).unwrap_or_else(|| panic!("{name}: no operation refers to it"));
        let (op, body_def, responses) = (&of.operation, &of.body, &of.responses);
        let e = read(&dir.join(&name));
        assert_eq!(e["parameters"]["api-version"], API_VERSION, "{name}");
        files += 1;
        if let (Some(def), Some(body)) = (body_def, e["parameters"].get("body")) {
            check(&format!("{name} ({op}) request"), def, body);
            bodies += 1;
        }
        for (code, r) in e["responses"].as_object().unwrap() {
            let Some(body) = r.get("body").filter(|b| !b.is_null()) else { continue };
            let def = responses
                .get(code)
                .or_else(|| responses.get("default"))
                .unwrap_or_else(|| panic!("{name}: response {code} has a body and no schema"));
            check(&format!("{name} ({op}) response {code}"), def, body);
            bodies += 1;
        }
    }
    assert_eq!(files, 28, "the document refers to 28 examples");
    assert_eq!(bodies, 24, "the examples hold 24 request and response bodies");
}

#[test]
fn the_model_is_what_the_generator_writes_from_the_official_document() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec/generate.py");
    let python = std::env::var("SEEDSHIP_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (python3 is needed to check the generated model)"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn secrets_are_never_shown_by_debug() {
    let details = model::DataBoxCustomerDiskJobDetails {
        import_disk_details_collection: Some(
            [(
                "SERIAL1".to_string(),
                model::ImportDiskDetails {
                    manifest_file: Some("\\DriveManifest.xml".into()),
                    manifest_hash: Some("0123456789ABCDEF0123456789ABCDEF".into()),
                    bit_locker_key: Some(Secret("111111-222222-333333-444444-555555-666666-777777-888888".into())),
                    ..Default::default()
                },
            )]
            .into(),
        ),
        ..Default::default()
    };
    let shown = format!("{:?}", model::JobDetails::DataBoxCustomerDisk(details.clone()));
    assert!(!shown.contains("111111"), "{shown}");
    assert!(shown.contains("<redacted>"));
    let wire = serde_json::to_value(model::JobDetails::DataBoxCustomerDisk(details)).unwrap();
    assert_eq!(wire["jobDetailsType"], "DataBoxCustomerDisk");
    assert_eq!(
        wire["importDiskDetailsCollection"]["SERIAL1"]["bitLockerKey"],
        "111111-222222-333333-444444-555555-666666-777777-888888"
    );
    let secrets = model::JobSecrets::DataBoxDisk(model::DataBoxDiskJobSecrets {
        pass_key: Some(Secret("p4ss-key".into())),
        ..Default::default()
    });
    assert!(!format!("{secrets:?}").contains("p4ss"));
}

#[test]
fn an_unknown_kind_is_kept_whole() {
    let v = serde_json::json!({"jobDetailsType": "DataBoxNext", "contactDetails": {"contactName": "x"}, "newField": 1});
    let d: model::JobDetails = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(d.tag(), Some("DataBoxNext"));
    assert!(matches!(d, model::JobDetails::Other(_)));
    assert_eq!(serde_json::to_value(&d).unwrap(), v);
}

#[test]
fn known_values_match_the_document() {
    let names: Vec<&str> = StageName::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, model::known::STAGE_NAME);
    let names: Vec<&str> = StageStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, model::known::STAGE_STATUS);
    let names: Vec<&str> = CopyStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, model::known::COPY_STATUS);
    assert_eq!(CopyStatus::ALL.len(), 18);
    let names: Vec<&str> = ResolutionCode::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, model::known::CUSTOMER_RESOLUTION_CODE);
    for k in Sku::ALL {
        assert!(model::known::SKU_NAME.contains(&k.as_str()));
    }
    assert_eq!(StageName::parse("SomethingNew"), None);
}

#[test]
fn job_names_fit_the_api_and_the_portal() {
    for ok in ["abc", "seed-0123456789abcdef", "A1-b2"] {
        assert!(paths::valid_job_name(ok), "{ok}");
    }
    for bad in ["ab", "-abc", "abc-", "a_b_c", "a.bc", "a bc", "x".repeat(25).as_str()] {
        assert!(!paths::valid_job_name(bad), "{bad}");
    }
}
