//! Fidelity to Azure, judged by tools we did not write: the `jsonschema` package checks bodies
//! against Azure's own `Microsoft.DataBox` document (`tests/py/armcheck.py`).

use std::ffi::OsStr;

use seedship_e2e::azure::{armcheck, databox_spec};

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
