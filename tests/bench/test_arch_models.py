import pytest

from bench.arch_models import ARCHS, parameter_counts


@pytest.mark.parametrize("key", sorted(ARCHS))
def test_configs_build_the_published_architectures(key):
    # Equal parameter counts per component pin the layer widths, depths and embedding sizes of the configs.
    arch = ARCHS[key]
    assert parameter_counts(arch) == arch.published_params
