#!/usr/bin/env python3
"""Check a client's downloads the way the harness does: for every URL of
QB_REQUESTS (or the URLs given), QB_DOWNLOADS/<last path segment> must hold
exactly N bytes of the quicbench pattern (/bytes/<N>/<i>). Also checks
QB_TIMINGS, when given, is JSON lines with an index per request.

    verify_downloads.py [--downloads DIR] [--timings FILE] [URL...]

Prints one line per URL; exit 0 only when every body is right.
"""

import argparse
import json
import os
import sys
from urllib.parse import urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import pattern  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--downloads", default=os.environ.get("QB_DOWNLOADS"))
    ap.add_argument("--timings", default=os.environ.get("QB_TIMINGS"))
    ap.add_argument("urls", nargs="*")
    args = ap.parse_args()
    urls = args.urls or os.environ.get("QB_REQUESTS", "").split()
    if not urls or not args.downloads:
        ap.error("need URLs (or QB_REQUESTS) and --downloads (or QB_DOWNLOADS)")
    ok = True
    cache = {}
    for url in urls:
        parts = urlsplit(url).path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "bytes" or not parts[1].isdigit():
            print(f"BAD-URL {url}")
            ok = False
            continue
        n, name = int(parts[1]), parts[2]
        path = os.path.join(args.downloads, name)
        if not os.path.isfile(path):
            print(f"MISSING {path} ({url})")
            ok = False
            continue
        with open(path, "rb") as f:
            body = f.read()
        if n not in cache:
            cache[n] = pattern.chunk(0, n)
        if body == cache[n]:
            print(f"OK {path} {len(body)} bytes")
        else:
            where = pattern.first_mismatch(0, body[:n])
            print(f"WRONG {path}: {len(body)} bytes (want {n}), first mismatch at {where}")
            ok = False
    if args.timings:
        try:
            with open(args.timings) as f:
                lines = [json.loads(line) for line in f if line.strip()]
            idx = sorted(r["index"] for r in lines)
            if idx != list(range(len(urls))):
                print(f"TIMINGS {args.timings}: indexes {idx}, want 0..{len(urls) - 1}")
                ok = False
            else:
                print(f"TIMINGS ok: {len(lines)} lines, e.g. {json.dumps(lines[0])}")
        except (OSError, ValueError, KeyError) as e:
            print(f"TIMINGS {args.timings}: {e}")
            ok = False
    print("VERIFIED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
