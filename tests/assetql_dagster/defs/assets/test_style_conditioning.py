"""Locks, an IP-Adapter and a brand LoRA reach generation through a batch's settings."""

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from harness.batch_runs import materialize_partition

from assetql_dagster.domain.errors import BatchValidationError
from assetql_dagster.pipeline.records import read_record
from assetql_dagster.pipeline.registration import register_batch
from resources.storage import LocalStorage
from resources.tiny_adapters import build_tiny_ip_adapter, build_tiny_lora


def run(tmp_path, folder, name: str, assets=("batch_input", "style_profile", "prompts", "images")):
    storage = LocalStorage(root=str(tmp_path / name))
    key = register_batch(storage, folder).key
    result = materialize_partition(storage, key, selection=[dg.AssetKey(a) for a in assets])
    assert result.success
    return storage, key


def pixels(storage, key) -> list[np.ndarray]:
    return [np.asarray(Image.open(storage.local_path(r.raw_key)), dtype=np.int16)
            for r in read_record(storage, key, "images").stored]


def test_locked_parameters_become_weighted_words_in_every_prompt(tmp_path, batch_factory):
    folder = batch_factory(rows=2)
    (folder / "batch.yaml").write_text((folder / "batch.yaml").read_text() + "locks: {palette: 80, lighting: 50}\n")
    storage, key = run(tmp_path, folder, "data", assets=("batch_input", "style_profile", "prompts"))
    jobs = read_record(storage, key, "prompts").jobs
    assert all(j.prompt.endswith(")1.25") and ")1.40, (" in j.prompt for j in jobs)


def test_an_ip_adapter_and_a_lora_from_batch_yaml_change_the_images(tmp_path, batch_factory):
    adapter = build_tiny_ip_adapter(tmp_path / "ip-adapter")
    lora = build_tiny_lora(tmp_path / "brand.safetensors")
    plain = batch_factory(rows=2, name="plain")
    styled = batch_factory(rows=2, name="styled")
    (styled / "batch.yaml").write_text(
        (styled / "batch.yaml").read_text()
        + f"ip_adapter: {adapter}\nstyle_strength: 1\nlora:\n  - path: {lora}\n    scale: 1\n"
    )
    base = pixels(*run(tmp_path, plain, "plain"))
    conditioned = pixels(*run(tmp_path, styled, "styled"))
    assert len(base) == len(conditioned) == 2
    assert all(np.abs(a - b).mean() > 1 for a, b in zip(base, conditioned))


def test_adapters_that_are_not_on_this_machine_are_rejected_at_registration(tmp_path, batch_factory):
    folder = batch_factory(rows=2)
    (folder / "batch.yaml").write_text(
        (folder / "batch.yaml").read_text() + f"ip_adapter: {tmp_path / 'none'}\nlora: [{{path: {tmp_path / 'x.safetensors'}}}]\n"
    )
    with pytest.raises(BatchValidationError) as raised:
        register_batch(LocalStorage(root=str(tmp_path / "data")), folder)
    assert [(p.file, p.column) for p in raised.value.problems] == [("batch.yaml", "ip_adapter"), ("batch.yaml", "lora")]
