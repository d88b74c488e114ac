"""`assetql validate PATH`, `assetql run PATH`, `assetql retry-failed KEY`, `assetql style ...`
(style profiles), an image's versions (`versions`, `rollback`, `regenerate`, `more`), the asset
catalog (`catalog rebuild`, `search`, `categorize`, `review`) and `rename`, distribution packages (`export`), prompt previews (`preview`), retention (`gc`, `s3-lifecycle`) and concurrency pools (`pools`) on the
local embedded instance."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

from assetql_dagster.defs import run_tags
from assetql_dagster.domain.batch_loader import BatchSource
from assetql_dagster.domain.errors import BatchValidationError

LOCAL_DAGSTER_HOME = ".dagster"


def print_problems(path: Path, err: BatchValidationError) -> int:
    print(f"{path}: {len(err.problems)} problem(s)", file=sys.stderr)
    for problem in err.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def print_error(message: str) -> int:
    """One line on stderr (long or multi-line messages cut down), exit status 1."""
    line = " ".join(message.split())
    print(f"assetql: error: {line[:300]}", file=sys.stderr)
    return 1


def print_ok(path: Path, source: BatchSource) -> None:
    print(
        f"{path}: OK — batch {source.name!r}, {len(source.rows)} rows × {source.settings.variations} "
        f"variation(s), {len(source.reference_paths)} style reference(s), model {source.settings.model!r}"
    )


def cmd_validate(path: Path, estimate: bool = False, data_dir: str | None = None) -> int:
    from assetql_dagster.pipeline.planning import overlong_prompts, untranslated_words
    from assetql_dagster.pipeline.registration import check_batch
    from resources.prompt_tokens import load_prompt_tokenizer

    try:
        source = check_batch(path)
    except BatchValidationError as err:
        return print_problems(path, err)
    print_ok(path, source)
    for warning in overlong_prompts(source, lambda: load_prompt_tokenizer(source.settings.model)):
        print(f"  warning: {warning}")
    for warning in untranslated_words(source):
        print(f"  warning: {warning}")
    if estimate:
        print_estimate(source, data_dir)
    return 0


def print_estimate(source: BatchSource, data_dir: str | None) -> None:
    """Images, device time and cost of `source`, measured from the local instance's finished runs of its model."""
    use_local_instance(data_dir)
    import dagster as dg

    from assetql_dagster.defs.launching import InstanceLauncher
    from assetql_dagster.pipeline.costs import estimate_report, load_prices
    from assetql_dagster.pipeline.launching import measured_seconds_per_step, seconds_per_image

    with dg.DagsterInstance.get() as instance:
        storage = storage_resource(instance)
        samples = InstanceLauncher(instance).generation_samples()
        device = location_resource(instance, "generator").device
    measured = measured_seconds_per_step(storage, samples, source.settings.model)
    per_image, basis = seconds_per_image(source, measured)
    for line in estimate_report(source, per_image, basis, load_prices(), device):
        print(line)


def batch_job_definition():
    """The resolved batch job with the code location's executor; module-level so it is reconstructable."""
    from assetql_dagster.definitions import defs

    return defs.resolve_job_def("batch_job")


LOCAL_INSTANCE_YAML = """\
# AssetQL's embedded default instance: runs and events in SQLite files in this folder.
# For production see dagster.yaml at the top of the repository.
telemetry:
  enabled: false
# Step workers log through Dagster's default console logger; its DEBUG lines would tear the bar.
python_logs:
  python_log_level: INFO
"""


def use_local_instance(data_dir: str | None) -> Path:
    # Fixed before Dagster or the definitions are imported: both read locations from the environment.
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(LOCAL_DAGSTER_HOME).resolve())))
    home.mkdir(parents=True, exist_ok=True)
    # Without a dagster.yaml Dagster prints a notice and a telemetry banner on every command.
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(LOCAL_INSTANCE_YAML)
    if data_dir:
        os.environ["ASSETQL_DATA_DIR"] = str(Path(data_dir).resolve())
    return home


def execute(instance, key: str, tags: dict, in_process: bool, verbose: bool, asset_keys: list[str] | None = None,
            ops: dict | None = None):
    """Runs the batch job for one partition on the local instance, through the configured executor
    unless `in_process` (one process, no GPU pool: quickest for debugging), with a progress bar;
    `ops` is the run config of the job's ops."""
    import dagster as dg

    # The bar shows progress; step logs would tear it, so only warnings print unless --verbose.
    level = "INFO" if verbose else "WARNING"
    run_config = {"loggers": {"console": {"config": {"log_level": level}}}, **({"ops": ops} if ops else {})}
    selection = [dg.AssetKey(k) for k in asset_keys] if asset_keys else None
    # Which process executes the run, for `fail_abandoned_runs` of a later command.
    tags = {**tags, run_tags.HOST: socket.gethostname(), run_tags.PID: str(os.getpid())}
    with ProgressBar(instance, key):
        if in_process:
            return batch_job_definition().execute_in_process(
                partition_key=key, instance=instance, tags=tags, run_config=run_config,
                raise_on_error=False, asset_selection=selection,
            )
        return dg.execute_job(
            dg.reconstructable(batch_job_definition),
            instance=instance,
            tags={**tags, "dagster/partition": key},
            run_config=run_config,
            asset_selection=selection,
        )


class ProgressBar:
    """A tqdm bar of the batch's images (done/total, rate, ETA), following the run's progress state."""

    POLL_S = 0.5

    def __init__(self, instance, key: str):
        self.instance, self.key = instance, key
        self.started = time.time()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="assetql-progress", daemon=True)

    def __enter__(self) -> ProgressBar:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _progress(self):
        import dagster as dg

        from assetql_dagster.defs.progress import run_progress

        runs = self.instance.get_run_records(dg.RunsFilter(tags={run_tags.BATCH: self.key}), limit=1)
        if not runs or runs[0].create_timestamp.timestamp() < self.started - 1:
            return None
        return run_progress(self.instance, runs[0].dagster_run.run_id)

    def _follow(self) -> None:
        bar = None
        while True:
            stopping = self.stop.wait(self.POLL_S)
            progress = self._progress()
            if progress is not None:
                bar = bar or tqdm(total=progress.total, unit="img", desc="images", file=sys.stderr)
                bar.update(progress.done - bar.n)
                # Closed when the images are done, so its rate is generation's, not the whole run's.
                stopping = stopping or progress.done >= progress.total
            if stopping:
                break
        if bar is not None:
            bar.close()


