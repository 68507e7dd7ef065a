"""Run a function on a module right after it is first imported, without importing it first: a finder at the head
of sys.meta_path wraps the module's loader once. `gapprof profile --mark forward` patches transformers this way
in the profiled program, so a program that never imports transformers never pays for it. Standard library only."""

import sys


class AfterImport:
    """A one-shot meta path finder: when `name` is imported, `then(module)` runs after the module's body."""

    def __init__(self, name: str, then):
        self.name, self.then = name, then

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module, then = loader.exec_module, self.then

        def exec_then(module):
            try:
                exec_module(module)
            finally:
                loader.__dict__.pop("exec_module", None)  # back to the loader's own method
            then(module)

        try:
            loader.exec_module = exec_then  # this loader instance loads this one module
        except (AttributeError, TypeError):  # a loader without instance attributes: left as it is
            pass
        return spec


def after_import(name: str, then) -> None:
    """`then(module)` once the module `name` has been imported: now if it already is, else right after its body."""
    if name in sys.modules:
        then(sys.modules[name])
    else:
        sys.meta_path.insert(0, AfterImport(name, then))
