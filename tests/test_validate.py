"""Bad inputs to `varcall call`: each is refused before any work with one line naming the
file, what is wrong and the fix, exit code 2, and nothing created at the output path.

Tiny inputs are built here with pysam; real malformed files come from Debian's
``python-pysam-tests`` and ``htslib-test`` packages (skipped when absent).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pysam
import pytest
from click.testing import CliRunner

from varcall.cli.main import main
from varcall.core.errors import InputError
from varcall.core.regions import Region
from varcall.plan import validate_cluster, validate_output, validate_reference
from varcall.plan.inputs import sample_columns
from varcall.plan.validate import validate_call, validate_regions
from varcall.plan.validate_alignments import BGZF_EOF, unique_sample_names

PYSAM_DATA = Path("/usr/share/doc/python-pysam/tests/pysam_data")
HTSLIB_TEST = Path("/usr/share/htslib-test/test")
CONTIGS = (("chrA", 3000), ("chrB", 2000))
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ----------------------------------------------------------------------------- builders
def write_fasta(path: Path, contigs=CONTIGS, seed: int = 7, index: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for name, length in contigs:
            seq = "".join(rng.choice(list("ACGT"), size=length))
            fh.write(f">{name}\n")
            for i in range(0, length, 60):
                fh.write(seq[i : i + 60] + "\n")
    if index:
        pysam.faidx(str(path))
    return path


def write_bam(
    path: Path,
    contigs=CONTIGS,
    *,
    samples: tuple[str, ...] | None = ("S1",),
    so: str | None = "coordinate",
    unsorted_reads: bool = False,
    index: bool = True,
    m5: dict[str, str] | None = None,
    cram_reference: Path | None = None,
) -> Path:
    """A small BAM (or CRAM when ``cram_reference``) with a few reads per contig."""
    header: dict = {"SQ": []}
    if so is not None:
        header["HD"] = {"VN": "1.6", "SO": so}
    for name, length in contigs:
        sq = {"SN": name, "LN": length}
        if m5 and name in m5:
            sq["M5"] = m5[name]
        header["SQ"].append(sq)
    if samples:
        header["RG"] = [{"ID": f"rg{i}", "SM": s} for i, s in enumerate(samples)]
    mode = "wc" if cram_reference else "wb"
    kw = {"reference_filename": str(cram_reference)} if cram_reference else {}
    positions = [(t, p) for t in range(len(contigs)) for p in (100, 200, 300)]
    if unsorted_reads:
        positions = positions[::-1]
    with pysam.AlignmentFile(str(path), mode, header=header, **kw) as f:
        for i, (tid, pos) in enumerate(positions):
            a = pysam.AlignedSegment(f.header)
            a.query_name = f"r{i}"
            a.reference_id = tid
            a.reference_start = pos
            a.mapping_quality = 60
            a.cigarstring = "50M"
            a.query_sequence = "A" * 50
            a.query_qualities = pysam.qualitystring_to_array("I" * 50)
            if samples:
                a.set_tag("RG", "rg0")
            f.write(a)
    if index:
        pysam.index(str(path))
    return path


def contig_md5(fasta: Path, name: str) -> str:
    with pysam.FastaFile(str(fasta)) as f:
        return hashlib.md5(f.fetch(name).upper().encode()).hexdigest()


@pytest.fixture(autouse=True)
def md5_cache(tmp_path, monkeypatch) -> Path:
    """Each test keeps reference MD5s in its own folder, not in the user's cache."""
    folder = tmp_path / "md5-cache"
    monkeypatch.setenv("VARCALL_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("validate")
    write_fasta(d / "ref.fa")
    write_bam(d / "S1.bam", samples=("S1",))
    write_bam(d / "S2.bam", samples=("S2",))
    return d


def run_call(*args: str | Path):
    """`varcall call ARGS` in-process; returns click's Result (stderr kept apart)."""
    runner = CliRunner(mix_stderr=False)
    return runner.invoke(main, ["call", *map(str, args)], catch_exceptions=False)


def assert_refused(result, out: Path, file: Path | str, *phrases: str) -> None:
    """Exit 2, one line `varcall: error: <file>: ...` containing phrases, nothing at out."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("varcall: error:")]
    assert len(lines) == 1, result.stderr
    msg = lines[0]
    assert msg.startswith(f"varcall: error: {file}"), msg
    assert ";" in msg, f"no fix given: {msg}"
    for p in phrases:
        assert p in msg, f"{p!r} not in {msg!r}"
    assert not out.exists(), f"{out} was created"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not installed (apt-get install python-pysam-tests htslib-test)")
    return path


def unpack(src: Path, dest: Path) -> Path:
    """Copy a Debian test file, un-gzipping the ``.gz`` ones (Debian compresses docs)."""
    need(src)
    if src.suffix == ".gz":
        with gzip.open(src, "rb") as fi, open(dest, "wb") as fo:
            shutil.copyfileobj(fi, fo)
    else:
        shutil.copy(src, dest)
    return dest


# ----------------------------------------------------------------------------- files
def test_missing_bam(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, data / "S1.bam", tmp_path / "nope.bam")
    assert_refused(r, out, tmp_path / "nope.bam", "not found", "check the path")


def test_missing_reference(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", tmp_path / "nope.fa", "-o", out, data / "S1.bam")
    assert_refused(r, out, tmp_path / "nope.fa", "reference not found")


def test_missing_bam_list(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "--bam-list", tmp_path / "bams.txt")
    assert_refused(r, out, tmp_path / "bams.txt", "not found")


@pytest.mark.skipif(IS_ROOT, reason="root reads any file; permissions cannot be tested")
def test_unreadable_bam(data, tmp_path):
    bam = shutil.copy(data / "S1.bam", tmp_path / "S1.bam")
    shutil.copy(data / "S1.bam.bai", tmp_path / "S1.bam.bai")
    os.chmod(bam, 0)
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "not readable", "chmod")


def test_empty_bam(data, tmp_path):
    bam = tmp_path / "empty.bam"
    bam.touch()
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "file is empty")


def test_sam_text_instead_of_bam(tmp_path):
    sam = shutil.copy(need(HTSLIB_TEST / "xx#minimal.sam"), tmp_path / "minimal.sam")
    ref = shutil.copy(need(HTSLIB_TEST / "xx.fa"), tmp_path / "xx.fa")
    out = tmp_path / "out"
    r = run_call("-f", ref, "-o", out, sam)
    assert_refused(r, out, sam, "not a BAM or CRAM", "samtools sort")


def test_truncated_bam_from_pysam_tests(tmp_path):
    """ex2_truncated.bam lacks its BGZF EOF block (cut short)."""
    bam = unpack(PYSAM_DATA / "ex2_truncated.bam.gz", tmp_path / "ex2_truncated.bam")
    ref = shutil.copy(need(PYSAM_DATA / "ex1.fa"), tmp_path / "ex1.fa")
    out = tmp_path / "out"
    r = run_call("-f", ref, "-o", out, bam)
    assert_refused(r, out, bam, "truncated", "end-of-file")


def test_truncated_bam_cut(data, tmp_path):
    """A BAM cut short by a failed copy: the last 28 bytes are no longer the EOF block."""
    raw = (data / "S1.bam").read_bytes()
    assert raw.endswith(BGZF_EOF)
    bam = tmp_path / "cut.bam"
    bam.write_bytes(raw[: len(raw) - 40])
    shutil.copy(data / "S1.bam.bai", tmp_path / "cut.bam.bai")
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "truncated", "samtools quickcheck")


def test_unsorted_bam(data, tmp_path):
    bam = write_bam(tmp_path / "u.bam", so="unsorted", unsorted_reads=True, index=False)
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "not coordinate-sorted", "SO:unsorted", "samtools sort")


def test_queryname_sorted_bam(data, tmp_path):
    bam = write_bam(tmp_path / "q.bam", so="queryname", index=False)
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "not coordinate-sorted", "SO:queryname")


def test_unsorted_without_header_tag_cannot_be_indexed(data, tmp_path):
    """No @HD SO, reads out of order: --index tries samtools index, which refuses."""
    bam = write_bam(tmp_path / "u.bam", so=None, unsorted_reads=True, index=False)
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "--index", bam)
    assert_refused(r, out, bam, "samtools index failed", "not coordinate-sorted", "samtools sort")


def test_unknown_sort_order_trusts_the_index(data, tmp_path):
    bam = write_bam(tmp_path / "k.bam", so="unknown", samples=("K1",))
    assert validate_call(data / "ref.fa", [bam], tmp_path / "out").samples == ("K1",)
    nohd = write_bam(tmp_path / "n.bam", so=None, samples=("N1",))
    assert validate_call(data / "ref.fa", [nohd], tmp_path / "out").samples == ("N1",)


def test_missing_index(data, tmp_path):
    bam = write_bam(tmp_path / "noidx.bam", index=False)
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "no index", "samtools index", "--index")


def test_stale_index(data, tmp_path):
    bam = write_bam(tmp_path / "stale.bam")
    bai = Path(f"{bam}.bai")
    t = bam.stat().st_mtime
    os.utime(bai, (t - 60, t - 60))
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "older than the file", "samtools index")


def test_contig_not_in_reference_pysam_tests(data, tmp_path):
    """ex1.bam (pysam tests) is aligned to chr1/chr2, not to our reference."""
    bam = unpack(PYSAM_DATA / "ex1.bam.gz", tmp_path / "ex1.bam")
    pysam.index(str(bam))
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "contig chr1", "not in the reference", "-f")


def test_contig_length_mismatch(data, tmp_path):
    bam = write_bam(tmp_path / "len.bam", contigs=(("chrA", 3000), ("chrB", 2500)))
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "contig chrB has length 2500", "2000 in the reference")


def test_no_sq_lines(data, tmp_path):
    bam = tmp_path / "nosq.bam"
    with pysam.AlignmentFile(str(bam), "wb", header={"HD": {"VN": "1.6"}}) as f:
        a = pysam.AlignedSegment(f.header)
        a.query_name = "u1"
        a.flag = 4
        a.query_sequence = "ACGT"
        a.query_qualities = pysam.qualitystring_to_array("IIII")
        f.write(a)
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "no @SQ lines")


def test_m5_mismatch(data, tmp_path):
    good = contig_md5(data / "ref.fa", "chrA")
    bam = write_bam(tmp_path / "m5.bam", m5={"chrA": good, "chrB": "0" * 32})
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, bam)
    assert_refused(r, out, bam, "contig chrB M5", "differs")


def test_reference_md5_cached_between_runs(data, tmp_path, md5_cache, monkeypatch):
    ref = shutil.copy(data / "ref.fa", tmp_path / "ref.fa")
    pysam.faidx(str(ref))
    good = {n: contig_md5(ref, n) for n, _ in CONTIGS}
    bam = write_bam(tmp_path / "m5.bam", samples=("S3",), m5=good)
    validate_call(ref, [bam], tmp_path / "out")
    assert len(list(md5_cache.glob("reference-md5-*.json"))) == 1

    # the second validation does not read the reference sequence
    def no_fasta(*a, **k):
        raise AssertionError("reference sequence read again")

    monkeypatch.setattr(validate_reference.pysam, "FastaFile", no_fasta)
    validate_call(ref, [bam], tmp_path / "out")
    # a changed reference invalidates the cache (and here fails the M5 check)
    monkeypatch.undo()
    monkeypatch.setenv("VARCALL_CACHE_DIR", str(md5_cache))
    text = Path(ref).read_text().replace("\nA", "\nC", 1)
    Path(ref).write_text(text)
    os.utime(ref, (Path(ref).stat().st_mtime + 5,) * 2)
    pysam.faidx(str(ref))
    with pytest.raises(InputError, match="M5 .* differs"):
        validate_call(ref, [bam], tmp_path / "out")


def test_cram_against_another_reference(data, tmp_path):
    """A CRAM made with reference A, given reference B (same names and lengths)."""
    ref_a = write_fasta(tmp_path / "a.fa", seed=1)
    ref_b = write_fasta(tmp_path / "b.fa", seed=2)
    m5 = {n: contig_md5(ref_a, n) for n, _ in CONTIGS}
    cram = write_bam(tmp_path / "s.cram", m5=m5, cram_reference=ref_a)
    out = tmp_path / "out"
    r = run_call("-f", ref_b, "-o", out, cram)
    assert_refused(r, out, cram, "CRAM was encoded against another sequence")
    # and with its own reference the CRAM passes validation
    inputs = validate_call(ref_a, [cram], out)
    assert inputs.samples == ("S1",)


def test_real_cram_with_its_reference_and_with_an_edited_one(tmp_path):
    """htslib's range.cram passes with ce.fa (the reference it was encoded against) and is
    refused, naming the contig, when one base of that contig differs."""
    cram = shutil.copy(need(HTSLIB_TEST / "range.cram"), tmp_path / "range.cram")
    shutil.copy(need(HTSLIB_TEST / "range.cram.crai"), tmp_path / "range.cram.crai")
    ref = shutil.copy(need(HTSLIB_TEST / "ce.fa"), tmp_path / "ce.fa")
    inputs = validate_call(ref, [cram], tmp_path / "out")
    assert inputs.samples == ("ERS225193",)
    lines = Path(ref).read_text().splitlines()
    i = lines.index(">CHROMOSOME_II") + 1
    lines[i] = ("C" if lines[i][0] != "C" else "G") + lines[i][1:]
    edited = tmp_path / "edited.fa"
    edited.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    r = run_call("-f", edited, "-o", out, cram)
    assert_refused(r, out, cram, "contig CHROMOSOME_II M5", "CRAM was encoded against")


def test_htslib_stays_quiet_while_files_are_checked(data, tmp_path):
    """htslib writes to the process' stderr itself (``[E::cram_index_load]``, and
    ``[E::sam_index]`` naming a read): in a real process, one line of varcall's only."""
    import subprocess
    import sys

    ref_a = write_fasta(tmp_path / "a.fa", seed=1)
    m5 = {n: contig_md5(ref_a, n) for n, _ in CONTIGS}
    cram = write_bam(tmp_path / "s.cram", m5=m5, cram_reference=ref_a, index=False)
    unsorted = write_bam(tmp_path / "u.bam", so=None, unsorted_reads=True, index=False)
    for ref, args, phrase in (
        (ref_a, [str(cram)], "no index"),
        (data / "ref.fa", ["--index", str(unsorted)], "samtools index failed"),
    ):
        cmd = [sys.executable, "-c", "from varcall.cli.main import entry; entry()", "call",
               "-f", str(ref), "-o", str(tmp_path / "out"), *args]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("varcall: error: "), r.stderr
        assert phrase in r.stderr


