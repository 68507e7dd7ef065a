"""Sweeps of one grid run in parts (a model per GPU call, say) joined into one result, as `gapprof sweep` writes it.

Parts join only where their cells are comparable: the same GPU, software and per-cell settings (steps, warm-up,
dtype, attention, seed, quantisation); only the models, contexts and runtimes may differ, and no cell may appear
twice. Each part's command, finish time and machine stay in `parts`."""

from gapprof.errors import GapprofError

# Per-cell settings every part must share (the grid's models, ctx and runtimes may differ).
SHARED_GRID = ("steps", "warmup", "dtype", "attn", "seed", "device", "quant", "quant_lm_head")
# What makes two machines the same for timings (copy bandwidth is measured per session, each row has its own).
SHARED_MACHINE = ("gpu_name", "driver", "torch", "transformers", "cuda")
GRID_LISTS = ("models", "ctx", "runtimes")


def _union(lists) -> list:
    out = []
    for values in lists:
        out += [v for v in values if v not in out]
    return out


def _check_same(parts: list[dict], where: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        values = _union([[part[where].get(key)] for part in parts])
        if len(values) > 1:
            raise GapprofError(
                f"sweeps differ in {where} {key}: {', '.join(map(str, values))}; only sweeps of the "
                f"same {'machine' if where == 'machine' else 'settings'} join"
            )


def merge_sweeps(parts: list[dict]) -> dict:
    """One sweep result from `parts` (each a sweep.json's content), rows in the parts' order."""
    if len(parts) < 2:
        raise GapprofError("sweep-merge needs at least two sweeps")
    _check_same(parts, "grid", SHARED_GRID)
    _check_same(parts, "machine", SHARED_MACHINE)
    seen = set()
    for part in parts:
        for row in part["rows"]:
            cell = (row["model"], row["ctx"], row["runtime"])
            if cell in seen:
                raise GapprofError(f"cell {' '.join(map(str, cell))} appears in more than one sweep")
            seen.add(cell)
    first = parts[0]
    grid = first["grid"] | {key: _union(part["grid"][key] for part in parts) for key in GRID_LISTS}
    conventions = _union(part["floor_convention"].split(" | ") for part in parts)
    return {
        "command": " ; ".join(part["command"] for part in parts),
        "finished_at": max(part["finished_at"] for part in parts),
        "grid": grid,
        "floor_convention": " | ".join(conventions),
        "timing": first["timing"],
        "machine": first["machine"],
        "parts": [{key: part[key] for key in ("command", "finished_at", "machine")} for part in parts],
        "rows": [row for part in parts for row in part["rows"]],
    }
