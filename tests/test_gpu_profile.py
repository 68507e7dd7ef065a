"""The fit time = fixed + bytes / bandwidth (gapprof.bandwidth_fit) on synthetic points whose parameters are known,
and GPU profiles (gapprof.gpu_profile): written and read back unchanged, refused in one line when broken, found
where gapprof ships them."""

import copy
import json

import numpy as np
import pytest
from conftest import gpu_profile_doc

from gapprof import gpu_profile
from gapprof.bandwidth_fit import achieved_gbps, fit_line
from gapprof.errors import GapprofError

SIZES = np.array([64 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30], dtype=float)


def times(fixed_us: float, gbps: float, sizes=SIZES) -> np.ndarray:
    return fixed_us + sizes / (gbps * 1e3)


def test_the_fit_recovers_fixed_and_bandwidth_exactly_without_noise():
    fit = fit_line(SIZES, times(2.5, 3000.0))
    assert fit["fixed_us"] == pytest.approx(2.5, rel=1e-9)
    assert fit["gbps"] == pytest.approx(3000.0, rel=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["rms_rel"] < 1e-9 and fit["points"] == SIZES.size


@pytest.mark.parametrize("seed", range(5))
def test_the_fit_recovers_fixed_and_bandwidth_through_noise(seed):
    rng = np.random.default_rng(seed)
    sizes = np.repeat(SIZES, 5)
    noisy = times(3.0, 4200.0, sizes) * (1 + rng.normal(0, 0.02, sizes.size))  # 2% relative noise
    fit = fit_line(sizes, noisy)
    assert fit["fixed_us"] == pytest.approx(3.0, rel=0.05)
    assert fit["gbps"] == pytest.approx(4200.0, rel=0.03)
    assert 0.99 < fit["r2"] <= 1.0 and 0.01 < fit["rms_rel"] < 0.03


def test_the_small_points_set_the_fixed_part_however_large_the_largest():
    # Unweighted least squares lets 1% noise on the 1 GiB point (3.6 us) move a 2 us fixed part by 8%.
    noisy = times(2.0, 3000.0) * np.where(SIZES == SIZES.max(), 1.01, 1.0)
    assert fit_line(SIZES, noisy)["fixed_us"] == pytest.approx(2.0, rel=0.01)


def test_times_that_do_not_grow_with_bytes_have_no_bandwidth():
    assert fit_line([1e6, 2e6, 4e6], [5.0, 4.0, 3.0])["gbps"] is None


@pytest.mark.parametrize(
    "sizes, us, message",
    [
        ([1e6], [2.0], "at least two sizes"),
        ([1e6, 1e6], [2.0, 3.0], "at least two sizes"),
        ([1e6, 2e6], [2.0, 0.0], "positive finite times"),
    ],
)
def test_a_fit_without_enough_points_is_refused(sizes, us, message):
    with pytest.raises(GapprofError, match=message):
        fit_line(sizes, us)


def test_achieved_bandwidth_is_taken_at_large_transfers():
    us = times(5.0, 3000.0)
    large = SIZES >= 256 << 20
    assert achieved_gbps(SIZES, us) == pytest.approx(float(np.median(SIZES[large] / us[large])) / 1e3)
    assert achieved_gbps(SIZES[:3], us[:3]) == pytest.approx(SIZES[2] / us[2] / 1e3)  # none large: the largest


def test_a_profile_is_written_and_read_back_unchanged(tmp_path):
    doc = gpu_profile_doc("h200", "NVIDIA H200", 4400.0, 1.5)
    path = gpu_profile.write(doc, tmp_path / "calibration.json")
    found = gpu_profile.read(path)
    assert found.doc == doc
    assert (found.key, found.read_gbps, found.fixed_us_graph) == ("h200", pytest.approx(4400.0), 1.5)
    assert found.cite() == f"{path}, measured 2026-12-01"
    assert doc["fit"]["gemv"]["fixed_us"] == pytest.approx(2.0) and doc["fit"]["gemv"]["gbps"] == pytest.approx(3520)


def _broken(change) -> dict:
    doc = copy.deepcopy(gpu_profile_doc("h200", "NVIDIA H200", 4400.0, 1.5))
    change(doc)
    return doc


BROKEN = [
    (lambda d: d.pop("format"), 'no "format"'),
    (lambda d: d.update(version=2), "version 2, this gapprof reads version 1"),
    (lambda d: d.pop("date"), "'date' missing or not a string"),
    (lambda d: d.update(points=[]), "'points' missing or not an object"),
    (lambda d: d["gpu"].pop("key"), "gpu.name and gpu.key must be strings"),
    (lambda d: d["points"].update(gemv=[]), "points.gemv missing or empty"),
    (lambda d: d["points"]["read"][0].update(us=-1), "points.read: every point needs a positive 'us'"),
    (lambda d: d["fit"].update(read_gbps="fast"), "fit.read_gbps missing or not a positive number"),
    (lambda d: d["fit"].pop("fixed_us_graph"), "fit.fixed_us_graph missing"),
    # 1e-300 GB/s overflowed the projected int64 ns (a polars traceback)
    (lambda d: d["fit"].update(read_gbps=1e-300), "fit.read_gbps 1e-300 is no DRAM's bandwidth (1 to 100,000 GB/s)"),
    (lambda d: d["fit"].update(copy_gbps=1e6), "fit.copy_gbps 1e+06 is no DRAM's bandwidth"),
]


@pytest.mark.parametrize("change, message", BROKEN)
def test_a_broken_profile_is_refused_in_one_line(tmp_path, change, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_broken(change)))
    with pytest.raises(GapprofError) as error:
        gpu_profile.read(path)
    assert message in str(error.value) and str(error.value).startswith(f"{path}: not a usable gapprof GPU profile")
    assert "\n" not in str(error.value)


def test_a_file_that_is_not_json_is_refused_in_one_line(tmp_path):
    path = tmp_path / "p.json"
    path.write_text("{not json")
    with pytest.raises(GapprofError, match=r"p.json: not JSON \(.*line 1\)$"):
        gpu_profile.read(path)


def test_shipped_profiles_are_found_by_key_and_given_ones_replace_them(tmp_path):
    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "README.md").write_text("not a profile")
    gpu_profile.write(gpu_profile_doc("h200", "NVIDIA H200", 4400.0, 1.5), folder / "h200.json")
    found = gpu_profile.shipped(folder)
    assert list(found) == ["h200"] and found["h200"].where == f"{folder}/h200.json"
    gpu_profile.write(gpu_profile_doc("h100-sxm", "NVIDIA H100", 3000.0, 2.0), folder / "h100.json")
    with pytest.raises(GapprofError, match="holds the profile of 'h100-sxm'; name it h100-sxm.json"):
        gpu_profile.shipped(folder)
    assert gpu_profile.shipped(tmp_path / "missing") == {}


def test_every_shipped_profile_is_usable_and_named_by_its_gpu_key():
    # None is measured yet; each one shipped later must pass the checks, and a profile given replaces it.
    for key, found in gpu_profile.shipped().items():
        assert found.where == f"gapprof/gpu_profiles/{key}.json"
    assert set(gpu_profile.profiles()) == set(gpu_profile.shipped())
