"""Indel candidates from soft-clipped read ends (varcall.engines.native.clips): BAMs built
here with the clips written into the CIGARs as an aligner would write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _bamwriter import AlignedRead, write_bam, write_fasta
from hypothesis import given, settings
from hypothesis import strategies as st

from varcall.core.callset import concat_callsets
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines.native import NativeEngine
from varcall.engines.native import engine as native_mod
from varcall.engines.native.clips import (
    CLIP_MIN_LENGTH,
    clip_reference_margin,
    realign_clips,
)
from varcall.engines.native.clips_numba_fns import best_gap, in_own_repeat
from varcall.engines.native.evidence import count_evidence
from varcall.engines.native.pileup import CALL_REACH, CLIP_REACH, SHADOW_PAD, encode_bases
from varcall.engines.native.reads import ReadBatch, fetch_reads, mask_mate_overlaps

CONTIG = "chrC"
REF = "".join(np.random.default_rng(5).choice(list("ACGT"), 3000))
P = 1500  # 0-based anchor (VCF POS - 1) of the planted indel
INSERTED = "TTGACCGATGCATTAG"  # 16 bp
DELETED = 25  # bp
ADAPTER = "AGATCGGAAGAGCACACGTCTGAACTCCAGTCAC"


class Reads:
    """Reads of one or more samples (one read group each), written to a sorted, indexed
    BAM with the reference by :meth:`write`."""

    def __init__(self) -> None:
        self.reads: list[tuple[int, str, str, str]] = []  # start, cigar, seq, sample

    def add(self, start: int, cigar: str, seq: str, sample: str = "S1") -> None:
        self.reads.append((start, cigar, seq, sample))

    def write(self, folder: Path) -> CallInputs:
        ref = write_fasta(folder / "ref.fa", {CONTIG: REF})
        samples = sorted({r[3] for r in self.reads})
        bam = write_bam(
            folder / "reads.bam",
            {CONTIG: len(REF)},
            samples,
            (
                AlignedRead(f"r{k}", start, cigar, seq, flag=16 if k % 2 else 0, rg=sample)
                for k, (start, cigar, seq, sample) in enumerate(self.reads)
            ),
        )
        return CallInputs(
            reference=str(ref),
            bams=(str(bam),),
            samples=tuple(samples),
            contigs=((CONTIG, len(REF)),),
        )


def add_reference_reads(
    reads: Reads, n: int, sample: str = "S1", length: int = 100, p: int = P
) -> None:
    """``n`` reference reads spread over the site at ``p``."""
    for k in range(n):
        start = p - 80 + 7 * k
        reads.add(start, f"{length}M", REF[start : start + length], sample)


def add_clipped(
    reads: Reads, alt: str, n: int, sample: str = "S1", skip: int = 1, p: int = P
) -> None:
    """``n`` reads of each side carrying ``REF[:p + 1] + alt + REF[p + skip:]`` (an
    insertion of ``alt`` after anchor ``p``, or with ``skip - 1`` bases deleted) as an
    aligner that never opens a gap writes them: reads ending past the event clip their
    right end, reads starting before it their left end. Clips reach 12-29 bases past the
    event."""
    after = p + skip  # first reference base after the event
    hap = REF[: p + 1] + alt + REF[after:]
    shift = len(alt) - (after - p - 1)  # hap position = ref position + shift after it
    for k in range(n):
        m = 12 + (5 * k) % 18  # reference bases past the event in the clip
        # right clip: aligned [start, p + 1), then alt + m bases of reference after it
        length = 90
        end_h = p + 1 + len(alt) + m
        seq = hap[end_h - length : end_h]
        reads.add(end_h - length, f"{length - len(alt) - m}M{len(alt) + m}S", seq, sample)
        # left clip: m reference bases before the event + alt, aligned from `after`
        start_h = p + 1 - m
        seq = hap[start_h : start_h + length]
        clip = m + len(alt)
        reads.add(after, f"{clip}S{length - clip}M", seq, sample)
    assert all(hap[i + shift] == REF[i] for i in range(after, after + 50))


def left_anchor(p: int, deleted: int) -> int:
    """The left-normalised anchor of a deletion of ``deleted`` bp after anchor ``p``."""
    while REF[p] == REF[p + deleted]:
        p -= 1
    return p


def call(inputs: CallInputs, start: int = 0, end: int = len(REF)):
    return NativeEngine().call_region(inputs, Region(CONTIG, start, end), CallParams())


def records(cs) -> list[tuple[int, str, str, list[tuple[int, int]]]]:
    return [
        (
            int(cs.position[i]),
            str(cs.alleles[i, 0]),
            str(cs.alleles[i, 1]),
            [tuple(int(x) for x in g) for g in cs.genotype[i]],
        )
        for i in range(cs.n_variants)
        if cs.filters[i, 0]
    ]


def window_events(inputs: CallInputs, fast: bool = True):
    """(realigned batch, (ev_pos, ev_len)) of the whole test contig, as the engine
    computes them."""
    batch = fetch_reads(
        inputs.bams, inputs.reference, {s: i for i, s in enumerate(inputs.samples)}, CONTIG,
        0, len(REF), min_mapq=20, include_supplementary=False, fast=fast,
    )  # fmt: skip
    ref = encode_bases(REF)
    batch = realign_clips(batch, ref, 0)
    mask_mate_overlaps(batch)
    ev = count_evidence(batch, ref, 0, 0, len(REF), len(inputs.samples), 13)
    return batch, (ev.ev_pos, ev.ev_len)


def cigars(batch: ReadBatch) -> list[str]:
    out = []
    for i in range(batch.n_reads):
        c0, c1 = int(batch.coff[i]), int(batch.coff[i] + batch.cn[i])
        ops = zip(batch.cig_len[c0:c1].tolist(), batch.cig_op[c0:c1].tolist())
        out.append("".join(f"{n}{'MIDNSHP=X'[o]}" for n, o in ops))
    return out


def assert_consistent(batch: ReadBatch) -> None:
    """Every CIGAR consumes its read's bases and its reference span exactly."""
    for i in range(batch.n_reads):
        c0, c1 = int(batch.coff[i]), int(batch.coff[i] + batch.cn[i])
        ops, lens = batch.cig_op[c0:c1], batch.cig_len[c0:c1]
        assert (lens > 0).all()
        q = int(lens[np.isin(ops, (0, 1, 4, 7, 8))].sum())
        r = int(lens[np.isin(ops, (0, 2, 3, 7, 8))].sum())
        assert q == batch.qlen[i] and r == batch.end[i] - batch.start[i]


