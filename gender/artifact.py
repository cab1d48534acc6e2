"""Saving and loading trained models: a joblib file per slot plus one JSON metadata file.

A joblib file can run code when loaded, so we load only from the configured model folder and
only a file whose sha256 matches the metadata written beside it; a model built for another
feature version is refused too.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import joblib

from gender.errors import ModelUnavailable
from gender.features import FEATURE_VERSION

METADATA_FILE = "metadata.json"
RUNS_DIR = "runs"  # one JSON file per training run, kept when later runs replace the models
SLOTS = ("treatment", "control")  # treatment: the chosen model; control: the original re-creation


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, write) -> None:
    """Write through a temporary file in the same folder, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(model_dir: Path, pipelines: dict, metadata: dict) -> dict:
    """Save each slot's pipeline, then the metadata with the files' checksums; returns the metadata."""
    model_dir.mkdir(parents=True, exist_ok=True)
    for slot, pipeline in pipelines.items():
        path = model_dir / f"{slot}.joblib"
        _write_atomically(path, lambda f, p=pipeline: joblib.dump(p, f))
        metadata["slots"][slot].update(file=path.name, sha256=sha256(path))
    text = json.dumps(metadata, indent=1).encode()
    _write_atomically(model_dir / METADATA_FILE, lambda f: f.write(text))
    return metadata


def load_metadata(model_dir: Path) -> dict:
    """The metadata of the models in `model_dir`, or ModelUnavailable saying how to get some."""
    path = model_dir / METADATA_FILE
    if not path.is_file():
        raise ModelUnavailable(f"no trained model in {model_dir}: run `python -m gender train`")
    try:
        metadata = json.loads(path.read_text())
        metadata["slots"]
    except (ValueError, KeyError, TypeError):
        raise ModelUnavailable(f"{path} is not a model metadata file: retrain with `python -m gender train`") from None
    if metadata.get("feature_version") != FEATURE_VERSION:
        raise ModelUnavailable(
            f"the model in {model_dir} was built for feature version {metadata.get('feature_version')}, "
            f"this code computes version {FEATURE_VERSION}: retrain with `python -m gender train`"
        )
    return metadata


def load(model_dir: Path, slot: str = "treatment"):
    """(pipeline, metadata) of one slot, after checking the file against its recorded sha256."""
    metadata = load_metadata(model_dir)
    entry = metadata["slots"].get(slot)
    if not entry:
        raise ModelUnavailable(f"no {slot} model in {model_dir}: retrain with `python -m gender train`")
    # Only a bare file name inside the model folder: the metadata cannot point elsewhere.
    path = model_dir / Path(str(entry.get("file", ""))).name
    if not path.is_file():
        raise ModelUnavailable(f"model file {path} is missing: retrain with `python -m gender train`")
    if sha256(path) != entry.get("sha256"):
        raise ModelUnavailable(f"model file {path} does not match its recorded sha256; refusing to load it")
    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise ModelUnavailable(f"model file {path} cannot be read ({type(exc).__name__}): retrain") from None
    return pipeline, metadata


def record_run(model_dir: Path, metadata: dict, parameters: dict) -> Path:
    """Keep a summary of a training run beside the models: what was tried, how it scored, what was saved."""
    run = {
        "trained_at": metadata["trained_at"],
        "seconds": metadata["seconds"],
        "database": metadata["database"],
        "training": metadata["training"],
        "parameters": parameters,
        "cv": metadata["cv"],
        "candidates": {
            name: {key: result[key] for key in ("auc_mean", "auc_std", "auc_folds", "calibration")}
            for name, result in metadata["candidates"].items()
        },
        "chosen": metadata["chosen"],
        "slots": {
            slot: {key: entry[key] for key in ("candidate", "sha256", "threshold")}
            | {
                "fitted_sessions": entry.get("fitted_sessions"),
                "holdout_auc": (entry.get("holdout") or {}).get("auc"),  # None: judged out of fold
            }
            for slot, entry in metadata["slots"].items()
        },
    }
    runs = model_dir / RUNS_DIR
    runs.mkdir(exist_ok=True)
    stamp = metadata["trained_at"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = runs / f"{stamp}-{metadata['slots']['treatment']['sha256'][:8]}.json"
    text = json.dumps(run, indent=1).encode()
    _write_atomically(path, lambda f: f.write(text))
    return path


def load_runs(model_dir: Path) -> list[dict]:
    """Every recorded training run, newest first (unreadable files are skipped)."""
    runs = []
    for path in sorted((model_dir / RUNS_DIR).glob("*.json"), reverse=True):
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return runs
