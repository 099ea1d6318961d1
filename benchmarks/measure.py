"""Run one command and measure it: wall seconds, CPU seconds, peak memory.

Used by ``benchmarks/run.py`` as a wrapper process, so that ``getrusage(RUSAGE_CHILDREN)``
holds exactly this command's descendants (CPU time and the largest single process's peak
RSS are exact, from the kernel; the wrapper is a child subreaper, so descendants orphaned
by their parent are adopted and counted too). Wall time ends when the command exits. The RSS summed over the whole process tree, and the RSS of
the command's own (root) process, are sampled with psutil every ``--interval`` seconds.

    python benchmarks/measure.py --json OUT.json [--cwd DIR] [--timeout S] -- CMD ARG...

A single argument after ``--`` containing a space or a pipe is run with ``bash -c``.
Writes ``{"rc", "wall_s", "user_s", "sys_s", "cpu_s", "max_process_rss_mb",
"peak_tree_rss_mb", "root_peak_rss_mb", "child_peak_rss_mb", "timed_out"}`` to OUT.json; the command's stdout
and stderr go to ``OUT.json``'s folder as ``stdout.txt`` / ``stderr.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

import psutil

__all__ = ["measure"]

MB = 1024 * 1024


def _tree_rss(root: psutil.Process) -> tuple[int, int, int]:
    """Bytes of RSS: (root + all descendants, root, the largest descendant)."""
    try:
        children = root.children(recursive=True)
        root_rss = root.memory_info().rss
    except psutil.Error:
        return 0, 0, 0
    total, largest = root_rss, 0
    for p in children:
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        total += rss
        largest = max(largest, rss)
    return total, root_rss, largest


PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux), so that their CPU time and peak RSS reach this
    process's RUSAGE_CHILDREN when they are reaped, e.g. worker processes that outlive a
    driver that did not wait for them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap_orphans(deadline: float, keep: set[int]) -> int:
    """Wait for adopted descendants to exit (killing what is left at ``deadline``, a
    time.perf_counter() value); returns how many were reaped. Children in ``keep`` (this
    process's own children from before the measurement, e.g. a fork server) are neither
    waited for nor killed."""
    n = 0
    while True:
        adopted = [c for c in psutil.Process().children() if c.pid not in keep]
        if not adopted:
            return n
        for child in adopted:
            try:
                pid, _ = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pid = child.pid  # reaped meanwhile
            n += 1 if pid else 0
        if time.perf_counter() > deadline:
            for child in adopted:
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass
            deadline = float("inf")
        time.sleep(0.05)


def measure(
    cmd: list[str],
    json_out: Path,
    cwd: Path | None = None,
    timeout: float | None = None,
    interval: float = 0.2,
) -> dict:
    """Run ``cmd`` (argv list; one string with spaces or pipes runs under bash) and return
    the measurements also written to ``json_out``."""
    if len(cmd) == 1 and any(c in cmd[0] for c in " |;<>"):
        cmd = ["bash", "-o", "pipefail", "-c", cmd[0]]
    json_out.parent.mkdir(parents=True, exist_ok=True)
    subreaper = _become_subreaper()
    keep = {c.pid for c in psutil.Process().children()}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    peak_tree = peak_root = peak_child = 0
    timed_out = False
    with (
        open(json_out.parent / "stdout.txt", "wb") as out,
        open(json_out.parent / "stderr.txt", "wb") as err,
    ):
        proc = psutil.Popen(cmd, cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        while True:
            try:
                rc = proc.wait(timeout=interval)
                break
            except psutil.TimeoutExpired:
                tree, rootrss, child = _tree_rss(proc)
                peak_tree, peak_root = max(peak_tree, tree), max(peak_root, rootrss)
                peak_child = max(peak_child, child)
                if timeout is not None and time.perf_counter() - t0 > timeout:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        rc = proc.wait(timeout=10)
                    except psutil.TimeoutExpired:
                        os.killpg(proc.pid, signal.SIGKILL)
                        rc = proc.wait()
                    break
    wall = time.perf_counter() - t0
    orphans = _reap_orphans(time.perf_counter() + 60, keep | {proc.pid}) if subreaper else 0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    sys_ = after.ru_stime - before.ru_stime
    result = {
        "rc": rc,
        "timed_out": timed_out,
        "wall_s": round(wall, 3),
        "user_s": round(user, 3),
        "sys_s": round(sys_, 3),
        "cpu_s": round(user + sys_, 3),
        # ru_maxrss is in KiB on Linux: the largest single descendant process
        "max_process_rss_mb": round(after.ru_maxrss / 1024, 1),
        "peak_tree_rss_mb": round(max(peak_tree, after.ru_maxrss * 1024) / MB, 1),
        "root_peak_rss_mb": round(peak_root / MB, 1),
        # the command's descendants (e.g. Dask worker processes), sampled
        "child_peak_rss_mb": round(peak_child / MB, 1),
        "orphans_reaped": orphans,
    }
    json_out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--cwd", type=Path, default=None)
    p.add_argument(
        "--timeout", type=float, default=None, help="Seconds before the command is killed."
    )
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        p.error("no command given after --")
    result = measure(cmd, args.json, args.cwd, args.timeout, args.interval)
    return 0 if result["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