# ----------------------------------------------------------------------------- acceptance
def test_insertion_only_in_soft_clips_is_found_with_its_genotype(tmp_path):
    """Every read that carries the insertion is clipped (none has an I in its CIGAR): the
    insertion is a candidate and genotyped het in S1 (with reference reads), hom in S2."""
    reads = Reads()
    add_clipped(reads, INSERTED, 6, "S1")
    add_reference_reads(reads, 10, "S1")
    add_clipped(reads, INSERTED, 6, "S2")
    inputs = reads.write(tmp_path)
    batch, (pos, ln) = window_events(inputs)
    assert "I" not in "".join(cig for _, cig, _, _ in reads.reads)
    assert sorted(set(zip(pos.tolist(), ln.tolist()))) == [(P, len(INSERTED))]
    assert len(pos) == 24  # every clipped read: 12 right and 12 left tails
    assert_consistent(batch)
    assert sum("16I" in c for c in cigars(batch)) == 24
    cs = call(inputs)
    assert records(cs) == [(P, REF[P], REF[P] + INSERTED, [(0, 1), (1, 1)])]


def test_deletion_near_read_ends_is_found_with_its_genotype(tmp_path):
    reads = Reads()
    add_clipped(reads, "", 6, "S1", skip=DELETED + 1)
    add_reference_reads(reads, 10, "S1")
    add_clipped(reads, "", 6, "S2", skip=DELETED + 1)
    inputs = reads.write(tmp_path)
    batch, (pos, ln) = window_events(inputs)
    assert_consistent(batch)
    a = left_anchor(P, DELETED)
    assert sorted(set(zip(pos.tolist(), ln.tolist()))) == [(a, -DELETED)]
    cs = call(inputs)
    assert records(cs) == [(a, REF[a : a + DELETED + 1], REF[a], [(0, 1), (1, 1)])]


