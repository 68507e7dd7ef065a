"""The `gapprof` command. Subcommands load lazily: capture runs on the GPU image without polars, analysis
commands run on machines without torch, and `gapprof --help` imports none of them."""

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

# The top-level help's sections and one line per command, written here so that listing them imports no command
# module. A command of COMMANDS missing here is listed under OTHER with the first line of its own help.
SECTIONS = {
    "Analyse a trace (any machine, no GPU)": {
        "attribute": "Split each decode step into floor, excess, starved, latency, head and tail.",
        "view": "A one-page HTML report of traces, or an annotated trace for Perfetto.",
        "compare": "Traces side by side, and which terms scaled with bandwidth.",
        "project": "Replay a trace's steps on other GPUs.",
        "plot": "Draw step anatomy, floor fraction against bandwidth, or one step's timeline.",
        "quant-table": "Quantised traces of one model and GPU as methods, against the unquantised one.",
        "ncu-report": "Bytes, bandwidth and DRAM time per kernel from a `gapprof ncu` CSV.",
        "models": "List the known models and their parameter bytes.",
    },
    "Capture on a GPU": {
        "capture": "Decode under Nsight Systems or CUPTI, each step an NVTX range, and write the trace.",
        "profile": "Run any program under Nsight Systems and attribute its steps.",
        "ncu": "Nsight Compute's DRAM bytes and duration of every decode-step kernel.",
        "calibrate": "Measure this GPU's bandwidth and fixed cost per kernel (a GPU profile).",
    },
    "Results (timed decode sessions on a GPU, and their files)": {
        "ab": "Time runtime A against runtime B over fresh sessions.",
        "sweep": "Time every model x context x runtime cell.",
        "sweep-attribute": "Add the anatomy of a profiled sweep's traces.",
        "sweep-merge": "Join sweeps run in parts into one.",
    },
}
OTHER = "Other commands"


class _Group(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx, formatter):
        listed = {name for lines in SECTIONS.values() for name in lines}
        sections = {
            **SECTIONS,
            OTHER: {
                name: self.get_command(ctx, name).get_short_help_str(limit=80)
                for name in COMMANDS
                if name not in listed
            },
        }
        for title, lines in sections.items():
            if lines:
                with formatter.section(title):
                    formatter.write_dl(list(lines.items()))

    def invoke(self, ctx):
        # A GapprofError becomes click's one-line "Error: ..." and exit status 1, never a traceback.
        try:
            return super().invoke(ctx)
        except GapprofError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gapprof")
def main():
    """Where batch-1 LLM decode time goes: DRAM floor, kernel excess, launch gaps, CPU overhead.

    \b
    Examples:
      gapprof attribute traces/h100.sqlite.xz
      gapprof compare traces/h100.sqlite.xz traces/h200.sqlite.xz
      gapprof capture --model qwen2.5-7b --runtime graphs      (on a GPU)

    `gapprof COMMAND -h` shows a command's options and an example."""
