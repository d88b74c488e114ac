"""Stands in for torch in `preload_modules`: on import, records the importing process."""

import json
import os
from pathlib import Path

OUT_ENV_VAR = "GPU_EXECUTOR_PRELOAD_PROBE_OUT"

Path(os.environ[OUT_ENV_VAR]).write_text(
    json.dumps(
        {
            "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device": os.environ.get("ASSETQL_DEVICE"),
        }
    )
)
