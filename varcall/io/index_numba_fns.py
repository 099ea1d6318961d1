"""numba kernel of :func:`varcall.io.index.references_with_records`: walk the bins of a
BAI or CSI index (SAM spec 5.2; CSIv1) without building them, and tell which references
have a bin with chunks. Offsets are byte offsets into the uint8 array ``buf`` (the
inflated index); integers are little-endian."""

from __future__ import annotations

import numpy as np

from varcall.core.jit import kernel
from varcall.io.bam_numba_fns import _i32, _u32

__all__ = ["refs_with_chunks"]


@kernel
def refs_with_chunks(buf, off, n_ref, meta_bin, csi):
    """(has chunks (n_ref,) bool, offset after the references or -1 when ``buf`` ends
    early). ``off``: the offset of the first reference's ``n_bin``; ``meta_bin``: the
    metadata pseudo-bin (not counted); ``csi``: CSI layout (bins carry a 64-bit
    ``loffset``, references no linear index)."""
    out = np.zeros(n_ref, np.bool_)
    n = buf.shape[0]
    head = 16 if csi else 8
    for r in range(n_ref):
        if off + 4 > n:
            return out, -1
        n_bin = _i32(buf, off)
        off += 4
        for _ in range(n_bin):
            if off + head > n:
                return out, -1
            bin_id = _u32(buf, off)
            n_chunk = _i32(buf, off + head - 4)
            off += head + 16 * n_chunk
            if n_chunk > 0 and bin_id != meta_bin:
                out[r] = True
        if not csi:
            if off + 4 > n:
                return out, -1
            off += 4 + 8 * _i32(buf, off)
    if off > n:
        return out, -1
    return out, off