def fail_abandoned_runs(instance) -> None:
    """Marks failed the runs an `assetql` command on this host executed and left going, because its
    process is gone (killed together with its step workers, which would have failed the run), and
    says so in one line."""
    import dagster as dg
    from dagster._core.events import JobFailureData, RunFailureReason

    host = socket.gethostname()
    running = instance.get_runs(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED], tags={run_tags.HOST: host})
    )
    abandoned = [run for run in running if is_abandoned(instance, run)]
    for run in abandoned:
        instance.report_run_failed(
            run,
            f"The assetql process that executed this run (pid {run.tags[run_tags.PID]} on {host}) is "
            f"gone; assetql process {os.getpid()} marked the run failed.",
            # Not a step failure: auto-retries for crashed runs still apply to it.
            JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
        )
    if abandoned:
        ids = ", ".join(run.run_id for run in abandoned)
        print(f"marked {len(abandoned)} run(s) failed whose assetql process on this host is gone: {ids}")


def is_abandoned(instance, run) -> bool:
    """Whether the process named in the run's tags started the run and no longer exists."""
    import dagster as dg

    pid = int(run.tags[run_tags.PID])
    # A re-execution (from the UI, or a daemon's retry) copies its parent's tags but is executed by
    # another process: only a run that the tagged process started is its to leave.
    started = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1).records
    return bool(started) and started[0].event_log_entry.dagster_event.pid == pid and not process_exists(pid)


def process_exists(pid: int) -> bool:
    # A pid reused by another process since reads as alive: the run stays as it is until then.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Another user's process.
    return True


def location_resource(instance, name: str):
    """The code location's resource `name`, with its config (e.g. secrets bound as EnvVars) resolved."""
    import dagster as dg

    from assetql_dagster.definitions import defs

    with dg.build_resources({name: defs.resources[name]}, instance=instance) as resources:
        return getattr(resources, name)


def storage_resource(instance):
    """The code location's storage."""
    return location_resource(instance, "storage")


def report(result, key: str, storage) -> int:
    from assetql_dagster.pipeline.notifications import distribution_packages, exported_files
    from assetql_dagster.pipeline.records import read_record

    if not result.success:
        print(f"run {result.run_id} failed; see the logs above or the Dagster UI", file=sys.stderr)
        return 1
    summary = read_record(storage, key, "exports")
    print(f"run {result.run_id} succeeded: {summary.images} images")
    for label, uri in exported_files(storage, summary).items():
        print(f"  {label + ':':11} {uri}")
    for package in distribution_packages(storage, key):
        state = "" if package.valid else "  (its package_valid check failed: see the run)"
        print(f"  {package.exporter + ':':11} {package.uri}{state}")
    if summary.failed_rows:
        print(f"  {summary.failed_rows} image(s) failed; re-run just those with: assetql retry-failed {key}")
    return 0


def cmd_run(path: Path, data_dir: str | None, in_process: bool, verbose: bool) -> int:
    home = use_local_instance(data_dir)
    import dagster as dg

    from assetql_dagster.defs.partitions import batches_partitions
    from assetql_dagster.domain.priority import run_priority
    from assetql_dagster.pipeline.registration import register_batch

    with dg.DagsterInstance.get() as instance:
        fail_abandoned_runs(instance)
        storage = storage_resource(instance)
        # Registration is the one validation: every problem is printed before anything runs.
        try:
            registration = register_batch(storage, path, creator=cli_user())
        except BatchValidationError as err:
            return print_problems(path, err)
        print_ok(path, registration.source)
        key = registration.key
        instance.add_dynamic_partitions(batches_partitions.name, [key])
        print(f"batch {registration.source.name!r} -> partition {key} (instance {home})")
        priority = run_priority(registration.source.settings.priority)
        tags = run_tags.batch_run_tags(key, str(Path(path).resolve()), priority)
        return report(execute(instance, key, tags, in_process, verbose), key, storage)


