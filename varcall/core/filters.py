"""Site annotations and the FILTERs set from them: what each counts, the thresholds
(:class:`~varcall.core.params.CallParams` fields) and the header texts.

The native engine computes the annotations from the reads it uses at a site
(:mod:`varcall.engines.native.annotations`); other engines leave them missing or map
their own when the meaning is the same (bcftools' ``MQ0F``). A read "supports" an allele
when that allele alone has its smallest penalty among the record's alleles (the reads
that FORMAT/AD counts); REF reads support allele 0, ALT reads any other allele of the
record. All counts are pooled over the samples. A missing (NaN) annotation never sets a
filter, and a threshold of ``inf`` / ``-inf`` turns its test off.

=================  ===========================================================================
INFO               definition
=================  ===========================================================================
QD                 QUAL by depth, as GATK's QualByDepth: QUAL / the depth of the samples whose
                   GT carries an ALT allele, each such sample's depth the sum of its
                   FORMAT/AD (its FORMAT/DP when that is 0); where some carriers have >= 2
                   ALT-supporting reads only they count (GATK's AD-restricted depth); NaN
                   when the depth is 0. From the record's rounded QUAL; GATK's random
                   jitter of QD above 35 is not applied (QD stays a function of the record)
FS                 ``-10 log10 p`` of Fisher's exact test (two-sided) on the strand table
                   ``[[REF fwd, REF rev], [ALT fwd, ALT rev]]``; a table of more than 400
                   reads is scaled down to 200 first (as GATK), so FS measures the size of
                   the bias rather than the depth
SOR                GATK's symmetric odds ratio of the same table, each cell + 1:
                   ``ln(R + 1/R) + ln(min(rf, rr) / max(rf, rr)) - ln(min(af, ar) / max(af, ar))``
                   with ``R = (rf ar) / (rr af)``
AB                 ALT reads / (REF + ALT reads) summed over the samples called heterozygous
                   REF/ALT (FORMAT/AD of the called alleles)
ABQ                ``-10 log10 P(X <= ALT reads)``, X ~ Binomial(REF + ALT reads, 1/2), the
                   same reads: how unlikely so few ALT reads are if the hets are true
MQ0F               reads overlapping POS with MAPQ 0 / all reads overlapping POS (flag
                   filters applied, before the ``--min-mapq`` filter)
MQ                 root mean square MAPQ of the reads used at the site
MQM, MQMR          mean MAPQ of the ALT-supporting / REF-supporting reads (freebayes' names)
MQRankSum          Mann-Whitney U test of ALT vs REF reads' MAPQ, as a Z score (tie-corrected
                   normal approximation; negative: ALT reads have lower MAPQ)
ReadPosRankSum     the same test of the distance of the read's base at POS to the nearer end
                   of its aligned (not soft-clipped) bases (negative: ALT bases nearer ends)
=================  ===========================================================================

FILTERs (besides ``LowQual``: QUAL < ``min_qual``):

- ``LowQD``: QD < ``min_qd`` (GATK's 2.0 for SNVs and indels): a QUAL that comes from the
  depth rather than from convincing ALT evidence;
- ``StrandBias``: FS > ``max_fs`` or SOR > ``max_sor`` (records with an indel ALT:
  ``max_fs_indel`` / ``max_sor_indel``; FS 60 / 200 and SOR 10 for indels are GATK's
  hard-filter values, SOR for SNVs is 5 where GATK's is 3: SOR > 3 already flags a true
  het with 4 ALT reads all on one strand, a 1 in 8 chance). SOR counts only at a record
  where no sample is called homozygous for an ALT (as for ``AlleleBalance``): with (almost)
  no REF reads its ALT-ratio term measures the strand balance of the coverage, not of the
  ALT allele -- near a contig end every read comes from one strand (a true hom-ALT SNV 57 bp
  from the end of a simulated contig: SOR 6.0, FS 0). FS, which compares ALT with REF
  reads, still applies there;
- ``AlleleBalance``: AB < ``min_allele_balance`` and ABQ > ``max_abq`` (too few ALT reads
  for true hets, by size and by significance) at a record where no sample is called
  homozygous for an ALT (an artefact that moves a share of the reads to an ALT -- a
  mismapped paralog, PCR stutter -- makes heterozygous calls only; a record with a clear
  hom-ALT carrier is kept whatever one skewed het says);
- ``MappingQuality``: MQ0F > ``max_mq0f``, MQ < ``min_rms_mapq``, MQMR - MQM >
  ``max_alt_mapq_drop`` (the ALT reads map much worse than the REF reads at the same
  place: reads of a diverged paralog) or MQRankSum < ``min_mq_ranksum``;
- ``ReadPosBias``: ReadPosRankSum < ``min_readpos_ranksum``.
"""

from __future__ import annotations

import numpy as np

from varcall.core.callset import FILTER_IDS, INFO_FLOAT_KEYS
from varcall.core.params import CallParams

__all__ = [
    "ANNOTATION_FILTER_IDS",
    "NATIVE_FILTER_IDS",
    "INFO_FLOAT_DESCRIPTIONS",
    "filter_descriptions",
    "site_filters",
]

#: The FILTERs set from the annotations.
ANNOTATION_FILTER_IDS: tuple[str, ...] = (
    "LowQD",
    "StrandBias",
    "AlleleBalance",
    "MappingQuality",
    "ReadPosBias",
)
#: Every filter the native engine may set (the columns of its CallSets' ``filters``).
NATIVE_FILTER_IDS: tuple[str, ...] = (*FILTER_IDS, *ANNOTATION_FILTER_IDS)

