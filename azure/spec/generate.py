#!/usr/bin/env python3
"""Writes azure/src/databox/model.rs from the official OpenAPI document of Microsoft.DataBox.

    python3 azure/spec/generate.py            # rewrites the model
    python3 azure/spec/generate.py --check    # exits 1 when the model is not what this writes

Rules (the same for every definition, so the model is the document and nothing else):
- every property is `Option<T>` and skipped when `None`: Azure omits what is not set, and what
  we send holds exactly what we set;
- enums stay `String`: a value Azure adds later is kept as it came (the known values are in
  `known`, one constant list per `x-ms-enum`);
- a definition with a `discriminator` becomes a Rust enum of its subtypes, tagged by that
  property, with `Other(Value)` for a kind this version does not know;
- `allOf` bases are written into their subtypes; `x-ms-secret` fields (and the passkeys and
  keys the document forgot to mark) are `Secret`, which `Debug` never shows;
- integers are `i64`, numbers `serde_json::Number` (so `1` and `1.0` write back as they came).
"""

import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent
SPEC = ROOT / "databox-2025-02-01" / "databox.json"
OUT = ROOT.parent / "src" / "databox" / "model.rs"

# Secrets the document does not mark with x-ms-secret.
EXTRA_SECRETS = {
    ("DataBoxDiskJobDetails", "passkey"),
    ("DataBoxDiskJobSecrets", "passKey"),
    ("DiskSecret", "bitLockerKey"),
    ("ShareCredentialDetails", "password"),
}

RUST_KEYWORDS = {"type", "ref", "match", "move", "self", "struct", "enum", "fn", "use", "mod", "in", "loop"}

spec = json.loads(SPEC.read_text())
defs = spec["definitions"]


def ref_name(ref):
    assert ref.startswith("#/definitions/"), ref
    return ref.split("/")[-1]


def rust_type_name(name):
    return name[0].upper() + name[1:]


def snake(name):
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()
    return "r#" + s if s in RUST_KEYWORDS else s


def doc(text, indent):
    if not text:
        return ""
    text = " ".join(text.split())
    m = re.match(r"(.+?\.)(\s+[A-Z]|$)", text)
    first = m.group(1) if m else text
    if len(first) > 160:
        first = first[:157].rstrip() + "..."
    return f"{indent}/// {first}\n"


# Discriminated bases and their subtypes.
bases = {n: d["discriminator"] for n, d in defs.items() if "discriminator" in d}
subtypes = {b: [] for b in bases}
for n, d in defs.items():
    for a in d.get("allOf", []):
        b = ref_name(a["$ref"])
        if b in bases and "x-ms-discriminator-value" in d:
            subtypes[b].append((d["x-ms-discriminator-value"], n))


def all_properties(name, seen=()):
    """The definition's properties with those of its allOf bases, base first."""
    d = defs[name]
    props = {}
    for a in d.get("allOf", []):
        b = ref_name(a["$ref"])
        for k, v in all_properties(b, seen + (name,)).items():
            props[k] = (v[0], v[1])
    for k, v in d.get("properties", {}).items():
        props[k] = (v, name)
    return props


def struct_props(name):
    """A subtype keeps its base's tag as a field: it is also used on its own (an
    `AddressValidationOutput` holds an `AddressValidationProperties`), and the enum writes the
    tag over it."""
    d = defs[name]
    props = {}
    for a in d.get("allOf", []):
        b = ref_name(a["$ref"])
        for k, v in defs[b].get("properties", {}).items():
            props[k] = (v, b)
        props.update({k: v for k, v in all_properties(b).items() if k not in props})
    for k, v in d.get("properties", {}).items():
        props[k] = (v, name)
    return props


inline_structs = {}  # rust name -> (owner, properties)
known_enums = {}  # x-ms-enum name -> values


def note_enum(p):
    e = p.get("x-ms-enum")
    if e and "enum" in p:
        vals = known_enums.setdefault(e["name"], [])
        for v in p["enum"]:
            if v not in vals:
                vals.append(v)


