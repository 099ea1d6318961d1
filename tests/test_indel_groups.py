"""sites._indel_groups (indel events grouped by anchor, length and inserted bases, counted
per sample) equals the plain per-event loop it replaced, in content and order."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from varcall.engines.native.sites import _CODE_LEN, _indel_groups


def _reference(ev, batch) -> dict:
    """The per-event loop: one dict entry per (anchor, length, inserted bases), in the
    order of the group's first event."""
    groups: dict = {}
    for p, ln, ri, qo in zip(ev.ev_pos, ev.ev_len, ev.ev_read, ev.ev_qoff):
        if ln > 0:
            o = int(batch.qoff[ri]) + int(qo)
            key = (int(p), int(ln), batch.bases[o : o + ln].tobytes())
        else:
            key = (int(p), int(ln), b"")
        g = groups.setdefault(key, np.zeros(ev.counts.shape[0], np.int64))
        g[batch.sample[ri]] += 1
    return groups


@st.composite
def windows(draw):
    n_samples = draw(st.integers(1, 3))
    read_len = _CODE_LEN + 12  # room for insertions longer than the coded length
    n_reads = draw(st.integers(1, 12))
    alphabet = draw(st.sampled_from([2, 5]))  # 2: many equal sequences; 5: ACGTN
    bases = np.array(
        draw(st.lists(st.integers(0, alphabet - 1), min_size=n_reads * read_len,
                      max_size=n_reads * read_len)), np.uint8)  # fmt: skip
    batch = SimpleNamespace(
        qoff=np.arange(n_reads, dtype=np.int64) * read_len,
        bases=bases,
        sample=np.array([draw(st.integers(0, n_samples - 1)) for _ in range(n_reads)], np.int32),
    )
    n_events = draw(st.integers(0, 30))
    pos, lens, reads, qoffs = [], [], [], []
    for _ in range(n_events):
        ln = draw(st.sampled_from([-3, -1, 1, 2, 5, _CODE_LEN, _CODE_LEN + 1, _CODE_LEN + 9]))
        pos.append(draw(st.integers(100, 104)))
        lens.append(ln)
        reads.append(draw(st.integers(0, n_reads - 1)))
        qoffs.append(draw(st.integers(0, read_len - ln)) if ln > 0 else -1)
    ev = SimpleNamespace(
        counts=np.zeros((n_samples, 1, 4), np.int32),
        ev_pos=np.array(pos, np.int64),
        ev_len=np.array(lens, np.int64),
        ev_read=np.array(reads, np.int64),
        ev_qoff=np.array(qoffs, np.int64),
    )
    return ev, batch


@settings(max_examples=300, deadline=None)
@given(windows())
def test_indel_groups_equal_the_per_event_loop(window):
    ev, batch = window
    got, want = _indel_groups(ev, batch), _reference(ev, batch)
    assert list(got) == list(want)
    for key in want:
        assert got[key].tolist() == want[key].tolist(), key
