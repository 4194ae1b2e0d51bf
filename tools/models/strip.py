#!/usr/bin/env python3
"""Vendor AWS service models from botocore into models/, documentation stripped.

    python3 tools/models/strip.py sqs [more services...]

botocore's service-2.json files (Apache-2.0, see models/NOTICE) are the machine-readable AWS
models. We keep them as data and interpret them at runtime (DESIGN.md decision 2). An optional
overlay in tools/models/overlays/<service>.json is merged on top: it restores facts the botocore
JSON no longer carries, such as SQS's awsQuery error codes and XML namespace, which the Smithy
model has as traits (awsQueryError, xmlNamespace) but botocore dropped when SQS moved to JSON.
"""
import gzip
import json
import os
import sys

import botocore

DROP = {"documentation", "documentationUrl", "examples", "deprecatedMessage"}


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k not in DROP}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def merge(base, overlay):
    for k, v in overlay.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    data = os.path.join(os.path.dirname(botocore.__file__), "data")
    for service in sys.argv[1:]:
        versions = sorted(os.listdir(os.path.join(data, service)))
        path = os.path.join(data, service, versions[-1], "service-2.json.gz")
        model = strip(json.load(gzip.open(path)))
        overlay = os.path.join(root, "tools", "models", "overlays", service + ".json")
        if os.path.exists(overlay):
            merge(model, json.load(open(overlay)))
        model["metadata"]["botocoreVersion"] = botocore.__version__
        out = os.path.join(root, "models", service + ".json")
        with open(out, "w") as f:
            json.dump(model, f, indent=1, sort_keys=False)
            f.write("\n")
        print(f"{out}: {os.path.getsize(out)} bytes from botocore {botocore.__version__}")


if __name__ == "__main__":
    main()