#: The ``##INFO`` Description of each float annotation (no double quotes).
INFO_FLOAT_DESCRIPTIONS: dict[str, str] = {
    "QD": "Quality by depth (as GATK QD): QUAL / the summed FORMAT/AD (FORMAT/DP where AD "
    "sums to 0) of the samples whose GT carries an ALT allele, only those with >= 2 "
    "ALT-supporting reads when there are such samples; no random jitter above 35",
    "FS": "Strand bias: phred-scaled p-value of Fisher's exact test (two-sided) on the table "
    "REF/ALT-supporting reads x forward/reverse strand, all samples pooled (over 400 reads "
    "scaled to 200)",
    "SOR": "Strand bias: symmetric odds ratio of the same table, each count + 1 (as GATK SOR)",
    "AB": "Allele balance: ALT-supporting / (REF + ALT)-supporting reads (FORMAT/AD) summed "
    "over the samples called heterozygous REF/ALT",
    "ABQ": "Allele balance: phred-scaled P(X <= the ALT reads of AB), X ~ Binomial(the REF + "
    "ALT reads of AB, 0.5)",
    "MQ0F": "Fraction of the reads overlapping the site with MAPQ 0 (flag filters applied, "
    "before --min-mapq)",
    "MQ": "Root mean square MAPQ of the reads used at the site",
    "MQM": "Mean MAPQ of the ALT-supporting reads",
    "MQMR": "Mean MAPQ of the REF-supporting reads",
    "MQRankSum": "Mann-Whitney Z of the MAPQ of ALT- vs REF-supporting reads (negative: ALT "
    "reads map worse)",
    "ReadPosRankSum": "Mann-Whitney Z of the distance from the base at POS to the nearer end "
    "of the read's aligned bases, ALT- vs REF-supporting reads (negative: ALT nearer the ends)",
}
assert tuple(INFO_FLOAT_DESCRIPTIONS) == INFO_FLOAT_KEYS


def filter_descriptions(params: CallParams) -> dict[str, str]:
    """The ``##FILTER`` Description of LowQual and of each annotation filter, naming the
    thresholds of ``params``."""
    p = params
    return {
        "LowQual": f"QUAL below {p.min_qual:g} (--min-qual)",
        "LowQD": f"QD (QUAL by depth) below {p.min_qd:g} (--min-qd)",
        "StrandBias": f"Strand bias: FS > {p.max_fs:g} or SOR > {p.max_sor:g} (SOR where no "
        "sample is homozygous ALT; records with "
        f"an indel: FS > {p.max_fs_indel:g} or SOR > {p.max_sor_indel:g}) (--max-fs, "
        "--max-sor, --max-fs-indel, --max-sor-indel)",
        "AlleleBalance": f"Heterozygous carriers' ALT read fraction AB < "
        f"{p.min_allele_balance:g} and ABQ > {p.max_abq:g}, no hom-ALT call "
        "(--min-allele-balance, --max-abq)",
        "MappingQuality": f"MQ0F > {p.max_mq0f:g} or MQ < {p.min_rms_mapq:g} or MQMR - MQM > "
        f"{p.max_alt_mapq_drop:g} or MQRankSum < {p.min_mq_ranksum:g} (--max-mq0f, "
        "--min-rms-mapq, --max-alt-mapq-drop, --min-mq-ranksum)",
        "ReadPosBias": f"ReadPosRankSum < {p.min_readpos_ranksum:g} (--min-readpos-ranksum)",
    }


def site_filters(
    quality: np.ndarray,
    annotations: dict[str, np.ndarray],
    indel: np.ndarray,
    hom_alt: np.ndarray,
    params: CallParams,
) -> np.ndarray:
    """(V, F) bool FILTER matrix against :data:`NATIVE_FILTER_IDS` of records with QUAL
    ``quality`` (V,), annotations ``{key: (V,) float}`` (:data:`INFO_FLOAT_KEYS`; NaN never
    filters), ``indel`` (V,) bool (the record has an indel ALT) and ``hom_alt`` (V,) bool
    (some sample is called homozygous for an ALT); PASS where no other filter is set."""
    p = params
    a = annotations
    v = quality.shape[0]
    with np.errstate(invalid="ignore"):
        fs_max = np.where(indel, p.max_fs_indel, p.max_fs)
        sor_max = np.where(indel, p.max_sor_indel, p.max_sor)
        on = {
            "LowQual": quality < p.min_qual,
            "LowQD": a["QD"] < p.min_qd,
            "StrandBias": (a["FS"] > fs_max) | ((a["SOR"] > sor_max) & ~hom_alt),
            "AlleleBalance": (a["AB"] < p.min_allele_balance) & (a["ABQ"] > p.max_abq) & ~hom_alt,
            "MappingQuality": (a["MQ0F"] > p.max_mq0f)
            | (a["MQ"] < p.min_rms_mapq)
            | (a["MQMR"] - a["MQM"] > p.max_alt_mapq_drop)
            | (a["MQRankSum"] < p.min_mq_ranksum),
            "ReadPosBias": a["ReadPosRankSum"] < p.min_readpos_ranksum,
        }
    out = np.zeros((v, len(NATIVE_FILTER_IDS)), bool)
    for name, mask in on.items():
        out[:, NATIVE_FILTER_IDS.index(name)] = mask
    out[:, 0] = ~out[:, 1:].any(axis=1)
    return out
