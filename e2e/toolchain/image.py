#!/usr/bin/env python3
"""Build a container image as a docker-archive tarball (what `ctr images import` takes) from
files on this machine, for the lab's node: no registry is reachable and no Docker engine runs.

    image.py OUT.tar NAME:TAG --entrypoint /path/in/image [--user UID] \
        --file SRC=/path/in/image [--file ...] [--with-libs]

Every `--file` is copied with its mode; `--with-libs` adds the shared libraries each copied
ELF file needs (as `ldd` resolves them here) and the dynamic loader, so a glibc binary runs
unchanged. The image gets `/etc/passwd` and `/etc/group` with root, `nonroot` (65532) and
`envoy` (10101), and a world-writable `/tmp`. The output is byte-for-byte reproducible: one
layer with sorted entries, owner 0 and time 0, so the same inputs give the same image ID.
The tarball is written through a temporary file and a rename.
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\nenvoy:x:10101:10101:envoy:/tmp:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\nenvoy:x:10101:\n"


def is_elf(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def shared_libraries(path: str) -> list[str]:
    """The absolute paths of the libraries `ldd` resolves for `path` (the loader included)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    if out.returncode != 0:
        # A static binary: "not a dynamic executable".
        return []
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


def entry(name: str, mode: int, data: bytes | None = None, kind=tarfile.REGTYPE) -> tuple:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type = kind
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    if data is not None:
        info.size = len(data)
    return (info, data)


def layer(files: dict[str, tuple[bytes, int]]) -> bytes:
    """One uncompressed tar layer holding `files` (image path → (content, mode)) and their
    parent directories, sorted."""
    dirs = {"tmp"}
    for path in files:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    entries = []
    for d in dirs:
        mode = 0o1777 if d == "tmp" else 0o755
        entries.append(entry(d, mode, kind=tarfile.DIRTYPE))
    for path, (data, mode) in files.items():
        entries.append(entry(path, mode, data))
    entries.sort(key=lambda e: e[0].name)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("name")
    p.add_argument("--entrypoint", required=True, action="append")
    p.add_argument("--user", default="65532:65532")
    p.add_argument("--file", action="append", default=[], metavar="SRC=DEST")
    p.add_argument("--with-libs", action="store_true")
    a = p.parse_args()

    files: dict[str, tuple[bytes, int]] = {
        "/etc/passwd": (PASSWD.encode(), 0o644),
        "/etc/group": (GROUP.encode(), 0o644),
    }
    for spec in a.file:
        src, _, dest = spec.partition("=")
        if not dest.startswith("/"):
            print(f"image.py: --file {spec}: the destination must be absolute", file=sys.stderr)
            return 2
        with open(src, "rb") as f:
            files[dest] = (f.read(), os.stat(src).st_mode & 0o777)
        if a.with_libs and is_elf(src):
            for lib in shared_libraries(src):
                real = os.path.realpath(lib)
                with open(real, "rb") as f:
                    files[lib] = (f.read(), 0o755)

    data = layer(files)
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": a.entrypoint,
            "User": a.user,
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "e2e/toolchain/image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    manifest = json.dumps(
        [{"Config": config_name, "RepoTags": [a.name], "Layers": [layer_name]}],
        separators=(",", ":"),
    ).encode()

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in sorted(
            [(config_name, config_bytes), (layer_name, data), ("manifest.json", manifest)]
        ):
            if "/" in name:
                d = name.split("/")[0]
                info, _ = entry(d, 0o755, kind=tarfile.DIRTYPE)
                tar.addfile(info)
            info, _ = entry(name, 0o644, content)
            tar.addfile(info, io.BytesIO(content))
    os.replace(tmp, a.out)
    print(f"{a.out}: {a.name} ({len(data)} bytes, image {hashlib.sha256(config_bytes).hexdigest()[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