@pytest.mark.parametrize(("bam_of", "index_of"), [(0, 1), (1, 0)])
def test_another_bams_index_is_refused_or_rebuilt(small_cohort, tmp_path, bam_of, index_of):
    """A newer index of another BAM of the same reference beside a BAM: refused (it would
    send fetches to other reads), rebuilt with --index."""
    bams = sorted(small_cohort.glob("*.bam"))
    bam = Path(shutil.copy(bams[bam_of], tmp_path / "x.bam"))
    index = Path(shutil.copy(f"{bams[index_of]}.bai", tmp_path / "x.bam.bai"))
    os.utime(index, (bam.stat().st_mtime + 5,) * 2)
    out = tmp_path / "out"
    ref = small_cohort / "reference.fa"
    r = run_call("-f", ref, "-o", out, bam)
    assert_refused(r, out, bam, "index x.bam.bai does not belong to this file", "--index")
    from varcall.plan.index_check import index_mismatch

    validate_call(ref, [bam], out, build_index=True)
    with pysam.AlignmentFile(str(bam)) as f:
        assert index_mismatch(bam, index, list(f.lengths)) is None  # its own index now


def test_own_indexes_pass_the_match_check(small_cohort):
    from varcall.plan.index_check import index_mismatch

    for bam in sorted(small_cohort.glob("*.bam")):
        with pysam.AlignmentFile(str(bam)) as f:
            lengths = list(f.lengths)
        assert index_mismatch(bam, Path(f"{bam}.bai"), lengths) is None