def cmd_retry_failed(key: str, data_dir: str | None, in_process: bool, verbose: bool) -> int:
    use_local_instance(data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.records import read_record

    # A partition key is one path segment; "a/b" or ".." would read another folder's records.
    if not key or "/" in key or "\\" in key or key in (".", ".."):
        return print_error(f"invalid batch key {key!r}: a batch key is one partition key, without '/', '\\' or '..'")
    with dg.DagsterInstance.get() as instance:
        fail_abandoned_runs(instance)
        storage = storage_resource(instance)
        try:
            failed = read_record(storage, key, "images").failed
        except FileNotFoundError:
            return print_error(f"no batch {key!r} with generated images in {storage.uri('batches')}")
        except ValueError as err:
            return print_error(f"invalid batch key {key!r}: {err}")
        if not failed:
            print(f"batch {key} has no failed rows")
            return 0
        rows = ", ".join(f"{f.variant_id}#{f.variation}" for f in failed)
        print(f"batch {key}: re-running {len(failed)} failed image(s): {rows}")
        # Stored images are skipped by generation, so re-materializing from `images` down
        # regenerates exactly the failed rows and rebuilds scores, tags and exports around them.
        downstream = ["images", "scores", "curated_images", "tags", "exports"]
        tags = run_tags.batch_run_tags(key, key, run_tags.stored_priority(storage, key), **{run_tags.RETRY: "failed-rows"})
        return report(execute(instance, key, tags, in_process, verbose, downstream), key, storage)


# What a changed image needs rebuilt: the batch's curated images (their scores), tags and package.
REEXPORT = ["curated_images", "tags", "exports"]
# Everything but the style profile, which added variations leave as it is.
MORE_ASSETS = ["batch_input", "prompts", "images", "scores", "curated_images", "tags", "exports"]
ACTIVE_RUN_STATUSES = ("QUEUED", "STARTING", "STARTED")


def key_problem(key: str) -> str | None:
    # A partition key is one path segment; "a/b" or ".." would read another folder's records.
    if not key or "/" in key or "\\" in key or key in (".", "..") or any(ord(c) < 32 for c in key):
        return f"invalid batch key {key!r}: a batch key is one partition key, without '/', '\\' or '..'"
    return None


def refuse_while_running(instance, key: str) -> None:
    """ValueError naming the runs of batch `key` that are queued or going: changing its versions
    or its input meanwhile would race with them."""
    import dagster as dg

    statuses = [dg.DagsterRunStatus[name] for name in ACTIVE_RUN_STATUSES]
    running = [run.run_id for run in instance.get_runs(dg.RunsFilter(tags={run_tags.BATCH: key}, statuses=statuses))]
    if running:
        raise ValueError(f"batch {key} has run(s) queued or going: {', '.join(running)}; try again when they end")


def ensure_partition(instance, key: str) -> None:
    """Adds the batch's partition where this instance lacks it (storage registered through another)."""
    from assetql_dagster.defs.partitions import batches_partitions

    if not instance.has_dynamic_partition(batches_partitions.name, key):
        instance.add_dynamic_partitions(batches_partitions.name, [key])


def model_resources(instance):
    """The code location's image generator and CLIP resources, configured as its runs get them."""
    import dagster as dg

    from assetql_dagster.definitions import defs

    wanted = {"generator": defs.resources["generator"], "clip": defs.resources["clip"]}
    with dg.build_resources(wanted, instance=instance) as resources:
        return resources.generator, resources.clip


def describe_versions(document: dict) -> list[str]:
    """Human lines for `assetql versions`: the image, then one line per version (`*` marks the current)."""
    manual = document["manual_regenerations"]
    threshold = "none" if document["threshold"] is None else f"{document['threshold']:.4f}"
    lines = [
        f"{document['file_name']} — batch {document['batch']}, variant {document['variant_id']} "
        f"#{document['variation']}",
        f"  current v{document['current']}{' (pinned)' if document['pinned'] else ''}, threshold {threshold}, "
        f"manual regenerations {manual['used']} of {manual['max']}",
    ]
    planned = document["versions"][0]["prompt"]
    for v in document["versions"]:
        score = "unscored" if v["style_score"] is None else f"{v['style_score']:.4f}"
        parts = " ".join(f"{name} {value:.2f}" for name, value in v["scores"].items() if value is not None)
        lines.append(
            f"{'*' if v['current'] else ' '} v{v['version']:<3} {v['reason']:<16} seed {v['seed']:<10} "
            f"boost {v['style_boost']:+.2f}  score {score} {v['verdict']:<7} {parts}  {v['created_at'] or '-'}"
        )
        if v["prompt"] != planned:
            lines.append(f"        prompt: {v['prompt']}")
    lines.append(f"  prompt: {planned}")
    return lines


def cmd_versions(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.versions import compare_page, find_image, version_document

    if problem := key_problem(args.batch):
        return print_error(problem)
    with dg.DagsterInstance.get() as instance:
        storage = storage_resource(instance)
        try:
            ref = find_image(storage, args.batch, args.variant, args.variation)
        except LookupError as err:
            return print_error(str(err))
        document = version_document(storage, ref)
        if args.html is not None:
            try:
                args.html.write_text(compare_page(storage, document), encoding="utf-8")
            except OSError as err:
                return print_error(f"cannot write {args.html}: {err.strerror or err}")
            print(f"wrote the version comparison of {ref.job.file_name} to {args.html}", file=sys.stderr)
        print(json.dumps(document, indent=2, ensure_ascii=False) if args.json else "\n".join(describe_versions(document)))
        return 0


def change_versions(args: argparse.Namespace, change) -> int:
    """Runs `change(instance, storage, ref)` on the image `args` names (it returns what to print),
    then re-exports the batch; a failed lookup or check is one line and changes nothing."""
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.versions import find_image

    if problem := key_problem(args.batch):
        return print_error(problem)
    with dg.DagsterInstance.get() as instance:
        fail_abandoned_runs(instance)
        storage = storage_resource(instance)
        try:
            refuse_while_running(instance, args.batch)
            ref = find_image(storage, args.batch, args.variant, args.variation)
            message = change(instance, storage, ref)
        except (LookupError, ValueError, FileNotFoundError) as err:
            return print_error(str(err))
        print(message)
        ensure_partition(instance, ref.key)
        tags = run_tags.batch_run_tags(ref.key, ref.key, run_tags.stored_priority(storage, ref.key))
        return report(execute(instance, ref.key, tags, args.in_process, args.verbose, REEXPORT), ref.key, storage)


def cmd_rollback(args: argparse.Namespace) -> int:
    from assetql_dagster.pipeline.versions import rollback

    def change(instance, storage, ref) -> str:
        updated = rollback(storage, ref, args.to)
        return (
            f"{ref.job.file_name}: v{updated.current} is current and pinned (the style loop leaves it); "
            f"re-exporting batch {ref.key}"
        )

    return change_versions(args, change)


def cmd_regenerate(args: argparse.Namespace) -> int:
    from assetql_dagster.pipeline.records import read_record
    from assetql_dagster.pipeline.regeneration import load_histories, manual_count
    from assetql_dagster.pipeline.versions import check_regeneration, loop_functions, regenerate

    def change(instance, storage, ref) -> str:
        # Every check before the models load, which takes a while.
        history = load_histories(storage, ref.key).get(ref.job.image_id)
        check_regeneration(ref, history, args.seed, args.prompt, args.style_strength)
        profile = read_record(storage, ref.key, "style_profile")
        generator, clip = model_resources(instance)
        try:
            generate, score = loop_functions(storage, ref.batch, profile, generator, clip)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"cannot load model {ref.batch.settings.model!r}: {err}") from err
        updated = regenerate(storage, ref, generate, score, args.seed, args.prompt, args.style_strength)
        new = updated.current_version
        score_text = "unscored" if new.score.style_score is None else f"style score {new.score.style_score:.4f}"
        return (
            f"{ref.job.file_name}: v{new.version} generated (seed {new.seed}, {score_text}, {new.score.verdict}), "
            f"current and pinned; manual regeneration {manual_count(updated)} of "
            f"{ref.batch.settings.max_manual_regenerations}; re-exporting batch {ref.key}"
        )

    return change_versions(args, change)


def cmd_more(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.versions import extend_batch, open_batch

    if problem := key_problem(args.batch):
        return print_error(problem)
    with dg.DagsterInstance.get() as instance:
        fail_abandoned_runs(instance)
        storage = storage_resource(instance)
        key = args.batch
        try:
            refuse_while_running(instance, key)
            before = open_batch(storage, key).settings.variations
            batch, frozen = extend_batch(storage, key, args.variations)
        except (LookupError, ValueError) as err:
            return print_error(str(err))
        added = len(batch.rows) * args.variations
        print(
            f"batch {key}: {before} -> {batch.settings.variations} variation(s) per row, {added} new image(s); "
            f"existing images keep their files and names"
            + (f" ({len(frozen)} left out of the style loop from now on)" if frozen else "")
        )
        ensure_partition(instance, key)
        tags = run_tags.batch_run_tags(key, key, run_tags.stored_priority(storage, key))
        return report(execute(instance, key, tags, args.in_process, args.verbose, MORE_ASSETS), key, storage)


def cmd_export(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.defs.assets.distribution import distribution_run_config
    from assetql_dagster.domain.layout import record_key
    from assetql_dagster.pipeline.distribution import export_asset_name
    from assetql_dagster.pipeline.exporters.registry import installed_exporters
    from assetql_dagster.pipeline.records import read_record

    if problem := key_problem(args.batch):
        return print_error(problem)
    exporters = installed_exporters()
    unknown = [p for p in args.preset if p not in exporters]
    if unknown:
        return print_error(f"no exporter {', '.join(map(repr, unknown))}; installed: {', '.join(exporters)}")
    with dg.DagsterInstance.get() as instance:
        fail_abandoned_runs(instance)
        storage = storage_resource(instance)
        key = args.batch
        # Exports are made of the tagged images: nothing is generated again.
        if not storage.exists(record_key(key, "tags")):
            return print_error(f"batch {key!r} has no tagged images in {storage.uri('batches')}; run it first")
        ensure_partition(instance, key)
        config = {"presets": args.preset, "approved_only": args.approved_only, "categories": args.category}
        assets = [export_asset_name(p) for p in args.preset]
        tags = run_tags.batch_run_tags(key, key, run_tags.stored_priority(storage, key))
        op_config = distribution_run_config(exporters, config)
        result = execute(instance, key, tags, args.in_process, args.verbose, assets, op_config)
        if not result.success:
            print(f"run {result.run_id} failed; see the logs above or the Dagster UI", file=sys.stderr)
            return 1
        status = 0
        for preset in args.preset:
            package = read_record(storage, key, export_asset_name(preset))
            print(f"{preset}: {package.images} image(s), {len(package.files)} file(s): {storage.uri(package.main)}")
            for problem in package.problems:
                status = 1
                print(f"  invalid: {problem}", file=sys.stderr)
        return status


def cmd_preview(args: argparse.Namespace) -> int:
    from datetime import date

    from assetql_dagster.pipeline.planning import describe_sources, preview, row_prompts, translator
    from assetql_dagster.pipeline.registration import check_batch

    try:
        source = check_batch(args.path)
    except BatchValidationError as err:
        return print_problems(args.path, err)
    settings = source.settings
    aws = None
    if settings.translator == "aws-translate":
        import dagster as dg

        use_local_instance(None)
        with dg.DagsterInstance.get() as instance:
            client = location_resource(instance, "aws_translate")
        aws = client.translate
    try:
        prompts = row_prompts(settings, source.rows, date.today(), translate=translator(settings, aws))
    except (RuntimeError, ValueError) as err:
        return print_error(str(err))
    for language, shown in preview(prompts, args.rows).items():
        print(f"{language}: {sum(1 for p in prompts if (p.row.language or 'en') == language)} row(s)")
        for planned in shown:
            print(f"  {planned.row.variant_id} (row {planned.row.line})")
            if planned.translated:
                print(f"    row's text: {planned.original}")
            print(f"    prompt:     {planned.prompt}")
            print(f"    from:       {describe_sources(planned)}")
    print("(the locked style words are added when the batch runs, from its style profile)")
    return 0


def add_export_parser(sub):
    export = sub.add_parser("export", help="write distribution packages of a finished batch again, without regenerating")
    export.add_argument("batch", help="the batch's partition key")
    export.add_argument("--preset", action="append", required=True, metavar="EXPORTER",
                        help="an exporter to write (unity, shopify, social, print, ...); repeat for several")
    export.add_argument("--approved-only", action="store_true", help="only images approved in review")
    export.add_argument("--category", action="append", default=[], metavar="PATH",
                        help="only images of this category path or below; repeat for several")
    return export


def add_versions_parsers(sub) -> list:
    """`versions`, `rollback`, `regenerate` and `more`; returns those that run the batch's assets."""
    def image_arguments(command) -> None:
        command.add_argument("batch", help="the batch's partition key")
        command.add_argument("variant", help="the image's variant_id")
        command.add_argument("--variation", type=int, default=1, help="the image's variation (default 1)")

    versions = sub.add_parser("versions", help="list an image's versions (every generation kept)")
    image_arguments(versions)
    versions.add_argument("--json", action="store_true", help="print the versions as JSON")
    versions.add_argument("--html", type=Path, metavar="OUT.html", help="also write a page comparing the versions")
    rollback = sub.add_parser("rollback", help="make an earlier version of an image current, then re-export")
    image_arguments(rollback)
    rollback.add_argument("--to", type=int, required=True, metavar="V", help="the version to make current")
    regenerate = sub.add_parser("regenerate", help="generate one more version of an image by hand, then re-export")
    image_arguments(regenerate)
    regenerate.add_argument("--seed", type=int, help="seed (default: a fresh one derived from the planned seed)")
    regenerate.add_argument("--prompt", help="prompt (default: the planned one)")
    regenerate.add_argument("--style-strength", type=float, metavar="X",
                            help="palette pull toward the references, 0-1 (default: the batch's palette lock / 100)")
    more = sub.add_parser("more", help="add variations per row to a batch, generating only the new images")
    more.add_argument("batch", help="the batch's partition key")
    more.add_argument("--variations", type=int, required=True, metavar="N", help="variations to add per row")
    versions.add_argument("--data-dir", help="storage root for the local files (default ./data)")
    return [rollback, regenerate, more]


def describe_rename(plan) -> list[str]:
    """Human lines for `assetql rename`: the batch, then `old -> new` for every image whose name changes."""
    changed = plan.changed
    head = f"batch {plan.batch}: {len(changed)} of {len(plan.renames)} image(s) renamed by {plan.pattern!r}"
    return [head + ("" if changed else "; each already has its name"), *(f"  {r.old} -> {r.new}" for r in changed)]


def cmd_rename(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.renaming import NameCollision, plan_rename, rename, select_by_query

    if args.batch is None and args.query is None:
        return print_error("rename needs --batch KEY, --query WORDS or both, to say which images to rename")
    if args.batch is not None and (problem := key_problem(args.batch)):
        return print_error(problem)
    with dg.DagsterInstance.get() as instance:
        fail_abandoned_runs(instance)
        storage, catalog = storage_resource(instance), catalog_resource(instance)
        # Every batch is planned and checked before any is changed: a refused rename changes nothing.
        try:
            selection = {args.batch: None} if args.query is None else select_by_query(catalog, args.query, args.batch)
            plans = [plan_rename(storage, key, args.pattern, ids) for key, ids in sorted(selection.items())]
            if not args.dry_run:
                for plan in plans:
                    refuse_while_running(instance, plan.batch)
        except NameCollision as err:
            # Every colliding name, one a line: print_error would cut the list short.
            print(f"assetql: error: {err}", file=sys.stderr)
            return 1
        except (LookupError, ValueError) as err:
            return print_error(str(err))
        for plan in plans:
            print("\n".join(describe_rename(plan)))
        if args.dry_run:
            print("dry run: nothing was changed")
            return 0
        for plan in (p for p in plans if p.changed):
            summary, counts = rename(storage, catalog, plan)
            exported = f"re-exported {', '.join(summary.exports)}" if summary else "no package yet"
            print(f"batch {plan.batch}: renamed, old names kept as aliases ({counts.aliases} in all); {exported}; "
                  "catalog updated")
    return 0


def add_rename_parser(sub) -> None:
    rename = sub.add_parser("rename", help="rename images by a pattern: stored files, records, package and catalog")
    rename.add_argument("--batch", metavar="KEY",
                        help="the batch's partition key: all its images, or those --query finds in it")
    rename.add_argument("--query", metavar="WORDS",
                        help="words the catalog finds the images by (as in search), in any batch")
    rename.add_argument("--pattern", required=True,
                        help="the new names, e.g. '{sku}_{variation}'; fields: {sku} {variation} {row} {category} "
                        "{batch} {image_id} {name} {version} {variant_id} {seq} {timestamp} {hash} and the CSV's "
                        "other columns")
    rename.add_argument("--dry-run", action="store_true", help="print old -> new for each image and change nothing")
    rename.add_argument("--data-dir", help="storage root for the local files (default ./data)")


# At most 9 digits: anything longer is out of range anyway, and is refused before int() reads it.
LOCK_RE = re.compile(r"([^=]+)=(-?[0-9]{1,9})")


def parse_locks(values: list[str]) -> dict[str, int]:
    """`--lock palette=80` options as {parameter: weight}; names and ranges are checked by the profile."""
    locks: dict[str, int] = {}
    for value in values:
        match = LOCK_RE.fullmatch(value)
        if not match:
            raise ValueError(f"--lock {value[:80]!r} must be PARAMETER=WEIGHT with a whole number, e.g. palette=80")
        if match[1] in locks:
            raise ValueError(f"--lock {match[1][:80]!r} is given twice")
        locks[match[1]] = int(match[2])
    return locks


def describe_profile(spec) -> list[str]:
    """Human lines for `style show`: the version, then one line per field."""
    locks = ", ".join(f"{name}={weight}" for name, weight in spec.locks.items()) or "none"
    threshold = "the batch's own style_threshold" if spec.threshold is None else f"{spec.threshold:g}"
    lines = [f"{spec.ref} (created {spec.created_at})", "  references:"]
    lines += [f"    {ref.file_name}  sha256 {ref.sha256[:12]}  {ref.key}" for ref in spec.references]
    lines += [f"  locks: {locks}", f"  threshold: {threshold}", f"  preset: {spec.preset or 'none'}"]
    if spec.notes:
        lines.append(f"  notes: {spec.notes}")
    return lines


def style_create(storage, args) -> int:
    from assetql_dagster.pipeline.profiles import create_profile, version_prefix

    spec = create_profile(
        storage, args.name, args.refs, parse_locks(args.lock), args.threshold, args.notes, args.preset
    )
    where = storage.uri(version_prefix(spec.name, spec.version).rstrip("/"))
    print(f"created style profile {spec.ref} with {len(spec.references)} reference(s) in {where}")
    return 0


def style_list(storage, args) -> int:
    from assetql_dagster.domain.style_refs import preset_names
    from assetql_dagster.pipeline.profiles import PROFILES_PREFIX, list_profiles

    profiles = list_profiles(storage)
    if not profiles:
        print(f"no style profiles in {storage.uri(PROFILES_PREFIX.rstrip('/'))}")
    for spec in profiles:
        locks = ", ".join(f"{name}={weight}" for name, weight in spec.locks.items()) or "no locks"
        preset = f", preset:{spec.preset}" if spec.preset else ""
        print(f"{spec.ref:24} {len(spec.references)} reference(s), {locks}{preset}, created {spec.created_at}")
    print(f"presets: {preset_names()}")
    return 0


def style_show(storage, args) -> int:
    from assetql_dagster.domain.profiles import parse_ref
    from assetql_dagster.domain.style_refs import PRESETS
    from assetql_dagster.pipeline.profiles import get_profile

    ref = parse_ref(args.ref)
    if ref.preset:
        preset = PRESETS[ref.name]
        record = {"preset": ref.name, "modifiers": preset.modifiers, "negative_prompt": preset.negative_prompt}
        lines = [f"{ref} (built-in preset)", f"  modifiers: {preset.modifiers}",
                 f"  negative prompt: {preset.negative_prompt}"]
    else:
        spec = get_profile(storage, ref)
        record, lines = spec.to_dict(), describe_profile(spec)
    print(json.dumps(record, indent=2) if args.json else "\n".join(lines))
    return 0


def style_diff(storage, args) -> int:
    from assetql_dagster.domain.profiles import diff_profiles
    from assetql_dagster.pipeline.profiles import get_profile

    a, b = get_profile(storage, args.a), get_profile(storage, args.b)
    changes = diff_profiles(a, b)
    print("\n".join(changes) if changes else f"{a.ref} and {b.ref} do not differ")
    return 0


STYLE_COMMANDS = {"create": style_create, "list": style_list, "show": style_show, "diff": style_diff}


def cmd_style(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        storage = storage_resource(instance)
        try:
            return STYLE_COMMANDS[args.style_command](storage, args)
        except BatchValidationError as err:  # only `create` checks files, those of --refs
            return print_problems(args.refs, err)
        except (ValueError, LookupError, FileExistsError) as err:
            return print_error(str(err))


def add_style_parser(sub) -> None:
    from assetql_dagster.domain.style_refs import PRESETS

    style = sub.add_parser("style", help="create, list, show and compare style profiles")
    commands = style.add_subparsers(dest="style_command", required=True)
    create = commands.add_parser("create", help="store a folder of reference images as the next version of a profile")
    create.add_argument("name", help="profile name (letters, digits, '.', '_', '-')")
    create.add_argument("--refs", type=Path, required=True, help="folder of 1-5 reference images")
    create.add_argument("--lock", action="append", default=[], metavar="PARAMETER=WEIGHT",
                        help="lock a style parameter, 0-100 (e.g. palette=80); repeatable")
    create.add_argument("--threshold", type=float, help="style score (0-1) an image needs to pass")
    create.add_argument("--notes", default="", help="free text kept with the version")
    create.add_argument("--preset", choices=sorted(PRESETS), help="a built-in preset that comes with the profile")
    commands.add_parser("list", help="the latest version of every profile, and the presets")
    show = commands.add_parser("show", help="one profile version (NAME: the latest) or preset")
    show.add_argument("ref", metavar="NAME[@N]|preset:NAME")
    show.add_argument("--json", action="store_true", help="print the record as JSON")
    diff = commands.add_parser("diff", help="what changed between two profile versions")
    diff.add_argument("a", metavar="NAME[@N]")
    diff.add_argument("b", metavar="NAME[@N]")
    for command in commands.choices.values():
        command.add_argument("--data-dir", help="storage root for the local files (default ./data)")


def catalog_resource(instance):
    """The code location's asset catalog."""
    return location_resource(instance, "catalog")


def cmd_catalog_rebuild(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.cataloguing import rebuild
    from resources.catalog import masked_url

    with dg.DagsterInstance.get() as instance:
        storage, catalog = storage_resource(instance), catalog_resource(instance)
        try:
            counts = rebuild(catalog, storage)
        except (ValueError, LookupError, FileNotFoundError) as err:
            return print_error(str(err))
    for c in counts:
        print(f"{c.batch}: {c.assets} image(s), {c.versions} version(s), {c.tags} tag(s), {c.exports} export(s)")
    print(f"catalogued {len(counts)} batch(es) in {masked_url(catalog.url)}")
    return 0


def cmd_categorize(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.cataloguing import categorize

    with dg.DagsterInstance.get() as instance:
        storage, catalog = storage_resource(instance), catalog_resource(instance)
        try:
            path = categorize(catalog, storage, args.asset_id, None if args.clear else args.set)
        except (ValueError, LookupError) as err:
            return print_error(str(err))
    if path is None:
        print(f"{args.asset_id}: hand-set category cleared; the found one applies again")
    else:
        note = "" if path.known else " (not in the hierarchy: kept as a category of its own)"
        print(f"{args.asset_id}: category {path.path}{note}")
    return 0


def add_categorize_parser(sub) -> None:
    categorize = sub.add_parser("categorize", help="set or clear the category of one catalogued image by hand")
    categorize.add_argument("asset_id", metavar="ASSET_ID", help="the image's catalog id, {batch}/{image_id}")
    choice = categorize.add_mutually_exclusive_group(required=True)
    choice.add_argument("--set", metavar="PRIMARY[/SUB]", help="the category path, e.g. weapon/sword")
    choice.add_argument("--clear", action="store_true", help="remove the hand-set category")
    categorize.add_argument("--data-dir", help="storage root for the local files (default ./data)")


def cli_user() -> str:
    """Who runs the command: $ASSETQL_USER, else the login name."""
    return os.environ.get("ASSETQL_USER") or getpass.getuser()


def cmd_review(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.library_state import APPROVED, REJECTED
    from assetql_dagster.pipeline.reviews import set_review

    decision = APPROVED if args.approve else REJECTED if args.reject else None
    with dg.DagsterInstance.get() as instance:
        storage, catalog = storage_resource(instance), catalog_resource(instance)
        try:
            catalog.migrate()
            count = set_review(storage, catalog, args.asset_ids, decision, cli_user())
        except (ValueError, LookupError) as err:
            return print_error(str(err))
    print(f"{count} image(s) {decision or 'back to pending review'}")
    return 0


def add_review_parser(sub) -> None:
    review = sub.add_parser("review", help="approve, reject or clear the review of catalogued images")
    review.add_argument("asset_ids", nargs="+", metavar="ASSET_ID", help="the images' catalog ids, {batch}/{image_id}")
    choice = review.add_mutually_exclusive_group(required=True)
    choice.add_argument("--approve", action="store_true", help="approve them (exported by export_only: approved)")
    choice.add_argument("--reject", action="store_true", help="reject them")
    choice.add_argument("--clear", action="store_true", help="remove the decision: pending review again")
    review.add_argument("--data-dir", help="storage root for the local files (default ./data)")


SEARCH_COLUMNS = ("id", "verdict", "style_score", "category", "prompt")


def search_table(rows: list[dict]) -> str:
    columns = [*SEARCH_COLUMNS[:3], *(["similarity"] if rows and "similarity" in rows[0] else []), *SEARCH_COLUMNS[3:]]

    def cell(row: dict, column: str) -> str:
        value = row[column]
        if column in ("style_score", "similarity"):
            return "-" if value is None else f"{value:.3f}"
        if column == "category" and row.get("subcategory"):
            value = f"{value}/{row['subcategory']}"
        text = " ".join(str(value).split())
        return text if len(text) <= 60 else text[:57] + "..."

    return text_table(columns, [[cell(r, c) for c in columns] for r in rows])


def text_table(columns: list[str], cells: list[list[str]]) -> str:
    """`cells` under `columns`, each column as wide as its widest text."""
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(lines)


def clip_resource(instance):
    """The code location's CLIP model resource (the one the pipeline tags with)."""
    return location_resource(instance, "clip")


def search_title(args: argparse.Namespace) -> str:
    """What was searched for, in words: the contact sheet's title."""
    from resources.catalog_search import FILTERS

    parts = [f"“{args.query}”"] if args.query else []
    parts += [f"like {args.like}"] if args.like else []
    parts += [f"described as “{args.describe}”"] if args.describe else []
    for f in FILTERS:
        value = getattr(args, f.name)
        if value is not None:
            parts.append(f"{f.name.replace('_', ' ')} {', '.join(map(str, value)) if f.repeatable else value}")
    title = "Search: " + (" · ".join(parts) or "every image")
    return title if len(title) <= 200 else title[:199] + "…"


def cmd_search(args: argparse.Namespace) -> int:
    use_local_instance(args.data_dir)
    import dagster as dg

    from assetql_dagster.pipeline.searching import contact_sheet_html, find, results_csv, results_json
    from resources.catalog_search import FILTERS

    with dg.DagsterInstance.get() as instance:
        catalog, clip = catalog_resource(instance), clip_resource(instance)
        storage = storage_resource(instance) if args.contact_sheet else None
    filters = {f.name: getattr(args, f.name) for f in FILTERS}
    try:
        rows = find(catalog, clip.load, args.query, like=args.like, describe=args.describe, sort=args.sort,
                    reverse=args.reverse, limit=args.limit, offset=args.offset, **filters)
    except ValueError as err:
        return print_error(str(err))
    except Exception as err:  # e.g. no catalog yet: an OperationalError on a missing table
        if "no such table" in str(err) or "does not exist" in str(err):
            return print_error("the catalog is empty or not created yet: run `assetql catalog rebuild` first")
        raise
    if args.contact_sheet:
        args.contact_sheet.write_text(contact_sheet_html(storage, rows, search_title(args)), encoding="utf-8")
        print(f"contact sheet of {len(rows)} image(s): {args.contact_sheet}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(results_json(rows), indent=2, ensure_ascii=False, default=str))
    elif args.format == "csv":
        sys.stdout.write(results_csv(rows).decode("utf-8"))
    elif rows:
        print(search_table(rows))
    else:
        print("no matching images", file=sys.stderr)
    return 0


def add_catalog_parsers(sub) -> None:
    from resources.catalog_search import FILTERS, SORTS

    catalog = sub.add_parser("catalog", help="the asset catalog (SQL index for search)")
    commands = catalog.add_subparsers(dest="catalog_command", required=True)
    rebuild = commands.add_parser("rebuild", help="create or update the catalog from every batch in storage")
    rebuild.add_argument("--data-dir", help="storage root for the local files (default ./data)")
    search = sub.add_parser("search", help="find images in the catalog by text, filters and visual similarity")
    search.add_argument("query", nargs="?", help="words every result holds in its prompt, tags or metadata")
    for f in FILTERS:
        search.add_argument(f.option, dest=f.name, metavar=f.metavar, help=f.help,
                            action="append" if f.repeatable else "store", type=f.parse)
    similar = search.add_mutually_exclusive_group()
    similar.add_argument("--like", metavar="ASSET_ID_OR_IMAGE",
                         help="rank by visual similarity to a catalogued image (batch/image_id) or an image file")
    similar.add_argument("--describe", metavar="TEXT", help="rank by similarity to a text description")
    search.add_argument("--sort", choices=sorted(SORTS), default="score",
                        help="order without --like/--describe: " + "; ".join(f"{s.name}: {s.help}" for s in SORTS.values()))
    search.add_argument("--reverse", action="store_true", help="the other way round")
    search.add_argument("--limit", type=int, default=50, help="at most this many results (default 50)")
    search.add_argument("--offset", type=int, default=0, help="skip this many results first")
    search.add_argument("--format", choices=["table", "json", "csv"], default="table")
    search.add_argument("--contact-sheet", type=Path, metavar="OUT.html",
                        help="also write the results as a self-contained HTML page of thumbnails")
    search.add_argument("--data-dir", help="storage root for the local files (default ./data)")


VERSION_COMMANDS = {"versions": cmd_versions, "rollback": cmd_rollback, "regenerate": cmd_regenerate, "more": cmd_more}


def cmd_library(args: argparse.Namespace) -> int:
    """Serves the asset library over this installation's storage, catalog and Dagster instance."""
    from assetql_dagster.library.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as err:  # every problem, one a line
        print(f"assetql: error: {err}", file=sys.stderr)
        return 1
    use_local_instance(args.data_dir)
    import dagster as dg
    import uvicorn

    from assetql_dagster.defs.launching import GraphQLLauncher, InstanceLauncher
    from assetql_dagster.library.app import create_app

    with dg.DagsterInstance.get() as instance:
        storage, catalog = storage_resource(instance), catalog_resource(instance)
        generator, clip = model_resources(instance)
        catalog.migrate()
        launcher = GraphQLLauncher(config.dagster_url) if config.dagster_url else InstanceLauncher(instance)
        app = create_app(config, storage, catalog, launcher, clip, generator=generator)
        if config.development:
            print("development mode (no library.yaml): one local administrator, for requests from this machine only",
                  file=sys.stderr)
        # proxy_headers off: the peer address must be the real one, since only a trusted proxy's
        # X-Forwarded-Email is believed (uvicorn would otherwise take X-Forwarded-For as the peer).
        uvicorn.run(app, host=args.host, port=args.port, proxy_headers=False, log_level="info")
    return 0


def add_library_parser(sub) -> None:
    library = sub.add_parser("library", help="serve the asset library (web app and JSON API)")
    library.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    library.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    library.add_argument("--config", type=Path, help="library.yaml (default $ASSETQL_LIBRARY_CONFIG, else ./library.yaml; "
                         "none: development mode)")
    library.add_argument("--data-dir", help="storage root for the local files (default ./data)")


def cmd_gc(args: argparse.Namespace) -> int:
    """Deletes the working files of batches past the retention (prints them only with --dry-run)."""
    from assetql_dagster.pipeline.retention import collect_garbage, retention_days

    use_local_instance(args.data_dir)
    import dagster as dg

    try:
        days = args.days if args.days is not None else retention_days()
        with dg.DagsterInstance.get() as instance:
            storage = storage_resource(instance)
            expired = collect_garbage(storage, days, dry_run=args.dry_run, catalog=catalog_resource(instance))
    except ValueError as err:
        return print_error(str(err))
    verb = "would delete" if args.dry_run else "deleted"
    for batch in expired:
        print(batch.describe(verb))
    files, total = sum(len(b.sizes) for b in expired), sum(b.bytes for b in expired)
    print(f"retention {days} days: {verb} {files} file(s) of {len(expired)} batch(es), {total} bytes")
    return 0


def cmd_s3_lifecycle(args: argparse.Namespace) -> int:
    """Prints (and with --apply sets) the storage bucket's lifecycle rules for the retention."""
    from assetql_dagster.pipeline.retention import lifecycle_rules, merged_rules, retention_days
    from resources.s3_storage import S3Storage

    use_local_instance(None)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        storage = storage_resource(instance)
    if not isinstance(storage, S3Storage):
        return print_error(f"the storage is {type(storage).__name__}, not S3Storage; set ASSETQL_STORAGE=s3 "
                           "(and its bucket settings, README \"Production\") to manage an S3 bucket's lifecycle")
    try:
        days = args.days if args.days is not None else retention_days()
        rules = lifecycle_rules(days, args.archive_days, storage.prefix)
    except ValueError as err:
        return print_error(str(err))
    bucket = storage.objects
    print(json.dumps({"Rules": rules}, indent=2))
    if args.apply:
        # Rules others set on the bucket stay; ours are replaced, so re-applying is harmless.
        bucket.put_lifecycle(merged_rules(bucket.lifecycle(), rules))
        print(f"applied {len(rules)} lifecycle rule(s) to bucket {bucket.name}")
    return 0


def add_retention_parsers(sub) -> dict:
    """`gc` and `s3-lifecycle`, and the function running each."""
    from assetql_dagster.pipeline.retention import ARCHIVE_DAYS, DEFAULT_RETENTION_DAYS, RETENTION_ENV

    days_help = f"retention in days (default ${RETENTION_ENV}, else {DEFAULT_RETENTION_DAYS})"
    gc = sub.add_parser("gc", help="delete raw images, thumbnails and versions of batches older than the retention")
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    gc.add_argument("--days", type=int, help=days_help)
    gc.add_argument("--data-dir", help="storage root for the local files (default ./data)")
    lifecycle = sub.add_parser("s3-lifecycle", help="print the S3 lifecycle rules for the retention; --apply sets them")
    lifecycle.add_argument("--apply", action="store_true", help="set the rules on the storage bucket")
    lifecycle.add_argument("--days", type=int, help=days_help)
    lifecycle.add_argument("--archive-days", type=int, default=ARCHIVE_DAYS,
                           help=f"move exports to Glacier after this many days (default {ARCHIVE_DAYS})")
    return {"gc": cmd_gc, "s3-lifecycle": cmd_s3_lifecycle}


def cmd_pools(args: argparse.Namespace) -> int:
    """Prints the concurrency pools AssetQL's steps claim and their limits; --apply sets the declared remote pools'."""
    from assetql_dagster.defs.gpu import GPU_POOL, REMOTE_POOL, endpoint_pool, remote_pools_from_env

    use_local_instance(None)
    import dagster as dg

    try:
        declared = {endpoint_pool(model): slots for model, slots in remote_pools_from_env().items()}
    except ValueError as err:
        return print_error(str(err))
    with dg.DagsterInstance.get() as instance:
        if args.apply:
            for pool, slots in declared.items():
                instance.event_log_storage.set_concurrency_slots(pool, slots)
        limits = {p.name: str(p.limit) for p in instance.event_log_storage.get_pool_limits()}
        default = instance.get_concurrency_config().pool_config.default_pool_limit
    unset = "unlimited" if default is None else f"{default} (default_limit)"
    steps = {GPU_POOL: "model steps", REMOTE_POOL: "shards of undeclared remote models"}
    print(text_table(["pool", "steps", "declared", "limit"], [
        [pool, steps.get(pool) or f"shards of {pool.partition(':')[2]}", str(declared.get(pool, "-")),
         limits.get(pool, unset)]
        for pool in (GPU_POOL, REMOTE_POOL, *declared)
    ]))
    if args.apply:
        print(f"applied the limits of {len(declared)} remote pool(s)" if declared else
              "no remote pools declared: set ASSETQL_REMOTE_POOLS (MODEL=SLOTS,...) to give endpoints pools")
    return 0


def add_pools_parser(sub) -> None:
    pools = sub.add_parser("pools", help="the concurrency pools steps claim and their limits; --apply sizes the "
                                         "remote pools $ASSETQL_REMOTE_POOLS declares")
    pools.add_argument("--apply", action="store_true", help="set each declared remote pool's limit on the instance")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="assetql", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check a batch folder or CSV and print every problem")
    validate.add_argument("path", type=Path)
    validate.add_argument("--estimate", action="store_true",
                          help="also print the images, device time and cost it would take, from finished runs")
    validate.add_argument("--data-dir", help="storage root for the local files (default ./data)")
    run = sub.add_parser("run", help="add the batch as a partition and materialize its whole asset graph")
    run.add_argument("path", type=Path)
    retry = sub.add_parser("retry-failed", help="re-generate only the failed rows of a batch, then re-export")
    retry.add_argument("batch", help="the batch's partition key")
    preview_parser = sub.add_parser("preview", help="print the first rendered prompts per language and where each part came from")
    preview_parser.add_argument("path", type=Path)
    preview_parser.add_argument("--rows", type=int, default=5, help="prompts shown per language (default 5)")
    for command in (run, retry, add_export_parser(sub), *add_versions_parsers(sub)):
        command.add_argument("--data-dir", help="storage root for the local files (default ./data)")
        command.add_argument("--in-process", action="store_true", help="run every step in this process")
        command.add_argument("--verbose", "-v", action="store_true", help="print every step's log lines")
    add_style_parser(sub)
    add_catalog_parsers(sub)
    add_rename_parser(sub)
    add_categorize_parser(sub)
    add_review_parser(sub)
    add_library_parser(sub)
    add_pools_parser(sub)
    retention_commands = add_retention_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in retention_commands:
        return retention_commands[args.command](args)
    if args.command == "catalog":
        return cmd_catalog_rebuild(args)
    if args.command == "search":
        return cmd_search(args)
    if args.command == "style":
        return cmd_style(args)
    if args.command == "rename":
        return cmd_rename(args)
    if args.command == "categorize":
        return cmd_categorize(args)
    if args.command == "review":
        return cmd_review(args)
    if args.command == "library":
        return cmd_library(args)
    if args.command == "pools":
        return cmd_pools(args)
    if args.command == "export":
        return cmd_export(args)
    if args.command == "preview":
        return cmd_preview(args)
    if args.command in VERSION_COMMANDS:
        return VERSION_COMMANDS[args.command](args)
    if args.command == "validate":
        return cmd_validate(args.path, args.estimate, args.data_dir)
    if args.command == "retry-failed":
        return cmd_retry_failed(args.batch, args.data_dir, args.in_process, args.verbose)
    return cmd_run(args.path, args.data_dir, args.in_process, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
