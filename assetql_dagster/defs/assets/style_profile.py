import dagster as dg

from assetql_dagster.defs.gpu import GPU_OP_TAGS, GPU_POOL
from assetql_dagster.defs.partitions import batches_partitions
from assetql_dagster.domain.contact_sheet import contact_sheet_markdown
from assetql_dagster.domain.records import BatchInput, StyleProfile
from assetql_dagster.domain.scoring import parameter_weights
from assetql_dagster.pipeline.planning import target_palette
from assetql_dagster.pipeline.style import build_profile, load_references, with_target_palette
from resources.clip import ClipEmbedder
from resources.storage import AssetStorage


@dg.asset(
    partitions_def=batches_partitions,
    group_name="batch",
    kinds={"pytorch"},
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
)
def style_profile(
    context: dg.AssetExecutionContext, batch_input: BatchInput, storage: AssetStorage, clip: ClipEmbedder
) -> dg.Output[StyleProfile]:
    """Embedding, palette, lighting, composition and texture of the batch's style references."""
    refs = load_references(storage, batch_input.references)
    if not refs:
        context.log.warning(f"batch {batch_input.batch} has no style reference: images will be unscored")
        profile = build_profile((), [], None, clip.model_name, {})
        return dg.Output(profile, metadata={"has_reference": False, "reason": profile.reason, "model_loads": 0})
    loads = clip.loads()
    weights = parameter_weights(batch_input.settings.lock_weights)
    profile = build_profile(batch_input.references, refs, clip.load(), clip.model_name, weights)
    target = target_palette(batch_input)
    if target:
        # Brand or season colours replace the references' palette as what locks and scores aim at.
        profile = with_target_palette(profile, target)
    return dg.Output(
        profile,
        metadata={
            "has_reference": True,
            "references": len(refs),
            "palette": " ".join(f"`{p.hex}` {p.share:.0%}" for p in profile.palette),
            "brightness": profile.brightness,
            "contrast": profile.contrast,
            "colour_temperature_k": round(profile.parameters.lighting.kelvin),
            "reference_similarity": (
                round(sum(profile.reference_similarities) / len(profile.reference_similarities), 4)
                if profile.reference_similarities else "one reference: threshold is absolute"
            ),
            "model_loads": clip.loads() - loads,
            "references_preview": dg.MetadataValue.md(
                contact_sheet_markdown([(k.rsplit("/", 1)[-1], r) for k, r in zip(batch_input.references, refs)])
            ),
        },
    )
