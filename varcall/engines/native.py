"""The native engine: varcall's own joint SNV + indel genotyper.

``call_region`` fetches the reads overlapping the region from every BAM/CRAM, in windows
of at most :data:`WINDOW` bp, shorter for large cohorts (:func:`window_size`; memory stays
flat whatever the region length), each padded by ``pileup.SHADOW_PAD`` bp of reads on both
sides for the neighbouring indel sites the pileup consults, and for each window
runs :mod:`varcall.pileup` (read decoding, mate-overlap masking, evidence counting,
candidate alleles, per-read allele penalties) and :mod:`varcall.model` (genotype
likelihoods, EM allele frequencies, QUAL, GT/GQ/PL). Every quantity at a position comes
from the reads overlapping it, so windows and regions never change a call.

Records
-------
- One record per POS with candidate alleles: SNVs at POS and indels anchored at POS
  (left-normalised) share it; REF spans the longest kept deletion and every ALT is
  written against that REF (VCF convention). Deletions at POS that span later positions
  do not suppress records there.
- ALT alleles that no sample's genotype carries are dropped and the site genotyped again
  on the remaining alleles (once).
- A record is emitted when some sample's GT carries an ALT allele and
  ``QUAL >= params.min_qual / 2``; records with ``QUAL < params.min_qual`` get FILTER
  ``LowQual``, the others ``PASS``. QUAL is rounded to 2 decimals.
- Haploid contigs (``params.ploidy_of(contig) == 1``): GT slot 1 is FILL, PL has one
  entry per allele.

Parameters used: ``min_mapq``, ``min_baseq``, ``include_supplementary``, ``ploidy`` /
``ploidy_by_contig``, ``min_qual``. ``engine_args`` must be empty.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pysam

from varcall import pileup
from varcall.callset import FILL, FILTER_IDS, CallSet, n_genotypes
from varcall.engines import CallInputs, CallParams
from varcall.errors import InputError, RegionError
from varcall.inputs import sample_columns
from varcall.model import joint_call
from varcall.regions import Region

__all__ = ["NativeEngine", "WINDOW", "window_size", "warm", "PRELOAD_MODULES"]

logger = logging.getLogger(__name__)

#: Largest window (bp) of reads decoded and processed at once.
WINDOW = 200_000
#: Windows shrink with the cohort: at most this many sample-bp per window.
WINDOW_SAMPLE_BP = 4_000_000
#: ... but not below this (bp).
MIN_WINDOW = 5_000


def window_size(n_samples: int) -> int:
    """Window length (bp) for a cohort of ``n_samples``: memory per window stays flat
    (per-position arrays are samples x window). Windows never change a call."""
    return max(min(MIN_WINDOW, WINDOW), min(WINDOW, WINDOW_SAMPLE_BP // max(1, n_samples)))


#: Modules numba imports when a process first runs a compiled kernel (most of the cost of
#: :func:`warm`): the fork server of a local process cluster imports them once, so that
#: every worker forked from it has them (:func:`varcall.scatter.ClusterStarter`).
PRELOAD_MODULES: tuple[str, ...] = (
    "numba.cpython.builtins",
    "numba.cpython.charseq",
    "numba.cpython.unicode",
    "numba.cpython.listobj",
    "numba.cpython.setobj",
    "numba.cpython.randomimpl",
    "numba.np.linalg",
    "numba.np.arraymath",
    "numba.np.arrayobj",
    "numba.np.npdatetime",
    "numba.np.npyimpl",
    "numba.np.random.generator_methods",
    "numba.np.polynomial.polynomial_functions",
    "numba.typed.typeddict",
    "numba.typed.typedlist",
    "numba.experimental.jitclass",
    "numba.misc.cffiimpl",
)


def warm() -> None:
    """Prepare this process for fast first calls: set up numba's typing and target
    contexts (about 0.25 s of CPU and 250 module imports the first compiled kernel call
    of a process would otherwise pay; the kernels themselves load from numba's cache).
    Idempotent, thread-safe; a Dask worker runs it once when it starts
    (:class:`varcall.scatter.ClusterStarter`). Changes no result."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    with global_compiler_lock:
        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()


def _record_alleles(
    ref_text: str, ref_lo: int, p: int, alleles: list[tuple[str, str]]
) -> list[str]:
    """VCF allele strings of a site at 0-based POS ``p`` (REF first) from descriptors."""
    lmax = max((len(s) for k, s in alleles if k == "D"), default=0)
    o = p - ref_lo
    ref = ref_text[o : o + 1 + lmax]
    tail = ref[1:]
    out = [ref]
    for kind, seq in alleles[1:]:
        if kind == "X":
            out.append(seq + tail)
        elif kind == "D":
            out.append(ref[0] + tail[len(seq) :])
        else:
            out.append(ref[0] + seq + tail)
    return out


class NativeEngine:
    """varcall's own engine (see the module docstring)."""

    name = "native"

    def check(self) -> None:
        """Nothing external is needed."""
        return None

    def check_params(self, inputs: CallInputs, params: CallParams) -> None:
        """The native engine takes no ``--engine-args``."""
        if params.engine_args:
            raise InputError(
                f"--engine-args {params.engine_args!r}: the native engine takes no extra "
                "arguments; drop --engine-args or choose --engine bcftools/freebayes"
            )

    # ------------------------------------------------------------------ API
    def call_region(self, inputs: CallInputs, region: Region, params: CallParams) -> CallSet:
        """Calls with 0-based POS in ``[region.start, region.end)``, one CallSet."""
        self.check_params(inputs, params)
        ploidy = params.ploidy_of(region.contig)
        if ploidy not in (1, 2):
            raise InputError(
                f"{region.contig}: ploidy {ploidy} is not supported; use 1 or 2 in --ploidy"
            )
        try:
            length = inputs.contig_length(region.contig)
        except KeyError:
            raise InputError(
                f"{inputs.reference}: region {region} names contig {region.contig!r}, which "
                "the reference does not have; use a contig from its .fai"
            ) from None
        start, end = region.start, min(region.end, length)
        sample_index = sample_columns(inputs)  # per file: right also for renamed duplicates
        parts: list[dict] = []
        with pysam.FastaFile(inputs.reference) as fasta:
            step = window_size(len(inputs.samples))
            for ws in range(start, end, step):
                we = min(end, ws + step)
                recs = self._call_window(
                    inputs, fasta, region.contig, length, ws, we, params, ploidy, sample_index
                )
                if recs is not None:
                    parts.append(recs)
        return _to_callset(region.contig, inputs.samples, parts)

    def call_whole(self, inputs: CallInputs, params: CallParams) -> Iterator[CallSet]:
        """One CallSet per reference contig, in reference order (whole-contig regions)."""
        for contig, length in inputs.contigs:
            yield self.call_region(inputs, Region(contig, 0, length), params)

    # ------------------------------------------------------------------ work
    def _call_window(
        self,
        inputs: CallInputs,
        fasta: pysam.FastaFile,
        contig: str,
        length: int,
        ws: int,
        we: int,
        params: CallParams,
        ploidy: int,
        sample_index: tuple[dict[str, int], ...],
    ) -> dict | None:
        # reads from SHADOW_PAD bp around the window: indel sites there shadow SNV sites of
        # the window or end its indel comparisons (see varcall.pileup); only sites in
        # [ws, we) are called
        ews = max(0, ws - pileup.SHADOW_PAD)
        ewe = min(length, we + pileup.SHADOW_PAD)
        batch = pileup.fetch_reads(
            inputs.bams,
            inputs.reference,
            sample_index,
            contig,
            ews,
            ewe,
            min_mapq=params.min_mapq,
            include_supplementary=params.include_supplementary,
        )
        if batch.n_reads == 0:
            return None
        if int(batch.end.max()) > length:
            # invalid alignments (Picard: "alignment extends past end of reference");
            # varcall.scatter names the file when the task fails
            raise RegionError(
                f"region {contig}:{ews + 1}-{ewe}: a read extends past the end of {contig} "
                f"({length} bp); the alignments do not match the reference"
            )
        ref_lo = max(0, min(ews - pileup.REF_LEFT, int(batch.start.min())))
        ref_hi = min(length, max(ewe, int(batch.end.max())) + pileup.REF_MARGIN)
        ref_text = fasta.fetch(contig, ref_lo, ref_hi).upper()
        ref = pileup.encode_bases(ref_text)
        pileup.mask_mate_overlaps(batch)
        ev = pileup.count_evidence(
            batch, ref, ref_lo, ews, ewe, len(inputs.samples), params.min_baseq
        )
        sites = pileup.find_sites(ev, batch, ref, ref_lo, ref_text)
        if sites.n_sites == 0:
            return None
        emit = (sites.pos >= ws) & (sites.pos < we)
        if not emit.any():
            return None
        obs = pileup.site_observations(sites, batch, ref, ref_lo, params.min_baseq, emit)
        n_s = len(inputs.samples)
        keep = np.arange(pileup.MAX_ALLELES)[None, :] < sites.n_alleles[:, None]
        calls = joint_call(obs.site, obs.sample, obs.pen, keep, n_s, ploidy)
        # drop ALT alleles no genotype carries, then genotype once more on the rest
        carried = np.zeros_like(keep)
        gt = calls.genotype.astype(np.int64)
        for slot in range(2):
            g = gt[:, :, slot]
            kk, ss = np.nonzero(g >= 0)
            carried[kk, g[kk, ss]] = True
        # map carried (indexes in kept order == original order on the first round)
        carried[:, 0] = True
        variant = carried[:, 1:].any(axis=1) & emit
        new_keep = keep & carried
        redo = variant & (new_keep != keep).any(axis=1)
        if redo.any():
            keep2 = np.where(redo[:, None], new_keep, keep)
            calls = joint_call(obs.site, obs.sample, obs.pen, keep2, n_s, ploidy)
            keep = keep2
        emit_min = params.min_qual / 2.0
        rows = []
        for k in np.nonzero(variant)[0].tolist():
            q = float(calls.quality[k])
            gtk = calls.genotype[k]
            if q < emit_min or not (gtk > 0).any():
                continue
            al = [a for a, on in zip(sites.alleles[k], keep[k]) if on]
            rows.append((k, _record_alleles(ref_text, ref_lo, int(sites.pos[k]), al)))
        logger.debug(
            "%s:%d-%d: %d reads, %d candidate sites, %d records",
            contig,
            ws + 1,
            we,
            batch.n_reads,
            int(emit.sum()),
            len(rows),
        )
        if not rows:
            return None
        idx = np.array([r[0] for r in rows], np.int64)
        return {
            "position": sites.pos[idx],
            "alleles": [r[1] for r in rows],
            "quality": calls.quality[idx],
            "genotype": calls.genotype[idx],
            "GQ": calls.GQ[idx],
            "DP": calls.DP[idx],
            "AD": calls.AD[idx],
            "PL": calls.PL[idx],
            "min_qual": params.min_qual,
        }


def _to_callset(contig: str, samples: tuple[str, ...], parts: list[dict]) -> CallSet:
    if not parts:
        return CallSet.empty(contig, samples, FILTER_IDS)
    alleles = [a for p in parts for a in p["alleles"]]
    v = len(alleles)
    width = max(2, max(len(a) for a in alleles))
    s = len(samples)
    g = n_genotypes(width)
    allele_arr = np.full(
        (v, width), "", dtype=f"U{max(1, max(len(x) for a in alleles for x in a))}"
    )
    for i, a in enumerate(alleles):
        allele_arr[i, : len(a)] = a
    quality = np.round(np.concatenate([p["quality"] for p in parts]), 2).astype(np.float32)
    min_qual = parts[0]["min_qual"]
    filters = np.zeros((v, len(FILTER_IDS)), bool)
    low = quality < min_qual
    filters[:, FILTER_IDS.index("LowQual")] = low
    filters[:, 0] = ~low
    dp = np.concatenate([p["DP"] for p in parts]).astype(np.int32)
    ad = np.full((v, s, width), FILL, np.int32)
    pl = np.full((v, s, g), FILL, np.int32)
    row = 0
    for p in parts:
        n = p["AD"].shape[0]
        a = min(width, p["AD"].shape[2])
        ad[row : row + n, :, :a] = p["AD"][:, :, :a]
        gg = min(g, p["PL"].shape[2])
        pl[row : row + n, :, :gg] = p["PL"][:, :, :gg]
        row += n
    return CallSet(
        contig=contig,
        samples=samples,
        filter_ids=FILTER_IDS,
        position=np.concatenate([p["position"] for p in parts]).astype(np.int64),
        alleles=allele_arr,
        quality=quality,
        filters=filters,
        info_DP=dp.sum(axis=1).astype(np.int32),
        genotype=np.concatenate([p["genotype"] for p in parts]).astype(np.int8),
        GQ=np.concatenate([p["GQ"] for p in parts]).astype(np.int32),
        DP=dp,
        AD=ad,
        PL=pl,
    )
