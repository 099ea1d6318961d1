"""Small alignment data sets and a deterministic fake engine for the scale-out tests.

The data are written with pysam (reads copied from the reference, so they align without
mismatches); coverage is shaped on purpose (a dense stretch, a run of N without reads) to
test index-based planning. The fake engine derives "variants" from the reference sequence
only, so its region calls and its whole-genome calls agree by construction: it tests the
machinery (ordering, checkpoints, merge, resume, retries), not calling.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pysam

from varcall.core.callset import FILTER_IDS, CallSet, n_genotypes
from varcall.core.errors import RegionError
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region

READ_LEN = 100


def random_sequence(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=n).tolist())


def write_reference(path: Path, contigs: dict[str, str]) -> Path:
    with open(path, "w") as fh:
        for name, seq in contigs.items():
            fh.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                fh.write(seq[i : i + 60] + "\n")
    pysam.faidx(str(path))
    return path


def write_bam(
    path: Path,
    contigs: dict[str, str],
    sample: str,
    starts: dict[str, Sequence[int]],
    *,
    index: str = "bai",
) -> Path:
    """A coordinate-sorted, indexed BAM with one READ_LEN read at each start (0-based)."""
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": n, "LN": len(s)} for n, s in contigs.items()],
        "RG": [{"ID": sample, "SM": sample}],
    }
    tid = {n: i for i, n in enumerate(contigs)}
    # random base qualities, as in real data (they dominate the compressed size)
    rng = np.random.default_rng(len(sample) * 1000 + sum(len(v) for v in starts.values()))
    unsorted = path.with_name(path.name + ".unsorted.bam")
    with pysam.AlignmentFile(str(unsorted), "wb", header=header) as out:
        k = 0
        for name, positions in starts.items():
            seq = contigs[name]
            for p in sorted(int(x) for x in positions):
                if p < 0 or p + READ_LEN > len(seq) or "N" in seq[p : p + READ_LEN]:
                    continue
                a = pysam.AlignedSegment(out.header)
                a.query_name = f"r{k}"
                k += 1
                a.reference_id = tid[name]
                a.reference_start = p
                a.query_sequence = seq[p : p + READ_LEN]
                a.cigarstring = f"{READ_LEN}M"
                a.mapping_quality = 60
                a.query_qualities = rng.integers(10, 41, READ_LEN).astype(np.uint8).tolist()
                a.set_tag("RG", sample)
                out.write(a)
    pysam.sort("-o", str(path), str(unsorted))
    os.unlink(unsorted)
    if index == "csi":
        pysam.index("-c", str(path))
    else:
        pysam.index(str(path))
    return path


def uniform_starts(rng: np.random.Generator, lo: int, hi: int, coverage: float) -> np.ndarray:
    n = int((hi - lo) * coverage / READ_LEN)
    return rng.integers(lo, max(lo + 1, hi - READ_LEN), size=n)


def make_shaped_dataset(root: Path, *, seed: int = 7) -> dict:
    """Reference c1 (200 kb: dense [32768, 65536) = 16 kb windows 2-3, N run [120k, 121k)), c2 (50 kb uniform);
    two BAMs. Returns paths and the read starts."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    c1 = random_sequence(rng, 200_000)
    c1 = c1[:120_000] + "N" * 1000 + c1[121_000:]
    contigs = {"c1": c1, "c2": random_sequence(rng, 50_000)}
    ref = write_reference(root / "ref.fa", contigs)
    bams, all_starts = [], []
    for i, sample in enumerate(["S1", "S2"]):
        s1 = np.concatenate(
            [uniform_starts(rng, 0, 200_000, 4.0), uniform_starts(rng, 32_768, 65_536, 40.0)]
        )
        s2 = uniform_starts(rng, 0, 50_000, 4.0)
        starts = {"c1": s1, "c2": s2}
        all_starts.append(starts)
        bams.append(write_bam(root / f"{sample}.bam", contigs, sample, starts))
        if i == 0:
            write_bam(root / f"{sample}.csi.bam", contigs, sample, starts, index="csi")
    return {"reference": ref, "bams": bams, "starts": all_starts, "contigs": contigs}


# ----------------------------------------------------------------------------- fake engine
def _fake_calls(inputs: CallInputs, contig: str, start: int, end: int) -> CallSet:
    """Deterministic pseudo-variants from the reference alone: a record at each position
    whose hash is 0 mod 97; every 3rd is a 3 bp deletion, every 5th multi-allelic."""
    with pysam.FastaFile(inputs.reference) as fa:
        length = fa.get_reference_length(contig)
        seq = fa.fetch(contig, start, min(length, end + 4))
    pos, alleles, rows = [], [], []
    for p in range(start, end):
        h = int.from_bytes(hashlib.blake2b(f"{contig}:{p}".encode(), digest_size=4).digest(), "big")
        if h % 97 or seq[p - start] == "N":
            continue
        ref = seq[p - start]
        alt = "ACGT"[(("ACGT".index(ref) if ref in "ACGT" else 0) + 1 + h % 3) % 4]
        if h % 3 == 0 and p + 3 < length:
            a = [seq[p - start : p - start + 4], ref]
        elif h % 5 == 0:
            a = [ref, alt, "ACGT"[("ACGT".index(alt) + 1) % 4] if alt in "ACGT" else "A"]
        else:
            a = [ref, alt]
        pos.append(p)
        alleles.append(a)
        rows.append(h)
    s = len(inputs.samples)
    v = len(pos)
    width = max([2, *(len(a) for a in alleles)])
    cs = CallSet.empty(contig, inputs.samples, FILTER_IDS, max_alleles=width)
    if not v:
        return cs
    al = np.full((v, width), "", dtype="U8")
    for i, a in enumerate(alleles):
        al[i, : len(a)] = a
    h = np.array(rows, np.int64)
    gt = np.zeros((v, s, 2), np.int8)
    for j in range(s):
        gt[:, j, 0] = (h >> j) & 1
        gt[:, j, 1] = (h >> (j + 3)) & 1
    g = n_genotypes(width)
    ad = np.full((v, s, width), -2, np.int32)
    pl = np.full((v, s, g), -2, np.int32)
    for i, a in enumerate(alleles):
        ad[i, :, : len(a)] = 10
        pl[i, :, : n_genotypes(len(a))] = np.arange(n_genotypes(len(a))) * 10
    return CallSet(
        contig=contig,
        samples=inputs.samples,
        filter_ids=FILTER_IDS,
        position=np.array(pos, np.int64),
        alleles=al,
        quality=(h % 1000).astype(np.float32) / 10,
        filters=np.stack([h % 7 != 0, h % 7 == 0], axis=1),
        info_DP=(h % 50).astype(np.int32),
        genotype=gt,
        GQ=np.full((v, s), 30, np.int32),
        DP=np.full((v, s), 20, np.int32),
        AD=ad,
        PL=pl,
    )


