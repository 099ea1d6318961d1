"""numba kernels that write VCF data lines as bytes (driven by :mod:`varcall.io.vcf_write`).

The caller prepares flat inputs (alleles as a byte matrix, QUAL and FILTER texts as byte
tables) and a buffer large enough for the rows asked for; :func:`write_lines` fills it with
tab-separated, newline-terminated VCF records and returns the number of bytes written. The
text rules are those documented in :mod:`varcall.io.vcf_write`.
"""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel

__all__ = ["write_lines", "INT_WIDTH", "POS_WIDTH"]

#: Upper bound of the characters of one int32 value / of one int64 POS value.
INT_WIDTH = 11
POS_WIDTH = 20

_FILL = -2
_TAB, _DOT, _COMMA, _COLON, _SEMI, _NL, _SLASH, _EQ = 9, 46, 44, 58, 59, 10, 47, 61


@kernel
def _put_int(buf: np.ndarray, p: int, x: int) -> int:
    """Decimal text of ``x`` at ``buf[p:]``; ``.`` when negative. Returns the new end."""
    if x < 0:
        buf[p] = _DOT
        return p + 1
    n = 1
    y = x // 10
    while y > 0:
        y //= 10
        n += 1
    y = x
    for i in range(n):
        buf[p + n - 1 - i] = 48 + y % 10
        y //= 10
    return p + n


@kernel
def _put_vector(buf: np.ndarray, p: int, row: np.ndarray) -> int:
    """Entries up to the last non-FILL one joined by ``,``; ``.`` when none holds a value."""
    last = -1
    known = False
    for j in range(row.shape[0]):
        if row[j] != _FILL:
            last = j
        if row[j] >= 0:
            known = True
    if not known:
        buf[p] = _DOT
        return p + 1
    for j in range(last + 1):
        if j > 0:
            buf[p] = _COMMA
            p += 1
        p = _put_int(buf, p, row[j])
    return p


@kernel
def _put_bytes(buf: np.ndarray, p: int, src: np.ndarray, start: int, end: int) -> int:
    for i in range(start, end):
        buf[p] = src[i]
        p += 1
    return p


@kernel
def _put_alleles(buf: np.ndarray, p: int, v: int, allele_bytes: np.ndarray,
                 allele_len: np.ndarray) -> tuple[int, int]:  # fmt: skip
    """REF, a tab and the ALTs of record ``v`` joined by ``,`` (``.`` when none); returns
    the new end and the number of ALTs."""
    p = _put_bytes(buf, p, allele_bytes[v, 0], 0, allele_len[v, 0])
    buf[p] = _TAB
    p += 1
    n_alt = 0
    for a in range(1, allele_len.shape[1]):
        if allele_len[v, a] == 0:
            continue
        if n_alt > 0:
            buf[p] = _COMMA
            p += 1
        p = _put_bytes(buf, p, allele_bytes[v, a], 0, allele_len[v, a])
        n_alt += 1
    if n_alt == 0:
        buf[p] = _DOT
        p += 1
    return p, n_alt


@kernel
def _put_info(buf: np.ndarray, p: int, v: int, info_dp: np.ndarray, genotype: np.ndarray,
              n_alt: int) -> int:  # fmt: skip
    """INFO of record ``v``: DP (when known), AC (per ALT, from GT), AN (from GT)."""
    n_samples = genotype.shape[1]
    if info_dp[v] >= 0:
        buf[p] = 68  # D
        buf[p + 1] = 80  # P
        buf[p + 2] = _EQ
        p = _put_int(buf, p + 3, info_dp[v])
        buf[p] = _SEMI
        p += 1
    an = 0
    for s in range(n_samples):
        for k in range(2):
            if genotype[v, s, k] >= 0:
                an += 1
    if n_alt > 0:
        buf[p] = 65  # A
        buf[p + 1] = 67  # C
        buf[p + 2] = _EQ
        p += 3
        for a in range(1, n_alt + 1):
            count = 0
            for s in range(n_samples):
                for k in range(2):
                    if genotype[v, s, k] == a:
                        count += 1
            if a > 1:
                buf[p] = _COMMA
                p += 1
            p = _put_int(buf, p, count)
        buf[p] = _SEMI
        p += 1
    buf[p] = 65  # A
    buf[p + 1] = 78  # N
    buf[p + 2] = _EQ
    return _put_int(buf, p + 3, an)


