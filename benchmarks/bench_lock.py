"""What the environment check costs at start-up, next to what importing torch costs.

    python benchmarks/bench_lock.py [--repeats 7] [--weights-mb 100] [--write docs/benchmarks-lock.md]

Each figure is the median wall time over ``--repeats`` fresh processes (so every run pays its
imports) after one warm-up run (bytecode cached, as for an installed package), except the
in-process warm figure, which is one process checking repeatedly:
  * ``python -c pass``: the interpreter alone, the floor under every other row;
  * ``python -c "import torch"``: what a predictor pays anyway, and what the check must not add;
  * in-process check, cold: ``from safepredict.lock import check_lock; check_lock(lock)`` in a
    fresh process (what a predictor adds at start-up, imports included), and warm (a second
    check in the same process);
  * ``safepredict check`` (``python -m safepredict check``): the container entrypoint; and the
    same command parsed by the lock's own subcommands only (what the CLI costs when it does not
    load every other subcommand module first);
  * ``safepredict lock``: writing the lock (imports torch and cv2 to ask them; run once);
  * sha256 of a weights file of ``--weights-mb`` MB, which a check with pinned weights adds.
The lock used pins no files unless said, so the rows compare the environment check itself.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # An installed package runs from cached bytecode: let the warm-up run write it.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _wall(cmd: list[str], repeats: int, cwd: Path) -> float:
    subprocess.run(cmd, cwd=cwd, env=_env(), check=True, capture_output=True)  # warm-up: bytecode, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=_env(), check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _in_process(lock: Path, repeats: int, cwd: Path) -> tuple[float, float]:
    code = (
        "import time; t = time.perf_counter()\n"
        "from safepredict.lock import check_lock\n"
        f"r = check_lock({str(lock)!r}); assert r.ok, r.describe()\n"
        "cold = time.perf_counter() - t\n"
        "t = time.perf_counter()\n"
        f"for _ in range(20): check_lock({str(lock)!r})\n"
        "print(cold, (time.perf_counter() - t) / 20)\n"
    )
    cold, warm = [], []
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=_env(), check=True, capture_output=True)  # warm-up
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=cwd, env=_env(), check=True, capture_output=True, text=True
        )
        c, w = map(float, out.stdout.split())
        cold.append(c)
        warm.append(w)
    return statistics.median(cold), statistics.median(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--weights-mb", type=int, default=100)
    parser.add_argument("--write", help="also write the table to this Markdown file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        py = sys.executable
        start = time.perf_counter()
        subprocess.run(
            [py, "-m", "safepredict", "lock", "--out", "safepredict.lock"], cwd=folder, env=_env(), check=True
        )
        lock_time = time.perf_counter() - start
        lock = folder / "safepredict.lock"

        rows: list[tuple[str, float]] = []
        rows.append(("`python -c pass` (interpreter start)", _wall([py, "-c", "pass"], args.repeats, folder)))
        rows.append(('`python -c "import torch"`', _wall([py, "-c", "import torch"], args.repeats, folder)))
        cold, warm = _in_process(lock, args.repeats, folder)
        rows.append(("in-process check, cold (imports + `check_lock`, fresh process)", cold))
        rows.append(("in-process check, warm (`check_lock` again in the same process)", warm))
        rows.append(
            ("`safepredict check` (whole process)", _wall([py, "-m", "safepredict", "check"], args.repeats, folder))
        )
        lock_only = (
            "import argparse, sys; from safepredict.lock import commands; p = argparse.ArgumentParser(); "
            "commands.register(p.add_subparsers()); a = p.parse_args(['check']); sys.exit(a.func(a))"
        )
        rows.append(("`check` through the lock's subcommands only", _wall([py, "-c", lock_only], args.repeats, folder)))
        rows.append(("`safepredict lock` (whole process, imports torch and cv2; one run)", lock_time))

        weights = folder / "weights.pth"
        with weights.open("wb") as fh:
            block = os.urandom(1 << 20)
            for _ in range(args.weights_mb):
                fh.write(block)
        sys.path.insert(0, str(REPO))
        from safepredict.lock.capture import sha256_file

        times = []
        for _ in range(3):
            start = time.perf_counter()
            sha256_file(weights)
            times.append(time.perf_counter() - start)
        rows.append((f"sha256 of a {args.weights_mb} MB weights file (added when weights are pinned)", min(times)))

    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"Measured with `python benchmarks/bench_lock.py --repeats {args.repeats}` on {cpu}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}, load average {load:.1f} at the end. "
        "Median wall time.",
        "",
        "| what | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {secs:.3f} |" for name, secs in rows),
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        Path(args.write).write_text("# Environment lock: measured cost\n\n" + table + "\n")


if __name__ == "__main__":
    main()
