"""The native engine: varcall's own joint SNV + indel genotyper.

``call_region`` fetches the reads overlapping the region from every BAM/CRAM, in windows
of at most :data:`WINDOW` bp, shorter for large cohorts (:func:`window_size`) and where
the indexes show more reads than ``params.memory_budget`` allows
(:mod:`varcall.engines.native.windows`; memory stays flat whatever the region length and
the depth), each padded by ``pileup.SHADOW_PAD`` bp of reads on both
sides for the neighbouring indel sites the pileup consults, and for each window runs the
pileup stages described in :mod:`varcall.engines.native.pileup` (read decoding and
mate-overlap masking in :mod:`.reads`, evidence counting in :mod:`.evidence`, candidate
alleles in :mod:`.sites`, per-read allele penalties in :mod:`.observations`) and
:mod:`varcall.engines.native.model` (genotype likelihoods, EM allele frequencies, QUAL,
GT/GQ/PL). Every quantity at a position comes
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
  ``LowQual``. Site annotations (INFO QD, FS, SOR, AB, ABQ, MQ0F, MQ, MQM, MQMR, MQRankSum,
  ReadPosRankSum; :mod:`.annotations`) set the FILTERs LowQD, StrandBias, AlleleBalance,
  MappingQuality and ReadPosBias (:func:`varcall.core.filters.site_filters`); a record
  with none of these is ``PASS``. QUAL is rounded to 2 decimals, the annotations to 3.
- Ploidy is per sample and position (:func:`varcall.plan.ploidy.contig_ploidy`: sexes,
  PARs, ``--ploidy-contig``), taken at the site's POS, so one record can mix diploid and
  haploid samples. Haploid samples: GT slot 1 is FILL, PL has one entry per allele;
  ploidy 0 (chrY of a female): missing GT. A contig where every sample has ploidy 0 is
  not read at all.

Parameters used: ``min_mapq``, ``min_baseq``, ``include_supplementary``, ``ploidy`` /
``ploidy_by_contig`` / ``sex_ploidy`` / ``sample_sex``, ``min_qual``, the FILTER
thresholds (``max_fs`` ... ``min_readpos_ranksum``) and ``memory_budget`` (windows only).
``engine_args`` must be empty.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import threading
from collections.abc import Iterator, Sequence

import numba.core.config as numba_config
import numpy as np
import pysam

from varcall.core.callset import FILL, CallSet, n_genotypes
from varcall.core.errors import InputError, RegionError
from varcall.core.filters import NATIVE_FILTER_IDS, site_filters
from varcall.core.params import CallInputs, CallParams
from varcall.core.regions import Region
from varcall.engines.native.annotations import (
    allele_balance,
    drop_low_mapq,
    quality_by_depth,
    read_spans,
    record_annotations,
)
from varcall.engines.native.calibrate import calibrated_params, stutter_table
from varcall.engines.native.clips import clip_reference_margin, realign_clips
from varcall.engines.native.evidence import count_evidence
from varcall.engines.native.haplotypes import genotype_sites, observed_sites
from varcall.engines.native.observations import site_observations
from varcall.engines.native.pileup import (
    CALL_REACH,
    CLIP_REACH,
    HAP_REACH,
    REF_LEFT,
    REF_MARGIN,
    SHADOW_PAD,
    encode_bases,
)
from varcall.engines.native.reads import ReadBatch, fetch_reads, mask_mate_overlaps
from varcall.engines.native.repeats import MAX_TRACT
from varcall.engines.native.sites import find_sites
from varcall.engines.native.stutter import RATIO_AT, TABLE_LEN, VARIANT_PRIOR_AT, StutterModel
from varcall.engines.native.windows import plan_windows
from varcall.io import handles as _handles
from varcall.plan.inputs import sample_columns
from varcall.plan.ploidy import ContigPloidy, contig_ploidy

__all__ = ["NativeEngine", "WINDOW", "window_size", "warm"]

logger = logging.getLogger(__name__)

if SHADOW_PAD < HAP_REACH + CALL_REACH + CLIP_REACH:  # a development error
    raise ImportError(
        f"pileup.SHADOW_PAD ({SHADOW_PAD} bp) < pileup.HAP_REACH + CALL_REACH + CLIP_REACH "
        f"({HAP_REACH} + {CALL_REACH} + {CLIP_REACH} bp): windows would miss sites a call "
        "looks at, or reads that give them, and change calls; raise SHADOW_PAD"
    )
if MAX_TRACT + 1 > REF_MARGIN:  # a development error: a tract would run past the reference
    raise ImportError(
        f"repeats.MAX_TRACT ({MAX_TRACT} bp) + 1 > pileup.REF_MARGIN ({REF_MARGIN} bp): a "
        "site's repeat tract could reach past the window's reference; raise REF_MARGIN"
    )
if numba_config.CPU_NAME != os.environ.get("NUMBA_CPU_NAME"):
    # numba was imported before varcall set NUMBA_CPU_NAME (see varcall/__init__.py)
    logger.warning(
        "numba compiles for CPU %r, not %r: import varcall before numba so that calls do "
        "not depend on the CPU type",
        numba_config.CPU_NAME,
        os.environ.get("NUMBA_CPU_NAME"),
    )

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


_warm_lock = threading.Lock()
_warmed = False


def warm() -> None:
    """Prepare this process for fast first calls: call a tiny built-in cohort once so that
    numba loads the engine's kernels from its cache (0.15-0.4 s per process; without
    numba's registry refresh, :mod:`varcall.core.jit`). Idempotent and thread-safe; run
    by the fork server of a local process cluster (every worker forked from it starts
    warm), by thread workers' process, and by each Dask worker when it starts
    (:class:`varcall.run.clusters.ClusterStarter`). Changes no result: the warm-up writes
    only to a temporary folder and its calls are dropped."""
    global _warmed
    with _warm_lock:
        if _warmed:
            return
        try:
            _warm_call()
        except Exception as e:  # an optimisation only: the first real call loads them
            logger.debug("warm-up call failed: %s", e)
        _warmed = True


def _warm_call() -> None:
    """Call a synthetic 2 kb contig (a SNV and a 2 bp deletion in 40 overlapping read pairs
    of one sample) through the whole engine: BAM decoding, pileup, genotyping and VCF text."""
    import tempfile

    from varcall.io.vcf_write import format_bytes

    rng = np.random.default_rng(0)
    length = 2000
    ref = "".join(rng.choice(list("ACGT"), length))
    with tempfile.TemporaryDirectory(prefix="varcall-warm-") as tmp:
        fasta = os.path.join(tmp, "ref.fa")
        with open(fasta, "w") as fh:
            fh.write(f">w\n{ref}\n")
        pysam.faidx(fasta)
        bam = os.path.join(tmp, "w.bam")
        header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "w", "LN": length}],
                  "RG": [{"ID": "w", "SM": "w"}]}  # fmt: skip
        reads = []  # (start, pair, first mate?, mate start): pairs overlap by 70 bp
        for k, start in enumerate(int(x) for x in rng.integers(700, 1120, 40)):
            reads += [(start, k, True, start + 30), (start + 30, k, False, start)]
        with pysam.AlignmentFile(bam, "wb", header=header) as out:
            for start, k, first, mate in sorted(reads):
                seq = list(ref[start : start + 102])
                a = pysam.AlignedSegment(out.header)
                a.query_name = f"r{k}"
                a.flag = 1 | 2 | (64 | 32 if first else 128 | 16)
                a.reference_id = a.next_reference_id = 0
                a.reference_start = start
                a.next_reference_start = mate
                a.mapping_quality = 60
                if k % 2 and 905 <= start <= 985:  # a heterozygous 2 bp deletion at 1000
                    del seq[1000 - start : 1002 - start]
                    a.cigartuples = [(0, 1000 - start), (2, 2), (0, 100 - (1000 - start))]
                else:
                    a.cigartuples = [(0, 100)]
                seq = seq[:100]
                if start <= 900 < start + 100 and k % 2 == 0:  # a heterozygous SNV at 900
                    seq[900 - start] = "A" if ref[900] != "A" else "C"
                a.query_sequence = "".join(seq)
                a.query_qualities = pysam.qualitystring_to_array("I" * 100)
                a.set_tag("RG", "w")
                out.write(a)
        pysam.index(bam)
        inputs = CallInputs(reference=fasta, bams=(bam,), samples=("w",), contigs=(("w", length),))
        callset = NativeEngine().call_region(inputs, Region("w", 0, length), CallParams())
        format_bytes(callset)


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


@functools.lru_cache(maxsize=4)
def _stutter_model(inputs: CallInputs, params: CallParams) -> StutterModel:
    """The run's stutter model (calibrated once per process and run; a pure function of
    the inputs and parameters, so every region of a run gets the same)."""
    return StutterModel(stutter_table(inputs, params))


def _check_stutter_table(table: tuple[float, ...]) -> None:
    """InputError unless ``table`` is a stutter table (:mod:`.stutter`): TABLE_LEN finite
    numbers (or the 26 of a table without the repeat variant prior) whose step ratios (a
    two-unit over a one-unit step) lie in [0, 1]."""
    fix = "copy params.stutter_table from a run's manifest.json"
    if len(table) not in (TABLE_LEN, VARIANT_PRIOR_AT):
        raise InputError(
            f"--stutter-table: {len(table)} numbers given, a table has {TABLE_LEN} (or "
            f"{VARIANT_PRIOR_AT} without the repeat variant prior); {fix}"
        )
    bad = [i + 1 for i, v in enumerate(table) if not math.isfinite(v)]
    if bad:
        raise InputError(f"--stutter-table: number {bad[0]} is not finite; {fix}")
    ratios = table[RATIO_AT : RATIO_AT + 2]
    if not all(0.0 <= r <= 1.0 for r in ratios):
        raise InputError(
            f"--stutter-table: numbers 25 and 26 (step ratios) must lie in [0, 1], not "
            f"{ratios[0]:g}, {ratios[1]:g}; {fix}"
        )


class NativeEngine:
    """varcall's own engine (see the module docstring)."""

    name = "native"

    def check(self) -> None:
        """Nothing external is needed."""
        return None

    def check_params(self, inputs: CallInputs, params: CallParams) -> None:
        """The native engine takes no ``--engine-args``; the indel error options must be
        valid."""
        if params.engine_args:
            raise InputError(
                f"--engine-args {params.engine_args!r}: the native engine takes no extra "
                "arguments; drop --engine-args or choose --engine bcftools/freebayes"
            )
        if params.indel_errors not in ("estimate", "prior"):
            raise InputError(f"--indel-errors {params.indel_errors!r}: use estimate or prior")
        if params.stutter_table:
            _check_stutter_table(params.stutter_table)

    def prepare_params(self, inputs: CallInputs, params: CallParams) -> CallParams:
        """``params`` with the run's stutter table filled in, computed once before any
        region is called (:func:`varcall.engines.native.calibrate.calibrated_params`)."""
        return calibrated_params(inputs, params)

    # ------------------------------------------------------------------ API
    def call_region(self, inputs: CallInputs, region: Region, params: CallParams) -> CallSet:
        """Calls with 0-based POS in ``[region.start, region.end)``, one CallSet."""
        self.check_params(inputs, params)
        size = window_size(len(inputs.samples))
        plan = self._region_plan(inputs, region, params, size, params.memory_budget)
        return next(self._call_plans(inputs, params, [plan]))

    def call_regions(
        self, inputs: CallInputs, regions: Sequence[Region], params: CallParams
    ) -> list[CallSet]:
        """One CallSet per region, each the one :meth:`call_region` gives. Neighbouring
        regions of a contig (given in order, gaps of at most :data:`GROUP_GAP` bp, together
        within one window's length) are called as one stretch whose windows' reads they
        share, sites called only inside the regions: a packed task of many small regions
        (a target BED, a fine region plan) fetches each file once per window, not once per
        region. Calls depend only on the reads around each position, so they are the same."""
        self.check_params(inputs, params)
        size = window_size(len(inputs.samples))
        out: list[CallSet] = []
        for group in _region_groups(regions, size):
            if len(group) == 1:
                out.append(self.call_region(inputs, group[0], params))
                continue
            hull = Region(group[0].contig, group[0].start, group[-1].end)
            plan = self._region_plan(inputs, hull, params, size, params.memory_budget)
            plan = dataclasses.replace(plan, keep=tuple((r.start, r.end) for r in group))
            cs = next(self._call_plans(inputs, params, [plan]))
            out += [cs.restrict(r.start, r.end) for r in group]
        return out

    def call_whole(self, inputs: CallInputs, params: CallParams) -> Iterator[CallSet]:
        """One CallSet per reference contig, in reference order (whole-contig regions)."""
        self.check_params(inputs, params)
        size = window_size(len(inputs.samples))
        plans = [
            self._region_plan(inputs, Region(contig, 0, length), params, size, params.memory_budget)
            for contig, length in inputs.contigs
        ]
        yield from self._call_plans(inputs, params, plans)

    # ------------------------------------------------------------------ plan
    def _region_plan(
        self, inputs: CallInputs, region: Region, params: CallParams, size: int, budget: int
    ) -> _RegionPlan:
        """The windows and ploidy of ``region``: windows of at most ``size`` bp and
        ``budget`` MiB (:func:`varcall.engines.native.windows.plan_windows`)."""
        if params.ploidy_of(region.contig) not in (1, 2):
            raise InputError(
                f"{region.contig}: ploidy {params.ploidy_of(region.contig)} is not supported; "
                "use 1 or 2 in --ploidy"
            )
        try:
            length = inputs.contig_length(region.contig)
        except KeyError:
            raise InputError(
                f"{inputs.reference}: region {region} names contig {region.contig!r}, which "
                "the reference does not have; use a contig from its .fai"
            ) from None
        start, end = region.start, min(region.end, length)
        ploidy = contig_ploidy(params, inputs.samples, region.contig, length)
        if ploidy.uniform == 0:  # no sample has this contig (chrY of females): no calls
            end = start
        windows = plan_windows(inputs, region.contig, length, start, end, size, budget)
        return _RegionPlan(region.contig, length, ploidy, tuple(windows))

    def _call_plans(
        self, inputs: CallInputs, params: CallParams, plans: Sequence[_RegionPlan]
    ) -> Iterator[CallSet]:
        """One CallSet per plan, in order."""
        sample_index = sample_columns(inputs)  # per file: right also for renamed duplicates
        stutter = _stutter_model(inputs, params)
        # the worker's open FASTA of this file version (varcall.io.handles), not one per region
        with _handles.checkout(inputs.reference, pysam.FastaFile, "fasta") as fasta:
            for plan in plans:
                parts: list[dict] = []
                for ws, we in plan.windows:
                    recs = self._call_window(
                        inputs, fasta, plan, ws, we, params, stutter, sample_index
                    )
                    if recs is not None:
                        parts.append(recs)
                yield _to_callset(plan.contig, inputs.samples, parts, params)

    # ------------------------------------------------------------------ work
    def _call_window(
        self,
        inputs: CallInputs,
        fasta: pysam.FastaFile,
        plan: _RegionPlan,
        ws: int,
        we: int,
        params: CallParams,
        stutter: StutterModel,
        sample_index: tuple[dict[str, int], ...],
    ) -> dict | None:
        """The records of the sites with 0-based POS in ``[ws, we)`` (a dict of columns
        for :func:`_to_callset`), None when there are none. The window's reads
        (:func:`_window_reads`) live only while it is called."""
        contig, length = plan.contig, plan.length
        ews = max(0, ws - SHADOW_PAD)
        ewe = min(length, we + SHADOW_PAD)
        batch = _window_reads(inputs, params, sample_index, contig, length, ws, we)
        spans = read_spans(batch)
        batch = drop_low_mapq(batch, params.min_mapq)
        if batch.n_reads == 0:
            return None
        ref_lo, ref_text = _window_reference(fasta, contig, length, batch, ews, ewe)
        ref = encode_bases(ref_text)
        batch = realign_clips(batch, ref, ref_lo)
        mask_mate_overlaps(batch)
        n_s = len(inputs.samples)
        ev = count_evidence(batch, ref, ref_lo, ews, ewe, n_s, params.min_baseq)
        sites = find_sites(ev, batch, ref, ref_lo, ref_text, stutter)
        if sites.n_sites == 0:
            return None
        emit = (sites.pos >= ws) & (sites.pos < we)
        if plan.keep is not None:
            emit &= _inside(sites.pos, plan.keep)
        if not emit.any():
            return None
        observe = observed_sites(sites.pos, emit)
        obs = site_observations(sites, batch, ref, ref_lo, params.min_baseq, observe)
        ploidy = plan.ploidy.at(sites.pos).astype(np.int8)
        calls, keep, variant = genotype_sites(obs, sites, emit, ploidy)
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
            contig, ws + 1, we, batch.n_reads, int(emit.sum()), len(rows),
        )  # fmt: skip
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
            "annotations": record_annotations(obs, keep, sites.pos, idx, batch, spans),
        }


