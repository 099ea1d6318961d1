"""Pileup on BAM files built in the test: filters, mates, indel normalisation, penalties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam
import pytest
from _bamwriter import AlignedRead, write_bam, write_fasta
from hypothesis import given, settings
from hypothesis import strategies as st

from varcall.core.errors import InputError
from varcall.engines.native.evidence import count_evidence
from varcall.engines.native.observations import site_observations
from varcall.engines.native.pileup import encode_bases
from varcall.engines.native.reads import ReadBatch, fetch_reads, mask_mate_overlaps
from varcall.engines.native.sites import Sites, find_sites
from varcall.engines.native.stutter import PRIOR_TABLE, StutterModel

# 0-based: a homopolymer AAAAAA at [60, 66), flanked by C (59) and G (66)
REF = (
    "GATTACAGCTTGCATGCCTAGGTCAGTCCAGTTGACCGTAGCTAGGCTTCAGCTAGCATC"  # 0..59
    "AAAAAA"  # 60..65
    "GTCGTACGATCGGTTCAGCATGCGTACGTTAGCCGATCGATCGGCTAGCTTAGGCATCGA"  # 66..125
    "TCGACTGACTAGCTAGGATCCGATCGTAGCTAGGCTAGCATGCTAGCTAGCATCGATCGA"  # 126..185
)
CONTIG = "chrT"


def seq_from_ref(start: int, cigar: list[tuple[str, int]], ins: str = "") -> str:
    """Read sequence matching the reference for an alignment (insertions take ``ins``)."""
    out, pos = [], start
    for op, n in cigar:
        if op in "M=X":
            out.append(REF[pos : pos + n])
            pos += n
        elif op == "I":
            out.append(ins[:n])
        elif op == "S":
            out.append("N" * n)
        elif op == "D":
            pos += n
    return "".join(out)


def cigar_text(cigar: list[tuple[str, int]]) -> str:
    return "".join(f"{n}{op}" for op, n in cigar)


class Bam:
    """Collects reads, writes a sorted, indexed BAM (and the reference) on :meth:`write`."""

    def __init__(self, folder: Path, rgs: dict[str, str] | None = None):
        self.folder = folder
        self.rgs = rgs or {"rg1": "S1"}
        self.reads: list[AlignedRead] = []

    def add(
        self,
        name: str,
        start: int,
        cigar: list[tuple[str, int]],
        seq: str | None = None,
        *,
        qual: int | list[int] = 30,
        mapq: int = 60,
        flag: int = 0,
        rg: str = "rg1",
        mate_start: int = -1,
    ) -> None:
        seq = seq if seq is not None else seq_from_ref(start, cigar)
        quals = [qual] * len(seq) if isinstance(qual, int) else list(qual)
        self.reads.append(
            AlignedRead(name, start, cigar_text(cigar), seq, quals, flag=flag, mapq=mapq, rg=rg,
                        mate_start=mate_start if mate_start >= 0 else None)
        )  # fmt: skip

    def write(self) -> tuple[str, str]:
        ref = write_fasta(self.folder / "ref.fa", {CONTIG: REF})
        bam = write_bam(self.folder / "reads.bam", {CONTIG: len(REF)}, self.rgs, self.reads)
        return str(bam), str(ref)


def run(bam: str, ref_path: str, samples=("S1",), *, min_mapq=20, min_baseq=13, supp=False):
    """The pileup stages over the whole test contig."""
    index = {s: i for i, s in enumerate(samples)}
    batch = fetch_reads(
        [bam], ref_path, index, CONTIG, 0, len(REF), min_mapq=min_mapq, include_supplementary=supp
    )
    ref = encode_bases(REF)
    mask_mate_overlaps(batch)
    ev = count_evidence(batch, ref, 0, 0, len(REF), len(samples), min_baseq)
    sites = find_sites(ev, batch, ref, 0, REF, StutterModel(PRIOR_TABLE))
    obs = site_observations(sites, batch, ref, 0, min_baseq)
    return batch, ev, sites, obs


def base_code(b: str) -> int:
    return "ACGT".index(b)


def alleles_at(sites: Sites, pos: int) -> list[tuple[str, str]]:
    k = int(np.nonzero(sites.pos == pos)[0][0])
    return sites.alleles[k]


def test_mismatch_counts_and_site(tmp_path):
    bam = Bam(tmp_path)
    for i in range(4):
        s = list(seq_from_ref(10, [("M", 40)]))
        s[20] = "T" if REF[30] != "T" else "A"  # position 30
        bam.add(f"r{i}", 10, [("M", 40)], "".join(s))
    for i in range(4):
        bam.add(f"ref{i}", 12, [("M", 40)])
    batch, ev, sites, obs = run(*bam.write())
    alt = "T" if REF[30] != "T" else "A"
    assert ev.counts[0, 30, base_code(alt)] == 4
    assert ev.counts[0, 30, base_code(REF[30])] == 4
    assert ev.depth[0, 30] == 8
    assert sites.pos.tolist() == [30]
    assert alleles_at(sites, 30) == [("R", ""), ("X", alt)]
    # penalties: base Q30, MAPQ 60 -> eps = 1e-3 + 1e-6 - 1e-9
    eps = 1e-3 + 1e-6 - 1e-9
    expect = -10 * np.log10(eps / 3) + 10 * np.log10(1 - eps)
    pens = obs.pen[obs.site == 0][:, :2]
    assert sorted(pens.max(axis=1).tolist()) == pytest.approx([expect] * 8)
    assert np.sort(obs.best[obs.site == 0]).tolist() == [0] * 4 + [1] * 4


def test_insertion_and_deletion_alleles(tmp_path):
    bam = Bam(tmp_path)
    # insertion of "TT" after position 39 (between 39 and 40), deletion of 95..97 (3 bp)
    ins_cigar = [("M", 30), ("I", 2), ("M", 30)]
    del_cigar = [("M", 20), ("D", 3), ("M", 20)]
    for i in range(3):
        bam.add(f"i{i}", 10, ins_cigar, seq_from_ref(10, ins_cigar, ins="TT"))
        bam.add(f"d{i}", 75, del_cigar)
        bam.add(f"n{i}", 20, [("M", 90)])
    batch, ev, sites, obs = run(*bam.write())
    ins_anchor = 39
    del_anchor = 94
    assert alleles_at(sites, ins_anchor)[1] == ("I", "TT")
    assert alleles_at(sites, del_anchor)[1] == ("D", REF[95:98])
    k = int(np.nonzero(sites.pos == ins_anchor)[0][0])
    assert sites.indel[k]
    # reads with the insertion prefer allele 1, reference reads allele 0
    best = obs.best[obs.site == k]
    assert (best == 1).sum() == 3 and (best == 0).sum() == 3


def test_soft_clip_bases_are_not_counted(tmp_path):
    bam = Bam(tmp_path)
    cig = [("S", 5), ("M", 30)]
    seq = "GGGGG" + REF[40:70]
    for i in range(3):
        bam.add(f"s{i}", 40, cig, seq)
    batch, ev, _, _ = run(*bam.write())
    assert batch.start.tolist() == [40, 40, 40]
    assert batch.end.tolist() == [70, 70, 70]
    assert ev.depth[0, 35:40].sum() == 0
    assert ev.depth[0, 40:70].tolist() == [3] * 30


def test_overlapping_mates_count_once_higher_quality_wins(tmp_path):
    bam = Bam(tmp_path)
    alt = "T" if REF[50] != "T" else "A"
    s1 = list(seq_from_ref(30, [("M", 40)]))
    s1[20] = alt  # position 50, quality 20 in mate 1
    q1 = [30] * 40
    q1[20] = 20
    s2 = seq_from_ref(45, [("M", 40)])  # reference at 50 with quality 35 in mate 2
    bam.add("p", 30, [("M", 40)], "".join(s1), qual=q1, flag=0x1 | 0x40, mate_start=45)
    bam.add("p", 45, [("M", 40)], s2, qual=35, flag=0x1 | 0x80, mate_start=30)
    # a pair with equal qualities: the first mate's base is kept
    s3 = list(seq_from_ref(30, [("M", 40)]))
    s3[20] = alt
    bam.add("t", 30, [("M", 40)], "".join(s3), flag=0x1 | 0x40, mate_start=45)
    bam.add("t", 45, [("M", 40)], seq_from_ref(45, [("M", 40)]), flag=0x1 | 0x80, mate_start=30)
    batch, ev, _, _ = run(*bam.write())
    assert batch.pairs.shape == (2, 2)
    # overlap [45, 70): each position counted once per pair
    assert ev.depth[0, 45:70].tolist() == [2] * 25
    assert ev.depth[0, 30:45].tolist() == [2] * 15
    assert ev.counts[0, 50, base_code(REF[50])] == 1  # pair p: mate 2 (Q35) wins
    assert ev.counts[0, 50, base_code(alt)] == 1  # pair t: tie, mate 1 wins
    # raw qualities stay untouched
    assert batch.raw_quals.min() >= 20


def test_filters_duplicate_low_mapq_secondary_qcfail_supplementary(tmp_path):
    bam = Bam(tmp_path)
    bam.add("ok", 10, [("M", 40)])
    bam.add("dup", 10, [("M", 40)], flag=0x400)
    bam.add("lowmq", 10, [("M", 40)], mapq=10)
    bam.add("sec", 10, [("M", 40)], flag=0x100)
    bam.add("qc", 10, [("M", 40)], flag=0x200)
    bam.add("supp", 10, [("M", 40)], flag=0x800)
    paths = bam.write()
    batch, ev, _, _ = run(*paths)
    assert batch.n_reads == 1
    assert ev.depth[0, 20] == 1
    batch, ev, _, _ = run(*paths, supp=True)
    assert batch.n_reads == 2
    batch, _, _, _ = run(*paths, min_mapq=0, supp=True)
    assert batch.n_reads == 3


def test_low_base_quality_not_counted(tmp_path):
    bam = Bam(tmp_path)
    q = [30] * 40
    q[5] = 10
    bam.add("r", 10, [("M", 40)], qual=q)
    _, ev, _, _ = run(*bam.write())
    assert ev.depth[0, 15] == 0 and ev.depth[0, 16] == 1
    assert ev.cover[0, 15] == 1


@pytest.mark.parametrize("kind", ["deletion", "insertion"])
def test_homopolymer_indel_placed_twice_is_one_allele(tmp_path, kind):
    # one A deleted (or inserted) in AAAAAA at [60, 66): the aligner placed it at the
    # start of the run for some reads and at its end for others
    bam = Bam(tmp_path)
    if kind == "deletion":
        left = [("M", 21), ("D", 1), ("M", 30)]  # 40..60 aligned, deletes 61
        right = [("M", 25), ("D", 1), ("M", 26)]  # 40..64 aligned, deletes 65
        for i in range(3):
            bam.add(f"l{i}", 40, left)
            bam.add(f"r{i}", 40, right)
        # read sequences agree: both are the reference with one A removed
        assert seq_from_ref(40, left) == seq_from_ref(40, right)
    else:
        left = [("M", 21), ("I", 1), ("M", 30)]  # A inserted after 60
        right = [("M", 26), ("I", 1), ("M", 25)]  # A inserted after 65 (end of run)
        for i in range(3):
            bam.add(f"l{i}", 40, left, seq_from_ref(40, left, ins="A"))
            s = seq_from_ref(40, [("M", 26)]) + "A" + REF[66:91]
            bam.add(f"r{i}", 40, right, s)
    batch, ev, sites, obs = run(*bam.write())
    assert ev.ev_pos.tolist() == [59] * 6  # anchor: the C before the run
    assert sites.pos.tolist() == [59]
    expect = ("D", "A") if kind == "deletion" else ("I", "A")
    assert sites.alleles[0] == [("R", ""), expect]
    assert sites.support[0, 1] == 6
    assert (obs.best[obs.site == 0] == 1).sum() == 6


def test_normalisation_stops_at_read_start(tmp_path):
    # reads starting inside the homopolymer cannot shift their deletion before their own
    # first aligned base: the placement is ambiguous and gives no event (and no site)
    bam = Bam(tmp_path)
    cig = [("M", 3), ("D", 1), ("M", 30)]  # aligned from 62, deletes 65
    for i in range(3):
        bam.add(f"x{i}", 62, cig)
    # a read starting at the run's second base whose deletion is not in the run (at 70):
    # normalisation stops on sequence, before reaching the read start
    cig2 = [("M", 9), ("D", 1), ("M", 30)]  # aligned from 61, deletes 70
    for i in range(2):
        bam.add(f"y{i}", 61, cig2)
    _, ev, sites, _ = run(*bam.write())
    assert ev.ev_pos.tolist() == [69, 69]
    assert sites.pos.tolist() == [69]


def test_read_groups_map_to_samples(tmp_path):
    bam = Bam(tmp_path, rgs={"a": "S1", "b": "S2"})
    for i in range(2):
        bam.add(f"a{i}", 10, [("M", 30)], rg="a")
    for i in range(3):
        bam.add(f"b{i}", 10, [("M", 30)], rg="b")
    paths = bam.write()
    batch, ev, _, _ = run(*paths, samples=("S2", "S1"))
    assert ev.depth[:, 20].tolist() == [3, 2]
    with pytest.raises(InputError, match="not among the run's samples"):
        run(*paths, samples=("S1",))


def test_readbatch_concatenate_shifts_offsets(tmp_path):
    bam = Bam(tmp_path)
    bam.add("a", 10, [("M", 30)])
    bam.add(
        "b", 20, [("M", 10), ("I", 2), ("M", 10)], seq_from_ref(20, [("M", 10)]) + "GG" + REF[30:40]
    )
    b1, _, _, _ = run(*bam.write())
    both = ReadBatch.concatenate([b1, b1])
    assert both.n_reads == 4
    assert both.qoff.tolist() == [0, 30, 52, 82]
    assert both.coff.tolist() == [0, 1, 4, 5]
    assert both.cn.tolist() == [1, 3, 1, 3]


def assert_same_batch(a: ReadBatch, b: ReadBatch) -> None:
    import dataclasses

    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype, f.name
        assert np.array_equal(x, y), f.name


def mixed_bam(folder: Path) -> Bam:
    """Two read groups, pairs (overlapping and not), filtered reads, indels, clips."""
    bam = Bam(folder, rgs={"a": "S1", "b": "S2"})
    for i in range(6):
        rg = "a" if i % 2 else "b"
        bam.add(f"p{i}", 5 + i, [("M", 40)], flag=0x1 | 0x40, mate_start=30 + i, rg=rg)
        bam.add(f"p{i}", 30 + i, [("M", 40)], flag=0x1 | 0x80, mate_start=5 + i, rg=rg)
        bam.add(f"same{i}", 50, [("M", 30)], flag=0x1 | 0x80, mate_start=50, rg=rg)
        bam.add(f"same{i}", 50, [("M", 30)], flag=0x1 | 0x40, mate_start=50, rg=rg)
        bam.add(f"far{i}", 20, [("M", 30)], flag=0x1 | 0x40, mate_start=150, rg=rg)
    cig = [("S", 3), ("M", 20), ("I", 2), ("M", 20), ("D", 2), ("M", 10)]
    bam.add("ind", 70, cig, "NNN" + seq_from_ref(70, cig[1:], ins="GG"), rg="a")
    bam.add("dup", 10, [("M", 40)], flag=0x400, rg="a")
    bam.add("lowmq", 10, [("M", 40)], mapq=5, rg="b")
    return bam


@pytest.mark.parametrize(
    "window", [(0, len(REF)), (0, 31), (31, 60), (60, 120), (100, 186), (150, 186)]
)
def test_bam_decoder_matches_pysam(tmp_path, window):
    bam, ref = mixed_bam(tmp_path).write()
    index = {"S1": 0, "S2": 1}
    kw = dict(min_mapq=20, include_supplementary=False)
    fast = fetch_reads([bam], ref, index, CONTIG, *window, **kw)
    slow = fetch_reads([bam], ref, index, CONTIG, *window, fast=False, **kw)
    assert (fast.n_reads > 0) == (window[0] < 150)  # nothing aligned past 122
    assert_same_batch(fast, slow)
    if window == (0, len(REF)):
        assert fast.pairs.shape[0] == 12  # 6 overlapping + 6 same-start pairs
        # each pair is (first mate, second mate)
        assert (fast.flag[fast.pairs[:, 0]] & 0x40).all()


def test_cram_goes_through_pysam(tmp_path):
    bam, ref = mixed_bam(tmp_path).write()
    cram = str(tmp_path / "reads.cram")
    pysam.view("-C", "-T", ref, "-o", cram, bam, catch_stdout=False)
    pysam.index(cram)
    index = {"S1": 0, "S2": 1}
    kw = dict(min_mapq=20, include_supplementary=False)
    a = fetch_reads([bam], ref, index, CONTIG, 0, len(REF), **kw)
    b = fetch_reads([cram], ref, index, CONTIG, 0, len(REF), **kw)
    assert_same_batch(a, b)


@pytest.mark.parametrize("fast", [True, False])
def test_read_group_without_header_line(tmp_path, fast):
    bam = Bam(tmp_path, rgs={"a": "S1", "b": "S2"})
    bam.add("x", 10, [("M", 30)], rg="a")
    bam.add("y", 12, [("M", 30)], rg="zz")
    b, ref = bam.write()
    with pytest.raises(InputError, match="without an @RG SM header line"):
        fetch_reads(
            [b], ref, {"S1": 0, "S2": 1}, CONTIG, 0, len(REF), min_mapq=20,
            include_supplementary=False, fast=fast,
        )  # fmt: skip


def test_bam_decoder_matches_pysam_on_simulated_cohort(small_cohort):
    bams = [str(small_cohort / n) for n in (small_cohort / "bams.txt").read_text().split()]
    ref = str(small_cohort / "reference.fa")
    index = {f"S0{i}": i - 1 for i in range(1, 4)}
    kw = dict(min_mapq=20, include_supplementary=False)
    for contig, ws, we in [
        ("chr1", 0, 15_000),
        ("chr1", 15_000, 15_001),
        ("chr1", 39_000, 40_000),
        ("chr2", 20_000, 26_000),
    ]:
        fast = fetch_reads(bams, ref, index, contig, ws, we, **kw)
        slow = fetch_reads(bams, ref, index, contig, ws, we, fast=False, **kw)
        assert fast.n_reads > 0 and (we - ws < 1000 or fast.pairs.shape[0] > 0)
        assert_same_batch(fast, slow)


def test_unindexed_bam_is_a_one_line_input_error(tmp_path):
    bam = Bam(tmp_path)
    bam.add("r", 10, [("M", 30)])
    path, ref = bam.write()
    Path(path + ".bai").unlink()
    with pytest.raises(InputError, match="samtools index"):
        fetch_reads([path], ref, {"S1": 0}, CONTIG, 0, 50, min_mapq=20, include_supplementary=False)


def test_cg_placeholder_cigar_falls_back_to_pysam(tmp_path):
    # a record whose CIGAR is the "<l_seq>S<ref span>N" placeholder of a CIGAR kept in the
    # CG tag: the numba decoder hands the file to htslib (pysam)
    from varcall.io import bam as _bam

    bam = Bam(tmp_path)
    bam.add("a", 10, [("M", 30)])
    bam.add("cg", 12, [("S", 30), ("N", 50)], "A" * 30)
    path, ref = bam.write()
    out = _bam.ReadColumns(1)
    kw0 = dict(drop_flags=0, min_mapq=0, default_sample=0, rg_to_sample={})
    assert _bam.fetch_into(path, 0, 0, len(REF), out, **kw0) is None
    assert out.n == 0 and out.files == 0  # nothing added
    kw = dict(min_mapq=20, include_supplementary=False)
    fast = fetch_reads([path], ref, {"S1": 0}, CONTIG, 0, len(REF), **kw)
    slow = fetch_reads([path], ref, {"S1": 0}, CONTIG, 0, len(REF), fast=False, **kw)
    assert fast.n_reads == 2
    assert_same_batch(fast, slow)


def test_insertions_differing_by_an_error_count_together(tmp_path):
    # two reads insert 3 bases after position 39, one with an error in the inserted bases:
    # neither sequence has 2 reads, the length group does -> one allele, most frequent
    # sequence (a tie: the smaller one), both reads counted
    bam = Bam(tmp_path)
    cig = [("M", 30), ("I", 3), ("M", 30)]
    bam.add("a", 10, cig, seq_from_ref(10, cig, ins="GGT"))
    bam.add("b", 10, cig, seq_from_ref(10, cig, ins="GGC"))
    for i in range(6):
        bam.add(f"r{i}", 12, [("M", 50)])
    _, ev, sites, obs = run(*bam.write())
    assert sorted(ev.ev_len.tolist()) == [3, 3]
    assert sites.pos.tolist() == [39]
    assert sites.alleles[0] == [("R", ""), ("I", "GGC")]
    assert sites.support[0, 1] == 2
    # both insertion reads prefer the insertion haplotype (one mismatch vs many)
    assert (obs.best[obs.site == 0] == 1).sum() == 2


def _cohort_bam(folder: Path, alt_reads: dict[str, int], depth: dict[str, int], *, indel=False):
    """One read group per sample; sample s has ``depth[s]`` reads over [10, 50), of which
    ``alt_reads[s]`` carry an SNV at 30 (or, with ``indel``, a 2-bp deletion after 29)."""
    bam = Bam(folder, rgs={s: s for s in depth})
    alt = "T" if REF[30] != "T" else "A"
    for s, n in depth.items():
        for i in range(n):
            if i < alt_reads.get(s, 0) and indel:
                cig = [("M", 20), ("D", 2), ("M", 20)]
                bam.add(f"{s}_{i}", 10, cig, rg=s)
            elif i < alt_reads.get(s, 0):
                seq = list(seq_from_ref(10, [("M", 40)]))
                seq[20] = alt
                bam.add(f"{s}_{i}", 10, [("M", 40)], "".join(seq), rg=s)
            else:
                bam.add(f"{s}_{i}", 10, [("M", 40)], rg=s)
    return bam


@pytest.mark.parametrize("indel", [False, True])
@pytest.mark.parametrize(
    "alt_reads, depth, candidate",
    [
        # one read in each of two low-coverage carriers: pooled 2 reads -> candidate
        ({"S1": 1, "S2": 1}, {"S1": 8, "S2": 9, "S3": 8}, True),
        # one read in one sample: single-read noise, never a candidate
        ({"S1": 1}, {"S1": 8, "S2": 9, "S3": 8}, False),
        # one read in each of two deep samples, below the 10 % per-sample floor: noise
        ({"S1": 1, "S2": 1}, {"S1": 20, "S2": 20, "S3": 8}, False),
        # two reads in one sample (the single-sample rule, unchanged)
        ({"S1": 2}, {"S1": 20, "S2": 9, "S3": 8}, True),
    ],
)
def test_cohort_pooled_candidate_discovery(tmp_path, alt_reads, depth, candidate, indel):
    bam = _cohort_bam(tmp_path, alt_reads, depth, indel=indel)
    _, _, sites, _ = run(*bam.write(), samples=tuple(depth))
    pos = 29 if indel else 30
    assert (pos in sites.pos.tolist()) == candidate
    if candidate:
        kind = "D" if indel else "X"
        assert [a[0] for a in alleles_at(sites, pos)] == ["R", kind]
        assert sites.support[sites.pos.tolist().index(pos), 1] == sum(alt_reads.values())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 40)).map(lambda t: (min(t), max(t))),
        min_size=1,
        max_size=6,
    )
)
def test_pooled_support_formula(samples):
    """pooled = sum of c_s over samples with c_s >= 1 and c_s >= MIN_ALT_FRACTION * d_s;
    every allele the single-sample rule accepted stays a candidate; adding a sample never
    removes one."""
    from varcall.engines.native.pileup import MIN_ALT_FRACTION, MIN_ALT_READS
    from varcall.engines.native.sites import pooled_support

    c = np.array([s[0] for s in samples], np.int64)
    d = np.array([s[1] for s in samples], np.int64)
    pooled = int(pooled_support(c, d))
    assert pooled == sum(ci for ci, di in zip(c, d) if ci >= 1 and ci >= MIN_ALT_FRACTION * di)
    single = any(ci >= MIN_ALT_READS and ci >= MIN_ALT_FRACTION * di for ci, di in zip(c, d))
    if single:
        assert pooled >= MIN_ALT_READS
    more = int(pooled_support(np.append(c, 1), np.append(d, 5)))
    assert more >= pooled


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
)
def test_snv_candidate_kernel_matches_pooled_support(n_s, w, seed):
    """The SNV candidate kernel picks exactly the (position, base) pairs of the numpy
    formula: pooled_support >= MIN_ALT_READS at a known reference base other than REF,
    and a sample with MIN_ALT_READS reads (clearing the floor) or pooled reads unlikely
    as errors (Poisson tail below MAX_ERROR_P, mean err / 3)."""
    from scipy.stats import poisson

    from varcall.engines.native.evidence_numba_fns import snv_candidates
    from varcall.engines.native.pileup import MAX_ERROR_P, MIN_ALT_FRACTION, MIN_ALT_READS
    from varcall.engines.native.sites import pooled_support

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 12, (n_s, w, 4)).astype(np.int32)
    counts[rng.random((n_s, w, 4)) < 0.6] = 0
    counts[rng.random((n_s, w, 4)) < 0.3] = 1
    depth = counts[:, :, 0] + counts[:, :, 1] + counts[:, :, 2] + counts[:, :, 3]
    depth += rng.integers(0, 30, (n_s, w)).astype(np.int32) * (rng.random((n_s, w)) < 0.3)
    err = rng.choice([0.001, 0.05, 0.5, 3.0], w) * depth.sum(axis=0)
    win_ref = rng.integers(0, 5, w).astype(np.uint8)
    floor = (counts > 0) & (counts >= MIN_ALT_FRACTION * depth[:, :, None])
    one = (floor & (counts >= MIN_ALT_READS)).any(axis=0)
    total = counts.sum(axis=0)
    tail = poisson.sf(total - 1, err[:, None] / 3.0)
    ok = pooled_support(counts, depth[:, :, None]) >= MIN_ALT_READS
    ok &= (win_ref < 4)[:, None] & (np.arange(4)[None, :] != win_ref[:, None])
    ok &= one | (tail < MAX_ERROR_P)
    # where scipy's tail is within rounding of the threshold the kernel may differ: skip
    edge = np.isclose(tail, MAX_ERROR_P, rtol=1e-6)
    got_w, got_b, got_t = snv_candidates(
        counts, depth, err, win_ref, MIN_ALT_FRACTION, MIN_ALT_READS, MAX_ERROR_P
    )
    got = np.zeros_like(ok)
    got[got_w, got_b] = True
    assert np.array_equal(got | edge, ok | edge)
    assert got_t.tolist() == total[got_w, got_b].tolist()


def test_pooled_errors_of_many_shallow_samples_are_no_candidates():
    """500 samples at 2x, one read showing a T in each of 3 samples at Q30: expected
    errors 0.33, P(>= 3) = 0.0045: no candidate; in 6 samples at 10x (expected 0.02)
    the same 3 reads are one; 2 reads in one sample always are."""
    from varcall.engines.native.evidence_numba_fns import ERROR_PROB, snv_candidates
    from varcall.engines.native.pileup import MAX_ERROR_P, MIN_ALT_FRACTION, MIN_ALT_READS

    def candidates(n_s, depth, alt_in):
        counts = np.zeros((n_s, 1, 4), np.int32)
        counts[:, 0, 0] = depth
        for s, n in alt_in.items():
            counts[s, 0, 0] -= n
            counts[s, 0, 3] = n
        d = counts.sum(axis=2)
        err = np.array([d.sum() * ERROR_PROB[30]])
        w, _, _ = snv_candidates(counts, d, err, np.zeros(1, np.uint8), MIN_ALT_FRACTION,
                                 MIN_ALT_READS, MAX_ERROR_P)  # fmt: skip
        return len(w)

    assert candidates(500, 2, {0: 1, 1: 1, 2: 1}) == 0
    assert candidates(6, 10, {0: 1, 1: 1, 2: 1}) == 1
    assert candidates(500, 2, {7: 2}) == 1
    assert candidates(500, 2, {s: 1 for s in range(8)}) == 1
