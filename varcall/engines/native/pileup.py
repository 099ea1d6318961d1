"""Reads -> per-position allele evidence, columnar: the pileup's parameters and base codes.

The stages live in their own modules (their numba kernels in ``*_numba_fns`` modules
next to them): :mod:`~varcall.engines.native.reads`, :mod:`~varcall.engines.native.clips`,
:mod:`~varcall.engines.native.evidence`, :mod:`~varcall.engines.native.sites` and
:mod:`~varcall.engines.native.observations`.

Pipeline for one window ``[ws, we)`` of a contig (0-based half-open throughout):

1. :func:`.reads.fetch_reads` decodes every read overlapping the window from every
   BAM/CRAM into one :class:`.reads.ReadBatch` of flat numpy arrays (positions, CIGAR
   ops, base codes, base qualities). Indexed BAM files are decoded by numba kernels
   straight from the inflated BGZF blocks (:mod:`varcall.io.bam`, no Python object per
   read); CRAM goes through pysam.
   Reads are filtered here (unmapped, secondary, QC-fail, duplicate, MAPQ below
   ``min_mapq``, supplementary unless asked for) and assigned to a sample by their ``@RG``
   ``SM``. Mates of one pair whose alignments overlap are paired up, and
   :func:`.reads.mask_mate_overlaps` counts each overlapping reference base once: of the two
   aligned bases the one with the higher base quality is kept, the other gets quality 0
   (ties keep the first mate, flag 0x40). Before that, :func:`.clips.realign_clips`
   realigns soft-clipped read ends that fit an insertion or deletion at the clip point:
   the read's CIGAR gets the gap in place of the clip (its start or end moves by at most
   ``CLIP_REACH`` bp), and every later stage sees it as an aligned read.
2. :func:`.evidence.count_evidence` (numba) walks every CIGAR once: per sample and
   position, counts of A/C/G/T with base quality >= ``min_baseq``, and every insertion/deletion event,
   left-normalised against the reference. Normalisation shifts an indel left while the
   alignment stays equivalent (the read's base at the anchor equals the reference and the
   shifted sequence is identical) and stops at the first base of the read's aligned block
   that precedes the indel -- never before the read's own first aligned base, so the read
   always overlaps the normalised POS. One indel placed at different offsets of a repeat by
   the aligner is therefore one allele. An indel whose shift is stopped only by that block
   start (its leftmost placement would lie before the read's aligned bases: a read starting
   inside the repeat) is ambiguous and yields no event.
3. :func:`.sites.find_sites` picks candidate alleles, pooled over the cohort: an allele is a
   candidate when ``sum_s c_s [c_s >= 1 and c_s >= MIN_ALT_FRACTION d_s] >= MIN_ALT_READS``
   (``c_s`` reads of sample ``s`` show it, ``d_s`` its depth there; the per-sample floor
   keeps single-read noise of deep samples out, :func:`.sites.pooled_support`), so an
   allele seen once in each of two low-coverage carriers is considered (insertions of one length at one
   POS that no single sequence qualifies for count together, under their most frequent
   sequence: errors in inserted bases do not hide an insertion). At most ``MAX_ALT_ALLELES`` ALT
   alleles per POS are kept (most supported first).
4. :func:`.observations.site_observations` (numba) computes, for every read overlapping
   a site and every allele, a phred penalty ``-10 log10 P(read | allele)`` relative to the read's best
   allele (see :mod:`varcall.engines.native.model` for how penalties become genotype likelihoods).

   - SNV-only sites compare the read's base at POS; a mismatch costs
     ``-10 log10(eps / 3) + 10 log10(1 - eps)`` with ``eps = e_b + e_m - e_b e_m``,
     ``e_b = 10^(-BQ/10)``, ``e_m = 10^(-MAPQ/10)``.
   - Sites with an indel allele build each allele's haplotype: ``INDEL_LEFT_FLANK``
     reference bases before POS, the allele, then the reference after it. The read's bases
     from ``INDEL_LEFT_FLANK`` before its base aligned at POS to the end of the compared
     stretch (where the haplotypes differ, plus ``INDEL_FLANK`` bases, but not past the
     POS of the next indel site; soft-clipped bases included) are compared ungapped with each haplotype, at every placement shift up to
     the longest indel of the site (at most ``MAX_SHIFT``); the best shift counts. This
     realigns reads whose aligner clipped, mismatched or misplaced the indel, and reads
     that start inside an insertion. Each mismatching base costs its base-quality penalty
     (``e_m = 0`` above). Where the alleles are whole units of a tandem repeat, PCR
     stutter mixes them: a read from allele ``a`` shows allele ``b`` with probability
     ``T(a, b)`` (:mod:`varcall.engines.native.stutter`, the table estimated from the
     run's reads by :mod:`varcall.engines.native.calibrate`), so the read's likelihood
     under ``a`` is ``keep(a) 10^(-S(a)/10) + sum_b T(a, b) 10^(-S(b)/10)``
     (:func:`.observations_numba_fns.stutter_penalties`). The differences to the best
     allele are capped at ``min(MAPQ, indel cap)``, the indel cap
     (indel errors other than stutter) falling with the repeat length:
     ``max(INDEL_CAP_MIN, INDEL_CAP - d / 2)`` with ``d`` the offset from POS where the
     haplotypes first differ. A read too short to reach that offset ties the alleles.
     Allele 0 scores the best of the REF haplotype and up to ``NEIGHBOUR_HAPS``
     neighbour haplotypes: the reference at POS with an insertion or deletion allele of
     an indel site up to ``NEIGHBOUR_LEFT`` bp before POS, so that the reads of that
     nearby indel do not count for this site's ALT (:func:`.sites._neighbours`).
   - Reads with many mismatches near the site are down-weighted: the penalties of a read
     with ``n`` mismatching high-quality bases are divided by ``1 + max(0, n - 1)^2`` at
     indel sites (mismatches vs its best haplotype over the compared stretch: such a read
     fits no haplotype, e.g. it carries another indel nearby) and by
     ``1 + max(0, n - 1)`` at SNV sites (mismatches vs the reference within
     ``SNV_CONTEXT`` bp).
   - Misaligned reads near indels: at an SNV-only site, a read aligned without a gap
     across an earlier indel site whose compared stretch reaches POS, and whose bases
     match one of that site's indel haplotypes best, is left out (the aligner wrote
     mismatches where the indel is; its base at POS is no evidence). So is a read without
     a base aligned at that indel site's POS (typically one starting inside the indel),
     whose alignment there cannot be checked. Windows are fetched with ``SHADOW_PAD`` bp
     of extra reads on both sides, so the indel sites before (shadowing) and after (ending
     a comparison) a site are always seen.

   - Spanning deletions: at an SNV-only site, a read without a base at POS (or a
     misaligned one, above) whose unique best allele at an earlier indel site is a
     deletion removing POS counts for allele 0 ("not this SNV"), weighted by that
     deletion's lead capped as at the indel site
     (:func:`.observations_numba_fns.spanning_deletion`); the reads of an overlapping
     pair count once. No ``*`` allele is written: GT at an SNV site is about the SNV.

   A read counts at a site only when its base aligned at POS is present (not deleted, not
   masked as the weaker mate); at SNV-only sites that base must also have quality >=
   ``min_baseq`` and not be N. Spanning deletions (above) are the one exception.

Everything at a position depends only on the reads overlapping it and on the parameters;
windows only batch work, so any split of a region gives the same calls.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MAX_ALT_ALLELES",
    "MAX_ALLELES",
    "MIN_ALT_READS",
    "MIN_ALT_FRACTION",
    "MAX_INDEL_LENGTH",
    "INDEL_FLANK",
    "INDEL_CAP",
    "INDEL_CAP_MIN",
    "SNV_CONTEXT",
    "MAX_COMPARE",
    "INDEL_LEFT_FLANK",
    "MAX_SHIFT",
    "CALL_REACH",
    "CLIP_REACH",
    "SHADOW_PAD",
    "HAP_REACH",
    "REF_MARGIN",
    "REF_LEFT",
    "NEIGHBOUR_LEFT",
    "NEIGHBOUR_HAPS",
    "BASES",
    "CIGAR_INS",
    "CIGAR_DEL",
    "encode_bases",
]

#: At most this many ALT alleles per POS (the most supported ones).
MAX_ALT_ALLELES = 4
#: Maximum number of alleles per site (REF + ALTs).
MAX_ALLELES = MAX_ALT_ALLELES + 1
#: Candidate allele: >= this many reads, summed over the samples that clear the floor ...
MIN_ALT_READS = 2
#: ... a sample's reads count when they are >= this fraction of its depth at the position.
MIN_ALT_FRACTION = 0.1
#: An SNV allele no sample shows in MIN_ALT_READS reads is a candidate only when its reads
#: over all samples would be sequencing errors with probability below this (Poisson with
#: the mean the bases' qualities predict): pooled errors of hundreds of low-coverage
#: samples are no candidates.
MAX_ERROR_P = 1e-3
#: Indels longer than this (bp) are ignored (treated as not present in the read).
MAX_INDEL_LENGTH = 200
#: Bases compared beyond the stretch where indel haplotypes differ.
INDEL_FLANK = 12
#: Per-read cap (phred) on indel evidence from errors other than PCR stutter, outside
#: repeats, and its floor in long repeats.
INDEL_CAP = 45.0
INDEL_CAP_MIN = 30.0
#: Half-width (bp) of the context whose mismatches down-weight a read at an SNV site.
SNV_CONTEXT = 10
#: Longest haplotype comparison (bp) at an indel site, from POS on.
MAX_COMPARE = MAX_INDEL_LENGTH + 120
#: Reference bases before POS included in indel haplotypes (they anchor the read).
INDEL_LEFT_FLANK = 10
#: Largest shift (bp) tried when placing a read against an indel haplotype.
MAX_SHIFT = 32
#: How far (bp) a call at POS looks at other positions: indel sites up to this far before
#: POS can shadow an SNV site (the look-back of pass 2), and an indel site's comparison
#: (``cmp_len <= MAX_COMPARE``) ends at the next indel site, at most this far after POS.
#: Every use of that distance goes through this constant.
CALL_REACH = MAX_COMPARE
#: How far (bp) a read's realigned soft clips (:mod:`varcall.engines.native.clips`) may
#: move its start or end: a read counts at positions up to this far outside the span it
#: is fetched by.
CLIP_REACH = MAX_INDEL_LENGTH + 50
#: Candidate sites up to this far (bp) from a site are its neighbours in local haplotype
#: genotyping (:mod:`varcall.engines.native.haplotypes`): they are observed too, and
#: their own observations reach CALL_REACH further.
HAP_REACH = 150
#: Extra bp of reads fetched on both sides of a window: indel sites there shadow its SNV
#: sites (left) or end its indel comparisons (right), neighbours of its sites are
#: genotyped with them, and reads realigned to reach them are fetched up to CLIP_REACH
#: further out. Must be >= HAP_REACH + CALL_REACH + CLIP_REACH (checked when
#: :mod:`varcall.engines.native.engine` is imported, and by ``tests/test_native.py``).
SHADOW_PAD = HAP_REACH + CALL_REACH + CLIP_REACH
#: Reference margin (bp) fetched beyond the reads of a window.
REF_MARGIN = MAX_INDEL_LENGTH + MAX_COMPARE + MAX_SHIFT + 100
#: Indel sites up to this far (bp) before an indel site's POS lend it *neighbour
#: haplotypes*: the reference at POS with the neighbour's indel allele, which stand for
#: allele 0 there (:mod:`varcall.engines.native.sites`).
NEIGHBOUR_LEFT = INDEL_LEFT_FLANK + 2 * MAX_SHIFT
#: Neighbour haplotypes per indel site (the nearest neighbours' alleles first).
NEIGHBOUR_HAPS = 4
#: Reference bases needed before the first site, and before the first read, of a window
#: (an indel site's haplotypes, a neighbour's deletion included).
REF_LEFT = INDEL_LEFT_FLANK + MAX_SHIFT + NEIGHBOUR_LEFT

#: BAM CIGAR operation codes of an insertion and a deletion ("MIDNSHP=X" -> 0..8).
CIGAR_INS = 1
CIGAR_DEL = 2

_BASE_CODES = np.full(256, 4, np.uint8)
for _i, _c in enumerate(b"ACGT"):
    _BASE_CODES[_c] = _i
    _BASE_CODES[ord(chr(_c).lower())] = _i
#: The letter of each base code (A=0 C=1 G=2 T=3 N=4).
BASES = "ACGTN"


def encode_bases(seq: bytes | str) -> np.ndarray:
    """Base codes (uint8: A=0 C=1 G=2 T=3, anything else 4) of a sequence."""
    if isinstance(seq, str):
        seq = seq.encode("ascii")
    return _BASE_CODES[np.frombuffer(seq, np.uint8)]
