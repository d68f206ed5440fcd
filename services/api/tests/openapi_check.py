#!/usr/bin/env python3
"""Checks Dialtone's OpenAPI document and real responses against it.

    python3 openapi_check.py DOC.json CASES.jsonl

DOC must be a valid OpenAPI 3.1 document (openapi-spec-validator). Each line of CASES is
{"method","path","status","body"}: a response the API gave to a request of the operation at
`path` (the template); its body must validate against the schema the document gives for that
status (JSON Schema 2020-12, references resolved in the document). Exit 0, or 1 naming each
failure.
"""

import json
import sys

import jsonschema
from openapi_spec_validator import validate


def response_schema(doc, method, path, status):
    operation = doc["paths"][path][method]
    response = operation["responses"].get(str(status))
    if response is None:
        raise KeyError("status %s is not documented" % status)
    content = response.get("content", {})
    media = content.get("application/json") or content.get("application/cloudevents-batch+json")
    if media is None:
        raise KeyError("status %s documents no JSON body" % status)
    return media["schema"]


def main(doc_path, cases_path):
    doc = json.load(open(doc_path))
    validate(doc)
    assert doc["openapi"].startswith("3.1"), doc["openapi"]
    failures = 0
    checked = 0
    for line in open(cases_path):
        case = json.loads(line)
        where = "%s %s %s" % (case["method"].upper(), case["path"], case["status"])
        try:
            schema = dict(response_schema(doc, case["method"], case["path"], case["status"]))
            schema["components"] = doc["components"]
            jsonschema.validate(case["body"], schema, cls=jsonschema.Draft202012Validator)
            checked += 1
        except (KeyError, jsonschema.ValidationError) as error:
            failures += 1
            print("%s: %s" % (where, str(error).splitlines()[0]))
    print("ok: the document is valid OpenAPI %s; %d responses match it" % (doc["openapi"], checked)
          if not failures else "%d responses do not match the document" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
