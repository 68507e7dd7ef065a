"""The two passes of one capture joined (`capture --backend cupti --cuda-graph-trace both`). The graph-level pass
traces each CUDA graph execution as one op, at a low profiling cost: it gives the step's wall, head, tail and the
time the host starved the GPU. The node-level pass traces every kernel: it gives busy, the floor split and every
per-kernel table. The passes decode consecutive positions of one generation, so they are joined by their means
over the measured steps, not step by step."""

from dataclasses import replace

import polars as pl
from gapprof.analysis.attribution import Attribution, Options, attribute_frames
from gapprof.analysis.frames import select_steps

from gapprof.nvtx_names import GRAPH_LEVEL_MESSAGE

FROM_GRAPH_LEVEL = ("wall", "head", "tail", "starved")
FROM_NODE_LEVEL = ("busy", "floor", "excess")


def graph_level_pass(node: Attribution, options: Options, progress=lambda _: None) -> Attribution | None:
    """The graph-level pass of `node`'s trace, attributed with the same options from the frames `node` read;
    None for a one-pass trace."""
    if node.frames.meta.get("cuda_graph_trace") != "both":
        return None
    frames = select_steps(node.frames.read, GRAPH_LEVEL_MESSAGE, options.skip)
    return attribute_frames(
        frames,
        replace(options, range_pattern=GRAPH_LEVEL_MESSAGE),
        lambda message: progress(f"graph-level pass: {message}"),
    )


def _mean_ms(result: Attribution, term: str) -> float | None:
    return result.measured[term].mean() / 1e6 if term in result.measured.columns else None


def _median(values) -> float | None:
    return float(pl.Series(values).median()) if values else None


def joined(node: Attribution, graph: Attribution) -> tuple[pl.DataFrame, list[str]]:
    """(table, notes): per term the graph-level pass's mean, the node-level pass's and the joined step's, whose
    terms add up to the graph-level wall: latency is the rest (gaps inside and between graphs)."""
    terms = ("wall", "busy", "floor", "excess", "starved", "latency", "head", "tail")
    both = {term: (_mean_ms(graph, term), _mean_ms(node, term)) for term in terms}
    out = {term: both[term][0] for term in FROM_GRAPH_LEVEL} | {term: both[term][1] for term in FROM_NODE_LEVEL}
    out["latency"] = out["wall"] - out["busy"] - out["starved"] - out["head"] - out["tail"]
    meta = node.frames.meta
    plain = _median(meta.get("unprofiled_step_ms"))
    effect = {"graph": _median(meta.get("graph_level_step_ms")), "node": _median(meta.get("profiled_step_ms"))}
    rows = [
        {"term": f"{term} ms", "graph-level pass": both[term][0], "node-level pass": both[term][1], "joined": out[term]}
        for term in terms
    ]
    rows.append(
        {
            "term": "profiled / unprofiled (medians)",
            "joined": None,
            **{
                f"{level}-level pass": effect[level] / plain if effect[level] and plain else None
                for level in ("graph", "node")
            },
        }
    )
    notes = [
        f"two-pass: joined by the means over each pass's measured steps (graph level from position "
        f"{meta.get('graph_level_first_index')}, node level from {meta.get('first_profiled_index')} after the "
        f"prompt); wall, head, tail and starved from the graph-level pass, busy, floor and excess from the "
        f"node-level pass, latency the rest of the graph-level wall"
    ]
    if out["latency"] < 0:
        notes.append(
            f"two-pass: the node-level pass's busy exceeds what the graph-level wall leaves for it by "
            f"{-out['latency']:.3f} ms, so the joined latency is negative: per-node tracing lengthened "
            f"the kernels themselves"
        )
    return pl.DataFrame(
        rows,
        schema={"term": pl.String, "graph-level pass": pl.Float64, "node-level pass": pl.Float64, "joined": pl.Float64},
    ), notes
