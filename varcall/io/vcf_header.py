"""The VCF header varcall writes, and what is read back out of a header text.

:func:`vcf_header` builds the complete VCF 4.2 header (``##`` meta lines and the ``#CHROM``
line); :func:`header_contigs` and :func:`header_filter_descriptions` parse a header text's
``##contig`` and ``##FILTER`` lines. Contig lengths are in bp.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Mapping, Sequence

from varcall.core.callset import INFO_FLOAT_KEYS
from varcall.core.filters import INFO_FLOAT_DESCRIPTIONS

__all__ = [
    "FILTER_DESCRIPTIONS",
    "INFO_LINES",
    "FORMAT_LINES",
    "FORMAT_KEYS",
    "vcf_header",
    "header_contigs",
    "header_filter_descriptions",
]

logger = logging.getLogger(__name__)

#: Descriptions of the filters varcall itself sets; other ids get a generic line.
FILTER_DESCRIPTIONS: dict[str, str] = {
    "PASS": "All filters passed",
    "LowQual": "QUAL below the --min-qual threshold",
    "LowQD": "INFO/QD (QUAL by depth) below the --min-qd threshold",
    "StrandBias": "Strand bias: INFO/FS or INFO/SOR above the --max-fs / --max-sor thresholds",
    "AlleleBalance": "INFO/AB below the --min-allele-balance threshold and INFO/ABQ above "
    "--max-abq",
    "MappingQuality": "INFO/MQ0F, INFO/MQ, INFO/MQMR - INFO/MQM or INFO/MQRankSum beyond "
    "the --max-mq0f, --min-rms-mapq, --max-alt-mapq-drop or --min-mq-ranksum thresholds",
    "ReadPosBias": "INFO/ReadPosRankSum below the --min-readpos-ranksum threshold",
}

INFO_LINES: tuple[str, ...] = (
    '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total read depth at the site. native '
    "engine: the reads used at the site summed over the samples (the sum of FORMAT/DP: MAPQ >= "
    "--min-mapq, flag filters, base quality >= --min-baseq at SNV sites, overlapping mates "
    'counted once); bcftools / freebayes: their own INFO/DP">',
    '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count in genotypes, for each ALT allele, in the same order as listed">',
    '##INFO=<ID=AN,Number=1,Type=Integer,Description="Total number of alleles in called genotypes">',
    *(
        f'##INFO=<ID={key},Number=1,Type=Float,Description="{INFO_FLOAT_DESCRIPTIONS[key]}">'
        for key in INFO_FLOAT_KEYS
    ),
)
FORMAT_LINES: tuple[str, ...] = (
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype: native engine, the genotype '
    "of highest posterior probability (the likelihoods of PL times the population prior from "
    'the cohort allele frequencies)">',
    '##FORMAT=<ID=GQ,Number=1,Type=Integer,Description="Phred-scaled genotype quality">',
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Read depth of the sample at the site">',
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Read depth for each allele">',
    '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred-scaled genotype likelihoods '
    '(the reads only, no prior), normalised so the best is 0">',
)
FORMAT_KEYS = "GT:GQ:DP:AD:PL"
_CONTIG_RE = re.compile(r"^##contig=<ID=([^,>]+)(?:,.*?length=(\d+))?")
_FORMAT_ID_RE = re.compile(r"^##FORMAT=<ID=([^,>]+)")
_FILTER_RE = re.compile(r"^##FILTER=<ID=([^,>]+)")
_FILTER_DESC_RE = re.compile(r'^##FILTER=<ID=([^,>]+),.*?Description="((?:[^"\\]|\\.)*)"')


def vcf_header(
    contigs: Sequence[tuple[str, int]],
    samples: Sequence[str],
    filter_ids: Sequence[str],
    *,
    source: str = "varcall",
    command_line: str | None = None,
    reference: str | None = None,
    extra_lines: Sequence[str] = (),
    format_fields: Sequence[str] | None = None,
    filter_descriptions: Mapping[str, str] | None = None,
) -> str:
    """The complete VCF 4.2 header (meta lines and the ``#CHROM`` line), ending in a newline.

    format_fields: the FORMAT fields declared (None: all of :data:`FORMAT_KEYS`); with none
    (sites-only) no ``##FORMAT`` line and no sample columns are written.

    contigs: (name, length in bp) in reference order. filter_ids: every id a record may carry
    (PASS is always declared). ``extra_lines`` are ``##`` lines added before the command line;
    an extra ``##FILTER=<ID=X,...>`` line replaces varcall's generic line for X.
    filter_descriptions: descriptions by filter id (e.g. naming the run's thresholds,
    :func:`varcall.core.filters.filter_descriptions`) over :data:`FILTER_DESCRIPTIONS`.
    """
    extra = [line.rstrip("\n") for line in extra_lines]
    for line in extra:
        if not line.startswith("##"):
            raise ValueError(f"extra VCF header line does not start with '##': {line!r}")
    extra_filters = {m.group(1) for m in map(_FILTER_RE.match, extra) if m}
    lines = [
        "##fileformat=VCFv4.2",
        f"##fileDate={datetime.date.today().strftime('%Y%m%d')}",
        f"##source={source}",
    ]
    if reference is not None:
        ref = str(reference)
        lines.append(f"##reference={ref if '://' in ref else 'file://' + ref}")
    for name, length in contigs:
        lines.append(f"##contig=<ID={name},length={int(length)}>")
    ids = ["PASS"] + [f for f in filter_ids if f != "PASS"]
    for fid in ids:
        if fid in extra_filters:
            continue
        desc = {**FILTER_DESCRIPTIONS, **(filter_descriptions or {})}.get(
            fid, f"Filter {fid} set by the calling engine"
        )
        lines.append(f'##FILTER=<ID={fid},Description="{desc}">')
    lines.extend(INFO_LINES)
    fields = FORMAT_KEYS.split(":") if format_fields is None else list(format_fields)
    lines.extend(line for line in FORMAT_LINES if _FORMAT_ID_RE.match(line).group(1) in fields)
    lines.extend(extra)
    if command_line is not None:
        lines.append(f"##varcallCommand={' '.join(command_line.splitlines())}")
    cols = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
    if samples and fields:
        cols += ["FORMAT", *samples]
    lines.append("\t".join(cols))
    return "\n".join(lines) + "\n"


def header_filter_descriptions(header: str) -> dict[str, str]:
    """{id: description} of the ``##FILTER`` lines of a header text."""
    out = {}
    for line in header.splitlines():
        m = _FILTER_DESC_RE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def header_contigs(header: str) -> list[tuple[str, int | None]]:
    """(name, length in bp or None) of the ``##contig`` lines of a header text."""
    out: list[tuple[str, int | None]] = []
    for line in header.splitlines():
        m = _CONTIG_RE.match(line)
        if m:
            out.append((m.group(1), int(m.group(2)) if m.group(2) else None))
    return out