def test_read_group_without_sample(data, tmp_path):
    bam = write_bam(tmp_path / "nosm.bam", samples=("S1",))
    header = pysam.AlignmentFile(str(bam)).header.to_dict()
    header["RG"] = [{"ID": "rg0", "LB": "lib"}]
    fixed = tmp_path / "nosm2.bam"
    with (
        pysam.AlignmentFile(str(bam)) as fi,
        pysam.AlignmentFile(str(fixed), "wb", header=header) as fo,
    ):
        for a in fi:
            fo.write(a)
    pysam.index(str(fixed))
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, fixed)
    assert_refused(r, out, fixed, "read group rg0 has no SM", "addreplacerg")


# ----------------------------------------------------------------------------- reference
def test_reference_not_fasta(data, tmp_path):
    ref = tmp_path / "ref.txt"
    ref.write_text("this is not a fasta\n")
    out = tmp_path / "out"
    r = run_call("-f", ref, "-o", out, data / "S1.bam")
    assert_refused(r, out, ref, "not a FASTA file")


def test_reference_plain_gzip_pysam_tests(data, tmp_path):
    """faidx_ex1.fa.gz is gzip (not bgzip) compressed: htslib cannot index it."""
    ref = shutil.copy(need(PYSAM_DATA / "faidx_ex1.fa.gz"), tmp_path / "ref.fa.gz")
    out = tmp_path / "out"
    r = run_call("-f", ref, "-o", out, data / "S1.bam")
    assert_refused(r, out, ref, "gzip-compressed", "bgzip")