@dataclasses.dataclass(frozen=True)
class _RegionPlan:
    """A region's contig, contig length, ploidy and windows (0-based half-open), and for
    neighbouring regions called together (:meth:`NativeEngine.call_regions`) the regions."""

    contig: str
    length: int
    ploidy: ContigPloidy
    windows: tuple[tuple[int, int], ...]
    #: sorted disjoint intervals outside which no site is called (None: the windows)
    keep: tuple[tuple[int, int], ...] | None = None


#: Largest gap (bp) between neighbouring regions called as one stretch
#: (:meth:`NativeEngine.call_regions`): where their padded fetches would overlap.
GROUP_GAP = 2 * SHADOW_PAD


def _region_groups(regions: Sequence[Region], size: int) -> list[list[Region]]:
    """``regions`` in order, cut into runs of neighbours: same contig, each starting at or
    after the previous one's end, at most GROUP_GAP bp later, the run spanning at most
    ``size`` bp."""
    groups: list[list[Region]] = []
    for r in regions:
        g = groups[-1] if groups else None
        if (
            g is not None
            and r.contig == g[-1].contig
            and g[-1].end <= r.start <= g[-1].end + GROUP_GAP
            and r.end - g[0].start <= size
        ):
            g.append(r)
        else:
            groups.append([r])
    return groups