@kernel
def _put_sample(buf: np.ndarray, p: int, v: int, s: int, genotype: np.ndarray, gq: np.ndarray,
                dp: np.ndarray, ad: np.ndarray, pl: np.ndarray, fields: np.ndarray) -> int:  # fmt: skip
    """The sample column of sample ``s`` in record ``v``: the flagged fields of GT, GQ,
    DP, AD, PL (GT always first when flagged) joined by ``:``."""
    first = True
    if fields[0]:
        p = _put_int(buf, p, genotype[v, s, 0])
        if genotype[v, s, 1] != _FILL:
            buf[p] = _SLASH
            p = _put_int(buf, p + 1, genotype[v, s, 1])
        first = False
    for k in range(1, 5):
        if not fields[k]:
            continue
        if not first:
            buf[p] = _COLON
            p += 1
        first = False
        if k == 1:
            p = _put_int(buf, p, gq[v, s])
        elif k == 2:
            p = _put_int(buf, p, dp[v, s])
        elif k == 3:
            p = _put_vector(buf, p, ad[v, s])
        else:
            p = _put_vector(buf, p, pl[v, s])
    return p


@kernel
def write_lines(
    buf: np.ndarray,
    lo: int,
    hi: int,
    contig: np.ndarray,
    pos: np.ndarray,
    allele_bytes: np.ndarray,
    allele_len: np.ndarray,
    qual_bytes: np.ndarray,
    qual_off: np.ndarray,
    filt_bytes: np.ndarray,
    filt_off: np.ndarray,
    filt_idx: np.ndarray,
    info_dp: np.ndarray,
    genotype: np.ndarray,
    gq: np.ndarray,
    dp: np.ndarray,
    ad: np.ndarray,
    pl: np.ndarray,
    format_keys: np.ndarray,
    fields: np.ndarray,
    info_bytes: np.ndarray,
    info_off: np.ndarray,
) -> int:
    """Write records ``lo..hi-1`` into ``buf`` (uint8); returns the bytes written.

    contig: uint8 name. pos: (V,) int64 0-based. allele_bytes: (V, A, W) uint8 with
    allele_len (V, A) lengths (0 = padding). qual_bytes/qual_off: QUAL texts, record v at
    [qual_off[v], qual_off[v+1]). filt_*: FILTER texts table and per-record row. info_dp:
    (V,). genotype: (V, S, 2). gq, dp: (V, S). ad: (V, S, A). pl: (V, S, G). All integer
    arrays are int32 (genotype any int). format_keys: uint8 FORMAT text of the fields
    written, e.g. ``GT:GQ:DP:AD:PL`` (empty: sites-only, no FORMAT and sample columns).
    fields: (5,) uint8 flags of GT, GQ, DP, AD, PL (which the sample columns carry).
    info_bytes/info_off: the INFO texts written after AN (``;FS=...``), a text table.
    """
    p = 0
    n_samples = genotype.shape[1]
    for v in range(lo, hi):
        p = _put_bytes(buf, p, contig, 0, contig.shape[0])
        buf[p] = _TAB
        p = _put_int(buf, p + 1, pos[v] + 1)
        buf[p] = _TAB
        buf[p + 1] = _DOT
        buf[p + 2] = _TAB
        p, n_alt = _put_alleles(buf, p + 3, v, allele_bytes, allele_len)
        buf[p] = _TAB
        p = _put_bytes(buf, p + 1, qual_bytes, qual_off[v], qual_off[v + 1])
        buf[p] = _TAB
        f = filt_idx[v]
        p = _put_bytes(buf, p + 1, filt_bytes, filt_off[f], filt_off[f + 1])
        buf[p] = _TAB
        p = _put_info(buf, p + 1, v, info_dp, genotype, n_alt)
        p = _put_bytes(buf, p, info_bytes, info_off[v], info_off[v + 1])
        if n_samples > 0 and format_keys.shape[0] > 0:
            buf[p] = _TAB
            p = _put_bytes(buf, p + 1, format_keys, 0, format_keys.shape[0])
            for s in range(n_samples):
                buf[p] = _TAB
                p = _put_sample(buf, p + 1, v, s, genotype, gq, dp, ad, pl, fields)
        buf[p] = _NL
        p += 1
    return p
