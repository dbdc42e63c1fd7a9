#!/usr/bin/env python3
"""Checks HTTP exchanges with Azure Resource Manager against Azure's OpenAPI document, with the
`jsonschema` package (JSON Schema 2020-12), not with our own types.

    armcheck.py SPEC --examples DIR        # every official example (the checker's self-test)
    armcheck.py SPEC RECORD.jsonl          # every exchange a test recorded

A record line is {"method", "url", "request", "status", "response", "headers"}: what a client
sent and what the service answered (bodies as JSON or null, answer headers lower-case).

What is checked:
- the request matches an operation of the document (method and path, case-insensitive as ARM);
  the LRO status monitors (`.../locations/{loc}/operationResults/{id}`) are ARM's, outside it;
- its body validates against the operation's body schema, its answer against the schema of
  that status code (or `default`, ARM's error envelope, for an error);
- objects are closed: a field the document does not name is an error (`unevaluatedProperties`),
  and a polymorphic object must be one of the kinds its discriminator names;
- closed enums are closed, extensible ones open; date-times are RFC 3339;
- every answer has `x-ms-request-id` and `x-ms-correlation-request-id`; a 202 has a `location`
  (or `azure-asyncoperation`); a 401 has `www-authenticate`.

Prints one line per problem and a summary; exits 1 when there is any problem.
"""

import json
import pathlib
import re
import sys

import jsonschema
from jsonschema import Draft202012Validator, FormatChecker

LRO_MONITOR = re.compile(r"^/subscriptions/[^/]+/providers/Microsoft\.DataBox/locations/[^/]+/operationResults/[^/]+$", re.I)


def ref_name(ref):
    return ref.rsplit("/", 1)[-1]


def open_enum(node):
    e = node.get("x-ms-enum")
    return bool(e) and (e.get("modelAsString") or e.get("modelAsExtensible"))