def _inside(pos: np.ndarray, keep: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Whether each position lies in one of the sorted disjoint intervals ``keep``."""
    starts = np.array([a for a, _ in keep], np.int64)
    ends = np.array([b for _, b in keep], np.int64)
    i = np.searchsorted(starts, pos, side="right") - 1
    return (i >= 0) & (pos < ends[np.maximum(i, 0)])


def _window_reads(
    inputs: CallInputs,
    params: CallParams,
    sample_index: tuple[dict[str, int], ...],
    contig: str,
    length: int,
    ws: int,
    we: int,
) -> ReadBatch:
    """The reads a window ``[ws, we)`` needs: those of SHADOW_PAD bp around it (indel
    sites there shadow SNV sites of the window or end its indel comparisons, see
    varcall.engines.native.pileup; only sites in ``[ws, we)`` are called), all MAPQs."""
    return fetch_reads(
        inputs.bams, inputs.reference, sample_index, contig,
        max(0, ws - SHADOW_PAD), min(length, we + SHADOW_PAD),
        min_mapq=0,  # MQ0F counts every read; the pileup sees those >= min_mapq
        include_supplementary=params.include_supplementary,
    )  # fmt: skip


def _window_reference(
    fasta: pysam.FastaFile, contig: str, length: int, batch: ReadBatch, ews: int, ewe: int
) -> tuple[int, str]:
    """(0-based start, upper-case text) of the reference the pileup of the reads of
    ``[ews, ewe)`` needs: every read plus margins (pileup.REF_LEFT, pileup.REF_MARGIN,
    :func:`.clips.clip_reference_margin`).
    RegionError when a read extends past the contig."""
    if int(batch.end.max()) > length:
        # invalid alignments (Picard: "alignment extends past end of reference");
        # varcall.run.scatter names the file when the task fails
        raise RegionError(
            f"region {contig}:{ews + 1}-{ewe}: a read extends past the end of {contig} "
            f"({length} bp); the alignments do not match the reference"
        )
    clip = clip_reference_margin(batch)  # realigned soft clips face reference beyond reads
    ref_lo = max(0, min(ews, int(batch.start.min()) - clip) - REF_LEFT)
    ref_hi = min(length, max(ewe, int(batch.end.max())) + max(REF_MARGIN, clip))
    return ref_lo, fasta.fetch(contig, ref_lo, ref_hi).upper()


def _to_callset(
    contig: str, samples: tuple[str, ...], parts: list[dict], params: CallParams
) -> CallSet:
    if not parts:
        return CallSet.empty(contig, samples, NATIVE_FILTER_IDS)
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
    genotype = np.concatenate([p["genotype"] for p in parts]).astype(np.int8)
    info = {
        key: np.concatenate([p["annotations"][key] for p in parts])
        for key in parts[0]["annotations"]
    }
    info["AB"], info["ABQ"] = allele_balance(genotype, ad)
    info["QD"] = quality_by_depth(quality, genotype, ad, dp)  # the rounded QUAL
    info = {key: np.round(x, 3).astype(np.float32) for key, x in info.items()}
    indel = (np.char.str_len(allele_arr) != np.char.str_len(allele_arr[:, :1])) & (allele_arr != "")
    hom_alt = ((genotype[:, :, 0] > 0) & (genotype[:, :, 1] == genotype[:, :, 0])).any(axis=1)
    hom_alt |= ((genotype[:, :, 0] > 0) & (genotype[:, :, 1] == FILL)).any(axis=1)  # haploid
    filters = site_filters(quality, info, indel.any(axis=1), hom_alt, params)
    return CallSet(
        contig=contig,
        samples=samples,
        filter_ids=NATIVE_FILTER_IDS,
        position=np.concatenate([p["position"] for p in parts]).astype(np.int64),
        alleles=allele_arr,
        quality=quality,
        filters=filters,
        info_DP=dp.sum(axis=1).astype(np.int32),
        genotype=genotype,
        GQ=np.concatenate([p["GQ"] for p in parts]).astype(np.int32),
        DP=dp,
        AD=ad,
        PL=pl,
        **{f"info_{key}": x for key, x in info.items()},
    )
