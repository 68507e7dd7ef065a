"""`gapprof calibrate`: measure the GPU at hand (profiler.calibrate) and write its GPU profile (gapprof.gpu_profile)."""

import datetime
from pathlib import Path

import click

from gapprof import gpu_profile, render
from gapprof.commands import options
from gapprof.provenance import invocation


def _fit_text(fit: dict) -> str:
    bandwidth = f"{fit['gbps']:,.0f} GB/s" if fit["gbps"] else "no positive slope"
    return (
        f"{fit['fixed_us']:.2f} us + bytes at {bandwidth} (R^2 {fit['r2']:.4f}, rms relative residual "
        f"{100 * fit['rms_rel']:.1f}%, {fit['points']} points)"
    )


def summary(doc: dict) -> dict:
    """The fitted parameters of a profile, as the summary table shows them."""
    fit, gpu = doc["fit"], doc["gpu"]
    datasheet = gpu.get("datasheet_gbps")

    def of_datasheet(gbps: float) -> str:
        return f" ({gbps / datasheet:.2f} x datasheet {datasheet:,.0f})" if datasheet else ""

    rows = {
        "GPU": f"{gpu['name']} ({gpu['key']})",
        "kernel in a CUDA graph, us (add on 1 element)": fit["fixed_us_graph"],
        "kernel launched from the host, us (add on 1 element)": fit["fixed_us_host"],
    }
    if fit.get("empty_us_graph") is not None:
        rows["empty kernel in a CUDA graph / from the host, us"] = (
            f"{fit['empty_us_graph']:.2f} / {fit['empty_us_host']:.2f}"
        )
    rows |= {
        "read bandwidth at large transfers, GB/s": f"{fit['read_gbps']:,.0f}{of_datasheet(fit['read_gbps'])}",
        "copy bandwidth at large transfers, GB/s (read + written)": (
            f"{fit['copy_gbps']:,.0f}{of_datasheet(fit['copy_gbps'])}"
        ),
        "read: time = fixed + bytes / bandwidth": _fit_text(fit["read"]),
        "copy: time = fixed + bytes / bandwidth": _fit_text(fit["copy"]),
        "GEMV bf16 M=1 at decode shapes: time = fixed + bytes / bandwidth": _fit_text(fit["gemv"]),
    }
    return rows


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=options.existing_folder,
    help="Profile file [default: runs/<gpu>/calibration.json; with --quick, calibration-quick.json].",
)
@click.option(
    "--quick", is_flag=True, help="Four transfer sizes and fewer repeats: a smoke test, not a profile to ship."
)
def calibrate(output, quick):
    """Measure this GPU for the kernel model and write its GPU profile (JSON): the fixed cost of a kernel (empty
    and tiny kernels back to back in a CUDA graph and from the host), read and copy bandwidth from 64 KiB to 1 GiB,
    and bf16 GEMVs (M = 1) at the decode shapes of the shipped models, each fitted as time = fixed + bytes /
    bandwidth. The profile records how long the run took.

    \b
    Example:
      gapprof calibrate
    """
    options.check_session_device("calibrate")
    from gapprof.profiler import calibrate as benchmarks
    from gapprof.profiler.calibration_plan import QUICK, Settings

    measured = benchmarks.run(QUICK if quick else Settings())
    measured["settings"]["quick"] = quick
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    doc = gpu_profile.document(date=date, command=invocation(), **measured)
    if output is None:
        output = options.RUNS / doc["gpu"]["key"] / ("calibration-quick.json" if quick else "calibration.json")
        output.parent.mkdir(parents=True, exist_ok=True)
    gpu_profile.write(doc, output)
    click.echo(f"wrote {output}")
    notes = [
        f"every point and its samples are in {output}; to ship it, copy it to "
        f"gapprof/gpu_profiles/{doc['gpu']['key']}.json"
    ]
    if quick:
        notes.append("--quick: four transfer sizes and fewer repeats; measure without it for a profile to ship")
    render.emit([("calibration", summary(doc))], "table", notes, None)
