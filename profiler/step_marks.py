"""`gapprof.mark_steps(model)`: an NVTX range around every forward of a model (a transformers model, or any
torch.nn.Module), for code that runs its own decode loop, such as generate(), under its own profiler.

Each call of the model's forward (the model itself, not its submodules) is one push/pop range in domain
`gapprof`: message `prefill` when it takes more than one new token, else `decode_step` (what `gapprof
attribute` looks for by default) with payload = the step's index since the last prefill, as capture numbers
them. New tokens: the last dimension of `input_ids` (keyword, else the first positional argument), else the
second-to-last of `inputs_embeds`; a forward with neither is marked `forward`.

The ranges are NVTX ranges (for Nsight Systems), or with ranges="record_function" torch.profiler's
record_function ranges, which a torch.profiler trace keeps as user_annotation events (no payload there).
The range is the forward call only: sampling and copying the token to the host run after it, and GPU work still
running when the forward returns is reported by attribute as spill. The hooks need no torch import of their own.
`StepLabels` is the labelling alone, which `gapprof profile --mark forward` applies from outside the model.
"""

from gapprof.errors import GapprofError
from gapprof.nvtx_names import PREFILL_MESSAGE, STEP_DOMAIN, STEP_MESSAGE

UNKNOWN_MESSAGE = "forward"


class NvtxRanges:
    """Push/pop ranges in the `gapprof` domain (the nvtx package)."""

    def __init__(self, domain: str = STEP_DOMAIN):
        import nvtx

        self._domain = nvtx.get_domain(domain)

    def push(self, message: str, payload: int | None) -> None:
        self._domain.push_range(self._domain.get_event_attributes(message=message, payload=payload))

    def pop(self) -> None:
        self._domain.pop_range()


class RecordFunctionRanges:
    """torch.profiler record_function ranges, opened and closed as a stack (the payload is not kept)."""

    def __init__(self):
        from torch.profiler import record_function

        self._record_function = record_function
        self._open = []

    def push(self, message: str, payload: int | None) -> None:
        self._open.append(self._record_function(message))
        self._open[-1].__enter__()

    def pop(self) -> None:
        self._open.pop().__exit__(None, None, None)


RANGES = {"nvtx": NvtxRanges, "record_function": RecordFunctionRanges}


def new_tokens(args: tuple, kwargs: dict) -> int | None:
    """Tokens a forward call adds: from input_ids [..., T], else inputs_embeds [..., T, hidden]; None if neither."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    if getattr(ids, "shape", None):
        return ids.shape[-1]
    embeds = kwargs.get("inputs_embeds")
    if getattr(embeds, "shape", None):
        return embeds.shape[-2]
    return None


class StepLabels:
    """Opens the range of one forward call: `prefill` (more than one new token, restarting the step count),
    `decode_step` with payload = its index since the last prefill, or `forward` (no token count). Keeps what it
    opened: the prefills' token counts and the number of decode steps."""

    def __init__(self, ranges):
        self._ranges = ranges
        self._since_prefill = 0
        self.prefill_tokens: list[int] = []
        self.decode_steps = 0

    def push(self, args: tuple, kwargs: dict) -> None:
        tokens = new_tokens(args, kwargs)
        if tokens is None:
            self._ranges.push(UNKNOWN_MESSAGE, None)
        elif tokens > 1:
            self._since_prefill = 0
            self.prefill_tokens.append(int(tokens))
            self._ranges.push(PREFILL_MESSAGE, None)
        else:
            self._ranges.push(STEP_MESSAGE, self._since_prefill)
            self._since_prefill += 1
            self.decode_steps += 1

    def pop(self) -> None:
        self._ranges.pop()


class StepMarks:
    """The hooks of one mark_steps call; `remove()` takes them off (also on leaving a `with` block)."""

    def __init__(self, model, ranges):
        self.labels = StepLabels(ranges)
        self._handles = [
            model.register_forward_pre_hook(
                lambda _module, args, kwargs: self.labels.push(args, kwargs), with_kwargs=True
            ),
            # always_call: a forward that raises still pops, so the NVTX stack stays balanced.
            model.register_forward_hook(lambda *_: self.labels.pop(), always_call=True),
        ]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "StepMarks":
        return self

    def __exit__(self, *_exc) -> None:
        self.remove()


def mark_steps(model, ranges="nvtx") -> StepMarks:
    """Mark every forward of `model` with a range (prefill or decode_step) until `.remove()`.

    ranges: "nvtx" (the nvtx package), "record_function" (torch.profiler), or an object with push(message,
    payload) and pop().
    """
    if isinstance(ranges, str):
        if ranges not in RANGES:
            raise GapprofError(f"mark_steps: unknown ranges {ranges!r}; choose from {', '.join(RANGES)}")
        ranges = RANGES[ranges]()
    return StepMarks(model, ranges)
