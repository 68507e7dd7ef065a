"""`gapprof ab`'s runner: runtime A against runtime B over fresh sessions, with a bootstrap interval on the speedup.

Each session is one request run by fresh_sessions.run_fresh in a new Python process (profiler.timing_child)
that builds the model, prefills, warms up and times the measured steps with no profiler attached; its statistic
is the median step time. Arms alternate A, B, A, B... so slow drift of the machine reaches both. Speedup of B
over A = mean of A's session medians / mean of B's.
"""

import statistics

from gapprof.profiler import fresh_sessions

from gapprof.bootstrap_ci import RESAMPLES, SEED, ratio_of_means_ci
from gapprof.errors import GapprofError
from gapprof.log import progress

SESSION_FIELDS = ("first_token", "tokens", "step_ms", "copy_bandwidth_gbps")


def _arm(records: list[dict], floor: dict) -> dict:
    sessions = [
        {
            "order": r["order"],
            "median_ms": statistics.median(r["step_ms"]),
            "mean_ms": statistics.fmean(r["step_ms"]),
            **{k: r[k] for k in SESSION_FIELDS},
        }
        for r in records
    ]
    medians = [s["median_ms"] for s in sessions]
    mean = statistics.fmean(medians)
    request = records[0]["request"]
    quantised = request.get("quant", "none") != "none"
    quant = {"quant": request["quant"], "quant_lm_head": request["quant_lm_head"]} if quantised else {}
    return {
        "runtime": request["runtime"],
        "attn": request["attn"],
        **quant,
        "mean_of_medians_ms": mean,
        "sd_of_medians_ms": statistics.stdev(medians),
        "min_median_ms": min(medians),
        "max_median_ms": max(medians),
        **fresh_sessions.floor_fractions(floor, mean),
        "sessions": sessions,
    }


def summarise(
    records_a: list[dict], records_b: list[dict], count_embedding: bool, resamples: int = RESAMPLES, seed: int = SEED
) -> dict:
    """Everything ab.json holds except the command: arms, speedup with its interval, floor, machine."""
    every = records_a + records_b
    facts = fresh_sessions.machine(every)
    floors = {
        arm: fresh_sessions.floor(
            records[0]["request"],
            facts["gpu_name"],
            facts["copy_bandwidth_gbps"],
            count_embedding,
            records[0].get("quant"),
        )
        for arm, records in (("a", records_a), ("b", records_b))
    }
    arms = {"a": _arm(records_a, floors["a"]), "b": _arm(records_b, floors["b"])}
    interval = ratio_of_means_ci(
        [s["median_ms"] for s in arms["a"]["sessions"]],
        [s["median_ms"] for s in arms["b"]["sessions"]],
        resamples=resamples,
        seed=seed,
    )
    request = {
        k: v
        for k, v in records_a[0]["request"].items()
        if k not in ("runtime", "backend", "attn", "quant", "quant_lm_head")
    }
    return {
        "request": request,
        "arms": arms,
        "speedup": interval.ratio,
        "ci95": [interval.low, interval.high],
        "bootstrap": {
            "method": "percentile; session medians resampled with replacement within each arm",
            "resamples": interval.resamples,
            "seed": interval.seed,
            "level": interval.level,
        },
        "floor": floors["a"],
        # Arms of different --quant have different floors: B's is its own.
        **({"floor_b": floors["b"]} if floors["b"] != floors["a"] else {}),
        # Random bf16 weights leave near-tied logits, so a last-bit difference between sessions can flip a token.
        "distinct_token_sequences": {
            arm: len({(r["first_token"], tuple(r["tokens"])) for r in records})
            for arm, records in (("a", records_a), ("b", records_b), ("all", every))
        },
        "timing": (
            "fresh process per session; each step timed on the host's perf_counter_ns and ended once the "
            "next token is on the host; no profiler attached"
        ),
        "machine": facts,
    }


def arm_label(request) -> str:
    """An arm's runtime, and its --quant method where it has one."""
    return request.runtime + (f" {request.quant}" if request.quant != "none" else "")


def run_ab(request_a, request_b, sessions: int) -> tuple[list[dict], list[dict]]:
    """2 x sessions fresh processes, A and B alternating; stops at the first failed session."""
    records = {"a": [], "b": []}
    for index in range(sessions):
        for offset, (arm, request) in enumerate((("a", request_a), ("b", request_b))):
            order = 2 * index + offset
            progress(f"session {order + 1}/{2 * sessions}: arm {arm.upper()} ({arm_label(request)})")
            (record,) = fresh_sessions.run_fresh([request])
            if not record["ok"]:
                raise GapprofError(
                    f"session {order + 1} (arm {arm.upper()}, {arm_label(request)}) failed: {record['reason']}"
                )
            records[arm].append({**record, "order": order})
    return records["a"], records["b"]
