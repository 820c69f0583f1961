"""Benchmark: r1zero ``base_acc`` against a plain math-verify scorer, in one run.

    python benchmarks/reward_bench.py [--rounds 3] [--timeout 5] [--skip-hostile | --hostile-only]
                                      [--bench DIR]

Baseline: math-verify 0.9.0 with defaults — gold parsed
from ``$gold$``, the prediction parsed from the answer block, ``verify`` — and reward =
strict format AND verify. Both scorers run the same way: inside r1zero's ScoringPool, each
measurement in freshly started worker processes (no cache carried over between rounds or
scorers), after the same warm-up on synthetic answers that are not in the corpus.
Throughput = rows / wall time of one ``pool.score`` over the whole corpus; the median over
``--rounds`` alternating rounds is reported (the machine may be shared). Latency is per
sample, timed inside the worker. The hostile section (``hostile_answers.py``, grouped by
class) goes to ``base_acc``, ``math_verify_reward`` and the plain math-verify scorer under a
kill timeout; it prints each class's worst latency and each scorer's worst, p95 and worst CPU
time, timed inside the worker; a worker's address space is capped at 3 GiB so a runaway
parse cannot take the machine with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import hostile_answers

from r1zero.plugins.rewards.answer_format import answer_region, strict_format_ok
from r1zero.plugins.rewards.base_acc import BaseAccScorer
from r1zero.plugins.rewards.math_verify_reward import MathVerifyRewardScorer
from r1zero.scoring.pool import ScoringPool

BENCH = Path(__file__).resolve().parents[1] / ".." / "shared" / "bench"
MEMORY_CAP = 3 << 30


class PlainMathVerify:
    """The README's reference scorer: strict format AND math-verify on the answer block."""
    name, components, in_process, in_process_reason = "math_verify", (), False, ""

    def score(self, response: str, ground_truth: str, extra: Mapping[str, Any]) -> dict:
        from math_verify import parse, verify
        ok = strict_format_ok(response) and verify(parse(f"${ground_truth}$"),
                                                   parse(answer_region(response)))
        return {"reward": float(ok)}


class Timed:
    """Wraps a scorer: adds its wall and CPU time as components ``seconds`` and ``cpu``
    (CPU time does not grow when other processes compete for the cores); caps memory."""

    def __init__(self, inner: Any):
        self.inner, self.name = inner, inner.name
        self.components = (*inner.components, "seconds", "cpu")
        # one forkserver serves both scorers: it warms up the same way for both
        self.preload_modules = (type(inner).__module__, "math_verify",
                                "r1zero.plugins.rewards.preload")
        self.in_process, self.in_process_reason = False, ""

    def score(self, response: str, ground_truth: str, extra: Mapping[str, Any]) -> dict:
        _cap_memory()
        logging.getLogger("math_verify").setLevel(logging.ERROR)   # its timeouts are counted
        t, c = time.perf_counter(), time.process_time()
        out = dict(self.inner.score(response, ground_truth, extra))
        out["seconds"], out["cpu"] = time.perf_counter() - t, time.process_time() - c
        return out


def _cap_memory() -> None:
    import resource
    if resource.getrlimit(resource.RLIMIT_AS)[0] != MEMORY_CAP:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _burn(_: int) -> float:
    t, x = time.perf_counter(), 0
    for i in range(3_000_000):
        x += i * i
    return time.perf_counter() - t


def parallel_headroom() -> float:
    """Speed-up two processes get over one on a pure CPU loop right now (2.0 on two idle
    cores; less when other jobs share the machine — the pool cannot beat this)."""
    import multiprocessing as mp
    with mp.get_context("forkserver").Pool(2) as pool:
        pool.map(_burn, [0, 1])
        t = time.perf_counter()
        pool.map(_burn, [0])
        one = time.perf_counter() - t
        t = time.perf_counter()
        pool.map(_burn, [0, 1])
        return 2 * one / (time.perf_counter() - t)


def warmup_rows(n: int = 30) -> list[tuple[str, str]]:
    """Synthetic answers (not from the corpus) touching the common parser paths."""
    forms = ["\\frac{%d}{7}", "%d\\sqrt{2}", "x^2+%dx", "(%d, 1)", "[%d, 9)", "x=%d",
             "\\begin{pmatrix}%d\\\\1\\end{pmatrix}", "%d.5", "\\{%d, 2\\}", "%d\\pi"]
    rows = []
    for i in range(n):
        pred, gold = forms[i % len(forms)] % (i + 2), forms[(i * 3) % len(forms)] % (i + 3)
        rows.append((f"<think>w</think><answer>\\boxed{{{pred}}}</answer>", gold))
    return rows


