"""Linked variants in the native engine: SNVs inside a heterozygous deletion (spanning
deletions), SNVs a few bp apart on one haplotype (cis) or on both (trans), and calls that
do not depend on where region or window boundaries cut such a cluster; reads of a nearby
indel that the aligner wrote as another indel (neighbour haplotypes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pysam
import pytest
from _bamwriter import AlignedRead, write_bam, write_fasta

from varcall.core.callset import CallSet, concat_callsets
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines.native import NativeEngine
from varcall.engines.native import engine as native_mod

CONTIG = "chrL"
LENGTH = 3_000
READ = 100
#: (0-based position, REF, ALT) of a variant on one haplotype; a deletion's REF starts
#: with the anchor base (VCF style), its ALT is that base alone
Variant = tuple[int, str, str]


def _reference(seed: int = 3) -> str:
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), LENGTH))


def _tokens(ref: str, hap: list[Variant]) -> list[tuple[str, int, str]]:
    """The haplotype as alignment tokens: ("M", ref pos, base) or ("D", ref pos, "")."""
    snv = {p: alt for p, r, alt in hap if len(r) == len(alt) == 1}
    deleted = {x for p, r, alt in hap if len(r) > len(alt) for x in range(p + 1, p + len(r))}
    return [("D", x, "") if x in deleted else ("M", x, snv.get(x, ref[x])) for x in range(LENGTH)]


def _reads(tokens: list[tuple[str, int, str]], step: int, phase: int):
    """(start, CIGAR tuples, sequence) of reads of READ bases starting every ``step``
    haplotype bases (offset ``phase``) over the middle of the contig."""
    kept = [i for i, t in enumerate(tokens) if t[0] == "M"]
    for h in range(400 + phase, 2_500, step):
        first, last = kept[h], kept[h + READ - 1]
        cigar: list[list[int]] = []
        seq = []
        for t in tokens[first : last + 1]:
            op = 0 if t[0] == "M" else 2
            if cigar and cigar[-1][0] == op:
                cigar[-1][1] += 1
            else:
                cigar.append([op, 1])
            seq.append(t[2])
        yield tokens[first][1], [tuple(c) for c in cigar], "".join(seq)


def write_cohort(folder: Path, samples: dict[str, tuple[list[Variant], list[Variant]]]):
    """A reference and one BAM per sample (single-end reads, ~33x per sample, both
    strands, BQ 30, MAPQ 60) from each sample's two haplotypes; the CallInputs."""
    ref = _reference()
    fa = write_fasta(folder / "ref.fa", {CONTIG: ref})
    bams = []
    for s, haps in samples.items():
        reads = []
        for h, hap in enumerate(haps):
            for start, cigar, seq in _reads(_tokens(ref, hap), 6, 3 * h):
                reads.append((start, h, cigar, seq))
        path = write_bam(
            folder / f"{s}.bam",
            {CONTIG: LENGTH},
            [s],
            (
                AlignedRead(f"{s}_{h}_{n}", start, cigar, seq, flag=16 if n % 2 else 0, rg=s)
                for n, (start, h, cigar, seq) in enumerate(sorted(reads))
            ),
            presorted=True,
        )
        bams.append(str(path))
    return CallInputs(
        reference=str(fa), bams=tuple(bams), samples=tuple(samples), contigs=((CONTIG, LENGTH),)
    )


def genotypes(cs: CallSet) -> dict[tuple[int, str, str], list[tuple[int, int]]]:
    """(0-based POS, REF, ALT) of every biallelic record -> GT per sample (sorted)."""
    out = {}
    for v in range(cs.n_variants):
        al = [a for a in cs.alleles[v].tolist() if a]
        assert len(al) == 2, al
        out[(int(cs.position[v]), al[0], al[1])] = [
            tuple(sorted(int(x) for x in g)) for g in cs.genotype[v].tolist()
        ]
    return out


def call(inputs: CallInputs, start: int = 0, end: int = LENGTH) -> CallSet:
    return NativeEngine().call_region(inputs, Region(CONTIG, start, end), CallParams())


