"""Saving and loading trained models: a joblib file per slot plus the model card (JSON), and
the sessions each slot's model was fitted on (as id hashes, for monitoring: see `trained_on`).

A joblib file can run code when loaded, so we load only from the configured model folder and
only a file whose sha256 matches the card written beside it; a card of another feature version
or shape is refused before any file is opened, and a pipeline that would decide otherwise than
its card says is refused after.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

import joblib
import numpy as np
from sklearn.pipeline import Pipeline

from gender import files
from gender.card import ModelCard, Run
from gender.config import parse_url
from gender.errors import GenderError, ModelUnavailable
from gender.features import FEATURE_VERSION
from gender.trained import CalibratedDecision, Model, Models

METADATA_FILE = "metadata.json"  # the model card
RUNS_DIR = "runs"  # one JSON file per training run, kept when later runs replace the models
TRAINED_ON_FILE = "{slot}.sessions.npz"  # the sessions a slot's model was fitted on, as id hashes


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def writable_folder(model_dir: Path) -> None:
    """Make the model folder if need be and check that files can be written in it: said in one
    line before training, not as a traceback after its minutes."""
    if model_dir.exists() and not model_dir.is_dir():
        raise GenderError(f"cannot write models into {model_dir}: it is a file, not a folder")
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=model_dir).close()
    except OSError as exc:
        raise GenderError(f"cannot write models into {model_dir}: {exc.strerror or exc}") from None


def session_hashes(session_ids) -> np.ndarray:
    """A 64-bit hash (BLAKE2b) of each session id, in order: a million training sessions in 8 MB,
    any id as the database holds it. A session outside training is taken for one of a million
    inside it about once in 10^13 lookups."""
    digests = (hashlib.blake2b(str(session_id).encode(), digest_size=8).digest() for session_id in session_ids)
    return np.frombuffer(b"".join(digests), dtype=">u8").astype(np.uint64)


def save(
    model_dir: Path, pipelines: dict[str, Pipeline], card: ModelCard, fitted_on: dict[str, object] | None = None
) -> ModelCard:
    """Save each slot's pipeline and the session ids it was fitted on (`fitted_on`), then the card
    with the files' checksums; returns that card.

    Each pipeline goes to a file named by its content (`treatment-<sha256[:16]>.joblib`), never
    over a file the current card names, and the card is replaced last: a save that dies midway
    (the disk full, the process killed) leaves the old card and every file it names, so the
    models that were serving still load. Only then are the model files the card does not name
    removed (a replaced model's, or an older training's `treatment.joblib`)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    slots = dict(card.slots)
    for slot, pipeline in pipelines.items():
        dumped = io.BytesIO()
        joblib.dump(pipeline, dumped)
        data = dumped.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        path = model_dir / f"{slot}-{digest[:16]}.joblib"
        files.write_atomically(path, lambda f, data=data: f.write(data))
        slots[slot] = slots[slot].model_copy(update={"file": path.name, "sha256": digest})
    card = card.model_copy(update={"slots": slots})
    # These keep their fixed names: each names its model, so one a failed save replaced is taken for
    # no model (its sessions count as unseen) and never for the old model's.
    for slot, session_ids in (fitted_on or {}).items():
        saved = {"hashes": np.sort(session_hashes(session_ids)), "model_id": card.model_id(slot)}
        trained_on = model_dir / TRAINED_ON_FILE.format(slot=slot)
        files.write_atomically(trained_on, lambda f, saved=saved: np.savez(f, **saved))
    text = card.to_json()
    files.write_atomically(model_dir / METADATA_FILE, lambda f: f.write(text))
    named = {entry.file for entry in slots.values()}
    for path in model_dir.glob("*.joblib"):  # the folder is the models' own
        if path.name not in named:
            path.unlink(missing_ok=True)
    return card


def load_card(model_dir: Path) -> ModelCard:
    """The card of the models in `model_dir`, or ModelUnavailable saying how to get some."""
    path = model_dir / METADATA_FILE
    if not path.is_file():
        raise ModelUnavailable(f"no trained model in {model_dir}: run `python -m gender train`")
    try:
        text = path.read_bytes()
        version = json.loads(text).get("feature_version")
    except (OSError, ValueError, AttributeError):
        raise ModelUnavailable(f"{path} is not a model card: retrain with `python -m gender train`") from None
    if version != FEATURE_VERSION:  # said before any other field: it is the usual reason after an upgrade
        raise ModelUnavailable(
            f"the model in {model_dir} was built for feature version {version}, "
            f"this code computes version {FEATURE_VERSION}: retrain with `python -m gender train`"
        )
    return ModelCard.parse(text, str(path))


