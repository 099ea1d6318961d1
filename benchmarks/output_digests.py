"""Digests of varcall's outputs, to show that a change of code left every output unchanged.

For each dataset (the demo cohort of ``make demo`` and the ``make bench`` dataset), each
engine (native, bcftools, freebayes) and each mode (single-process, 2 distributed workers
with 8 regions) this runs ``varcall call`` and records:

- ``vcf``: SHA-256 of the ``calls.vcf.gz`` text minus the ``##fileDate``,
  ``##varcallCommand`` and ``##reference`` header lines (the date, the command line and the
  reference's path: inputs, not results);
- ``vcz/<array>``: SHA-256 of every array of ``calls.vcz`` (dtype, shape and values).

Usage::

    python benchmarks/output_digests.py --out before.json            # record
    python benchmarks/output_digests.py --compare before.json        # record again and compare

To record another checkout's code (e.g. the commit before a refactoring), run the script with
that checkout as the working directory and its ``varcall`` on PYTHONPATH.

``--compare`` exits 1 and lists what differs when any digest changed. Engines whose binary is
missing are skipped (and said so); the comparison covers what both runs have.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ENGINES = ("native", "bcftools", "freebayes")
MODES = {
    "single": ["--single-process"],
    "distributed": ["--workers", "2", "--region-count", "8"],
}
SKIP_HEADER = (b"##fileDate", b"##varcallCommand", b"##reference=")


def _varcall() -> list[str]:
    """The varcall command of the Python running this script (run it with the working
    directory at a checkout to record that checkout's code)."""
    return [sys.executable, "-c", "from varcall.cli import entry; entry()"]


def vcf_digest(path: Path) -> str:
    """SHA-256 of the VCF text minus the date and command header lines."""
    h = hashlib.sha256()
    with gzip.open(path, "rb") as fh:
        for line in fh:
            if not line.startswith(SKIP_HEADER):
                h.update(line)
    return h.hexdigest()


def array_digest(a: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and values (object arrays as their text)."""
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}".encode())
    if a.dtype == object:
        h.update("\x1f".join(map(str, a.ravel().tolist())).encode())
    else:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def vcz_digests(path: Path) -> dict[str, str]:
    """One digest per array of a VCF Zarr store, by name."""
    root = zarr.open_group(str(path), mode="r")
    return {name: array_digest(arr[...]) for name, arr in sorted(root.arrays())}


def demo_cohort(work: Path) -> Path:
    """The cohort ``make demo`` simulates."""
    out = work / "demo-cohort"
    if not (out / "bams.txt").exists():
        subprocess.run(
            [*_varcall(), "simulate", "--out", str(out), "--samples", "3", "--contigs", "2",
             "--length", "200000", "--coverage", "30", "--seed", "1", "--overwrite"],
            check=True,
        )
    return out


def bench_dataset() -> Path | None:
    """The ``make bench`` dataset (built and cached when its tools are there)."""
    from build_dataset import SPECS, build_dataset, missing_peers

    if missing_peers():
        print("bench dataset: peers missing, skipped", file=sys.stderr)
        return None
    return build_dataset(SPECS["bench"])


def run_one(folder: Path, engine: str, mode: str, work: Path) -> dict[str, str]:
    out = work / f"{folder.name}-{engine}-{mode}"
    argv = [*_varcall(), "call", "-f", str(folder / "reference.fa"), "--bam-list",
            str(folder / "bams.txt"), "-o", str(out), "--engine", engine, "--overwrite",
            "--no-progress", *MODES[mode]]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    result = {"vcf": vcf_digest(out / "calls.vcf.gz")}
    result.update({f"vcz/{k}": v for k, v in vcz_digests(out / "calls.vcz").items()})
    shutil.rmtree(out)
    return result


def record(
    work: Path, engines: tuple[str, ...], bench: bool, bench_folder: Path | None = None
) -> dict[str, dict[str, str]]:
    datasets = {"demo": demo_cohort(work)}
    if bench:
        folder = bench_folder or bench_dataset()
        if folder is not None:
            datasets["bench"] = folder
    results: dict[str, dict[str, str]] = {}
    for name, folder in datasets.items():
        for engine in engines:
            if engine != "native" and shutil.which(engine) is None:
                print(f"{engine}: not on PATH, skipped", file=sys.stderr)
                continue
            for mode in MODES:
                key = f"{name}/{engine}/{mode}"
                print(f"running {key}", file=sys.stderr)
                results[key] = run_one(folder, engine, mode, work)
    return results


def compare(before: dict, after: dict) -> list[str]:
    """What differs between two recordings, over the runs both have."""
    problems = []
    for run in sorted(before.keys() & after.keys()):
        a, b = before[run], after[run]
        for k in sorted(a.keys() | b.keys()):
            if a.get(k) != b.get(k):
                problems.append(f"{run}: {k} differs")
    missing = sorted(before.keys() ^ after.keys())
    problems += [f"{run}: recorded in only one of the two" for run in missing]
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="write the digests here (JSON)")
    p.add_argument("--compare", type=Path, help="compare with an earlier recording")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--no-bench", action="store_true", help="the demo cohort only")
    p.add_argument("--bench", type=Path, help="the bench dataset folder (default: build/cache)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="varcall-digests-") as tmp:
        results = record(Path(tmp), tuple(args.engines.split(",")), not args.no_bench, args.bench)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.compare:
        problems = compare(json.loads(args.compare.read_text()), results)
        for line in problems:
            print(line)
        n = len(results)
        print(f"{n} runs compared, {len(problems)} differences")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