REF = _reference()
# a 20 bp deletion after 1200, an SNV at 1210 inside it
DEL = (1200, REF[1200:1221], REF[1200])
SNV_IN_DEL = (1210, REF[1210], "A" if REF[1210] != "A" else "C")
# two SNVs 3 bp apart, an MNP and a fourth SNV: a cluster of four within 9 bp
SNV1 = (1600, REF[1600], "A" if REF[1600] != "A" else "G")
SNV2 = (1603, REF[1603], "T" if REF[1603] != "T" else "C")
SNV3 = (1604, REF[1604], "G" if REF[1604] != "G" else "T")
SNV4 = (1608, REF[1608], "C" if REF[1608] != "C" else "A")
# an SNV 4 bp after a 2 bp deletion (placed where it is left-normalised)
_D = next(p for p in range(1800, 1900) if REF[p] != REF[p + 2])
DEL2 = (_D, REF[_D : _D + 3], REF[_D])
SNV5 = (_D + 7, REF[_D + 7], "A" if REF[_D + 7] != "A" else "T")
SNV6 = (_D + 10, REF[_D + 10], "G" if REF[_D + 10] != "G" else "C")


@pytest.fixture(scope="module")
def hetdel(tmp_path_factory) -> tuple[CallInputs, CallSet]:
    samples = {
        "S1": ([DEL], [SNV_IN_DEL]),  # SNV on one haplotype, deletion on the other
        "S2": ([SNV_IN_DEL], [DEL]),
        "S3": ([], []),
        "S4": ([DEL], []),  # the deletion alone
        "S5": ([SNV_IN_DEL], [SNV_IN_DEL]),  # homozygous SNV, no deletion
    }
    inputs = write_cohort(tmp_path_factory.mktemp("hetdel"), samples)
    return inputs, call(inputs)


def test_snv_inside_het_deletion_is_heterozygous(hetdel):
    _, cs = hetdel
    gts = genotypes(cs)
    assert set(gts) == {DEL, SNV_IN_DEL}
    assert gts[DEL] == [(0, 1), (0, 1), (0, 0), (0, 1), (0, 0)]
    assert gts[SNV_IN_DEL] == [(0, 1), (0, 1), (0, 0), (0, 0), (1, 1)]
    v = list(gts).index(SNV_IN_DEL)
    # the deletion reads count as "not this SNV" (allele 0) in AD and DP
    ad = cs.AD[v]
    assert ad[0, 0] > 10 and ad[0, 1] > 10 and ad[3, 1] == 0 and ad[3, 0] > 20


CIS = [SNV1, SNV2, SNV3, SNV4, DEL2, SNV5, SNV6]


@pytest.fixture(scope="module")
def linked(tmp_path_factory) -> tuple[CallInputs, CallSet]:
    samples = {
        "C1": (CIS, []),  # cis, heterozygous
        "C2": ([], CIS),
        "C3": (CIS, CIS),  # homozygous for all
        "T1": ([SNV1, SNV3, DEL2], [SNV2, SNV4, SNV5, SNV6]),  # trans
        "T2": ([SNV2, SNV4, SNV5, SNV6], [SNV1, SNV3, DEL2]),
        "R1": ([], []),
    }
    inputs = write_cohort(tmp_path_factory.mktemp("linked"), samples)
    return inputs, call(inputs)


def test_linked_variants_cis_and_trans(linked):
    _, cs = linked
    gts = genotypes(cs)
    assert set(gts) == set(CIS)
    expect = [(0, 1), (0, 1), (1, 1), (0, 1), (0, 1), (0, 0)]
    for v in CIS:
        assert gts[v] == expect, v


