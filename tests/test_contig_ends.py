"""Indels and SNVs in the last bases of a contig: the native engine calls them without
reading past the contig end (a 1-bp insertion 39 bp before the end of a simulated contig
once raised IndexError), and the calls do not depend on the region that holds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _bamwriter import AlignedRead, write_bam, write_fasta

from varcall.core.callset import concat_callsets
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines.native import NativeEngine

CONTIG = "chrE"
LENGTH = 2_000
READ = 100

#: (0-based position, REF, ALT) planted hom-ALT near the contig end; VCF style (an
#: indel's REF and ALT share the anchor base)
CASES = {
    "insertion": [(LENGTH - 39, None, "+GATAC")],
    "deletion": [(LENGTH - 30, None, "-4")],
    "indel_and_snv": [(LENGTH - 60, None, "+T"), (LENGTH - 20, None, "snv")],
    "last_bases": [(LENGTH - 8, None, "-3"), (LENGTH - 2, None, "snv")],
}


def _haplotype(ref: str, edits: list[tuple[int, object, str]]) -> list[tuple[str, int, str]]:
    """Alignment tokens of the edited haplotype: ("M", ref pos, base), ("I", anchor ref
    pos, base), ("D", ref pos, "")."""
    out: list[tuple[str, int, str]] = []
    ins = {p: alt[1:] for p, _, alt in edits if alt.startswith("+")}
    dels = {
        x for p, _, alt in edits if alt.startswith("-") for x in range(p + 1, p + 1 + int(alt[1:]))
    }
    snv = {p for p, _, alt in edits if alt == "snv"}
    for x in range(LENGTH):
        if x in dels:
            out.append(("D", x, ""))
            continue
        base = ref[x]
        out.append(("M", x, "ACGT"[("ACGT".index(base) + 1) % 4] if x in snv else base))
        out.extend(("I", x, b) for b in ins.get(x, ""))
    return out


def _reads(tokens: list[tuple[str, int, str]], sample: str):
    """Single-end reads of READ read bases every 4 haplotype bases, the last ones ending at
    the contig end, both strands."""
    kept = [i for i, t in enumerate(tokens) if t[0] != "D"]
    starts = list(range(0, len(kept) - READ, 4)) + [len(kept) - READ]
    for n, h in enumerate(starts):
        first, last = kept[h], kept[h + READ - 1]
        while tokens[first][0] == "I":  # a read starts on an aligned base
            first += 1
        cigar: list[list[int]] = []
        seq = []
        for op_name, _, base in tokens[first : last + 1]:
            op = {"M": 0, "I": 1, "D": 2}[op_name]
            if cigar and cigar[-1][0] == op:
                cigar[-1][1] += 1
            else:
                cigar.append([op, 1])
            seq.append(base)
        yield AlignedRead(
            f"{sample}_{n}", tokens[first][1], [tuple(c) for c in cigar], "".join(seq),
            flag=16 if n % 2 else 0, rg=sample,
        )  # fmt: skip


def _cohort(folder: Path, edits) -> CallInputs:
    ref = "".join(np.random.default_rng(7).choice(list("ACGT"), LENGTH))
    fa = write_fasta(folder / "ref.fa", {CONTIG: ref})
    bams = []
    for s, hap_edits in (("S1", edits), ("S2", [])):
        reads = sorted(_reads(_haplotype(ref, hap_edits), s), key=lambda r: r.start)
        bams.append(
            str(write_bam(folder / f"{s}.bam", {CONTIG: LENGTH}, [s], reads, presorted=True))
        )
    return CallInputs(reference=str(fa), bams=tuple(bams), samples=("S1", "S2"),
                      contigs=((CONTIG, LENGTH),))  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_variants_at_the_contig_end_are_called_the_same_in_any_region(tmp_path, case):
    inputs = _cohort(tmp_path, CASES[case])
    engine = NativeEngine()
    params = engine.prepare_params(inputs, CallParams())
    whole = concat_callsets(list(engine.call_whole(inputs, params)))
    called = {int(p) for p in whole.position}
    for p, _, _ in CASES[case]:  # an indel may be left-aligned within its repeat
        assert any(p - 10 <= c <= p for c in called), (case, p, sorted(called)[-5:])
    for cut in (LENGTH - 150, LENGTH - 45):
        parts = [
            engine.call_region(inputs, Region(CONTIG, 0, cut), params),
            engine.call_region(inputs, Region(CONTIG, cut, LENGTH), params),
        ]
        split = concat_callsets(parts)
        assert split.digest() == whole.digest(), (case, cut)