def test_reference_bad_fai(data, tmp_path):
    ref = shutil.copy(data / "ref.fa", tmp_path / "ref.fa")
    Path(f"{ref}.fai").write_text("chrA\tthree thousand\n")
    out = tmp_path / "out"
    r = run_call("-f", ref, "-o", out, data / "S1.bam")
    assert_refused(r, out, Path(f"{ref}.fai"), "not a faidx line", "samtools faidx")


@pytest.mark.skipif(IS_ROOT, reason="root writes anywhere; a read-only folder cannot be made")
def test_reference_unindexed_in_read_only_folder(data, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ref = shutil.copy(data / "ref.fa", ro / "ref.fa")
    os.chmod(ro, 0o555)
    try:
        out = tmp_path / "out"
        r = run_call("-f", ref, "-o", out, data / "S1.bam")
        assert_refused(r, out, ref, ".fai is missing", "samtools faidx")
    finally:
        os.chmod(ro, 0o755)


def test_reference_index_built_when_missing(data, tmp_path):
    ref = shutil.copy(data / "ref.fa", tmp_path / "ref.fa")
    inputs = validate_call(ref, [data / "S1.bam"], tmp_path / "out")
    assert Path(f"{ref}.fai").is_file()
    assert inputs.contigs == CONTIGS
    assert not (tmp_path / "out").exists()


def test_stale_reference_index_rebuilt(data, tmp_path):
    ref = shutil.copy(data / "ref.fa", tmp_path / "ref.fa")
    fai = Path(f"{ref}.fai")
    fai.write_text("chrA\t3000\t6\t60\t61\n")  # an old index missing chrB
    t = Path(ref).stat().st_mtime
    os.utime(fai, (t - 60, t - 60))
    inputs = validate_call(ref, [data / "S1.bam"], tmp_path / "out")
    assert inputs.contigs == CONTIGS
    assert fai.stat().st_mtime >= Path(ref).stat().st_mtime


def test_bgzip_reference_accepted(data, tmp_path):
    ref = tmp_path / "ref.fa.gz"
    pysam.tabix_compress(str(data / "ref.fa"), str(ref))
    inputs = validate_call(ref, [data / "S1.bam"], tmp_path / "out")
    assert inputs.contigs == CONTIGS
    assert Path(f"{ref}.gzi").is_file()


# ----------------------------------------------------------------------------- samples
def test_duplicate_sample_names(data, tmp_path):
    dup = write_bam(tmp_path / "S1copy.bam", samples=("S1",))
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, data / "S1.bam", dup)
    assert_refused(r, out, dup, "sample S1 is also in", "--rename-duplicate-samples")