def test_reads_carrying_linked_snvs_are_not_down_weighted(linked):
    """At each SNV of the cluster, a read showing the other ALT alleles of the cluster
    weighs as much as a read at an isolated SNV, and at the deletion a read carrying two
    linked SNVs as much as one without: its context is compared with the local haplotype
    of the candidate alleles it carries, not with the reference."""
    from varcall.engines.native.evidence import count_evidence
    from varcall.engines.native.observations import site_observations
    from varcall.engines.native.observations_numba_fns import mismatch_penalty
    from varcall.engines.native.pileup import encode_bases
    from varcall.engines.native.reads import fetch_reads, mask_mate_overlaps
    from varcall.engines.native.sites import find_sites

    inputs, _ = linked
    index = tuple({s: i for i, s in enumerate(inputs.samples)} for _ in inputs.bams)
    batch = fetch_reads(inputs.bams, inputs.reference, index, CONTIG, 0, LENGTH,
                        min_mapq=20, include_supplementary=False)  # fmt: skip
    ref = encode_bases(REF)
    mask_mate_overlaps(batch)
    ev = count_evidence(batch, ref, 0, 0, LENGTH, len(inputs.samples), 13)
    sites = find_sites(ev, batch, ref, 0, REF)
    obs = site_observations(sites, batch, ref, 0, 13)
    full = mismatch_penalty(30.0, 60.0)
    for v in (SNV1, SNV2, SNV3, SNV4, SNV5, SNV6):
        k = sites.pos.tolist().index(v[0])
        rows = obs.pen[obs.site == k]
        assert rows.shape[0] > 100
        np.testing.assert_allclose(rows.max(axis=1), full)
    # the deletion's reads also carry SNV5 and SNV6 (cis): full indel evidence, the cap
    k = sites.pos.tolist().index(DEL2[0])
    carriers = (obs.site == k) & (obs.best == 1)
    assert carriers.sum() > 50
    assert np.median(obs.pen[carriers, 0]) == sites.cap[k]


