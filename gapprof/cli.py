"""The `gapprof` command. Subcommands load lazily: capture runs on the GPU image without polars, analysis
commands run on machines without torch."""
import importlib

import click

from gapprof.errors import GapprofError

COMMANDS = {
    "capture": "gapprof.profiler.commands:capture",
    "models": "gapprof.profiler.commands:models",
    "ncu": "gapprof.profiler.commands:ncu",
    "ncu-report": "gapprof.analysis.ncu_commands:ncu_report",
    "attribute": "gapprof.analysis.commands:attribute",
    "compare": "gapprof.analysis.cross_gpu_commands:compare",
    "project": "gapprof.analysis.cross_gpu_commands:project",
    "plot": "gapprof.analysis.cross_gpu_commands:plot",
    "ab": "gapprof.profiler.ab:ab",
    "sweep": "gapprof.profiler.sweep:sweep",
    "sweep-attribute": "gapprof.analysis.sweep_attribute:sweep_attribute",
}


class _Group(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx):
        # A GapprofError becomes click's one-line "Error: ..." and exit status 1, never a traceback.
        try:
            return super().invoke(ctx)
        except GapprofError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_Group)
@click.version_option(package_name="gapprof")
def main():
    """Where batch-1 LLM decode time goes: DRAM floor, kernel excess, launch gaps, CPU overhead."""
