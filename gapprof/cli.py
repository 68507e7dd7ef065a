"""The `gapprof` command. Subcommands load lazily: capture runs on the GPU image without polars, analysis
commands run on machines without torch."""
import importlib

import click

from gapprof.errors import GapprofError

COMMANDS = {
    "capture": "gapprof.commands.capture_cli:capture",
    "models": "gapprof.commands.capture_cli:models",
    "ncu": "gapprof.commands.ncu_cli:ncu",
    "ncu-report": "gapprof.commands.ncu_cli:ncu_report",
    "attribute": "gapprof.commands.attribute_cli:attribute",
    "profile": "gapprof.commands.profile_cli:profile",
    "compare": "gapprof.commands.cross_gpu_cli:compare",
    "project": "gapprof.commands.cross_gpu_cli:project",
    "plot": "gapprof.commands.cross_gpu_cli:plot",
    "quant-table": "gapprof.commands.quant_table_cli:quant_table",
    "ab": "gapprof.commands.ab_cli:ab",
    "sweep": "gapprof.commands.sweep_cli:sweep",
    "sweep-attribute": "gapprof.commands.sweep_cli:sweep_attribute",
    "sweep-merge": "gapprof.commands.sweep_cli:sweep_merge",
    "calibrate": "gapprof.commands.calibrate_cli:calibrate",
    "view": "gapprof.commands.view_cli:view",
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