def test_adapter_and_junk_clips_give_no_candidate(tmp_path):
    """Adapter read-through at one point of many fragments, random junk and low-complexity
    tails: no event, no call."""
    rng = np.random.default_rng(3)
    reads = Reads()
    add_reference_reads(reads, 10)
    for k in range(8):
        start = P - 70 + k
        aligned = P + 1 - start
        reads.add(start, f"{aligned}M{len(ADAPTER)}S", REF[start : P + 1] + ADAPTER)
        junk = "".join(rng.choice(list("ACGT"), 30))
        reads.add(P + 1, "30S60M", junk + REF[P + 1 : P + 61])
        reads.add(start, f"{aligned}M20S", REF[start : P + 1] + "A" * 20)
    inputs = reads.write(tmp_path)
    batch, (pos, _) = window_events(inputs)
    assert pos.shape[0] == 0
    assert sum("S" in c for c in cigars(batch)) == 24  # every clipped read stays clipped
    assert records(call(inputs)) == []


def test_both_decoders_give_the_same_clip_events(tmp_path):
    reads = Reads()
    add_clipped(reads, INSERTED, 4)
    add_clipped(reads, "", 4, skip=DELETED + 1)
    inputs = reads.write(tmp_path)
    fast_batch, fast = window_events(inputs, fast=True)
    slow_batch, slow = window_events(inputs, fast=False)
    assert fast_batch.n_reads == slow_batch.n_reads == 16
    assert cigars(fast_batch) == cigars(slow_batch)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    for name in ("start", "end", "coff", "cn"):
        np.testing.assert_array_equal(getattr(fast_batch, name), getattr(slow_batch, name))


# ----------------------------------------------------------------------------- exactness
SECOND = P + 420  # anchor of the second planted indel


@pytest.fixture(scope="module")
def both_inputs(tmp_path_factory):
    """The insertion at P and a 60-bp deletion at SECOND, both carried only by clipped
    reads, in two samples, with reference reads."""
    reads = Reads()
    for sample in ("S1", "S2"):
        add_clipped(reads, INSERTED, 5, sample)
        add_clipped(reads, "", 4, sample, skip=61, p=SECOND)
        add_reference_reads(reads, 8, sample, length=120)
        add_reference_reads(reads, 8, sample, length=120, p=SECOND)
    return reads.write(tmp_path_factory.mktemp("softclip"))


def test_calls_identical_across_region_splits_at_the_clips(both_inputs):
    whole = call(both_inputs)
    b = left_anchor(SECOND, 60)
    assert [r[:2] for r in records(whole)] == [(P, REF[P]), (b, REF[b : b + 61])]
    cuts = {P - 1, P, P + 1, P + 2, P + 20, P - 40, P + 90, SECOND, SECOND + 1, SECOND + 62}
    # the reach: a window ending CALL_REACH before the left clips of SECOND's reads
    cuts |= {SECOND + 62 - SHADOW_PAD + d for d in (-1, 0, 1)}
    cuts |= {SECOND - CALL_REACH + d for d in (-1, 0, 1)}
    for cut in sorted(cuts):
        parts = [call(both_inputs, 0, cut), call(both_inputs, cut, len(REF))]
        assert concat_callsets(parts).equals(whole), cut


def test_calls_identical_across_small_windows(both_inputs, monkeypatch):
    whole = call(both_inputs)
    for window in (97, 1_001):
        monkeypatch.setattr(native_mod, "WINDOW", window)
        assert call(both_inputs).equals(whole)


