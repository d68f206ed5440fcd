#!/usr/bin/env python3
"""Verify a Dialtone audit export offline (the algorithm is in docs/audit.md).

    python3 verify.py FILE.jsonl

Exit 0 when every line is intact and every stream's chain unbroken; exit 1 naming the first
bad line. Standard library only.
"""

import hashlib
import json
import re
import sys

GENESIS = "0" * 64
HEX64 = re.compile(r"^[0-9a-f]{64}$")
MEMBERS = ["specversion", "id", "type", "source", "subject", "time",
           "datacontenttype", "accountsid", "sequence", "prevhash", "data"]
PREFIX = '{"event":'


def sha256_hex(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_line(text, decoder):
    """The event, its verbatim JSON and the stated hash of one export line, or an error."""
    if not text.startswith(PREFIX):
        raise ValueError('does not start with {"event":')
    event, end = decoder.raw_decode(text, len(PREFIX))
    event_json = text[len(PREFIX):end]
    line = json.loads(text)
    if list(event) != MEMBERS:
        raise ValueError("event members are not in the canonical order")
    if not isinstance(event["sequence"], int) or event["sequence"] < 1:
        raise ValueError("sequence is not a positive integer")
    if not HEX64.match(str(event["prevhash"])) or not HEX64.match(str(line.get("hash"))):
        raise ValueError("prevhash or hash is not 64 lowercase hex digits")
    # The content is the event's JSON without its "sequence" and "prevhash" members. Members
    # before them are strings, whose quotes are escaped, so the first occurrence is theirs.
    pair = ',"sequence":%d,"prevhash":"%s"' % (event["sequence"], event["prevhash"])
    if pair not in event_json:
        raise ValueError("sequence and prevhash are not in canonical form")
    content = event_json.replace(pair, "", 1)
    link = "%s\n%d\n%s" % (event["prevhash"], event["sequence"], sha256_hex(content))
    computed = sha256_hex(link)
    if computed != line["hash"]:
        raise ValueError("hash %s does not match the event's content (computed %s)"
                         % (line["hash"], computed))
    return event, computed


def main(path):
    decoder = json.JSONDecoder()
    heads = {}
    anchored = {}
    lines = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.decode("utf-8").rstrip("\n")
            if not text:
                continue
            try:
                event, computed = check_line(text, decoder)
                stream, sequence = event["subject"], event["sequence"]
                if stream in heads:
                    last_sequence, last_hash = heads[stream]
                    if sequence != last_sequence + 1:
                        raise ValueError("stream %s: sequence %d follows %d"
                                         % (stream, sequence, last_sequence))
                    if event["prevhash"] != last_hash:
                        raise ValueError("stream %s: prevhash does not match the hash of sequence %d"
                                         % (stream, last_sequence))
                elif sequence == 1:
                    if event["prevhash"] != GENESIS:
                        raise ValueError("stream %s: its first event's prevhash is not 64 zeros" % stream)
                else:
                    # The export starts mid-stream: this event anchors the chain.
                    anchored[stream] = (sequence, event["prevhash"])
                heads[stream] = (sequence, computed)
                lines += 1
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
                print("line %d: %s" % (number, error))
                return 1
    print("ok: %d events in %d streams" % (lines, len(heads)))
    for stream, (sequence, prevhash) in sorted(anchored.items()):
        print("  %s starts at sequence %d after hash %s (check it against the log)"
              % (stream, sequence, prevhash))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip())
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
