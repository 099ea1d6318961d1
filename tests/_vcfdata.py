"""Small hand-built references and VCFs for the concordance and report tests.

Everything is deterministic (seeded) and tiny: two contigs of a few kb, tens of variants.
Positions in this module are 0-based; VCF text adds 1.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import pysam

SAMPLES = ("S1", "S2", "S3")
#: The planted homopolymer on chr1: "C" + "A" * 7 + "G" at [HOMO, HOMO + 9).
HOMO = 1000


@dataclass(frozen=True)
class Rec:
    """One VCF record. gts: per-sample GT strings; ad/pl: per-sample value lists or None."""

    contig: str
    pos: int  # 0-based
    ref: str
    alts: tuple[str, ...]
    gts: tuple[str, ...]
    qual: float = 50.0
    filt: str = "PASS"
    dp: int = 30
    sdp: tuple[int, ...] = (10, 11, 12)
    ad: tuple[tuple[int, ...], ...] | None = None
    pl: tuple[tuple[int, ...], ...] | None = None
    extra: dict = field(default_factory=dict)

    def line(self) -> str:
        n_all = 1 + len(self.alts)
        n_g = n_all * (n_all + 1) // 2
        cols = []
        for i, gt in enumerate(self.gts):
            ad = self.ad[i] if self.ad else tuple([self.sdp[i] // n_all] * n_all)
            pl = self.pl[i] if self.pl else tuple(range(0, 10 * n_g, 10))
            cols.append(f"{gt}:{self.sdp[i]}:{','.join(map(str, ad))}:{','.join(map(str, pl))}")
        return "\t".join(
            [
                self.contig,
                str(self.pos + 1),
                ".",
                self.ref,
                ",".join(self.alts),
                f"{self.qual:g}",
                self.filt,
                f"DP={self.dp}",
                "GT:DP:AD:PL",
                *cols,
            ]
        )


def make_reference(tmp: Path, length: int = 3000, seed: int = 0) -> Path:
    """Two random contigs (chr1, chr2) with a planted homopolymer on chr1 at HOMO."""
    rng = random.Random(seed)
    seqs = {}
    for name in ("chr1", "chr2"):
        s = [rng.choice("ACGT") for _ in range(length)]
        seqs[name] = s
    s = seqs["chr1"]
    s[HOMO : HOMO + 9] = list("C" + "A" * 7 + "G")
    path = tmp / "ref.fa"
    with open(path, "w") as fh:
        for name, s in seqs.items():
            fh.write(f">{name}\n")
            text = "".join(s)
            for i in range(0, len(text), 60):
                fh.write(text[i : i + 60] + "\n")
    pysam.faidx(str(path))
    return path


def read_reference(path: Path) -> dict[str, str]:
    with pysam.FastaFile(str(path)) as fa:
        return {n: fa.fetch(n) for n in fa.references}


def write_vcf(path: Path, records: list[Rec], ref: dict[str, str], samples=SAMPLES) -> Path:
    """Write records (sorted here) as BGZF VCF + tabix index; returns ``path`` (.vcf.gz)."""
    header = [
        "##fileformat=VCFv4.2",
        '##FILTER=<ID=PASS,Description="All filters passed">',
        '##FILTER=<ID=LowQual,Description="Low quality">',
        '##INFO=<ID=DP,Number=1,Type=Integer,Description="Total depth">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
        '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allele depths">',
        '##FORMAT=<ID=PL,Number=G,Type=Integer,Description="Phred likelihoods">',
    ]
    header += [f"##contig=<ID={c},length={len(s)}>" for c, s in ref.items()]
    header.append(
        "\t".join(
            ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples]
        )
    )
    order = {c: i for i, c in enumerate(ref)}
    recs = sorted(records, key=lambda r: (order[r.contig], r.pos, r.ref, r.alts))
    plain = path.with_suffix("")  # foo.vcf
    plain.write_text("\n".join(header + [r.line() for r in recs]) + "\n")
    pysam.tabix_compress(str(plain), str(path), force=True)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    plain.unlink()
    return path


def snp(ref: dict[str, str], contig: str, pos: int, gts, alt: str | None = None, **kw) -> Rec:
    r = ref[contig][pos]
    if alt is None:
        # a transition for even positions, a transversion for odd ones
        transition = {"A": "G", "G": "A", "C": "T", "T": "C"}[r]
        alt = transition if pos % 2 == 0 else "ACGT"[("ACGT".index(r) + 1) % 4]
    return Rec(contig, pos, r, (alt,), tuple(gts), **kw)


def deletion(ref: dict[str, str], contig: str, pos: int, n: int, gts, **kw) -> Rec:
    """Delete n bases after the anchor base at ``pos``."""
    return Rec(contig, pos, ref[contig][pos : pos + n + 1], (ref[contig][pos],), tuple(gts), **kw)


def insertion(ref: dict[str, str], contig: str, pos: int, ins: str, gts, **kw) -> Rec:
    return Rec(contig, pos, ref[contig][pos], (ref[contig][pos] + ins,), tuple(gts), **kw)


def base_callset(ref: dict[str, str]) -> list[Rec]:
    """A call set with SNPs, indels, a homopolymer deletion (left-aligned) and one
    multi-allelic SNP, over both contigs; fields differ per record so no two are alike."""
    recs = []
    for i, pos in enumerate(range(100, 2900, 151)):
        if HOMO - 5 <= pos <= HOMO + 12:
            continue
        contig = "chr1" if i % 2 == 0 else "chr2"
        gts = [("0/1", "1/1", "0/0"), ("1/1", "0/1", "0/1"), ("0/0", "0/1", "1/1")][i % 3]
        recs.append(snp(ref, contig, pos, gts, qual=40.0 + i, dp=30 + i, sdp=(10 + i, 11, 12)))
    recs.append(deletion(ref, "chr1", 500, 2, ("0/1", "0/0", "0/1"), qual=61.5))
    recs.append(insertion(ref, "chr2", 700, "TT", ("1/1", "0/1", "0/0"), qual=33.0))
    # the homopolymer deletion, written left-aligned (anchor is the C before the A run)
    recs.append(deletion(ref, "chr1", HOMO, 1, ("0/1", "0/1", "0/0"), qual=70.0))
    # a multi-allelic SNP
    recs.append(multiallelic(ref))
    return recs


MULTI_POS = 1800


def multiallelic(ref: dict[str, str]) -> Rec:
    r = ref["chr1"][MULTI_POS]
    a1, a2 = [b for b in "ACGT" if b != r][:2]
    return Rec(
        "chr1", MULTI_POS, r, (a1, a2), ("1/2", "0/1", "2/2"), qual=99.0, dp=36,
        sdp=(12, 12, 12),
        ad=((0, 6, 6), (6, 6, 0), (0, 0, 12)),
        pl=((90, 30, 80, 20, 10, 70), (40, 0, 50, 60, 70, 80), (99, 98, 97, 5, 4, 0)),
    )  # fmt: skip


def split_multiallelic(rec: Rec) -> list[Rec]:
    """The records ``bcftools norm -m -any`` makes of a 2-ALT record (other ALT -> 0)."""
    out = []
    for k in (1, 2):
        gts = []
        for gt in rec.gts:
            alleles = [int(x) for x in gt.split("/")]
            gts.append("/".join("1" if a == k else "0" for a in alleles))
        ad = tuple((a[0], a[k]) for a in rec.ad)
        gidx = [0, k * (k + 1) // 2, k * (k + 1) // 2 + k]
        pl = tuple(tuple(p[i] for i in gidx) for p in rec.pl)
        out.append(replace(rec, alts=(rec.alts[k - 1],), gts=tuple(gts), ad=ad, pl=pl))
    return out


def random_truth_and_query(ref: dict[str, str], seed: int = 7, n: int = 70):
    """A random multi-sample truth set and a query derived from it with known edits:
    dropped records (FN), changed genotypes, extra records (FP) and LowQual-filtered ones.
    Returns (truth records, query records)."""
    rng = random.Random(seed)
    used: set[tuple[str, int]] = set()
    truth: list[Rec] = []

    def free_pos(contig: str) -> int:
        while True:
            p = rng.randrange(20, len(ref[contig]) - 30)
            if all((contig, q) not in used for q in range(p - 25, p + 25)) and not (
                contig == "chr1" and HOMO - 30 <= p <= HOMO + 30
            ):
                used.add((contig, p))
                return p

    def rand_gts() -> tuple[str, ...]:
        while True:
            g = tuple(rng.choice(["0/0", "0/1", "0/1", "1/1"]) for _ in SAMPLES)
            if any(x != "0/0" for x in g):
                return g

    def rand_rec() -> Rec:
        contig = rng.choice(["chr1", "chr2"])
        p = free_pos(contig)
        kind = rng.random()
        sdp = tuple(rng.randrange(3, 70) for _ in SAMPLES)
        if kind < 0.6:
            return snp(ref, contig, p, rand_gts(), sdp=sdp)
        if kind < 0.8:
            return deletion(ref, contig, p, rng.randrange(1, 8), rand_gts(), sdp=sdp)
        ins = "".join(rng.choice("ACGT") for _ in range(rng.randrange(1, 20)))
        return insertion(ref, contig, p, ins, rand_gts(), sdp=sdp)

    truth = [rand_rec() for _ in range(n)]
    query = []
    for i, r in enumerate(truth):
        if i % 9 == 0:
            continue  # FN
        if i % 7 == 0:
            g = list(r.gts)
            j = i % len(SAMPLES)
            g[j] = {"0/0": "0/1", "0/1": "1/1", "1/1": "0/1"}[g[j]]
            r = replace(r, gts=tuple(g))
        if i % 11 == 0:
            r = replace(r, filt="LowQual")
        query.append(r)
    query += [rand_rec() for _ in range(8)]  # FP
    return truth, query


def make_run_dir(
    out: Path,
    records: list[Rec],
    ref: dict[str, str],
    mode: str,
    n_units: int,
    digest_salt: str = "",
) -> Path:
    """A folder shaped like the output of ``varcall call`` (manifest.json + calls.vcf.gz) for
    report tests: units tile each contig; digests are derived from the records in each unit
    (plus ``digest_salt``), so equal records give equal digests."""
    import hashlib
    import json

    out.mkdir(parents=True, exist_ok=True)
    write_vcf(out / "calls.vcf.gz", records, ref)
    units = []
    for contig, seq in ref.items():
        step = -(-len(seq) // n_units)
        for i, start in enumerate(range(0, len(seq), step)):
            end = min(start + step, len(seq))
            inside = [r.line() for r in records if r.contig == contig and start <= r.pos < end]
            digest = hashlib.sha256(("\n".join(inside) + digest_salt).encode()).hexdigest()
            units.append(
                {
                    "region": f"{contig}:{start + 1}-{end}",
                    "contig": contig,
                    "start": start,
                    "end": end,
                    "n_variants": len(inside),
                    "digest": digest,
                    "seconds": 0.5 + 0.1 * i,
                    "worker": f"tcp://127.0.0.1:{4000 + i % 2}"
                    if mode == "distributed"
                    else "single-process",
                    "attempts": 2 if (mode == "distributed" and i == 1) else 1,
                }
            )
    manifest = {
        "varcall_version": "0.1.0",
        "command_line": f"varcall call --{mode} -o {out.name}",
        "mode": mode,
        "engine": {"name": "native", "version": "0.1.0"},
        "params": {"engine": "native", "min_mapq": 20, "min_baseq": 13},
        "inputs": {
            "reference": {"path": "ref.fa", "size": 6200},
            "alignments": [{"path": f"{s}.bam", "size": 123456} for s in SAMPLES],
            "samples": list(SAMPLES),
            "contigs": [{"name": c, "length": len(s)} for c, s in ref.items()],
        },
        "versions": {"varcall": "0.1.0", "python": "3.11"},
        "units": units,
        "contig_digests": {
            c: hashlib.sha256(
                ("\n".join(r.line() for r in records if r.contig == c) + digest_salt).encode()
            ).hexdigest()
            for c in ref
        },
        "n_units": len(units),
        "n_variants": len(records),
        "timing": {"wall_seconds": 12.5 if mode == "distributed" else 20.0},
        "throughput": {"bp_per_second": 480.0, "variants_per_second": 1.76},
    }
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out
