#!/usr/bin/env python3
"""Extracts the RFC 4475 torture messages, byte-exact, from the RFC's text.

    python3 extract.py rfc4475.txt            # write each message as NAME.dat here
    python3 extract.py rfc4475.txt --check    # exit 1 unless the .dat files here are identical

RFC 4475 (Appendix A) carries every message as a base64-encoded, gzip-compressed tar archive
between "-- BEGIN MESSAGE ARCHIVE --" and "-- END MESSAGE ARCHIVE --". The RFC shows the pair
twice: first inside its own Perl decoder listing, then around the archive; the archive is the
last pair. Of the lines between the markers, the base64 ones are a single token; page
furniture (running headers and footers, form feeds) has spaces and is dropped. Standard
library only. Get the text from https://www.rfc-editor.org/rfc/rfc4475.txt.
"""

import base64
import io
import os
import re
import sys
import tarfile

BEGIN = "-- BEGIN MESSAGE ARCHIVE --"
END = "-- END MESSAGE ARCHIVE --"
TOKEN = re.compile(r"^[A-Za-z0-9+/=]+$")


def archive_base64(text):
    """The base64 text of the last marker pair's archive."""
    start = text.rfind(BEGIN)
    end = text.find(END, start)
    if start < 0 or end < 0:
        raise ValueError("no message archive markers in this text")
    lines = text[start + len(BEGIN):end].replace("\f", "\n").splitlines()
    return "".join(line.strip() for line in lines if TOKEN.match(line.strip()))


def messages(text):
    """{name: bytes} of every .dat member of the archive."""
    data = base64.b64decode(archive_base64(text), validate=True)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".dat"):
                name = os.path.basename(member.name)[: -len(".dat")]
                out[name] = tar.extractfile(member).read()
    if not out:
        raise ValueError("the archive holds no .dat files")
    return out


def main(argv):
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] != "--check"):
        print(__doc__.strip())
        return 2
    with open(argv[1], "r", encoding="latin-1") as f:
        found = messages(f.read())
    here = os.path.dirname(os.path.abspath(__file__))
    if len(argv) == 3:
        bad = []
        for name, data in sorted(found.items()):
            path = os.path.join(here, name + ".dat")
            if not os.path.exists(path) or open(path, "rb").read() != data:
                bad.append(name)
        if bad:
            print("differ from the RFC: " + ", ".join(bad))
            return 1
        print("ok: %d messages identical to the RFC's archive" % len(found))
        return 0
    for name, data in sorted(found.items()):
        with open(os.path.join(here, name + ".dat"), "wb") as f:
            f.write(data)
    print("wrote %d messages" % len(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
