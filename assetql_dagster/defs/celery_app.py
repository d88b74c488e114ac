"""The Celery app AssetQL's workers run: `celery -A assetql_dagster.defs.celery_app worker ...`.

It is dagster-celery's own app (dagster_celery.app) built from the same environment as the
executor (defs/executors.py, `celery_config`), so workers and runs cannot disagree on the broker,
the backend or the acknowledgement settings, and no config YAML has to be kept beside it.
"""

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task

from assetql_dagster.defs.celery_executor import RedeliveryGuard
from assetql_dagster.defs.executors import celery_config

app = make_app(CeleryExecutor.for_cli(**celery_config()).app_args())
# A step that comes back from the broker is reported lost (for its RetryPolicy), not run again.
execute_plan = create_task(app, base=RedeliveryGuard)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