def load_pipeline(model_dir: Path, card: ModelCard, slot: str) -> Pipeline:
    """One slot's pipeline, after checking its file against the card's sha256 and the card's
    threshold and calibration against the pipeline's own."""
    entry = card.slots.get(slot)
    if entry is None:
        raise ModelUnavailable(f"no {slot} model in {model_dir}: retrain with `python -m gender train`")
    # Only a bare file name inside the model folder: the card cannot point elsewhere.
    path = model_dir / Path(entry.file).name
    if not entry.file or not path.is_file():
        raise ModelUnavailable(f"model file {path} is missing: retrain with `python -m gender train`")
    if sha256(path) != entry.sha256:
        raise ModelUnavailable(f"model file {path} does not match its recorded sha256; refusing to load it")
    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # a corrupt pickle can raise almost anything
        raise ModelUnavailable(f"model file {path} cannot be read ({type(exc).__name__}): retrain") from None
    decision = pipeline[-1] if isinstance(pipeline, Pipeline) else None
    if not (
        isinstance(decision, CalibratedDecision)
        and decision.threshold == entry.threshold
        and decision.calibration == entry.calibration
    ):
        raise ModelUnavailable(f"model file {path} does not decide as its card says: retrain")
    return pipeline


def load(model_dir: Path) -> Models:
    """The served models of `model_dir`, each checked (the control may be missing)."""
    version = card_version(model_dir)
    try:
        return _load(model_dir)
    except ModelUnavailable:
        if card_version(model_dir) == version:
            raise
        return _load(model_dir)  # a save replaced the card meanwhile, and removed the files the old one named


def _load(model_dir: Path) -> Models:
    card = load_card(model_dir)
    treatment = Model(load_pipeline(model_dir, card, "treatment"), card, "treatment")
    control = Model(load_pipeline(model_dir, card, "control"), card, "control") if "control" in card.slots else None
    return Models(treatment, control)


def trained_on(model_dir: Path, slot: str, model_id: str) -> np.ndarray | None:
    """The id hashes (`session_hashes`, sorted) of the sessions the model `model_id` in `slot` was
    fitted on; None when they were not recorded for this very model (trained by an older version,
    or replaced since) or cannot be read."""
    try:
        with np.load(Path(model_dir) / TRAINED_ON_FILE.format(slot=slot), allow_pickle=False) as saved:
            return saved["hashes"] if str(saved["model_id"]) == model_id else None
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile):  # an empty or cut file too
        return None


def among(hashes: np.ndarray | None, session_id: str) -> bool:
    """Whether the session is among those `hashes` (`trained_on`; None: not recorded) name."""
    return hashes is not None and bool(np.isin(session_hashes([session_id]), hashes)[0])


def _database(label: str) -> tuple | str:
    """Which database a URL names, whoever connects: a loader trains and a reader serves one
    database in a least-privilege deployment."""
    try:
        url = parse_url(label)
    except GenderError:  # not a URL (an older card's text): compared as it is
        return label
    family = "mysql" if url.get_backend_name() in ("mysql", "mariadb") else url.get_backend_name()
    port = url.port or (3306 if family == "mysql" else None)  # ":3306" written or not
    where = (url.host.lower(), port) if url.host else tuple(sorted(url.query.items()))  # no host: a socket
    return family, where, url.database


def trained_elsewhere(card: ModelCard, db_label: str) -> str | None:
    """The database the card's models were trained on, when it is not `db_label` (the demo's model
    serving real logs): its session ids name other sessions there."""
    return None if _database(card.database) == _database(db_label) else card.database


def fitted_on(model_dir: Path, model: Model, session_id: str, db_label: str) -> bool:
    """Whether `model` was fitted on this session of the database `db_label`: its answer is then
    in-sample, right far more often than on a session it never saw."""
    if trained_elsewhere(model.card, db_label):
        return False
    return among(trained_on(model_dir, model.slot, model.model_id), session_id)


def card_version(model_dir: Path) -> tuple | None:
    """What changes when a retrain replaces the models (the card's date and size), for caches."""
    try:  # one stat: this runs for every answer the API serves
        stat = os.stat(model_dir / METADATA_FILE)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size) if S_ISREG(stat.st_mode) else None


def record_run(model_dir: Path, card: ModelCard, parameters: dict) -> Path:
    """Keep a summary of a training run beside the models: what was tried, how it scored, what was saved."""
    runs = model_dir / RUNS_DIR
    runs.mkdir(exist_ok=True)
    stamp = card.trained_at.strftime("%Y%m%dT%H%M%SZ")
    path = runs / f"{stamp}-{card.slots['treatment'].sha256[:8]}.json"
    text = Run.of(card, parameters).model_dump_json(indent=1).encode()
    files.write_atomically(path, lambda f: f.write(text))
    return path


