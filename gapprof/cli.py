"""The `gapprof` command: capture commands from gapprof.profiler, analysis commands from gapprof.analysis."""
import click

from gapprof.errors import GapprofError


class _Group(click.Group):
    """Turns GapprofError into click's one-line 'Error: ...' and exit status 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GapprofError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_Group)
@click.version_option(package_name="gapprof")
def main():
    """Where batch-1 LLM decode time goes: DRAM floor, kernel excess, launch gaps, CPU overhead."""


def _register() -> None:
    # Analysis commands import no torch; capture commands import it only when they run.
    from gapprof.analysis.commands import attribute
    from gapprof.profiler.commands import capture, models

    for command in (capture, models, attribute):
        main.add_command(command)


_register()
