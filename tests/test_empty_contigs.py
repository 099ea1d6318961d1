"""Contigs without reads in any index cost nothing beyond their (empty) place in the outputs.

:func:`varcall.plan.empty.contigs_without_reads` must never call a contig empty that has a
record (checked against a scan of every record of the file, for BAI, CSI and CRAI); a run
sets such contigs' regions apart (no task, no checkpoint: :mod:`varcall.run.empty`), and its
outputs are those of a run that called them; the called regions are planned and packed as
for the reference without those contigs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_identity import assert_same_output, bams_of

from varcall.core.params import CallParams
from varcall.core.regions import Region
from varcall.plan.empty import contigs_with_reads_in_file, contigs_without_reads
from varcall.plan.inputs import resolve_inputs
from varcall.run import prepare as prepare_mod
from varcall.run.clusters import ClusterSpec, open_client
from varcall.run.pipeline import run_call
from varcall.run.prepare import PlanOptions, RunFlags, prepare

EXTRA = ("extraA", "extraB", "extraC")


# ----------------------------------------------------------------------------- the index test
def _write(path: Path, contigs: dict[str, int], reads: list[tuple[str | None, int, int]], fmt: str,
           reference: Path | None = None) -> Path:  # fmt: skip
    """An indexed BAM (bai/csi) or CRAM of ``reads``: (contig or None, 0-based pos,
    flag); unmapped reads (flag 0x4) keep their contig and position (placed) or have none."""
    header = {"HD": {"VN": "1.6", "SO": "coordinate"},
              "SQ": [{"SN": n, "LN": ln} for n, ln in contigs.items()]}  # fmt: skip
    tid = {n: i for i, n in enumerate(contigs)}
    unsorted = path.with_name(path.name + ".u.bam")
    with pysam.AlignmentFile(str(unsorted), "wb", header=header) as out:
        for k, (contig, pos, flag) in enumerate(reads):
            a = pysam.AlignedSegment(out.header)
            a.query_name = f"r{k}"
            a.flag = flag
            a.query_sequence = "A" * 30
            a.query_qualities = pysam.qualitystring_to_array("I" * 30)
            if contig is None:
                a.reference_id, a.reference_start = -1, -1
            else:
                a.reference_id, a.reference_start = tid[contig], pos
                if not flag & 4:
                    a.cigarstring, a.mapping_quality = "30M", 60
            out.write(a)
    if fmt == "cram":
        pysam.sort("-O", "cram", "--reference", str(reference), "-o", str(path), str(unsorted))
        pysam.index(str(path))
    else:
        pysam.sort("-o", str(path), str(unsorted))
        pysam.index(*(["-c"] if fmt == "csi" else []), str(path))
    unsorted.unlink()
    return path


def _scanned(path: Path, reference: Path) -> set[str]:
    """The contigs some record of the file is placed on, from a scan of every record."""
    with pysam.AlignmentFile(str(path), reference_filename=str(reference)) as f:
        return {r.reference_name for r in f.fetch(until_eof=True) if r.reference_id >= 0}


_CONTIGS = {"a": 400, "b": 300, "c": 500, "d": 200}
_read = st.tuples(
    st.sampled_from(["a", "b", "c", "d", None]),
    st.integers(0, 150),
    st.sampled_from([0, 4, 16, 1 | 2 | 64, 1 | 4 | 128]),
)


@pytest.fixture(scope="module")
def small_ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ref = tmp_path_factory.mktemp("ref") / "ref.fa"
    rng = np.random.default_rng(3)
    with open(ref, "w") as fh:
        for n, ln in _CONTIGS.items():
            fh.write(f">{n}\n{''.join(rng.choice(list('ACGT'), ln))}\n")
    pysam.faidx(str(ref))
    return ref


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(reads=st.lists(_read, max_size=12), fmt=st.sampled_from(["bai", "csi", "cram"]))
def test_index_finds_exactly_the_contigs_with_records(
    reads: list, fmt: str, small_ref: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Unmapped-but-placed reads count (their contig has a record), unplaced ones do not;
    the index's answer is the scan's, for BAI, CSI and CRAI."""
    reads = [(c, p, f if c is not None else 4) for c, p, f in reads]  # unplaced: unmapped
    path = tmp_path_factory.mktemp("aln") / ("x.cram" if fmt == "cram" else "x.bam")
    _write(path, _CONTIGS, reads, fmt, small_ref)
    found = contigs_with_reads_in_file(path, str(small_ref))
    assert found == _scanned(path, small_ref)


