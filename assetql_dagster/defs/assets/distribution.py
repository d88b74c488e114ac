"""`{name}_export`: one asset per installed exporter (Unity, shops, CMSs, social, print, downloads,
plugins), each with a `package_valid` check, so one format is re-exported without the others.

They are the outputs of two multi-assets: `distribution` for the exporters that only need a CPU, and
`device_distribution`, a model step (GPU tags, `gpu` pool), for those that may load a model."""

from collections.abc import Mapping

import dagster as dg

from assetql_dagster.defs.gpu import GPU_OP_TAGS, GPU_POOL
from assetql_dagster.defs.partitions import batch_check_spec, batches_partitions
from assetql_dagster.domain.links import parse_expiry
from assetql_dagster.domain.records import BatchInput, Curation, DistributionPackage, ImagePlan, TagSet
from assetql_dagster.pipeline.distribution import distribute, export_asset_name, export_images
from assetql_dagster.pipeline.exporters.base import Exporter
from resources.cms import CmsConnections
from resources.storage import AssetStorage

CHECK = "package_valid"


class DistributionConfig(dg.Config):
    """What `assetql export` (or a launch from the UI) asks beyond the batch's own settings."""

    presets: list[str] = []  # exporters to write even though the batch's `exports` do not list them
    approved_only: bool = False  # only images approved in review
    categories: list[str] = []  # only images of these category paths (and below)


def package_metadata(storage: AssetStorage, package: DistributionPackage, expires_in_s: int | None) -> dict:
    return {
        "images": package.images,
        "files": len(package.files),
        "bytes": sum(package.files.values()),
        "package": dg.MetadataValue.url(storage.link(package.main, expires_in_s)),
        **({"approved_only": True} if package.approved_only else {}),
        **({"categories": ", ".join(package.categories)} if package.categories else {}),
        **{k: v for k, v in package.metadata.items() if isinstance(v, (str, int, float, bool))},
    }


CPU_OP = "distribution"
DEVICE_OP = "device_distribution"


def distribution_op(exporter: Exporter) -> str:
    """The multi-asset (op) that writes `exporter`'s package."""
    return DEVICE_OP if exporter.uses_device else CPU_OP


def distribution_assets(exporters: Mapping[str, Exporter]) -> list[dg.AssetsDefinition]:
    """The `distribution` and `device_distribution` multi-assets of `exporters` (either left out when it has none)."""
    return [
        distribution_asset(op, {name: e for name, e in exporters.items() if distribution_op(e) == op})
        for op in (CPU_OP, DEVICE_OP)
        if any(distribution_op(e) == op for e in exporters.values())
    ]


def distribution_run_config(exporters: Mapping[str, Exporter], config: Mapping) -> dict:
    """Op config giving `config` (a DistributionConfig's fields) to the ops of the exporters it presets,
    each op its own presets."""
    ops: dict[str, dict] = {}
    for name in config["presets"]:
        op = ops.setdefault(distribution_op(exporters[name]), {"config": {**config, "presets": []}})
        op["config"]["presets"].append(name)
    return ops


def distribution_asset(op_name: str, exporters: Mapping[str, Exporter]) -> dg.AssetsDefinition:
    """The multi-asset `op_name` writing each selected exporter's package that the batch (or the run's config) asks for."""
    on_device = op_name == DEVICE_OP
    outs = {
        export_asset_name(name): dg.AssetOut(
            is_required=False, group_name="distribution", description=exporter.title, kinds={"file"},
        )
        for name, exporter in exporters.items()
    }
    checks = [
        batch_check_spec(CHECK, export_asset_name(name), f"the {name} package read back: structure, sizes, formats")
        for name in exporters
    ]

    @dg.multi_asset(
        name=op_name,
        outs=outs,
        check_specs=checks,
        can_subset=True,
        partitions_def=batches_partitions,
        op_tags=GPU_OP_TAGS if on_device else None,
        pool=GPU_POOL if on_device else None,
    )
    def distribution(
        context: dg.AssetExecutionContext,
        config: DistributionConfig,
        storage: AssetStorage,
        cms: CmsConnections,
        batch_input: BatchInput,
        prompts: ImagePlan,
        curated_images: Curation,
        tags: TagSet,
    ):
        wanted = {*batch_input.settings.exports, *config.presets}
        unknown = sorted(set(config.presets) - set(exporters))
        if unknown:
            raise dg.Failure(f"{op_name} writes no exporter {', '.join(unknown)}; it writes {', '.join(exporters)}")
        images = export_images(
            storage, batch_input, prompts, curated_images, tags, config.approved_only, config.categories
        )
        expires_in_s = parse_expiry(batch_input.settings.link_expiry)
        for name, exporter in exporters.items():
            output = export_asset_name(name)
            if output not in context.op_execution_context.selected_output_names:
                continue
            if name not in wanted:
                context.log.info(f"{batch_input.batch}: {name} is not among the batch's exports; skipped")
                continue
            package = distribute(
                storage, exporter, batch_input, images, config.approved_only, config.categories, cms.clients
            )
            context.log.info(f"{batch_input.batch}: {name} package of {package.images} image(s) at {package.main}")
            yield dg.Output(package, output_name=output, metadata=package_metadata(storage, package, expires_in_s))
            yield dg.AssetCheckResult(
                asset_key=dg.AssetKey(output),
                check_name=CHECK,
                passed=not package.problems,
                metadata={"problems": dg.MetadataValue.json(list(package.problems)), "files": len(package.files)},
                description="; ".join(package.problems[:5]) or f"{len(package.files)} file(s) read back",
            )

    return distribution
