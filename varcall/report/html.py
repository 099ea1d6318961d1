"""The HTML report: one self-contained page (inline CSS, plots as inline PNG) plus
``metrics.json`` beside it holding every number the page shows.

The page is rendered from one dict (:func:`build_page`); the template only formats what is in
it, so the JSON and the page cannot disagree. Inputs are run folders of ``varcall call``
(manifest.json, calls.vcz or calls.vcf.gz) and, optionally, a folder written by
``varcall concordance`` (its metrics.json, see :mod:`varcall.evaluate.concordance`).
Missing manifest keys show as ``n/a``.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from varcall import __version__
from varcall.core.errors import InputError
from varcall.core.files import write_json_atomic, write_text_atomic
from varcall.core.manifest import Manifest, UnitRecord, read_manifest
from varcall.evaluate.identity import compare_manifests

__all__ = ["load_run", "build_page", "render_html", "write_report"]

logger = logging.getLogger(__name__)

#: Rows of discordant / truth-error records shown on the page (all are in the TSVs).
MAX_ROWS = 200
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


# ----------------------------------------------------------------------------- inputs
def _get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def load_run(run_dir: str | os.PathLike, qc: bool = True) -> dict:
    """Summary of one run folder: provenance, timing and QC as plain JSON-ready values.
    Seconds are wall-clock seconds; throughput in bp/s and variants/s."""
    run_dir = Path(run_dir)
    m = read_manifest(run_dir)
    if m is None:
        raise InputError(
            f"{run_dir}: no manifest.json; give the --out folder of a finished 'varcall call'"
        )
    run: dict[str, Any] = {
        "name": run_dir.name or str(run_dir),
        "path": str(run_dir),
        **_provenance(m),
        **_timing(m),
        "units": [_unit_row(u) for u in m.units],
        "contig_digests": dict(m.contig_digests),
        "_manifest": m,
    }
    run["qc"] = _run_qc(run_dir) if qc else None
    return run


def _provenance(m: Manifest) -> dict[str, Any]:
    """What ran, on what and where: engine, versions, inputs, parameters, cluster."""
    inputs = m.inputs
    ref = inputs.get("reference")
    alignments = inputs.get("alignments") or inputs.get("bams") or []
    contigs = inputs.get("contigs") or []
    return {
        "mode": m.mode,
        "engine": m.engine.name,
        "engine_version": m.engine.version,
        "known_differences": m.engine.known_differences or None,
        "varcall_version": m.varcall_version,
        "command_line": m.command_line,
        "started": m.started,
        "finished": m.finished,
        "reference": ref.get("path") if isinstance(ref, dict) else ref,
        "alignments": [
            {"path": a.get("path"), "size": a.get("size")} if isinstance(a, dict) else {"path": a}
            for a in alignments
        ],
        "samples": list(inputs.get("samples") or []),
        "n_contigs": len(contigs) or None,
        "params": m.params or {},
        "versions": m.versions or {},
        "host": m.host or {},
        "cluster": _cluster_text(m.cluster),
        "output_minimised": _output_text(m.output_options),
    }


def _output_text(options: dict[str, Any]) -> str:
    """What a minimised run's outputs lack (``varcall call --format-fields`` etc.), from
    the manifest's ``output_options``; "all fields" for a default run."""
    if not options:
        return "all fields"
    fields = list(options.get("format_fields") or [])
    missing = [f for f in ("GT", "GQ", "DP", "AD", "PL") if f not in fields]
    parts = ["sites only (no genotypes)" if options.get("sites_only") else
             f"FORMAT {':'.join(fields)}" + (f" (missing {', '.join(missing)})" if missing else "")]
    if options.get("pseudonymised"):
        parts.append("pseudonymised samples")
    if options.get("redact_paths"):
        parts.append("paths redacted")
    return "; ".join(parts)


def _timing(m: Manifest) -> dict[str, Any]:
    """Units, retries, workers, variants, seconds and throughput of a run."""
    units = m.units
    wall = m.timing.wall_seconds
    n_variants = m.n_variants
    # a straggler's second copy is no retry
    attempts = [u.attempts - u.speculated for u in units if isinstance(u.attempts, int)]
    workers = sorted({str(u.worker) for u in units if u.worker})
    genome_bp = sum(u.end - u.start for u in units if u.has_span) or None
    return {
        "n_units": len(units) if units else m.n_units,
        "retries": sum(max(a - 1, 0) for a in attempts) if attempts else None,
        "resumed": sum(1 for u in units if u.resumed) if units else None,
        "n_workers": len(workers) or None,
        "n_variants": n_variants,
        "wall_seconds": wall,
        "call_seconds": m.timing.call_seconds,
        "merge_seconds": m.timing.merge_seconds,
        "task_seconds_sum": m.timing.task_seconds_sum,
        "bp_called": genome_bp,
        "bp_per_second": m.throughput.bp_per_second
        or (genome_bp / wall if genome_bp and wall else None),
        "variants_per_second": m.throughput.variants_per_second
        or (n_variants / wall if n_variants is not None and wall else None),
    }


