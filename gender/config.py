"""Where the data and the models are: one settings object, read without side effects.

The database URL comes from, in order: an explicit value (``--db``), the environment
(``GENDER_DB_URL``), ``.streamlit/secrets.toml`` (``[gender] db_url``), else the embedded
SQLite file under ``data/``. The model folder follows the same order (``--model-dir``,
``GENDER_MODEL_DIR``, ``[gender] model_dir``, ``models/``); the A/B split likewise
(``GENDER_TREATMENT_SHARE`` / ``treatment_share``, default 0.5; ``GENDER_AB_SALT`` / ``ab_salt``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from gender.errors import GenderError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB_PATH = PROJECT_ROOT / "data" / "gender.db"
DEFAULT_DB_URL = f"sqlite:///{DEFAULT_DB_PATH}"  # the embedded demo database
DEFAULT_MODEL_DIR = PROJECT_ROOT / "models"
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"

# The public CTU relational repository's copy of the FTP database (read-only guest account).
CTU_URL = "mysql+pymysql://guest:ctu-relational@relational.fel.cvut.cz:3306/ftp"


@dataclass(frozen=True)
class Settings:
    db_url: URL
    model_dir: Path
    treatment_share: float = 0.5  # A/B: the share of sessions the treatment model answers
    ab_salt: str = "gender-lens"  # A/B: a new salt reshuffles the groups

    @property
    def is_embedded_demo(self) -> bool:
        return self.db_url == parse_url(DEFAULT_DB_URL)

    @property
    def db_label(self) -> str:
        """The database URL fit to print: the password hidden."""
        return redact(self.db_url)


def parse_url(text: str | URL) -> URL:
    """A SQLAlchemy URL from text, with an error that never echoes the text (it may hold a password)."""
    if isinstance(text, URL):
        return text
    try:
        url = make_url(text.strip())
    except (ArgumentError, ValueError):
        raise GenderError(
            "not a database URL; expected e.g. sqlite:///data/ftp.db or mysql+pymysql://user:password@host:3306/ftp"
        ) from None
    if url.host and "@" in url.host:  # the rest of a password holding "@": never printed as a host name
        raise GenderError(
            "the database URL holds more than one '@': write an '@' in the user name or password as %40 "
            "(mysql+pymysql://user:p%40ss@host/ftp)"
        )
    return url


def redact(url: str | URL) -> str:
    """The URL with its password replaced by ***."""
    return parse_url(url).render_as_string(hide_password=True)


def _secrets(path: Path = SECRETS_FILE) -> dict:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            table = tomllib.load(f).get("gender", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:  # TOML is UTF-8: a Latin-1 "é" is not
        raise GenderError(f"cannot read {path}: {exc}") from None
    if not isinstance(table, dict):
        raise GenderError(f"cannot read {path}: gender must be a table ([gender] and its settings under it)")
    return table


def _secret(secrets: dict, key: str, kind: type | tuple[type, ...], default=None):
    """`key` of the secrets file's [gender] table, checked to be of `kind`: said in one line, not
    as a traceback from wherever it is first used."""
    value = secrets.get(key, default)
    if value is not default and (not isinstance(value, kind) or isinstance(value, bool)):
        wanted = "text in quotes" if kind is str or str in kind else "a number"
        raise GenderError(f"{key} in {SECRETS_FILE} must be {wanted}, not {value!r}")
    return value


def user_path(path: str | Path) -> Path:
    """A path as a user types it, a leading ~ or ~user expanded (a user unknown here is an error in
    words: pathlib raises RuntimeError)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        raise GenderError(f"cannot expand {str(path).split('/')[0]!r} in {str(path)!r}: no such user here") from None


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL names (None for another database, one in memory or a uri=true URL)."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" or url.query.get("uri"):
        return None
    return user_path(url.database)


def _in_project(db_url: str | None) -> URL | None:
    """The secrets file's URL, a relative SQLite path in it taken from the project folder, as its
    model_dir is (a URL typed or in the environment is taken from where the user is, as any path)."""
    if not db_url:
        return None
    url = parse_url(db_url)
    path = sqlite_file(url)
    if path is not None and not path.is_absolute():
        return url.set(database=str(PROJECT_ROOT / path))
    return url


def load_settings(db: str | URL | None = None, model_dir: str | Path | None = None) -> Settings:
    """Resolve the settings; explicit arguments win over the environment, then secrets, then defaults."""
    secrets = _secrets()
    db = db or os.environ.get("GENDER_DB_URL") or _in_project(_secret(secrets, "db_url", str)) or DEFAULT_DB_URL
    given_dir = model_dir or os.environ.get("GENDER_MODEL_DIR")
    if given_dir:  # a path typed by the user is relative to where they are
        model_dir = user_path(given_dir).resolve()
    else:  # the secrets file and the default are relative to the project
        model_dir = PROJECT_ROOT / _secret(secrets, "model_dir", str, DEFAULT_MODEL_DIR)
    if given_share := os.environ.get("GENDER_TREATMENT_SHARE"):
        where = "GENDER_TREATMENT_SHARE"
    else:
        given_share, where = (
            _secret(secrets, "treatment_share", (int, float), 0.5),
            f"treatment_share in {SECRETS_FILE}",
        )
    try:
        share = float(given_share)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise GenderError(f"the treatment share ({where}) must be a number from 0 to 1")
    salt = os.environ.get("GENDER_AB_SALT") or str(_secret(secrets, "ab_salt", (str, int, float), "gender-lens"))
    return Settings(db_url=parse_url(db), model_dir=model_dir, treatment_share=share, ab_salt=salt)