def field_type(p, owner, pname, defname):
    if p.get("x-ms-secret") or (owner, pname) in EXTRA_SECRETS:
        return "Secret"
    if "$ref" in p:
        return rust_type_name(ref_name(p["$ref"]))
    note_enum(p)
    t = p.get("type")
    if t == "array":
        return f"Vec<{field_type(p['items'], owner, pname + '[]', defname)}>"
    if t == "object" or (t is None and "properties" in p):
        if "additionalProperties" in p:
            return f"BTreeMap<String, {field_type(p['additionalProperties'], owner, pname + '{}', defname)}>"
        if "properties" in p:
            inner = rust_type_name(defname) + rust_type_name(pname)
            inline_structs[inner] = (owner, p["properties"])
            return inner
        return "Value"
    if t == "string":
        return "String"
    if t == "integer":
        return "i64"
    if t == "number":
        return "Number"
    if t == "boolean":
        return "bool"
    return "Value"


def write_struct(out, rname, description, props, defname):
    out.append(doc(description, ""))
    out.append("#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]\n")
    out.append(f"pub struct {rname} {{\n")
    for pname, (p, owner) in props.items():
        ty = field_type(p, owner, pname, defname)
        if ty == rname:
            ty = f"Box<{ty}>"
        out.append(doc(p.get("description"), "    "))
        ro = " (read-only)" if p.get("readOnly") else ""
        if ro:
            out.append("    ///\n    /// Read-only: Azure sets it.\n")
        out.append(f'    #[serde(rename = "{pname}", skip_serializing_if = "Option::is_none")]\n')
        out.append(f"    pub {snake(pname)}: Option<{ty}>,\n")
    out.append("}\n\n")


def write_enum(out, base):
    tag = bases[base]
    rname = rust_type_name(base)
    # Variants are named after their tag value; each holds its subtype's struct.
    variants = [(v, re.sub(r"[^A-Za-z0-9]", "", rust_type_name(v)), rust_type_name(s)) for v, s in subtypes[base]]
    out.append(doc(defs[base].get("description"), ""))
    out.append(f"///\n/// Tagged by `{tag}`; a kind this version does not know is kept whole in `Other`.\n")
    out.append("#[derive(Clone, PartialEq)]\n")
    out.append(f"pub enum {rname} {{\n")
    for v, n, s in variants:
        out.append(f"    /// `{tag}` = `{v}`.\n    {n}({s}),\n")
    out.append("    /// A kind this version does not know, as it came.\n    Other(Value),\n}\n\n")
    out.append(f"impl {rname} {{\n    /// The tag (`{tag}`) of this value.\n")
    out.append("    pub fn tag(&self) -> Option<&str> {\n        match self {\n")
    for v, n, _ in variants:
        out.append(f'            {rname}::{n}(_) => Some("{v}"),\n')
    out.append(f'            {rname}::Other(v) => v.get("{tag}").and_then(Value::as_str),\n')
    out.append("        }\n    }\n}\n\n")
    out.append(f"impl std::fmt::Debug for {rname} {{\n")
    out.append("    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {\n        match self {\n")
    for _, n, _ in variants:
        out.append(f'            {rname}::{n}(x) => x.fmt(f),\n')
    out.append(f'            {rname}::Other(_) => write!(f, "{rname}::Other({{:?}})", self.tag()),\n')
    out.append("        }\n    }\n}\n\n")
    out.append(f"impl Serialize for {rname} {{\n")
    out.append("    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {\n")
    out.append("        let (tag, v) = match self {\n")
    for v, n, _ in variants:
        out.append(f'            {rname}::{n}(x) => ("{v}", serde_json::to_value(x)),\n')
    out.append(f"            {rname}::Other(v) => return v.serialize(s),\n")
    out.append("        };\n")
    out.append("        let mut v = v.map_err(serde::ser::Error::custom)?;\n")
    out.append("        if let Value::Object(m) = &mut v {\n")
    out.append(f'            m.insert("{tag}".into(), Value::from(tag));\n')
    out.append("        }\n        v.serialize(s)\n    }\n}\n\n")
    out.append(f"impl<'de> Deserialize<'de> for {rname} {{\n")
    out.append("    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {\n")
    out.append("        let v = Value::deserialize(d)?;\n")
    out.append(f'        let r = match v.get("{tag}").and_then(Value::as_str) {{\n')
    for v, n, _ in variants:
        out.append(f'            Some("{v}") => serde_json::from_value(v).map({rname}::{n}),\n')
    out.append(f"            _ => return Ok({rname}::Other(v)),\n")
    out.append("        };\n        r.map_err(serde::de::Error::custom)\n    }\n}\n\n")