def _unit_row(u: UnitRecord) -> dict[str, Any]:
    """One row of the per-region table; ``region`` as written, else contig:start-end
    (1-based inclusive), "n/a" without a span."""
    return {
        "region": u.region or (f"{u.contig}:{u.start + 1}-{u.end}" if u.has_span else "n/a"),
        "seconds": u.seconds,
        "n_variants": u.n_variants,
        "attempts": u.attempts,
        "worker": u.worker,
    }


def _cluster_text(c: Any) -> str | None:
    if c is None:
        return None
    if isinstance(c, dict):
        notes = []
        fell_back = c.get("fell_back_to_local")
        if fell_back:
            reason = fell_back.get("reason") if isinstance(fell_back, dict) else None
            notes.append("fell back to a local cluster" + (f" ({reason})" if reason else ""))
        replaced = c.get("replaced_jobs")
        if replaced:
            n = len(replaced) if isinstance(replaced, list | dict) else replaced
            notes.append(f"{n} lost worker jobs replaced")
        skip = ("fell_back_to_local", "replaced_jobs")
        parts = [f"{k}={v}" for k, v in c.items() if k not in skip and v not in (None, "", [], {})]
        return "; ".join(x for x in [*notes, ", ".join(parts[:6])] if x) or None
    return str(c)


def _run_qc(run_dir: Path) -> dict | None:
    from varcall.evaluate.qc import qc_for_input
    from varcall.evaluate.sources import resolve_input

    try:
        return qc_for_input(resolve_input(run_dir))
    except InputError as e:
        logger.warning("%s: no QC (%s)", run_dir, e)
        return None


# ----------------------------------------------------------------------------- page model
def build_page(runs: Sequence[dict], concordances: Sequence[dict] = ()) -> dict:
    """Everything the page shows, JSON-ready (this is what metrics.json holds).

    ``runs``: :func:`load_run` results; ``concordances``: metrics.json contents of
    ``varcall concordance`` folders (each with a ``_dir`` key naming its folder)."""
    page: dict[str, Any] = {
        "title": "varcall report",
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "varcall_version": __version__,
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
    }
    pairs = []
    for i in range(1, len(runs)):
        d = compare_manifests(runs[0].get("_manifest"), runs[i].get("_manifest"))
        pairs.append({"a": runs[0]["name"], "b": runs[i]["name"], **d})
    page["digest_comparisons"] = pairs
    page["concordances"] = [_concordance_view(c, runs, i) for i, c in enumerate(concordances)]
    page["accuracy_by_run"] = _accuracy_by_run(page)
    page["verdict"] = _verdict(page)
    return page


def _label_for(path: str | None, runs: Sequence[dict]) -> str | None:
    if not path:
        return None
    p = Path(path).resolve()
    for r in runs:
        rp = Path(r["path"]).resolve()
        if p == rp or rp in p.parents:
            return r["name"]
    return Path(path).name


def _concordance_view(c: dict, runs: Sequence[dict], index: int) -> dict:
    ident = dict(c.get("identity") or {})
    discordant = ident.pop("discordant_records", [])
    names = {k: _label_for(_get(c, "inputs", k, "path"), runs) or k for k in ("A", "B")}
    truth = c.get("truth") or {}
    errors = c.get("truth_errors") or []
    return {
        "id": f"c{index + 1}",
        "folder": c.get("_dir"),
        "labels": names,
        "inputs": c.get("inputs") or {},
        "identity": ident,
        "sites": c.get("sites") or {},
        "genotypes": c.get("genotypes") or {},
        "truth": truth or None,
        "discordant_records": discordant[:MAX_ROWS],
        "discordant_truncated": bool(ident.get("discordant_truncated"))
        or len(discordant) > MAX_ROWS,
        "truth_errors": errors[:MAX_ROWS],
        "truth_errors_truncated": bool(c.get("truth_errors_truncated")) or len(errors) > MAX_ROWS,
    }


def _accuracy_by_run(page: dict) -> dict:
    """Accuracy vs truth of each run, from the first concordance that measured it:
    {run name: {"SNP": {TP, FP, FN, precision, recall, F1}, "INDEL": {...}, "from": id}}."""
    out: dict[str, dict] = {}
    names = {r["name"] for r in page["runs"]}
    for c in page["concordances"]:
        for lab, t in (c["truth"] or {}).items():
            name = c["labels"].get(lab)
            if name in names and name not in out:
                out[name] = {
                    vt: {k: t[vt].get(k) for k in ("TP", "FP", "FN", "precision", "recall", "F1")}
                    for vt in ("SNP", "INDEL")
                    if vt in t
                }
                out[name]["from"] = c["id"]
    return out