def test_contig_missing_from_a_header_has_no_reads_there(small_ref: Path, tmp_path: Path) -> None:
    """A file whose header lacks a contig has no read on it; one file with a read is enough
    to call a contig; a file without an index makes nothing known empty."""
    one = _write(tmp_path / "one.bam", {"a": 400, "b": 300}, [("a", 5, 0)], "bai")
    two = _write(tmp_path / "two.bam", dict(_CONTIGS), [("b", 5, 4), ("c", 9, 0)], "bai")
    inputs = resolve_inputs(small_ref, [one, two])
    assert contigs_without_reads(inputs) == {"d"}
    assert contigs_without_reads(inputs, ["a", "d"]) == {"d"}
    Path(f"{two}.bai").unlink()
    assert contigs_without_reads(inputs) == frozenset()


# ----------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def extended(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small cohort's reference with empty contigs before, between and after its own."""
    root = tmp_path_factory.mktemp("extended")
    seqs = {}
    with pysam.FastaFile(str(small_cohort / "reference.fa")) as fa:
        for name in fa.references:
            seqs[name] = fa.fetch(name)
    rng = np.random.default_rng(5)
    names = list(seqs)
    order = [names[0], EXTRA[0], *names[1:], *EXTRA[1:]]
    with open(root / "reference.fa", "w") as fh:
        for name in order:
            seq = seqs.get(name) or "".join(rng.choice(list("ACGT"), 1500))
            fh.write(f">{name}\n{seq}\n")
    pysam.faidx(str(root / "reference.fa"))
    return root / "reference.fa"


@pytest.fixture(scope="module")
def thread2():
    with open_client(ClusterSpec(workers=2, processes=False)) as client:
        yield client


