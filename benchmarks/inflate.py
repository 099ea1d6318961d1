"""Why varcall inflates BGZF blocks with ISA-L (``isal``) rather than zlib.

The native engine's BAM decoder (:mod:`varcall.io.bgzf`) inflates every block of every
window; on ``make bench``'s low-coverage cohort inflation was half of the decoding time
and the decoding half of a single-process run's calling. This script inflates every
block of the given BGZF files (BAMs, bgzipped VCFs) with zlib and with ISA-L, checks both
give the same bytes and CRC32, and prints the seconds and MB/s of each::

    .venv/bin/python benchmarks/inflate.py benchmarks/cache/lowcov-*/KP*.bam

Measured on the 2-core development machine (6 BAMs of the lowcov cohort, 27 MB
compressed, 103 MB inflated): zlib 0.28 s, ISA-L 0.11 s.
"""

from __future__ import annotations

import argparse
import struct
import time
import zlib
from pathlib import Path


def blocks(path: Path) -> list[tuple[bytes, int, int]]:
    """(deflate data, CRC32, inflated size) of every BGZF block of ``path``."""
    raw = path.read_bytes()
    out, off = [], 0
    while off < len(raw):
        xlen = struct.unpack_from("<H", raw, off + 10)[0]
        bsize = struct.unpack_from("<H", raw, off + 16)[0] + 1
        body = raw[off + 12 + xlen : off + bsize]
        crc, isize = struct.unpack_from("<II", body, len(body) - 8)
        out.append((body[:-8], crc, isize))
        off += bsize
    return out


def timed(module, data: list[tuple[bytes, int, int]]) -> tuple[float, int]:
    """Seconds to inflate and CRC-check every block with ``module``; inflated bytes."""
    t0 = time.perf_counter()
    n = 0
    for body, crc, isize in data:
        out = module.decompress(body, -15, max(1, isize))
        if module.crc32(out) != crc:
            raise SystemExit(f"{module.__name__}: CRC mismatch")
        n += len(out)
    return time.perf_counter() - t0, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    from isal import isal_zlib

    data = [b for f in args.files for b in blocks(f)]
    size = sum(f.stat().st_size for f in args.files)
    for name, module in (("zlib", zlib), ("isal", isal_zlib)):
        best = min(timed(module, data)[0] for _ in range(3))
        n = timed(module, data)[1]
        print(
            f"{name}: {best:.3f} s for {size / 1e6:.1f} MB -> {n / 1e6:.1f} MB ({n / 1e6 / best:.0f} MB/s)"
        )


if __name__ == "__main__":
    main()