def convert(node, direction="response"):
    """A Swagger 2.0 schema as JSON Schema 2020-12 over `$defs`; `allOf` bases are the open forms.

    As Azure's own validators read the document: an answer need not hold a required secret
    (`x-ms-secret` values are never sent back), and a request need not hold a required
    read-only value."""
    if isinstance(node, list):
        return [convert(n, direction) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return {"$ref": "#/$defs/" + ref_name(node["$ref"])}
    out = {}
    for k, v in node.items():
        if k in ("discriminator", "x-ms-discriminator-value", "example", "x-ms-enum"):
            continue
        if k == "enum" and open_enum(node):
            continue
        if k == "allOf":
            out["allOf"] = [{"$ref": "#/$defs/" + ref_name(a["$ref"]) + "__open"} for a in v]
            continue
        if k == "properties":
            out["properties"] = {pn: convert(pv, direction) for pn, pv in v.items()}
            continue
        if k == "required":
            skip = "x-ms-secret" if direction == "response" else "readOnly"
            props = node.get("properties", {})
            out["required"] = [r for r in v if not props.get(r, {}).get(skip)]
            continue
        out[k] = convert(v, direction)
    return out


def schema_defs(spec, direction):
    defs = spec["definitions"]
    bases = {n: d["discriminator"] for n, d in defs.items() if "discriminator" in d}
    subtypes = {b: [] for b in bases}
    for n, d in defs.items():
        for a in d.get("allOf", []):
            b = ref_name(a["$ref"])
            if b in bases and "x-ms-discriminator-value" in d:
                subtypes[b].append((n, d["x-ms-discriminator-value"]))
    out = {}
    for n, d in defs.items():
        opened = convert(d, direction)
        for a in d.get("allOf", []):
            b = ref_name(a["$ref"])
            if b in bases and "x-ms-discriminator-value" in d:
                opened.setdefault("properties", {})[bases[b]] = {"const": d["x-ms-discriminator-value"]}
                opened["required"] = sorted(set(opened.get("required", [])) | {bases[b]})
        out[n + "__open"] = opened
        if n in bases:
            out[n] = {
                "allOf": [{"$ref": f"#/$defs/{n}__open"}],
                "oneOf": [{"$ref": f"#/$defs/{s}__open"} for s, _ in subtypes[n]],
                "unevaluatedProperties": False,
            }
        elif d.get("type", "object") == "object":
            out[n] = {"allOf": [{"$ref": f"#/$defs/{n}__open"}], "unevaluatedProperties": False}
        else:
            out[n] = {"$ref": f"#/$defs/{n}__open"}
    return out


class Spec:
    def __init__(self, path):
        self.doc = json.loads(pathlib.Path(path).read_text())
        self.defs = {d: schema_defs(self.doc, d) for d in ("request", "response")}
        self.validators = {}
        self.ops = []
        for template, methods in self.doc["paths"].items():
            rx = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            for method, op in methods.items():
                params = op.get("parameters", [])
                body = next((p for p in params if p.get("in") == "body"), None)
                self.ops.append(
                    {
                        "rx": re.compile(rx, re.I),
                        "method": method.upper(),
                        "id": op["operationId"],
                        "body": body["schema"] if body else None,
                        "responses": op["responses"],
                        "examples": op.get("x-ms-examples", {}),
                    }
                )

    def validator(self, schema, direction):
        key = direction + json.dumps(schema, sort_keys=True)
        if key not in self.validators:
            root = {"$defs": self.defs[direction], **convert(schema, direction)}
            Draft202012Validator.check_schema(root)
            self.validators[key] = Draft202012Validator(root, format_checker=FormatChecker())
        return self.validators[key]

    def operation(self, method, path):
        for op in self.ops:
            if op["method"] == method.upper() and op["rx"].match(path):
                return op
        return None

    def errors(self, schema, value, what, direction="response"):
        out = []
        for e in sorted(self.validator(schema, direction).iter_errors(value), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            detail = e.message[:300]
            if e.context:
                # oneOf/anyOf: the closest branch's own complaint says more than the whole value.
                best = jsonschema.exceptions.best_match(e.context)
                at = "/".join(str(p) for p in best.absolute_path) or "(root)"
                detail = f"fits none of its kinds ({e.validator}); closest: {at}: {best.message[:300]}"
            out.append(f"{what}: {where}: {detail}")
        return out

    def response_schema(self, op, status):
        r = op["responses"].get(str(status)) or (op["responses"].get("default") if status >= 400 else None)
        if r is None:
            return None, f"status {status} is not an answer the document gives for {op['id']}"
        return r.get("schema"), None


def check_examples(spec, folder):
    problems, bodies = [], 0
    seen = set()
    for op in spec.ops:
        for _, ex in op["examples"].items():
            name = ex["$ref"].split("/")[-1]
            seen.add(name)
            e = json.loads((pathlib.Path(folder) / name).read_text())
            body = e.get("parameters", {}).get("body")
            if op["body"] is not None and body is not None:
                problems += spec.errors(op["body"], body, f"{name} request", "request")
                bodies += 1
            for code, r in e.get("responses", {}).items():
                if r.get("body") is None:
                    continue
                schema, why = spec.response_schema(op, int(code))
                if why:
                    problems.append(f"{name}: {why}")
                    continue
                problems += spec.errors(schema, r["body"], f"{name} response {code}")
                bodies += 1
    files = {p.name for p in pathlib.Path(folder).glob("*.json")}
    for missing in sorted(files - seen):
        problems.append(f"{missing}: no operation refers to it")
    return problems, f"{len(seen)} examples, {bodies} bodies"


def check_record(spec, path):
    problems, n = [], 0
    ops = {}
    for i, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        x = json.loads(line)
        n += 1
        method, url, status = x["method"].upper(), x["url"], int(x["status"])
        headers = {k.lower(): v for k, v in (x.get("headers") or {}).items()}
        p = url.split("?", 1)[0]
        what = f"line {i}: {method} {p} -> {status}"
        for h in ("x-ms-request-id", "x-ms-correlation-request-id"):
            if h not in headers:
                problems.append(f"{what}: the answer has no {h}")
        if status == 202 and "location" not in headers and "azure-asyncoperation" not in headers:
            problems.append(f"{what}: a 202 without location or azure-asyncoperation")
        if status == 401 and "www-authenticate" not in headers:
            problems.append(f"{what}: a 401 without www-authenticate")
        if LRO_MONITOR.match(p):
            if x.get("response") not in (None, "") and status not in (200,) and status < 400:
                problems.append(f"{what}: an operation monitor answered a body with {status}")
            ops["(operation monitor)"] = ops.get("(operation monitor)", 0) + 1
            continue
        op = spec.operation(method, p)
        if op is None:
            problems.append(f"{what}: no operation of the document has this method and path")
            continue
        ops[op["id"]] = ops.get(op["id"], 0) + 1
        if x.get("request") is not None:
            if op["body"] is None:
                problems.append(f"{what}: a body for an operation that takes none")
            else:
                problems += spec.errors(op["body"], x["request"], f"{what} request", "request")
        schema, why = spec.response_schema(op, status)
        if why:
            problems.append(f"{what}: {why}")
        elif x.get("response") is not None:
            if schema is None:
                problems.append(f"{what}: a body where the document has none")
            else:
                problems += spec.errors(schema, x["response"], f"{what} answer")
        elif schema is not None and 200 <= status < 300 and status != 202:
            problems.append(f"{what}: no body where the document has one")
    summary = f"{n} exchanges: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
    return problems, summary


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    spec = Spec(args[0])
    if args[1] == "--examples":
        problems, summary = check_examples(spec, args[2])
    else:
        problems, summary = check_record(spec, args[1])
    for p in problems:
        print(p)
    print(f"{summary}; {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
