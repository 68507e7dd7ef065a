"""What `gapprof profile` learns from the program's Python processes: each wrote its facts at exit
(profiler.forward_marks). The model with the most marked decode steps gives the trace's metadata what a capture's
gives (config, dtype, parameter bytes, GPU, ctx = its prefill's token count, so step i reads ctx + i), which is all
the floor needs; when nothing was marked, `why_unmarked` says why in one clause. Torch-free: runs in the parent."""

import json
from pathlib import Path

from gapprof.nvtx_names import STEP_DOMAIN, STEP_MESSAGE

MODEL_KEYS = ("config", "dtype", "dtype_bytes", "param_bytes", "device", "gpu_name", "gpu_memory_bytes", "gpu_sm_count")
VERSION_KEYS = ("python", "torch", "cuda", "transformers")


def read_facts(folder: Path) -> list[dict]:
    """Every process's facts, in file-name order; an unreadable file is left out."""
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return found


def marked_model(facts: list[dict]) -> tuple[dict, dict] | None:
    """(process facts, model record) of the model with the most decode steps, or None when none has any."""
    candidates = [(process, model) for process in facts for model in process.get("models", [])]
    best = max(candidates, key=lambda pair: pair[1].get("decode_steps", 0), default=None)
    return best if best is not None and best[1].get("decode_steps") else None


def model_meta(model: dict) -> dict:
    """The trace metadata of a marked model. The floor needs its config and one prefill length: with prefills
    of several lengths, ctx and config are left out (attribute then takes --model and --ctx)."""
    meta = {key: model[key] for key in MODEL_KEYS if key in model}
    meta.update(
        model_class=model["class"],
        prefills=len(model.get("prefill_tokens", [])),
        decode_steps=model["decode_steps"],
        range_message=STEP_MESSAGE,
        range_domain=STEP_DOMAIN,
    )
    lengths = sorted(set(model.get("prefill_tokens", [])))
    if len(lengths) == 1:
        meta["ctx"] = lengths[0]
    else:
        meta["prefill_lengths"] = lengths[:20]
        meta.pop("config", None)
    if "config" in meta:
        # The name the floor and the report give the model (a checkpoint's path, else its class).
        meta["model"] = model.get("model") or model["class"].rsplit(".", 1)[-1]
    elif model.get("model"):
        meta["model_name"] = model["model"]
    return meta


def program_meta(facts: list[dict]) -> dict:
    """Versions from the program (the marked model's process, else one that used CUDA through torch) and, with
    --mark, the marked model's metadata."""
    marked = marked_model(facts)
    with_torch = [process for process in facts if process.get("torch")]
    process = marked[0] if marked else (with_torch[0] if with_torch else None)
    meta = {key: process[key] for key in VERSION_KEYS if process and process.get(key) is not None}
    return meta | (model_meta(marked[1]) if marked else {})


def why_unmarked(facts: list[dict], target: str) -> str:
    """Why --mark forward marked no decode step, from what the processes wrote."""
    module, name = target.rsplit(":", 1)
    errors = [process["mark_error"] for process in facts if process.get("mark_error")]
    if errors:
        return errors[0]
    if not facts:
        return (
            "no Python process of the program ran gapprof's site hook (not a Python program, or one started "
            "with -S or -I, or with PYTHONPATH replaced)"
        )
    if not any(process.get("target_imported") for process in facts):
        return f"the program never imported {module} (--mark-module MODULE:CLASS names another class)"
    models = [model for process in facts for model in process.get("models", [])]
    if not models:
        return f"no {name} was called"
    prefills = sum(len(model.get("prefill_tokens", [])) for model in models)
    return f"{len(models)} marked model(s) ran {prefills} prefill(s) and no decode step (a call with one new token)"
