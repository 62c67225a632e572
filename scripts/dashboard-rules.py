#!/usr/bin/env python3
"""Prints the Grafana dashboard's queries as a Prometheus rules file, so
`promtool check rules` parses every one of them (make test). Grafana's own
variables become what they stand for at query time."""
import json
import sys

dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: grafana-dashboard-queries\n    rules:")
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = (target["expr"]
                .replace("$__rate_interval", "1m")
                .replace('=~"$instance"', '=~".*"'))
        name = "dashboard_panel_%d_%s" % (panel["id"], target["refId"])
        print("      - record: %s\n        expr: %s" % (name, json.dumps(expr)))