def test_same_file_twice(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, data / "S1.bam", data / "S1.bam")
    assert_refused(r, out, data / "S1.bam", "given twice")


def test_rename_duplicate_samples(data, tmp_path):
    dup = write_bam(tmp_path / "S1copy.bam", samples=("S1",))
    dup2 = write_bam(tmp_path / "S1copy2.bam", samples=("S1", "S1.2"))
    inputs = validate_call(
        data / "ref.fa",
        [data / "S1.bam", dup, dup2, data / "S2.bam"],
        tmp_path / "out",
        rename_duplicate_samples=True,
    )
    # S1.2 is a real sample name of the third file, so the renamed copies skip it
    assert inputs.samples == ("S1", "S1.3", "S1.4", "S1.2", "S2")
    cols = sample_columns(inputs)
    assert cols == ({"S1": 0}, {"S1": 1}, {"S1": 2, "S1.2": 3}, {"S2": 4})


def test_renamed_duplicates_keep_their_reads_apart(data, tmp_path):
    """With renamed duplicates, each file's reads go to its own column (not by name)."""
    from varcall.engines.native.reads import fetch_reads

    dup = tmp_path / "copy.bam"
    shutil.copy(data / "S1.bam", dup)
    shutil.copy(data / "S1.bam.bai", f"{dup}.bai")
    inputs = validate_call(
        data / "ref.fa", [data / "S1.bam", dup, data / "S2.bam"], tmp_path / "out",
        rename_duplicate_samples=True,
    )  # fmt: skip
    assert inputs.samples == ("S1", "S1.2", "S2")
    cols = sample_columns(inputs)
    assert cols == ({"S1": 0}, {"S1": 1}, {"S2": 2})
    for fast in (False, True):
        batch = fetch_reads(
            inputs.bams, inputs.reference, cols, "chrA", 0, 3000,
            min_mapq=0, include_supplementary=False, fast=fast,
        )  # fmt: skip
        assert np.bincount(batch.sample, minlength=3).tolist() == [3, 3, 3]
    # unique names map by name, whatever the order of inputs.samples
    swapped = dataclasses.replace(inputs, bams=inputs.bams[::2], samples=("S2", "S1"))
    assert sample_columns(swapped) == ({"S1": 1}, {"S2": 0})


def test_rename_refused_for_external_engines(data, tmp_path):
    dup = tmp_path / "copy.bam"
    shutil.copy(data / "S1.bam", dup)
    shutil.copy(data / "S1.bam.bai", f"{dup}.bai")
    out = tmp_path / "out"
    r = run_call(
        "-f", data / "ref.fa", "-o", out, "--rename-duplicate-samples", "--engine", "bcftools",
        data / "S1.bam", dup,
    )  # fmt: skip
    assert_refused(r, out, "--engine bcftools", "cannot rename duplicate sample names")