def test_fetch_pad_covers_clip_reach():
    assert SHADOW_PAD >= CALL_REACH + CLIP_REACH


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    left=st.integers(0, 60),
    right=st.integers(0, 60),
    kind=st.sampled_from(["ins", "del", "junk", "repeat"]),
    ln=st.integers(1, 200),
    aligned=st.integers(12, 80),
    inserted=st.integers(0, 4),
)
def test_realignment_stays_within_reach(seed, left, right, kind, ln, aligned, inserted):
    """Whatever the tails (an indel, junk, a repeat), a realigned read moves its start and
    end by at most CLIP_REACH, stays on the contig, and its CIGAR consumes its bases and
    its new span exactly; its indel events lie within its new span."""
    rng = np.random.default_rng(seed)
    ref_text = "".join(rng.choice(list("ACGT"), 900))
    if kind == "repeat":
        ref_text = ref_text[:300] + "CA" * 150 + ref_text[600:]
    start = 350
    mid = ref_text[start : start + aligned]
    if kind == "junk":
        lt = "".join(rng.choice(list("ACGT"), left))
        rt = "".join(rng.choice(list("ACGT"), right))
    elif kind == "del":
        lt = ref_text[max(0, start - ln - left) : start - ln]
        rt = ref_text[start + aligned + ln : start + aligned + ln + right]
    else:
        ins = "".join(rng.choice(list("ACGT"), ln))
        lt = (ref_text[max(0, start - left) : start] + ins)[-left:] if left else ""
        rt = (ins + ref_text[start + aligned :])[:right]
    seq = lt + mid + rt
    # the left tail: a hard clip, a soft clip and up to 4 bases written as an insertion
    ins_n = min(inserted, len(lt))
    ops = [(5, 3), (4, len(lt) - ins_n), (1, ins_n), (0, aligned), (4, len(rt))]
    ops = [(o, n) for o, n in ops if n and (o != 5 or lt)]
    batch = ReadBatch(
        start=np.array([start], np.int64), end=np.array([start + aligned], np.int64),
        mapq=np.array([60], np.int32), flag=np.array([0], np.int32),
        sample=np.array([0], np.int32), qoff=np.array([0], np.int64),
        qlen=np.array([len(seq)], np.int32), coff=np.array([0], np.int64),
        cn=np.array([len(ops)], np.int32), bases=encode_bases(seq),
        quals=np.full(len(seq), 30, np.uint8), raw_quals=np.full(len(seq), 30, np.uint8),
        cig_op=np.array([o for o, _ in ops], np.uint8),
        cig_len=np.array([n for _, n in ops], np.int32), pairs=np.zeros((0, 2), np.int64),
    )  # fmt: skip
    ref = encode_bases(ref_text)
    out = realign_clips(batch, ref, 0)
    assert_consistent(out)
    # the reference the engine fetches around the read is all the realignment reads
    margin = clip_reference_margin(batch)
    lo, hi = max(0, start - margin), min(900, start + aligned + margin)
    tight = realign_clips(batch, ref[lo:hi], lo)
    assert cigars(tight) == cigars(out) and tight.start[0] == out.start[0]
    new_start, new_end = int(out.start[0]), int(out.end[0])
    assert start - CLIP_REACH <= new_start <= start and new_start >= 0
    assert start + aligned <= new_end <= start + aligned + CLIP_REACH and new_end <= 900
    assert out.cig_op[0] == 5 or not lt  # the hard clip stays outside
    ev = count_evidence(out, ref, 0, 0, 900, 1, 13)
    assert ((ev.ev_pos >= new_start) & (ev.ev_pos < new_end)).all()
    if kind == "del" and len(lt) >= 20 and ln >= 5 and len(lt) + ln <= CLIP_REACH:
        # a clear deletion in the left tail is found
        if not in_own_repeat(True, start - ln, ln, ref, 0, ref, 0):
            assert new_start == start - len(lt) - ln