def measure(scorer: Any, rows: list[dict], workers: int, timeout_s: float) -> dict:
    """Fresh pool -> warm-up -> one timed pass over ``rows``."""
    with ScoringPool([(Timed(scorer), 1.0)], workers=workers, timeout_s=timeout_s) as pool:
        warm = warmup_rows()
        pool.score([r for r, _ in warm], [g for _, g in warm])
        t = time.perf_counter()
        batch = pool.score([r["response"] for r in rows], [r["gold"] for r in rows])
        wall = time.perf_counter() - t
    return {"rate": len(rows) / wall, "rewards": batch.rewards, "counts": batch.counts,
            "seconds": batch.components[f"{scorer.name}/seconds"],
            "cpu": sum(batch.components[f"{scorer.name}/cpu"])}


def subsets(rows: list[dict], pairs: dict[str, dict]) -> dict[str, list[int]]:
    def derived(r):
        return r["kind"] == "equivalence" and bool(pairs[r["case_id"]].get("derived"))
    unamb = [i for i, r in enumerate(rows) if not r.get("ambiguous") and not r.get("format_ambiguous")]
    return {
        "all responses": list(range(len(rows))),
        "unambiguous": unamb,
        "public pairs, unambiguous": [i for i in unamb if rows[i]["kind"] == "equivalence"
                                      and not derived(rows[i])],
        "derived negatives": [i for i, r in enumerate(rows) if derived(r)],
        "format cases": [i for i, r in enumerate(rows) if r["kind"] != "equivalence"],
    }


def agreement(rewards: list[float], rows: list[dict], idx: list[int]) -> float:
    return 100.0 * sum((rewards[i] == 1.0) == rows[i]["expected"] for i in idx) / len(idx)


def latency(seconds: list[float]) -> str:
    s = sorted(seconds)
    return (f"{1e3 * s[len(s) // 2]:.2f} / {1e3 * s[int(0.95 * (len(s) - 1))]:.1f} / "
            f"{1e3 * s[-1]:.0f}")


def hostile_rows(marker: Path) -> list[tuple[str, str, str]]:
    """(class, response, gold): each answer of ``hostile_answers`` against 42 and itself."""
    rows = []
    for label, answers in hostile_answers.classes(str(marker)).items():
        for a in answers:
            response = f"<think>t</think><answer>\\boxed{{{a}}}</answer>"
            rows += [(label, response, "42"), (label, response, a)]
    rows += [("whole responses", r, g) for r, g in hostile_answers.RESPONSES.values()]
    return rows


def run_hostile(timeout_s: float) -> tuple[list[str], list[str]]:
    """Each scorer over the hostile rows in a fresh pool: (per-class lines, summary lines)."""
    scorers = (BaseAccScorer(), MathVerifyRewardScorer(), PlainMathVerify())
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "pwned"
        rows = hostile_rows(marker)
        secs, summary = {}, []
        for scorer in scorers:
            t = time.perf_counter()
            with ScoringPool([(Timed(scorer), 1.0)], workers=2, timeout_s=timeout_s) as pool:
                b = pool.score([r for _, r, _ in rows], [g for _, _, g in rows])
            wall = time.perf_counter() - t
            s = secs[scorer.name] = list(b.components[f"{scorer.name}/seconds"])
            cpu = b.components[f"{scorer.name}/cpu"]
            for e in b.errors:                      # "... sample 12: timeout: ..."
                i, status = e.split(" sample ")[1].split(": ")[:2]
                s[int(i)] = max(s[int(i)], timeout_s if status == "timeout" else 0.0)
            worst = max(range(len(rows)), key=lambda i: s[i])
            p95 = sorted(s)[int(0.95 * (len(s) - 1))]
            summary.append(
                f"| {scorer.name:18} | {len(rows)} | {_ms(s[worst], timeout_s)} ({rows[worst][0]}) "
                f"| {1e3 * p95:.1f} ms | {1e3 * max(cpu):.0f} ms | {b.counts['reward/timeouts']} "
                f"| {b.counts['reward/errors']} | {'YES' if marker.exists() else 'no'} "
                f"| yes, {wall:.1f} s |")
    lines = []
    for label in dict.fromkeys(c for c, _, _ in rows):
        idx = [i for i, (c, _, _) in enumerate(rows) if c == label]
        lines.append(f"| {label} | {len(idx)} | " + " | ".join(
            _ms(max(secs[sc.name][i] for i in idx), timeout_s) for sc in scorers) + " |")
    return lines, summary


def _ms(seconds: float, timeout_s: float) -> str:
    return f">= {timeout_s:g} s (killed)" if seconds >= timeout_s else f"{1e3 * seconds:.0f} ms"