def write_snv_bam(path: Path, fasta: Path, sample: str, alt_every: int) -> Path:
    """20 reads of 60 bp (qualities 40) over chrA:471-560 (1-based), every ``alt_every``-th
    read carrying the other base at chrA:501; 0 for none."""
    with pysam.FastaFile(str(fasta)) as fa:
        ref = fa.fetch("chrA")
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": n, "LN": ln} for n, ln in CONTIGS],
        "RG": [{"ID": "rg0", "SM": sample}],
    }
    with pysam.AlignmentFile(str(path), "wb", header=header) as f:
        for i in range(20):
            start = 470 + i
            seq = list(ref[start : start + 60])
            if alt_every and i % alt_every == 0:
                seq[500 - start] = "C" if seq[500 - start] != "C" else "G"
            a = pysam.AlignedSegment(f.header)
            a.query_name, a.reference_id, a.reference_start = f"q{i}", 0, start
            a.mapping_quality, a.cigarstring = 60, "60M"
            a.query_sequence = "".join(seq)
            a.query_qualities = pysam.qualitystring_to_array("I" * 60)
            a.set_tag("RG", "rg0")
            f.write(a)
    pysam.index(str(path))
    return path


def test_rename_duplicates_end_to_end_native(data, tmp_path):
    """Two copies of one BAM under --rename-duplicate-samples: identical columns, and the
    third sample keeps its own reads."""
    (tmp_path / "a").mkdir()
    het = write_snv_bam(tmp_path / "het.bam", data / "ref.fa", "S1", alt_every=2)
    dup = write_snv_bam(tmp_path / "a" / "het.bam", data / "ref.fa", "S1", alt_every=2)
    hom_ref = write_snv_bam(tmp_path / "ref.bam", data / "ref.fa", "S2", alt_every=0)
    out = tmp_path / "out"
    r = run_call(
        "-f", data / "ref.fa", "-o", out, "--single-process", "--no-progress",
        "--rename-duplicate-samples", het, dup, hom_ref,
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    with pysam.VariantFile(str(out / "calls.vcf.gz")) as vf:
        assert list(vf.header.samples) == ["S1", "S1.2", "S2"]
        recs = list(vf)
    assert [rec.pos for rec in recs] == [501]
    gts = [recs[0].samples[s]["GT"] for s in ("S1", "S1.2", "S2")]
    assert gts == [(0, 1), (0, 1), (0, 0)]
    assert [recs[0].samples[s]["DP"] for s in ("S1", "S1.2", "S2")] == [20, 20, 20]


def test_unique_sample_names_deterministic():
    per_file = [("a.bam", ["X"]), ("b.bam", ["X"]), ("c.bam", ["X", "Y"])]
    assert unique_sample_names(per_file, rename=True) == ["X", "X.2", "X.3", "Y"]
    with pytest.raises(InputError, match="b.bam: sample X is also in a.bam"):
        unique_sample_names(per_file)


# ----------------------------------------------------------------------------- regions
def test_region_unknown_contig(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "-r", "chrZ:1-100", data / "S1.bam")
    assert_refused(r, out, "region 'chrZ:1-100'", "'chrZ' not in the reference", "CHR:START-END")


def test_region_past_contig_end(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "-r", "chrB:1500-2500", data / "S1.bam")
    assert_refused(r, out, "region 'chrB:1500-2500'", "past the end of chrB (2000 bp)")


def test_region_malformed(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "-r", "chrA:ten-20", data / "S1.bam")
    assert_refused(r, out, "region 'chrA:ten-20'", "not numbers")


def test_region_reversed(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "-r", "chrA:500-100", data / "S1.bam")
    assert_refused(r, out, "region 'chrA:500-100'", "empty or negative")


def test_bed_unknown_contig(data, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("chrA\t0\t100\nchr9\t10\t20\n")
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "--regions", bed, data / "S1.bam")
    assert_refused(r, out, f"{bed}:2", "contig 'chr9' not in the reference")


def test_bed_past_end_and_bad_lines(data, tmp_path):
    bed = tmp_path / "r.bed"
    bed.write_text("track name=x\nchrA\t0\t3001\n")
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "--regions", bed, data / "S1.bam")
    assert_refused(r, out, f"{bed}:2", "beyond the end of chrA")
    bed.write_text("chrA\t1e3\t2000\n")
    r = run_call("-f", data / "ref.fa", "-o", out, "--regions", bed, data / "S1.bam")
    assert_refused(r, out, f"{bed}:1", "not integers")
    bed.write_text("chrA 100\n")
    r = run_call("-f", data / "ref.fa", "-o", out, "--regions", bed, data / "S1.bam")
    assert_refused(r, out, f"{bed}:1", "expected 3 columns")


