//! A checker of JSON bodies against the official OpenAPI description of
//! `Microsoft.ImportExport` 2021-01-01 (`tests/fixtures/importexport/openapi/`): field names,
//! types, required fields and the closed enums. Used by the tests that hold what the
//! coordinator sends and what the emulator answers to Azure's shapes.
//!
//! It covers what that document uses: `$ref`, `type`, `properties`, `required`, `items`,
//! `enum` (open when `x-ms-enum.modelAsString`), and objects without `properties` (maps such
//! as `tags`). One deviation is allowed, because the official examples have it: `systemData`
//! beside `properties` in a job, and inside it in one list example.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub struct Spec {
    definitions: Map<String, Value>,
}

/// Where the official document is kept in this repository.
pub fn official_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/importexport/openapi/storageimportexport.json")
}

impl Spec {
    pub fn load(path: &Path) -> Result<Spec, String> {
        let v: Value = serde_json::from_slice(&std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let definitions =
            v["definitions"].as_object().cloned().ok_or_else(|| format!("{}: no definitions", path.display()))?;
        Ok(Spec { definitions })
    }

    /// The official document.
    pub fn official() -> Spec {
        Spec::load(&official_path()).expect("the official OpenAPI document is in tests/fixtures")
    }

    /// What in `v` does not fit definition `def` (empty: it fits).
    pub fn check(&self, def: &str, v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        match self.definitions.get(def) {
            Some(schema) => self.walk(schema, v, def, &mut out),
            None => out.push(format!("no definition {def}")),
        }
        out
    }

    fn walk(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/definitions/");
            match self.definitions.get(name) {
                Some(s) => return self.walk(s, v, at, out),
                None => return out.push(format!("{at}: unknown $ref {r}")),
            }
        }
        let ty = schema["type"].as_str().unwrap_or(if schema.get("properties").is_some() { "object" } else { "" });
        let fits = match ty {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => true,
        };
        if !fits {
            out.push(format!("{at}: expected {ty}, got {v}"));
            return;
        }
        if let (Some(allowed), Some(s)) = (schema["enum"].as_array(), v.as_str()) {
            let open = schema["x-ms-enum"]["modelAsString"].as_bool().unwrap_or(false);
            if !open && !allowed.iter().any(|a| a.as_str() == Some(s)) {
                out.push(format!("{at}: {s:?} is not one of {allowed:?}"));
            }
        }
        if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
            for (i, x) in arr.iter().enumerate() {
                self.walk(items, x, &format!("{at}[{i}]"), out);
            }
        }
        let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) else { return };
        for req in schema["required"].as_array().into_iter().flatten().filter_map(|r| r.as_str()) {
            if obj.get(req).is_none_or(Value::is_null) {
                out.push(format!("{at}: required field {req} is missing"));
            }
        }
        for (k, x) in obj {
            match props.get(k) {
                Some(s) => self.walk(s, x, &format!("{at}.{k}"), out),
                None if k == "systemData" => {}
                None => out.push(format!("{at}: field {k} is not in the API")),
            }
        }
    }
}
