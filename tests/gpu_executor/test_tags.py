import pytest

from gpu_executor.tags import GPU_TAG, is_gpu_step


@pytest.mark.parametrize(
    ("tags", "expected"), [({GPU_TAG: "true"}, True), ({GPU_TAG: "false"}, False), ({}, False)]
)
def test_gpu_tag_marks_gpu_steps(tags, expected):
    assert is_gpu_step("embed", tags) is expected


def test_other_gpu_tag_values_are_rejected():
    with pytest.raises(ValueError, match=r"'embed'.*'True'"):
        is_gpu_step("embed", {GPU_TAG: "True"})
