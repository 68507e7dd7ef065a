"""`gapprof profile --mark forward` inside the profiled program: an NVTX range around every top-level forward of a
transformers model (or of the torch.nn.Module class named by --mark-module), labelled as `gapprof.mark_steps`
labels them (prefill, decode_step with its index since the prefill; profiler.step_marks), with no change to the
program's code.

The site hook's sitecustomize (profiler/child_site, first on the program's PYTHONPATH) calls
`install_from_environment()` when the interpreter starts. That imports nothing heavy: it waits for the module that
defines the class (transformers.modeling_utils for PreTrainedModel; profiler.after_import) and then gives the
class a __call__ that opens a range around the call. Only a thread's outermost marked call gets a range, so a
model's inner models (Qwen2Model inside Qwen2ForCausalLM) and models called inside another's forward are never
marked twice. Calls traced by torch.compile go straight through; transformers' compiled decode forward
(get_compiled_call, which generate uses with a static cache) is marked from outside the compiled code.

At exit each Python process that ran the site hook writes what it saw to GAPPROF_PROFILE_FACTS/<pid>.json:
versions, each marked model (class, config, dtype, parameter bytes, GPU, its prefills' token counts and decode
steps), or why nothing was marked. `gapprof profile` puts them in the trace's metadata (profiler.profile_facts).
"""

import atexit
import json
import os
import platform
import sys
import threading
import weakref

from gapprof.profiler.after_import import after_import
from gapprof.profiler.step_marks import NvtxRanges, StepLabels

from gapprof.models import ModelSpec

MARK_ENV = "GAPPROF_PROFILE_MARK"  # MODULE:CLASS whose top-level calls to mark; unset: mark nothing
FACTS_ENV = "GAPPROF_PROFILE_FACTS"  # the folder each Python process writes its facts to
TRANSFORMERS = "transformers.modeling_utils:PreTrainedModel"


class ForwardMarks:
    """Marks the top-level calls of one class, once its module is imported (`patch`)."""

    def __init__(self, target: str, ranges_factory=NvtxRanges):
        self.target = target
        self.module_name, self.class_name = target.rsplit(":", 1)
        self.imported = self.patched = False
        self.error: str | None = None
        self._ranges_factory, self._ranges = ranges_factory, None
        self._local = threading.local()
        self._models = weakref.WeakKeyDictionary()  # model -> its record
        self.records: list[dict] = []  # one per marked model, kept after the model is gone

    def patch(self, module) -> None:
        """Give the target class (in the just-imported `module`) a marking __call__ and get_compiled_call."""
        self.imported = True
        cls = getattr(module, self.class_name, None)
        if not isinstance(cls, type):
            self.error = f"{self.module_name} has no class {self.class_name}"
            return
        compiler = getattr(sys.modules.get("torch"), "compiler", None)
        is_compiling = getattr(compiler, "is_compiling", None) or (lambda: False)
        call, compiled_call, marks = cls.__call__, getattr(cls, "get_compiled_call", None), self

        def __call__(model, *args, **kwargs):
            if is_compiling():  # torch.compile traces the plain call: marks stay outside compiled code
                return call(model, *args, **kwargs)
            return marks.around(model, call.__get__(model), args, kwargs)

        cls.__call__ = __call__
        if compiled_call is not None:

            def get_compiled_call(model, *args, **kwargs):
                compiled = compiled_call(model, *args, **kwargs)
                return lambda *a, **k: marks.around(model, compiled, a, k)

            cls.get_compiled_call = get_compiled_call
        self.patched = True

    def around(self, model, forward, args: tuple, kwargs: dict):
        """forward(*args, **kwargs), in a range when it is this thread's outermost marked call."""
        labels = None if getattr(self._local, "depth", 0) else self._labels(model)
        if labels is None:
            return forward(*args, **kwargs)
        labels.push(args, kwargs)
        self._local.depth = 1
        try:
            return forward(*args, **kwargs)
        finally:
            self._local.depth = 0
            labels.pop()

    def _labels(self, model) -> StepLabels | None:
        record = self._models.get(model)
        if record is None:
            if self._ranges is None:
                try:
                    self._ranges = self._ranges_factory()
                except ImportError as error:
                    self.error, self._ranges = f"no NVTX in the program's Python ({error})", False
            if not self._ranges:
                return None
            record = {"facts": model_facts(model), "labels": StepLabels(self._ranges)}
            self._models[model] = record
            self.records.append(record)
        return record["labels"]

    def facts(self) -> dict:
        found = {
            "mark": self.target,
            "target_imported": self.imported,
            "patched": self.patched,
            "models": [
                {**r["facts"], "prefill_tokens": r["labels"].prefill_tokens, "decode_steps": r["labels"].decode_steps}
                for r in self.records
            ],
        }
        return found | ({"mark_error": self.error} if self.error else {})


def model_facts(model) -> dict:
    """What the floor needs of a model, read at its first marked call: class, config (when gapprof can read it as
    a decoder's), name, dtype, parameter bytes and its GPU. Never raises: the program must run on."""
    facts = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    try:
        parameters = list(model.parameters()) if hasattr(model, "parameters") else []
        if parameters:
            first = parameters[0]
            facts.update(
                dtype=str(first.dtype).replace("torch.", ""),
                dtype_bytes=first.element_size(),
                param_bytes=sum(p.numel() * p.element_size() for p in parameters),
                device=str(first.device),
            )
            if first.device.type == "cuda":
                from gapprof.profiler.environment import device_facts

                facts.update(device_facts(first.device))
        config = getattr(model, "config", None)
        if hasattr(config, "to_dict"):
            as_dict = config.to_dict()
            try:
                ModelSpec.from_config("model", as_dict)
                facts["config"] = as_dict
            except (KeyError, TypeError, ValueError):
                pass  # not a decoder config gapprof reads: no floor from it
            if getattr(config, "name_or_path", ""):
                facts["model"] = str(config.name_or_path)
    except Exception as error:  # noqa: BLE001 - facts are optional, the program is not
        facts["facts_error"] = repr(error)
    return facts


def versions() -> dict:
    """The program's Python and, where it imported them, torch, CUDA and transformers (nothing imported here)."""
    found = {"python": platform.python_version(), "python_executable": sys.executable}
    torch, transformers = sys.modules.get("torch"), sys.modules.get("transformers")
    if torch is not None:
        found.update(
            torch=getattr(torch, "__version__", None), cuda=getattr(getattr(torch, "version", None), "cuda", None)
        )
    if transformers is not None:
        found["transformers"] = getattr(transformers, "__version__", None)
    return found


def write_facts(folder: str, marks: ForwardMarks | None) -> None:
    """This process's facts in FOLDER/<pid>.json: when it was asked to mark, or imported torch."""
    if marks is None and "torch" not in sys.modules:
        return
    facts = {"pid": os.getpid(), "argv": sys.argv, **versions(), **(marks.facts() if marks else {})}
    try:
        with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
            json.dump(facts, out, default=str)
    except OSError:
        pass


def install_from_environment(environ=os.environ) -> ForwardMarks | None:
    """What the site hook runs: marks when MARK_ENV names a class, facts at exit when FACTS_ENV names a folder."""
    target, folder = environ.get(MARK_ENV), environ.get(FACTS_ENV)
    marks = ForwardMarks(target) if target else None
    if marks is not None:
        after_import(marks.module_name, marks.patch)
    if folder:
        atexit.register(write_facts, folder, marks)
    return marks
