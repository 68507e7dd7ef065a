"""The NVTX-annotated decode loop: one range per decode step, closed once the next token is on the host."""

import time

from gapprof.nvtx_names import STEP_DOMAIN, STEP_MESSAGE


class NvtxStepRanges:
    """Push/pop ranges in the `gapprof` domain, message `decode_step`, payload = step index."""

    def __init__(self, domain: str = STEP_DOMAIN, message: str = STEP_MESSAGE):
        import nvtx

        self._domain = nvtx.get_domain(domain)
        self._message = message

    def push(self, index: int) -> None:
        self._domain.push_range(self._domain.get_event_attributes(message=self._message, payload=index))

    def pop(self) -> None:
        self._domain.pop_range()


class NoRanges:
    def push(self, index: int) -> None:
        pass

    def pop(self) -> None:
        pass


def run_steps(runtime, count: int, first_index: int = 0, ranges=NoRanges(), clock=time.perf_counter_ns):
    """Run `count` decode steps; return the tokens and each step's (start, end) on `clock`.

    The clock is read inside the range, so a step's span never includes the range calls themselves.
    """
    tokens, spans = [], []
    for index in range(first_index, first_index + count):
        ranges.push(index)
        start = clock()
        tokens.append(runtime.step())
        end = clock()
        ranges.pop()
        spans.append((start, end))
    return tokens, spans


def step_ms(spans) -> list[float]:
    return [(end - start) / 1e6 for start, end in spans]