def _verdict(page: dict) -> dict:
    """The identity verdict: record comparisons when concordances are given, else digests."""
    concs = [c for c in page["concordances"] if c["identity"]]
    if concs:
        texts = []
        for c in concs:
            ident = c["identity"]
            a, b = c["labels"]["A"], c["labels"]["B"]
            if ident.get("identical"):
                texts.append(
                    f"{a} and {b} are identical: {ident.get('records_a', 0):,} records "
                    "(after normalisation), 0 differ"
                )
            else:
                texts.append(
                    f"{a} and {b} differ: {ident.get('differing', 0):,} of "
                    f"{ident.get('records_a', 0):,} / {ident.get('records_b', 0):,} records "
                    "(after normalisation)"
                )
        same = all(bool(c["identity"].get("identical")) for c in concs)
        return {
            "identical": same,
            "basis": "records",
            "text": "; ".join(texts),
            "known_causes": [] if same else _known_causes(page),
        }
    pairs = [p for p in page.get("digest_comparisons", []) if p.get("identical") is not None]
    if pairs:
        same = all(p["identical"] for p in pairs)
        text = "; ".join(
            f"{p['a']} vs {p['b']}: "
            + ("identical" if p["identical"] else f"{len(p['differing'])} {p['method']}s differ")
            + f" ({p['compared']} {p['method']} digests)"
            for p in pairs
        )
        return {
            "identical": same,
            "basis": "digests",
            "text": text,
            "known_causes": [] if same else _known_causes(page),
        }
    return {"identical": None, "basis": None, "text": "no comparison available", "known_causes": []}


def _known_causes(page: dict) -> list[str]:
    """What the engines of the compared runs say about residual distributed vs
    single-process differences (from their manifests), one line per engine."""
    out: list[str] = []
    for run in page["runs"]:
        note = run.get("known_differences")
        line = f"{run.get('engine')} engine: {note}" if note else None
        if line and line not in out:
            out.append(line)
    return out


# ----------------------------------------------------------------------------- plots
def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fig(w: float = 6.4, h: float = 3.2) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(w, h))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def make_plots(page: dict) -> dict[str, str]:
    """Inline PNG data URIs keyed by plot name (only plots that have data)."""
    plots: dict[str, str] = {}
    runs = page["runs"]
    if any(r["units"] for r in runs):
        fig, ax = _fig()
        for i, r in enumerate(runs):
            secs = [
                u["seconds"] if isinstance(u["seconds"], int | float) else math.nan
                for u in r["units"]
            ]
            if secs:
                ax.plot(
                    range(1, len(secs) + 1),
                    secs,
                    "o-",
                    ms=3,
                    lw=1,
                    color=_COLORS[i % 6],
                    label=r["name"],
                )
        ax.set_xlabel("region (in genomic order)")
        ax.set_ylabel("seconds")
        ax.set_title("Per-region runtime")
        ax.legend(frameon=False, fontsize=8)
        plots["region_runtime"] = _png(fig)
    for conc in page["concordances"]:
        _concordance_plots(conc, plots)
    qcs = [(r["name"], r["qc"]) for r in runs if r.get("qc")]
    if qcs:
        fig, ax = _fig()
        edges = qcs[0][1]["af_spectrum"]["edges"]
        centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
        w = (edges[1] - edges[0]) * 0.8 / len(qcs)
        for i, (name, qc) in enumerate(qcs):
            xs = [x + (i - (len(qcs) - 1) / 2) * w for x in centers]
            ax.bar(xs, qc["af_spectrum"]["counts"], w, color=_COLORS[i % 6], label=name)
        ax.set_xlabel("alternate allele frequency")
        ax.set_ylabel("alleles")
        ax.set_title("Allele frequency spectrum")
        ax.legend(frameon=False, fontsize=8)
        plots["af_spectrum"] = _png(fig)
        with_depth = [(n, q) for n, q in qcs if q.get("depth") and q["depth"].get("counts")]
        if with_depth:
            fig, ax = _fig()
            for i, (name, qc) in enumerate(with_depth):
                e, c = qc["depth"]["edges"], qc["depth"]["counts"]
                ax.step(
                    e[:-1], c, where="post", color=_COLORS[i % 6], label=name,
                    linestyle=("-", "--", ":", "-.")[i % 4], lw=1.5,
                )  # fmt: skip
            ax.set_xlabel("per-call read depth (FORMAT/DP)")
            ax.set_ylabel("calls")
            ax.set_title("Depth distribution")
            ax.legend(frameon=False, fontsize=8)
            plots["depth"] = _png(fig)
    return plots