@pytest.mark.parametrize("text", ["", "\n\n", "track name=x\n# only comments\nbrowser x\n"])
def test_bed_without_intervals_is_refused_not_the_whole_genome(data, tmp_path, text):
    bed = tmp_path / "r.bed"
    bed.write_text(text)
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "--regions", bed, data / "S1.bam")
    assert_refused(r, out, bed, "no intervals")


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--min-qual", "nan"), "not a number"),
        (("--max-fs", "nan"), "not a number"),
        (("--stutter-table", ",".join(["nan"] + ["0.1"] * 25)), "number 1 is not finite"),
        (("--stutter-table", ",".join(["0.1"] * 24 + ["inf", "0.1"])), "number 25 is not finite"),
        (("--stutter-table", ",".join(["0.1"] * 25 + ["1.5"])), "must lie in [0, 1]"),
        (("--stutter-table", "0.1,0.2"), "2 numbers given"),
    ],
)
def test_numbers_that_would_change_calls_silently_are_refused(data, tmp_path, args, phrase):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, *args, data / "S1.bam")
    assert_refused(r, out, args[0], phrase)


def test_bed_missing(data, tmp_path):
    out = tmp_path / "out"
    bed = tmp_path / "nope.bed"
    r = run_call("-f", data / "ref.fa", "-o", out, "--regions", bed, data / "S1.bam")
    assert_refused(r, out, bed, "not found")


def test_bed_from_pysam_tests_names_unknown_contigs(data, tmp_path):
    """pysam's ex1.bed is a valid BED for chr1/chr2, contigs our reference lacks."""
    bed = shutil.copy(need(PYSAM_DATA / "ex1.bed"), tmp_path / "ex1.bed")
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "--regions", bed, data / "S1.bam")
    assert_refused(r, out, f"{bed}:1", "not in the reference")


def test_validate_regions():
    got = validate_regions(["chrA", "chrA:1,001-2,000", "chrB:1500"], None, CONTIGS)
    assert got == [Region("chrA", 0, 3000), Region("chrA", 1000, 2000), Region("chrB", 1499, 2000)]
    weird = (("HLA-A*01:01", 500),)
    assert validate_regions(["HLA-A*01:01", "HLA-A*01:01:10-20"], None, weird) == [
        Region("HLA-A*01:01", 0, 500),
        Region("HLA-A*01:01", 9, 20),
    ]
    with pytest.raises(InputError, match="past the end"):
        validate_regions(["HLA-A*01:01:10-501"], None, weird)


# ----------------------------------------------------------------------------- output
def test_output_exists(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = run_call("-f", data / "ref.fa", "-o", out, data / "S1.bam")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"varcall: error: {out}: output folder exists; pass --overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_output_is_a_file(data, tmp_path):
    out = tmp_path / "out"
    out.write_text("x")
    r = run_call("-f", data / "ref.fa", "-o", out, "--overwrite", data / "S1.bam")
    assert r.exit_code == 2
    assert f"'{out}' is a file" in r.stderr  # click's own check of -o
    assert out.read_text() == "x"
    with pytest.raises(InputError, match="exists and is not a folder"):
        validate_call(data / "ref.fa", [data / "S1.bam"], out, overwrite=True)


def test_overwrite_and_resume_together(data, tmp_path):
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, "--overwrite", "--resume", data / "S1.bam")
    assert_refused(r, out, out, "--overwrite and --resume both given")


def test_output_under_a_file(data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, data / "S1.bam")
    assert r.exit_code == 2
    assert f"varcall: error: {out}: {blocker} is a file" in r.stderr


def test_no_room_for_output(data, tmp_path, monkeypatch):
    real = shutil.disk_usage

    def tiny(path):
        u = real(path)
        return type(u)(u.total, u.total - 1024, 1024)

    monkeypatch.setattr(validate_output.shutil, "disk_usage", tiny)
    out = tmp_path / "out"
    r = run_call("-f", data / "ref.fa", "-o", out, data / "S1.bam")
    assert_refused(r, out, out, "MiB free", "free some space")


def test_tls_file_missing(data, tmp_path):
    out = tmp_path / "out"
    ca = tmp_path / "ca.pem"
    r = run_call(
        "-f", data / "ref.fa", "-o", out, "--scheduler", "tls://127.0.0.1:8786",
        "--tls-ca", ca, data / "S1.bam",
    )  # fmt: skip
    assert_refused(r, out, ca, "TLS file not found", "--tls-ca")


