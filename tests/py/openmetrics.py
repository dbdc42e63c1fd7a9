#!/usr/bin/env python3
"""Parses OpenMetrics text on stdin with Prometheus's own parser (prometheus_client), strictly
(a malformed exposition raises), and prints its families and samples as JSON:
{"families": {name: {"type", "unit", "help"}}, "samples": [{"name", "labels", "value"}]}."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

text = sys.stdin.read()
families, samples = {}, []
for f in text_string_to_metric_families(text):
    families[f.name] = {"type": f.type, "unit": f.unit, "help": f.documentation}
    for s in f.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
json.dump({"families": families, "samples": samples}, sys.stdout)