def _concordance_plots(conc: dict, plots: dict[str, str]) -> None:
    """F1-by-depth and GT-heatmap plots of one concordance, added to ``plots``."""
    truth = conc.get("truth") or {}
    if truth:
        fig, ax = _fig()
        bins = [d for d in next(iter(truth.values()))["strata"]["depth"]]
        bars = [(lab, t) for lab, t in (("A", truth.get("A")), ("B", truth.get("B"))) if t]
        width = 0.8 / (2 * len(bars))
        k = 0
        for lab, t in bars:
            for vtype in ("SNP", "INDEL"):
                vals = [_get(t, "strata", "depth", b, vtype, "F1") for b in bins]
                xs = [j + (k - len(bars) + 0.5) * width for j in range(len(bins))]
                ax.bar(
                    xs, [v if v is not None else 0 for v in vals], width,
                    label=f"{conc['labels'][lab]} {vtype}", color=_COLORS[k % 6],
                )  # fmt: skip
                for x, v in zip(xs, vals):
                    if v is None:  # no TP, FP or FN in this bin: F1 undefined
                        ax.text(x, 0.02, "n/a", rotation=90, ha="center", va="bottom", fontsize=7)
                k += 1
        ax.set_xticks(range(len(bins)), bins)
        ax.set_xlabel("read depth (FORMAT/DP)")
        ax.set_ylabel("F1 (genotype match)")
        ax.set_ylim(0, 1.05)
        ax.set_title("F1 by variant type and depth")
        ax.legend(
            frameon=False, fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.22)
        )
        plots[f"f1_depth_{conc['id']}"] = _png(fig)
    gts = conc.get("genotypes") or {}
    if gts.get("all"):
        import numpy as np

        classes = gts["classes"]
        mat = np.array(gts["all"]["matrix"], dtype=float)
        fig, ax = _fig(4.6, 3.8)
        shown = np.log10(mat + 1)
        im = ax.imshow(shown, cmap="Blues")
        for r in range(len(classes)):
            for c in range(len(classes)):
                ax.text(
                    c, r, f"{int(mat[r, c]):,}", ha="center", va="center", fontsize=8,
                    color="white" if shown[r, c] > shown.max() * 0.6 else "black",
                )  # fmt: skip
        ax.set_xticks(range(len(classes)), classes)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel(f"GT in {conc['labels']['B']}")
        ax.set_ylabel(f"GT in {conc['labels']['A']}")
        ax.set_title("Genotype concordance (all samples)")
        fig.colorbar(im, ax=ax, label="log10(count + 1)", shrink=0.8)
        plots[f"gt_heatmap_{conc['id']}"] = _png(fig)


# ----------------------------------------------------------------------------- render
def _fmt_num(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.3g}" if abs(x) < 0.01 else f"{x:.2f}"
    return str(x)


def _fmt_rate(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _fmt_pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _fmt_bytes(x: Any) -> str:
    if not isinstance(x, int | float):
        return "n/a"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if x < 1024 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return "n/a"


def render_html(page: dict, plots: dict[str, str]) -> str:
    """The page as one HTML string (inline CSS and images; no scripts)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("varcall.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_fmt_num, rate=_fmt_rate, pct=_fmt_pct, bytes=_fmt_bytes)
    env.globals["get"] = _get
    return env.get_template("report.html.j2").render(page=page, plots=plots)


def write_report(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    concordance_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> Path:
    """Write the HTML report ``out`` and ``metrics.json`` beside it (both atomically);
    returns the HTML path. ``concordance_dir``: one or several ``varcall concordance``
    output folders."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give a file name such as {out / 'report.html'}")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: folder does not exist; create it or choose another --out")
    runs = [load_run(d) for d in run_dirs]
    names = [r["name"] for r in runs]
    for i, r in enumerate(runs):  # keep column names unique
        if names.count(r["name"]) > 1:
            r["name"] = f"{r['name']} ({i + 1})"
    if concordance_dir is None:
        cdirs: list[Path] = []
    elif isinstance(concordance_dir, str | os.PathLike):
        cdirs = [Path(concordance_dir)]
    else:
        cdirs = [Path(d) for d in concordance_dir]
    concordances = []
    for cdir in cdirs:
        cpath = cdir / "metrics.json"
        if not cpath.is_file():
            raise InputError(
                f"{cpath}: not found; give the --out folder of 'varcall concordance' to --concordance"
            )
        try:
            concordances.append({**json.loads(cpath.read_text()), "_dir": str(cdir)})
        except json.JSONDecodeError as e:
            raise InputError(f"{cpath}: not valid JSON ({e}); re-run 'varcall concordance'") from e
    page = build_page(runs, concordances)
    plots = make_plots(page)
    page["plots"] = sorted(plots)
    html = render_html(page, plots)
    write_text_atomic(out, html)
    write_json_atomic(out.with_name("metrics.json"), page, indent=1, sort_keys=False)
    logger.info("wrote %s (%d bytes)", out, len(html))
    return out
