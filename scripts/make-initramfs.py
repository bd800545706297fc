#!/usr/bin/env python3
"""A real, bootable initramfs: busybox as the only program, /init a shell script.

Usage: make-initramfs.py BUSYBOX OUTPUT
Writes a gzip'd newc cpio archive (the format the kernel unpacks) with /dev/console, so no
root privileges are needed. Every timestamp is 0, so the same busybox gives the same bytes.
"""
import gzip
import sys

INIT = b"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox echo "purgatory-harness initramfs: $(/bin/busybox uname -r)"
exec /bin/busybox sh
"""


def entry(out, ino, name, mode, data=b"", rdev=(0, 0), nlink=1):
    name_bytes = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_bytes), 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out += header + name_bytes
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)


def main():
    busybox, output = sys.argv[1:3]
    with open(busybox, "rb") as f:
        program = f.read()
    out = bytearray()
    entries = [
        ("dev", 0o040755, b"", (0, 0), 2),
        ("dev/console", 0o020600, b"", (5, 1), 1),
        ("bin", 0o040755, b"", (0, 0), 2),
        ("bin/busybox", 0o100755, program, (0, 0), 1),
        ("bin/sh", 0o120777, b"busybox", (0, 0), 1),
        ("proc", 0o040755, b"", (0, 0), 2),
        ("sys", 0o040755, b"", (0, 0), 2),
        ("init", 0o100755, INIT, (0, 0), 1),
    ]
    for ino, (name, mode, data, rdev, nlink) in enumerate(entries, start=1):
        entry(out, ino, name, mode, data, rdev, nlink)
    entry(out, 0, "TRAILER!!!", 0, b"", (0, 0), 1)
    out += b"\0" * (-len(out) % 512)
    with open(output, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as z:
        z.write(bytes(out))


if __name__ == "__main__":
    main()
