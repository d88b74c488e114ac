"""The AssetQL code location: one dynamically partitioned asset graph per batch."""

import os

import dagster as dg

from assetql_dagster.assets.batch_input import batch_input
from assetql_dagster.assets.exports import exports
from assetql_dagster.assets.images import images
from assetql_dagster.assets.prompts import prompts
from assetql_dagster.assets.scores import scores
from assetql_dagster.assets.style_profile import style_profile
from assetql_dagster.assets.tags import tags
from assetql_dagster.checks import completion_rate, style_pass_rate
from assetql_dagster.jobs import batch_job
from assetql_dagster.sensors import inbox_sensor
from resources.clip import ClipEmbedder
from resources.generator import ImageGenerator
from resources.storage import LocalStorage

DATA_DIR_ENV = "ASSETQL_DATA_DIR"


def local_resources() -> dict:
    """The embedded default: files under ./data (or $ASSETQL_DATA_DIR), tiny models unless configured."""
    return {
        "storage": LocalStorage(root=os.environ.get(DATA_DIR_ENV, "data")),
        "generator": ImageGenerator(),
        "clip": ClipEmbedder(),
    }


defs = dg.Definitions(
    assets=[batch_input, style_profile, prompts, images, scores, tags, exports],
    asset_checks=[style_pass_rate, completion_rate],
    jobs=[batch_job],
    sensors=[inbox_sensor],
    resources=local_resources(),
)