class FakeEngine:
    """Picklable fake engine (see :func:`_fake_calls`). ``fail_regions``: region strings
    that always fail; ``flaky_dir``: the first attempt of every region fails (a marker file
    there remembers it); ``calls_dir``: one file per call_region, to count calls."""

    name = "native"
    version = "fake-1"

    def __init__(
        self,
        fail_regions: Sequence[str] = (),
        flaky_dir: str | None = None,
        calls_dir: str | None = None,
    ) -> None:
        self.fail_regions = tuple(fail_regions)
        self.flaky_dir = flaky_dir
        self.calls_dir = calls_dir

    def check(self) -> None:
        return None

    def check_params(self, inputs: CallInputs, params: CallParams) -> None:
        return None

    def call_region(self, inputs: CallInputs, region: Region, params: CallParams) -> CallSet:
        tag = f"{region.contig}_{region.start}_{region.end}"
        if self.calls_dir is not None:
            Path(self.calls_dir, f"{tag}.{os.getpid()}.{os.urandom(4).hex()}").touch()
        if str(region) in self.fail_regions:
            raise RegionError(f"region {region}: simulated permanent failure")
        if self.flaky_dir is not None:
            marker = Path(self.flaky_dir, tag)
            if not marker.exists():
                marker.touch()
                raise OSError(f"simulated transient failure in {region}")
        return _fake_calls(inputs, region.contig, region.start, region.end)

    def call_whole(self, inputs: CallInputs, params: CallParams) -> Iterator[CallSet]:
        for name, length in inputs.contigs:
            cs = _fake_calls(inputs, name, 0, length)
            if cs.n_variants:  # contigs without calls may be skipped
                yield cs


class StallingEngine:
    """Wraps an engine (``inner``; default :class:`FakeEngine`) to make stragglers on
    purpose, for the straggler tests. The first call of each region in ``stall`` (region
    strings) sleeps ``seconds``, or until ``marker_dir/release`` exists; then it fails when
    ``fail_first``. Every later call of such a region sleeps ``later_seconds`` and fails
    when ``fail_later``. Calls are told apart by marker files in ``marker_dir`` (shared by
    threads and processes); ``marker_dir/calls`` logs one line per call."""

    def __init__(
        self,
        marker_dir: str,
        stall: Sequence[str],
        *,
        inner: object | None = None,
        seconds: float = 30.0,
        fail_first: bool = False,
        later_seconds: float = 0.0,
        fail_later: bool = False,
    ) -> None:
        self.inner = inner if inner is not None else FakeEngine()
        self.name = self.inner.name
        self.marker_dir = marker_dir
        self.stall = tuple(stall)
        self.seconds = seconds
        self.fail_first = fail_first
        self.later_seconds = later_seconds
        self.fail_later = fail_later

    @property
    def version(self) -> str | None:
        """The inner engine's (so the checkpoint keys are those of the inner engine)."""
        return getattr(self.inner, "version", None)

    def check(self) -> None:
        self.inner.check()

    def check_params(self, inputs: CallInputs, params: CallParams) -> None:
        self.inner.check_params(inputs, params)

    def prepare_params(self, inputs: CallInputs, params: CallParams) -> CallParams:
        """The inner engine's preparation of a run (the native engine's stutter table)."""
        prepare = getattr(self.inner, "prepare_params", None)
        return params if prepare is None else prepare(inputs, params)

    def release(self) -> None:
        """End every stall now."""
        Path(self.marker_dir, "release").touch()

    def _first_call(self, region: Region) -> bool:
        marker = Path(self.marker_dir, f"first-{region.contig}_{region.start}_{region.end}")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def _sleep(self, seconds: float) -> None:
        import time

        until = time.monotonic() + seconds
        while time.monotonic() < until and not Path(self.marker_dir, "release").exists():
            time.sleep(0.02)

    def call_region(self, inputs: CallInputs, region: Region, params: CallParams) -> CallSet:
        if str(region) in self.stall:
            first = self._first_call(region)
            with open(Path(self.marker_dir, "calls"), "a") as fh:
                fh.write(f"{region} {'first' if first else 'later'}\n")
            self._sleep(self.seconds if first else self.later_seconds)
            if self.fail_first if first else self.fail_later:
                raise RegionError(f"region {region}: simulated {'first' if first else 'later'} failure")
        return self.inner.call_region(inputs, region, params)

    def call_whole(self, inputs: CallInputs, params: CallParams) -> Iterator[CallSet]:
        return self.inner.call_whole(inputs, params)
