import dagster as dg

# Every asset and check of one batch partition: what the sensors, schedules and CLI launch.
batch_job = dg.define_asset_job(
    "batch_job",
    selection=dg.AssetSelection.all(),
    description="Runs one batch through style profile, prompts, images, scores, tags and exports.",
)