def _units(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["units"]


def test_empty_contigs_same_outputs_no_tasks(
    small_cohort: Path, extended: Path, thread2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bams = bams_of(small_cohort)
    skip = tmp_path / "skip"
    run_call(extended, bams, skip, client=thread2)
    units = _units(skip)
    empty = [u for u in units if u["empty_by_index"]]
    assert sorted(u["contig"] for u in empty) == sorted(EXTRA)
    assert all(u["key"] is None and u["n_variants"] == 0 and u["attempts"] == 0 for u in empty)
    manifest = json.loads((skip / "manifest.json").read_text())
    assert manifest["planning"]["regions_empty_by_index"] == len(EXTRA)
    called = [u for u in units if not u["empty_by_index"]]
    assert len(list((skip / "work").glob("*.npz"))) == len(called)
    # regions.bed and the units list every region, in genomic order
    bed = [ln.split("\t")[0] for ln in (skip / "regions.bed").read_text().splitlines()]
    assert bed == [u["contig"] for u in units]
    order = [ln.split("\t")[0] for ln in Path(f"{extended}.fai").read_text().splitlines()]
    assert bed == sorted(bed, key=order.index)

    # the same run calling every contig gives the same outputs
    monkeypatch.setattr(prepare_mod, "contigs_without_reads", lambda *a, **k: frozenset())
    every = tmp_path / "every"
    run_call(extended, bams, every, client=thread2)
    assert not any(u["empty_by_index"] for u in _units(every))
    assert_same_output(skip, every)
    monkeypatch.undo()

    # --resume: every called region is reused, the empty ones need nothing
    run_call(extended, bams, skip, client=thread2, resume=True)
    again = _units(skip)
    assert [u["resumed"] for u in again if not u["empty_by_index"]] == [True] * len(called)
    assert_same_output(skip, every)


def test_single_process_restriction_with_empty_contig(
    small_cohort: Path, extended: Path, tmp_path: Path
) -> None:
    bams = bams_of(small_cohort)
    out = tmp_path / "out"
    run_call(extended, bams, out, mode="single", region_strings=("chr1:1-20000", "extraB"))
    units = _units(out)
    assert [(u["contig"], u["empty_by_index"]) for u in units] == [
        ("chr1", False),
        ("extraB", True),
    ]


def test_plan_and_packs_as_without_the_empty_contigs(
    small_cohort: Path, extended: Path, thread2, tmp_path: Path
) -> None:
    """The called regions and their packs are those of the reference without the empty
    contigs, with the default plan and with a BED of many small intervals."""
    bams = bams_of(small_cohort)
    bed = tmp_path / "t.bed"
    lines = [f"chr{c}\t{s}\t{s + 300}\n" for c in (1, 2) for s in range(0, 39_000, 1000)]
    bed.write_text("".join(lines) + "".join(f"{e}\t0\t1000\n" for e in EXTRA))
    plain_bed = tmp_path / "p.bed"
    plain_bed.write_text("".join(lines))
    for plan, plain_plan in [(PlanOptions(), PlanOptions()),
                             (PlanOptions(regions_bed=bed), PlanOptions(regions_bed=plain_bed))]:  # fmt: skip
        preps = []
        for ref, p in ((extended, plan), (small_cohort / "reference.fa", plain_plan)):
            prep = prepare(
                ref, bams, tmp_path / "never", params=CallParams(),
                mode="distributed", plan=p, flags=RunFlags(), client=thread2,
            )  # fmt: skip
            preps.append(prep)
        ext, plain = preps
        assert ext.layout == plain.layout
        assert ext.packs == plain.packs
        assert sorted(r.contig for r in ext.empty_regions) == sorted(EXTRA)
        assert all(r == Region(r.contig, 0, r.end) for r in ext.empty_regions)
    assert not (tmp_path / "never").exists()


def test_all_contigs_empty(small_cohort: Path, tmp_path: Path, thread2) -> None:
    """Alignment files without any read: every unit is empty by index, the outputs exist."""
    ref = tmp_path / "ref.fa"
    shutil.copy(small_cohort / "reference.fa", ref)
    pysam.faidx(str(ref))
    with pysam.FastaFile(str(ref)) as fa:
        contigs = dict(zip(fa.references, fa.lengths))
    bam = _write(tmp_path / "none.bam", contigs, [], "bai")
    with pysam.AlignmentFile(str(bam)) as f:
        header = f.header.to_dict()
    header["RG"] = [{"ID": "x", "SM": "x"}]
    with pysam.AlignmentFile(str(tmp_path / "x.bam"), "wb", header=header):
        pass
    pysam.index(str(tmp_path / "x.bam"))
    out = tmp_path / "out"
    result = run_call(ref, [tmp_path / "x.bam"], out, client=thread2)
    assert result.n_variants == 0
    assert all(u["empty_by_index"] for u in _units(out))
    assert (out / "calls.vcf.gz").is_file()


def test_single_process_whole_genome_with_empty_contigs(
    small_cohort: Path, extended: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's whole-genome run: empty contigs get no checkpoint, same outputs; a
    resumed run needs nothing for them."""
    bams = bams_of(small_cohort)
    skip, every = tmp_path / "skip", tmp_path / "every"
    run_call(extended, bams, skip, mode="single")
    units = _units(skip)
    assert sorted(u["contig"] for u in units if u["empty_by_index"]) == sorted(EXTRA)
    assert len(list((skip / "work").glob("*.npz"))) == len(units) - len(EXTRA)
    result = run_call(extended, bams, skip, mode="single", resume=True)
    assert all(u["resumed"] or u["empty_by_index"] for u in result.manifest.to_dict()["units"])
    monkeypatch.setattr(prepare_mod, "contigs_without_reads", lambda *a, **k: frozenset())
    run_call(extended, bams, every, mode="single")
    assert_same_output(skip, every)


def test_damaged_index_tells_nothing(small_ref: Path, tmp_path: Path) -> None:
    """An index cut short or of an unknown kind: no contig is known to be empty."""
    bam = _write(tmp_path / "x.bam", dict(_CONTIGS), [("a", 5, 0), ("c", 9, 0)], "bai")
    assert contigs_with_reads_in_file(bam, str(small_ref)) == {"a", "c"}
    bai = Path(f"{bam}.bai")
    data = bai.read_bytes()
    bai.write_bytes(data[: len(data) - 40])
    assert contigs_with_reads_in_file(bam, str(small_ref)) is None
    bai.write_bytes(b"XYZ\x01" + data[4:])
    assert contigs_with_reads_in_file(bam, str(small_ref)) is None