def test_scheduler_unreachable(data, tmp_path):
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    address = f"tcp://127.0.0.1:{port}"
    r = run_call("-f", data / "ref.fa", "-o", out, "--scheduler", address, data / "S1.bam")
    assert_refused(r, out, address, "cannot reach the Dask scheduler")
    r = run_call("-f", data / "ref.fa", "-o", out, "--scheduler", "tcp://host", data / "S1.bam")
    assert_refused(r, out, "--scheduler tcp://host", "give tcp://HOST:PORT")


@pytest.mark.parametrize("kind, command", [("slurm", "sbatch"), ("pbs", "qsub"), ("lsf", "bsub")])
def test_batch_system_without_submit_command(data, tmp_path, monkeypatch, kind, command):
    monkeypatch.setattr(validate_cluster.shutil, "which", lambda cmd: None)
    out = tmp_path / "out"
    r = run_call(
        "-f", data / "ref.fa", "-o", out, "--cluster", kind, "--cores", "1",
        "--memory", "1GB", data / "S1.bam",
    )  # fmt: skip
    assert_refused(r, out, f"--cluster {kind}", f"{command} ", "on PATH")


# ----------------------------------------------------------------------------- good inputs
def test_index_option_builds_missing_and_stale(data, tmp_path):
    bam = write_bam(tmp_path / "n.bam", index=False)
    stale = write_bam(tmp_path / "s.bam", samples=("S9",))
    t = stale.stat().st_mtime
    os.utime(f"{stale}.bai", (t - 60, t - 60))
    inputs = validate_call(data / "ref.fa", [bam, stale], tmp_path / "out", build_index=True)
    assert Path(f"{bam}.bai").is_file()
    assert Path(f"{stale}.bai").stat().st_mtime >= stale.stat().st_mtime
    assert inputs.samples == ("S1", "S9")
    assert inputs.bams == (str(bam.resolve()), str(stale.resolve()))
    assert not (tmp_path / "out").exists()


def test_valid_inputs(data, tmp_path):
    good = {n: contig_md5(data / "ref.fa", n) for n, _ in CONTIGS}
    m5bam = write_bam(tmp_path / "m5.bam", samples=("S3",), m5=good)
    inputs = validate_call(
        data / "ref.fa",
        [data / "S1.bam", data / "S2.bam", m5bam],
        tmp_path / "out",
        region_strings=["chrA:1-100"],
    )
    assert inputs.samples == ("S1", "S2", "S3")
    assert inputs.contigs == CONTIGS
    assert inputs.reference == str((data / "ref.fa").resolve())


def test_corrupt_middle_block_passes_header_checks_but_cannot_be_indexed(tmp_path):
    """pysam's ex2_corrupt.bam has intact header and EOF block but a damaged block inside:
    header checks cannot see it (no reads are read); building its index reads it all and
    fails, which --index reports naming the file."""
    bam = unpack(PYSAM_DATA / "ex2_corrupt.bam.gz", tmp_path / "ex2_corrupt.bam")
    ref = shutil.copy(need(PYSAM_DATA / "ex1.fa"), tmp_path / "ex1.fa")
    with pytest.raises(InputError, match="no index"):
        validate_call(ref, [bam], tmp_path / "out")
    with pytest.raises(InputError, match="ex2_corrupt.bam: samtools index failed"):
        validate_call(ref, [bam], tmp_path / "out", build_index=True)


def test_engine_args_refused_before_anything_is_created(small_cohort, tmp_path):
    """A bad --engine-args is an input error (exit 2) before any task runs."""
    from click.testing import CliRunner

    from varcall.cli.main import main

    out = tmp_path / "run"
    for engine, args in (("native", "-x"), ("bcftools", "-r chr1")):
        result = CliRunner().invoke(
            main,
            [
                "call",
                "-f",
                str(small_cohort / "reference.fa"),
                "--bam-list",
                str(small_cohort / "bams.txt"),
                "-o",
                str(out),
                "--engine",
                engine,
                "--engine-args",
                args,
                "--workers",
                "1",
                "--no-progress",
            ],
        )
        assert result.exit_code == 2, result.output
        assert "--engine-args" in result.output or "engine" in result.output
        assert not out.exists()


def test_ploidy_contig_must_exist(small_cohort, tmp_path):
    from click.testing import CliRunner

    from varcall.cli.main import main

    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "call",
            "--single-process",
            "-f",
            str(small_cohort / "reference.fa"),
            "--bam-list",
            str(small_cohort / "bams.txt"),
            "-o",
            str(out),
            "--ploidy-contig",
            "chrNope=1",
            "--no-progress",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "chrNope" in result.output
    assert not out.exists()