def test_best_gap_finds_an_indel_and_refuses_ties():
    rng = np.random.default_rng(0)
    r = encode_bases("".join(rng.choice(list("ACGT"), 300)))
    # tail: 5 aligned bases, then the reference after a 7-bp deletion
    t = np.concatenate([r[:5], r[12:40]])
    assert best_gap(t, r, t.shape[0], 5, 200, 8, 6, 1) == (1, 7, 5)
    # the same with an insertion of 9 random bases
    ins = encode_bases("ACGTTGCAG")
    t = np.concatenate([r[:5], ins, r[5:25]])
    assert best_gap(t, r, t.shape[0], 5, 200, 8, 6, 1) == (2, 9, 5)
    # a tail that leaves a dinucleotide repeat 6 bases after the clip: the bases past
    # the repeat tell a 2-bp from a 4-bp deletion
    rep = encode_bases("GTCCA" + "CA" * 3 + "GGTACGTTAGCATTCAGGATC")
    t = np.concatenate([rep[:5], rep[9:]])
    u = np.concatenate([rep[:5], rep[7:]])
    assert best_gap(t, rep, t.shape[0], 5, 10, 8, 6, 1)[:2] == (1, 4)
    assert best_gap(u, rep, u.shape[0], 5, 10, 8, 6, 1)[:2] == (1, 2)
    # a tail that fits deletions of 3 and 7 bp (and 11, ...) equally: nothing
    per = encode_bases("ACGTAGGT" + "TCAG" * 12)
    t = np.concatenate([per[:5], per[8:40]])
    assert best_gap(t, per, t.shape[0], 5, 20, 8, 6, 1) == (0, 0, 0)
    # the same tail cut to junk after the clip: no explanation
    junk = np.concatenate([rep[:5], encode_bases("TTTTGGGGCCCCAAAATTTT")])
    assert best_gap(junk, rep, junk.shape[0], 5, 10, 8, 6, 1)[0] == 0
    assert CLIP_MIN_LENGTH >= 5


def test_indels_in_their_own_tandem_repeat_are_recognised():
    ref = encode_bases("GGATC" + "CATTA" * 6 + "GCGTT" + "AC" * 3 + "TTGCA")
    seq = encode_bases("CATTACATTA" + "TCGAT" + "ATTAC")
    # deletions of one or two units anywhere in the CATTA repeat slide by their length
    assert in_own_repeat(True, 10, 5, seq, 0, ref, 0)
    assert in_own_repeat(True, 7, 10, seq, 0, ref, 0)
    # ... and in the 3-unit AC repeat (starting at 40), 2 bp but not 6
    assert in_own_repeat(True, 41, 2, seq, 0, ref, 0)
    assert not in_own_repeat(True, 40, 6, seq, 0, ref, 0)
    # a unit inserted into the repeat (any rotation) does; other sequence does not
    assert in_own_repeat(False, 15, 5, seq, 0, ref, 0)
    assert in_own_repeat(False, 16, 5, seq, 15, ref, 0)  # ATTAC inserted before ATTAC
    assert in_own_repeat(False, 15, 10, seq, 0, ref, 0)
    assert not in_own_repeat(False, 15, 5, seq, 10, ref, 0)
    assert not in_own_repeat(True, 1, 3, seq, 0, ref, 0)


def test_clipped_tails_in_a_tandem_repeat_stay_clipped(tmp_path):
    """Reads that end inside a repeat whose copy number they change are not realigned
    (their lengths come from the reads the aligner gapped)."""
    global REF
    saved = REF
    try:
        REF = REF[: P + 1] + "CAGT" * 12 + REF[P + 49 :]
        reads = Reads()
        add_clipped(reads, "CAGT" * 2, 5)
        add_reference_reads(reads, 10)
        inputs = reads.write(tmp_path)
        batch, (pos, _) = window_events(inputs)
        assert sum("S" in c for c in cigars(batch)) == 10
        assert pos.shape[0] == 0
    finally:
        REF = saved