def generate():
    out = [
        "// @generated by azure/spec/generate.py from azure/spec/databox-2025-02-01/databox.json.\n",
        "// Do not edit: change the generator and run it again (a test checks the two agree).\n",
        "//! The `Microsoft.DataBox` 2025-02-01 model, one type per definition of the official\n",
        "//! OpenAPI document. See `azure/spec/generate.py` for the rules.\n\n",
        "#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]\n\n",
        "use std::collections::BTreeMap;\n\n",
        "use serde::{Deserialize, Serialize};\n",
        "use serde_json::{Number, Value};\n\n",
        "use super::Secret;\n\n",
    ]
    names = sorted(defs)
    for n in names:
        if n in bases:
            write_enum(out, n)
        elif defs[n].get("type") not in (None, "object"):
            ty = field_type(defs[n], n, "", n)
            out.append(doc(defs[n].get("description"), ""))
            out.append(f"pub type {rust_type_name(n)} = {ty};\n\n")
        else:
            write_struct(out, rust_type_name(n), defs[n].get("description"), struct_props(n), n)
    # Inline object types found on the way (their own inline types are found as they are written).
    done = set()
    while set(inline_structs) - done:
        for rname in sorted(set(inline_structs) - done):
            owner, props = inline_structs[rname]
            write_struct(out, rname, None, {k: (v, owner) for k, v in props.items()}, rname)
            done.add(rname)
    # Also the enums that are only in parameters or top-level definitions.
    for n in names:
        note_enum(defs[n])
        for p in defs[n].get("properties", {}).values():
            note_enum(p)
            if "items" in p:
                note_enum(p["items"])
    out.append("/// The values each `x-ms-enum` of the document knows (Azure may send others).\n")
    out.append("pub mod known {\n")
    for name in sorted(known_enums):
        const = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()
        vals = ", ".join(json.dumps(v) for v in known_enums[name])
        out.append(f"    pub const {const}: &[&str] = &[{vals}];\n")
    out.append("}\n\n")
    out.append("/// Reads `v` as the type of definition `def` and writes it back (for the fidelity tests).\n")
    out.append("#[cfg(test)]\n")
    out.append("pub(crate) fn reserialize(def: &str, v: &Value) -> Option<Result<Value, String>> {\n")
    out.append("    fn rt<T: serde::de::DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {\n")
    out.append("        let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;\n")
    out.append("        serde_json::to_value(&t).map_err(|e| e.to_string())\n    }\n")
    out.append("    Some(match def {\n")
    for n in names:
        out.append(f'        "{n}" => rt::<{rust_type_name(n)}>(v),\n')
    out.append("        _ => return None,\n    })\n}\n")
    return "".join(out)


def formatted(text):
    """The text as `cargo fmt` leaves it (the repository's rustfmt.toml)."""
    config = ROOT.parent.parent / "rustfmt.toml"
    r = subprocess.run(
        ["rustfmt", "--edition", "2024", "--config-path", str(config), "--emit", "stdout"],
        input=text, capture_output=True, text=True, check=True,
    )
    return r.stdout


def main():
    text = formatted(generate())
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            print(f"{OUT} is not what {__file__} writes: run it again", file=sys.stderr)
            sys.exit(1)
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} lines, {len(defs)} definitions)")


if __name__ == "__main__":
    main()
