"""Difficulty calibration of library environments, cached per model and environment version.

At the start of a self-play run every active library environment without a calibrated difficulty (the
seeds, an imported library) gets the L5 search on its difficulty knob, so solver steps draw instances
where the solver's pass rate lies inside the band, or as near it as the knob allows. The result is
recorded in the library entry (`calibration`: difficulty, p, tried, in_band, cached) and in a cache
keyed by everything the pass rate depends on: the environment's source, the model's weights (path, file
sizes and times), the chat template, the sampling settings, the solved examples shown before each prompt
(env.fewshot) and the search settings. A second run with
the same key reads the cache and pays nothing; any change to one of them measures again.

    cache: <model.cache_dir>/calibration/<key>.json
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

VERSION = 1  # bump when the pass-rate measurement changes meaning


def weights_fingerprint(model_path: str) -> list:
    """Names, sizes and modification times of the model folder's files: changes when the weights do."""
    folder = Path(model_path)
    if not folder.is_dir():
        return [str(model_path)]
    return [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in sorted(folder.iterdir()) if p.is_file()]


def cache_key(source: str, model_path: str, chat_template: bool, sampling: dict, search: dict) -> str:
    blob = json.dumps({"version": VERSION, "source": hashlib.sha256(source.encode()).hexdigest(),
                       "model": [str(model_path), weights_fingerprint(model_path)], "chat_template": chat_template,
                       "sampling": sampling, "search": search}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class CalibrationCache:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(os.path.expanduser(str(folder)))

    def get(self, key: str) -> dict | None:
        path = self.folder / f"{key}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):  # absent, or a torn write from a killed run: measure again
            return None
        return record if isinstance(record, dict) and "difficulty" in record else None

    def put(self, key: str, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        os.replace(tmp, self.folder / f"{key}.json")


def nearest_to_band(tried: dict, band) -> int:
    """The difficulty whose pass rate is closest to the band (ties: the easier one)."""
    low, high = band
    return min(tried, key=lambda d: (max(low - tried[d], tried[d] - high, 0.0), d))
