"""Read an uploaded EasyEdit-style JSON file into EditCases with the core's dataset loaders.

The formats (ZsRE, flat CounterFact, ROME's nested CounterFact, KnowEdit, the world's records; a
list, one record or JSON lines) and their mapping to probe groups are those of
``sss_core.evaluation.datasets``; this module only bridges uploaded bytes to that loader.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sss_core.errors import DataError
from sss_core.evaluation.datasets import load_dataset
from sss_core.types import EditCase

MAX_BYTES = 50 * 1024 * 1024  # also the app's server.maxUploadSize


def parse_upload(data: bytes, name: str = "upload.json", max_records: int = 2000) -> list[EditCase]:
    """The first ``max_records`` records of an uploaded file. Raises DataError naming record and field,
    and the file by its own name (never the server's temporary path)."""
    if len(data) > MAX_BYTES:
        raise DataError(f"the file is {len(data) / 2**20:.0f} MB; upload at most {MAX_BYTES // 2**20} MB "
                        "(or use `python -m sss_core bench --data PATH` for whole datasets)")
    safe = Path(name).name or "upload.json"  # never a path of the user's choosing on the server
    with tempfile.TemporaryDirectory(prefix="sss-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        try:
            return load_dataset(path, limit=max_records, max_bytes=MAX_BYTES)
        except DataError as exc:  # the loader names the file by its path: here a server temp folder
            raise DataError(str(exc).replace(str(path), safe).replace(tmp, "")) from None