def print_hostile(timeout_s: float) -> None:
    logging.getLogger("r1zero.scoring.pool").setLevel(logging.ERROR)    # counted in the table
    print("\nhostile inputs (benchmarks/hostile_answers.py; 2 workers, kill timeout "
          f"{timeout_s:g} s, 3 GiB address-space cap per worker; latency timed inside the worker)\n")
    lines, summary = run_hostile(timeout_s)
    print("| class | samples | base_acc worst | math_verify_reward worst | plain math-verify worst |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))
    print("\n| scorer | samples | worst latency (wall) | p95 | worst CPU | timeouts | errors "
          "| executed | batch completed |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(summary))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--skip-hostile", action="store_true")
    ap.add_argument("--hostile-only", action="store_true")
    ap.add_argument("--bench", type=Path, default=BENCH,
                    help="folder with responses.jsonl and equivalence_cases.jsonl "
                         "(default: ../shared/bench next to the repository)")
    args = ap.parse_args(argv)
    if args.hostile_only:
        print_hostile(args.timeout)
        return 0
    bench = args.bench
    if not (bench / "responses.jsonl").exists():
        print(f"reward_bench: skipped, corpus not found at {bench.resolve()}")
        return 0
    rows = [json.loads(line) for line in open(bench / "responses.jsonl", encoding="utf-8")]
    pairs = {json.loads(line)["id"]: json.loads(line)
             for line in open(bench / "equivalence_cases.jsonl", encoding="utf-8")}
    runs: dict[str, list[dict]] = {"mv": [], "r1": [], "r2": []}
    for _ in range(args.rounds):               # alternate, so background load hits all alike
        runs["mv"].append(measure(PlainMathVerify(), rows, 1, args.timeout))
        runs["r1"].append(measure(BaseAccScorer(), rows, 1, args.timeout))
        runs["r2"].append(measure(BaseAccScorer(), rows, 2, args.timeout))
    rate = {k: statistics.median(m["rate"] for m in v) for k, v in runs.items()}
    print_report(rows, pairs, runs, rate, args, parallel_headroom())
    if not args.skip_hostile:
        print_hostile(args.timeout)
    return 0


def print_report(rows, pairs, runs, rate, args, headroom: float) -> None:
    from importlib.metadata import version

    import math_verify  # noqa: F401 - for the version line
    print(f"reward_bench: r1zero base_acc vs plain math-verify {version('math-verify')} on "
          f"{len(rows)} responses of ../shared/bench/responses.jsonl")
    print(f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}; load avg {os.getloadavg()[0]:.1f}; 2 processes vs 1 on "
          f"a CPU loop right now: {headroom:.2f}x; {args.rounds} alternating rounds (median), "
          f"fresh worker processes each, warm-up {len(warmup_rows())} synthetic rows\n")
    mv, r1 = runs["mv"][0], runs["r1"][0]
    print("| subset | n | math-verify | r1zero base_acc |")
    print("|---|---|---|---|")
    for label, idx in subsets(rows, pairs).items():
        a, b = agreement(mv["rewards"], rows, idx), agreement(r1["rewards"], rows, idx)
        print(f"| {label} | {len(idx)} | {a:.1f}% | {b:.1f}%{'' if b >= a else '  (REGRESSION)'} |")
    print(f"| throughput, 1 process (responses/s) | {len(rows)} | {rate['mv']:.0f} | "
          f"{rate['r1']:.0f} ({rate['r1'] / rate['mv']:.1f}x) |")
    print(f"| throughput, r1zero pool of 2 workers | {len(rows)} | {rate['mv']:.0f} (1 process) | "
          f"{rate['r2']:.0f} (**{rate['r2'] / rate['mv']:.1f}x**) |")
    cpu = {k: statistics.median(m["cpu"] for m in v) for k, v in runs.items()}
    print(f"| CPU time per response, 1 process (ms) | {len(rows)} | {1e3 * cpu['mv'] / len(rows):.2f} "
          f"| {1e3 * cpu['r1'] / len(rows):.2f} ({cpu['mv'] / cpu['r1']:.1f}x less) |")
    print(f"| latency per response p50 / p95 / max (ms) | {len(rows)} | {latency(mv['seconds'])} "
          f"| {latency(r1['seconds'])} |")
    timeouts = sum(m["counts"]["reward/timeouts"] for v in runs.values() for m in v)
    errors = sum(m["counts"]["reward/errors"] for v in runs.values() for m in v)
    per_round = "; ".join(k + ": " + ", ".join(f"{m['rate']:.0f}" for m in v)
                          for k, v in runs.items())
    print(f"\nrates per round (responses/s): {per_round} (mv = math-verify 1 worker, r1 = "
          f"base_acc 1 worker, r2 = base_acc 2 workers); timeouts {timeouts}, errors {errors}")

if __name__ == "__main__":
    sys.exit(main())