@pytest.mark.parametrize("fixture", ["hetdel", "linked", "neighbours"])
def test_calls_do_not_depend_on_cuts_through_a_cluster(fixture, request, monkeypatch):
    inputs, whole = request.getfixturevalue(fixture)
    first = int(whole.position.min())
    for cuts in ([first + 1], [first + 5, first + 11], [first - 1, first + 2, first + 4]):
        bounds = [0, *cuts, LENGTH]
        pieces = [call(inputs, a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        joined = concat_callsets(pieces)
        assert joined.digest() == whole.digest(), cuts
    monkeypatch.setattr(native_mod, "MIN_WINDOW", 7)
    monkeypatch.setattr(native_mod, "WINDOW", 7)
    assert call(inputs).digest() == whole.digest()


@pytest.mark.parametrize("match", ["exact", "haplotype"])
def test_concordance_scores_the_convention(hetdel, tmp_path, match):
    """Against a truth that holds the SNV and the deletion as separate phased records,
    varcall's own concordance counts every (sample, variant) pair of the calls as TP."""
    from varcall.evaluate.concordance import run_concordance
    from varcall.io.vcf_header import vcf_header
    from varcall.io.vcf_write import format_bytes

    inputs, cs = hetdel
    header = vcf_header(inputs.contigs, inputs.samples, cs.filter_ids)
    query = tmp_path / "query.vcf"
    query.write_bytes(header.encode() + format_bytes(cs))
    lines = header.splitlines()
    lines = [x for x in lines if not x.startswith("##FORMAT") or "ID=GT," in x]
    body = [
        f"{CONTIG}\t{DEL[0] + 1}\t.\t{DEL[1]}\t{DEL[2]}\t.\tPASS\t.\tGT\t1|0\t0|1\t0|0\t1|0\t0|0",
        f"{CONTIG}\t{SNV_IN_DEL[0] + 1}\t.\t{SNV_IN_DEL[1]}\t{SNV_IN_DEL[2]}\t.\tPASS\t.\tGT\t"
        "0|1\t1|0\t0|0\t0|0\t1|1",
    ]
    truth = tmp_path / "truth.vcf"
    truth.write_text("\n".join(lines + body) + "\n")
    for path in (query, truth):
        pysam.tabix_index(str(path), preset="vcf", force=True)
    q, t = f"{query}.gz", f"{truth}.gz"
    m = run_concordance(q, q, inputs.reference, tmp_path / "out", truth=t, qc=False, match=match)
    got = m["truth"]["A"]
    for kind in ("SNP", "INDEL"):
        assert (got[kind]["TP"], got[kind]["FP"], got[kind]["FN"]) == (3, 0, 0), (kind, got)


# ----------------------------------------------------------------------------- neighbour indels
#: A 1-bp insertion (GCC -> GCCC) before a (CAT)n-like stretch, as in a held-out-style cohort
#: of 100-bp reads (2026-12-05): the inserted haplotype reads GCCCATCATCA... for 11 bases,
#: as does the reference with "AT" deleted two bases later (CAT -> C). The aligner writes
#: the reads that end before the two differ with that deletion.
MOTIF = "TGATGATCGCCATCATCATCACCAGCCCGTAAAAGCC"
_M = 1_500
NB_REF = _reference(7)[:_M] + MOTIF + _reference(7)[_M + len(MOTIF) :]
_G = _M + MOTIF.index("GCCATC")  # the G before the Cs
INS = (_G, "G", "GC")
SHADOW = (_G + 2, NB_REF[_G + 2 : _G + 5], NB_REF[_G + 2])  # CAT -> C


def _insertion_reads(ref: str, inserted: bool, phase: int):
    """(start, CIGAR, sequence) of READ-base reads every 4 bases of one haplotype: the
    reference, or the reference with INS; inserted reads that end before the insertion
    and SHADOW haplotypes differ are aligned with SHADOW's deletion."""
    g = INS[0]
    hap = ref[: g + 1] + "C" + ref[g + 1 :] if inserted else ref
    shadow = ref[: g + 3] + ref[g + 5 :]
    d = next(i for i in range(len(shadow)) if hap[i] != shadow[i])
    for s in range(1_200 + phase, 1_800, 5):
        seq = hap[s : s + READ]
        if not inserted or s + READ <= g + 1:
            yield s, [(0, READ)], seq
        elif s + READ <= g + 4:
            continue  # ends at the insertion: left out
        elif s + READ <= d + 4 and s <= g + 2:  # (a mismatch or two past d, as bwa does)
            yield s, [(0, g + 3 - s), (2, 2), (0, READ - (g + 3 - s))], seq
        elif s <= g:
            yield s, [(0, g + 1 - s), (1, 1), (0, READ - (g + 2 - s))], seq
        elif s > g + 1:
            yield s - 1, [(0, READ)], seq


@pytest.fixture(scope="module")
def neighbours(tmp_path_factory) -> tuple[CallInputs, CallSet]:
    folder = tmp_path_factory.mktemp("neighbours")
    fa = write_fasta(folder / "ref.fa", {CONTIG: NB_REF})
    samples = {"N1": (True, True), "N2": (True, True), "N3": (True, False), "N4": (False, True)}
    bams = []
    for s, haps in samples.items():
        reads = [
            (start, h, cigar, seq)
            for h, inserted in enumerate(haps)
            for start, cigar, seq in _insertion_reads(NB_REF, inserted, 2 * h)
        ]
        bams.append(str(write_bam(
            folder / f"{s}.bam", {CONTIG: LENGTH}, [s],
            (
                AlignedRead(f"{s}_{h}_{n}", start, cigar, seq, flag=16 if n % 2 else 0, rg=s)
                for n, (start, h, cigar, seq) in enumerate(sorted(reads))
            ),
            presorted=True,
        )))  # fmt: skip
    inputs = CallInputs(
        reference=str(fa), bams=tuple(bams), samples=tuple(samples), contigs=((CONTIG, LENGTH),)
    )
    return inputs, call(inputs)


def test_reads_of_a_neighbouring_insertion_are_no_deletion_evidence(neighbours):
    """Reads of the inserted haplotype that the aligner wrote with a deletion two bases
    later fit that deletion better than the reference, but the insertion's haplotype
    better still: at the deletion's site they count for allele 0, so no deletion is
    called, and the insertion gets its genotypes."""
    inputs, cs = neighbours
    shadow_reads = sum(
        1 for b in inputs.bams for r in pysam.AlignmentFile(b) if 2 in [op for op, _ in r.cigartuples]
    )
    assert shadow_reads >= 6  # the deletion is a candidate (2 reads per sample suffice)
    gts = genotypes(cs)
    assert gts[INS] == [(1, 1), (1, 1), (0, 1), (0, 1)]
    calls = [k for k in gts if k[0] == SHADOW[0]]
    v = [int(p) for p in cs.position].index(SHADOW[0]) if calls else None
    assert v is None or not cs.filters[v, 0] or gts[calls[0]] == [(0, 0)] * 4, gts