def load_runs(model_dir: Path) -> list[Run]:
    """Every recorded training run, newest first (unreadable files are skipped)."""
    runs = []
    for path in sorted((model_dir / RUNS_DIR).glob("*.json"), reverse=True):
        try:
            runs.append(Run.model_validate_json(path.read_bytes()))
        except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
            continue
    return runs


@dataclass
class _Folder:
    """A model folder as this process serves it: the models loaded, with the card version they
    were loaded at, and the newer files that would not load, if any."""

    loaded: tuple[tuple | None, Models] | None = None
    refused: tuple[tuple | None, ModelUnavailable, float] | None = None  # card version, why, when tried
    reloading: bool = False

    def due(self, version: tuple | None) -> bool:
        """Whether the files at this card version are to be loaded: not tried, or tried long enough ago."""
        tried = self.refused
        return tried is None or tried[0] != version or time.monotonic() - tried[2] >= RETRY_SECONDS

    def load_files(self, model_dir: Path, version: tuple | None) -> None:
        """Load the folder's files (under `_loading`): they serve from now on, or are refused with why."""
        try:
            models = load(model_dir)
        except ModelUnavailable as exc:
            again = self.refused is not None and self.refused[0] == version  # tried every RETRY_SECONDS
            self.refused = (version, exc, time.monotonic())
            if self.loaded is not None:
                serving = self.loaded[1].treatment.model_id
                log.log(
                    logging.DEBUG if again else logging.WARNING,  # said once for these files
                    "the model files in %s do not load (%s); %s and its control still serve",
                    model_dir,
                    exc,
                    serving,
                )
            return
        if self.refused is not None and self.loaded is not None:  # said when they were refused: say it ended
            serving = models.treatment.model_id
            log.warning("the model files in %s load again; %s and its control serve", model_dir, serving)
        self.loaded, self.refused = (version, models), None

    def reload_soon(self, model_dir: Path, version: tuple | None) -> None:
        """Load the files at this card version on a thread of its own, unless one is at it or they failed."""
        with _starting:
            if self.reloading or not self.due(version):
                return
            self.reloading = True
        threading.Thread(target=self._reload, args=(model_dir,), name="models-reload", daemon=True).start()

    def _reload(self, model_dir: Path) -> None:
        try:
            with _loading:
                version = card_version(model_dir)
                if self.loaded[0] != version and self.due(version):
                    self.load_files(model_dir, version)
        finally:
            self.reloading = False


_folders: dict[Path, _Folder] = {}
_loading = threading.Lock()  # one load at a time: the first requests after a start arrive together
_starting = threading.Lock()  # one reload thread at a time
_resolved: dict[Path | str, Path] = {}  # a folder as given -> as resolved (a resolve walks every part)
RETRY_SECONDS = 30  # files that would not load are tried again after this, or as soon as the card changes

log = logging.getLogger("gender.models")


def _folder_path(model_dir: Path | str) -> Path:
    return _resolved.get(model_dir) or _resolved.setdefault(model_dir, Path(model_dir).resolve())


def current(model_dir: Path, wait: bool = True) -> Models:
    """The models of `model_dir`, loaded once per process and again when a retrain replaces them
    (the card's date or size changes): what the dashboard and the HTTP routes serve from.

    With `wait=False` (the HTTP service), once models serve, a retrain's are loaded by a thread
    of its own while the old ones keep answering, and the old ones stay if the new files do not
    load (`refused` says why). Otherwise new files are loaded at once, and ModelUnavailable says
    why they cannot be. Files that failed to load are not tried again for every request: only
    when the card changes, or after RETRY_SECONDS.
    """
    model_dir = _folder_path(model_dir)
    version = card_version(model_dir)
    folder = _folders.get(model_dir)
    loaded = folder.loaded if folder is not None else None
    if loaded is not None and loaded[0] == version:
        return loaded[1]
    if loaded is not None and not wait:  # never waits on `_loading`, which a reload holds for seconds
        folder.reload_soon(model_dir, version)
        return loaded[1]
    with _loading:
        folder = _folders.setdefault(model_dir, _Folder())
        if folder.due(version) and (folder.loaded is None or folder.loaded[0] != version):
            folder.load_files(model_dir, version)
        if folder.loaded is None or folder.loaded[0] != version:
            raise folder.refused[1]
        return folder.loaded[1]


def refused(model_dir: Path) -> ModelUnavailable | None:
    """Why the model files now in `model_dir` are not the ones serving: their load failed."""
    model_dir = _folder_path(model_dir)
    folder = _folders.get(model_dir)
    if folder is None or folder.refused is None or folder.refused[0] != card_version(model_dir):
        return None
    return folder.refused[1]
