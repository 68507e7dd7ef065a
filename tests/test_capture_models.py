"""Model specs and the GPU table (no torch needed)."""

import pytest

from gapprof import gpus
from gapprof.errors import GapprofError
from gapprof.models import get_spec, known_models

# Parameter totals published for these checkpoints.
PUBLISHED_PARAMS = {"qwen2.5-7b": 7_615_616_512, "llama-3.1-8b": 8_030_261_248, "mistral-7b-v0.3": 7_248_023_552}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_the_published_total(name):
    assert get_spec(name).total_params() == PUBLISHED_PARAMS[name]


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(GapprofError) as error:
        get_spec("gpt-5")
    assert "unknown model 'gpt-5'" in str(error.value)
    for name in known_models():
        assert name in str(error.value)


@pytest.mark.parametrize(
    "device_name, key",
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA A10G", "a10g"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA B200", "b200"),
    ],
)
def test_device_names_map_to_datasheet_entries(device_name, key):
    assert gpus.gpu_for_device_name(device_name).key == key


def test_unknown_gpu_lists_the_known_ones():
    assert gpus.gpu_for_device_name("Quadro K600") is None
    with pytest.raises(GapprofError) as error:
        gpus.resolve_gpu("k600")
    assert "h100-sxm" in str(error.value) and "l4" in str(error.value)
