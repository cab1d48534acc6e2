"""Who may see data: the dashboard's allowlist of e-mail addresses and the API's bearer tokens.

A deployment says who is allowed by naming people (``allowed_users``: addresses such as
``ana@shop.example`` or whole domains such as ``@shop.example``) or API tokens
(``api_token_sha256``: the SHA-256 of each token, never the token itself). Once either is set,
the deployment is *restricted*: the dashboard needs a login (Streamlit's ``st.login``, the
``[auth]`` section of ``.streamlit/secrets.toml``) by someone on the list, and every data route of
the API a valid token, so naming people for the dashboard never leaves the API open by mistake.
Without either, the demo stays open and says so.

Read from the environment first, then ``[gender]`` in ``.streamlit/secrets.toml``:

    GENDER_ALLOWED_USERS        ana@shop.example,@analysts.example   allowed_users = [...]
    GENDER_API_TOKENS_SHA256    hex digest[,hex digest...]            api_token_sha256 = [...]
    GENDER_METRICS_PUBLIC       1 / 0 (default 1)                      metrics_public = true
    GENDER_HEALTH_PUBLIC        1 / 0 (default 1)                      health_public = true
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass

from gender.config import _secrets
from gender.errors import GenderError

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Access:
    allowed_users: tuple[str, ...] = ()  # lower-case addresses, or domains as "@domain"
    token_hashes: tuple[bytes, ...] = ()  # SHA-256 digests of the API tokens
    metrics_public: bool = True  # /metrics without a token (aggregates only: no session, no id)
    health_public: bool = True  # /api/health without a token (up or down, the model's id)

    @property
    def restricted(self) -> bool:
        """Whether the deployment names who is allowed; if not, everything is open (the demo)."""
        return bool(self.allowed_users or self.token_hashes)

    def allows_user(self, email: object) -> bool:
        """Whether a logged-in person's address is on the allowlist (by address or by domain)."""
        if not isinstance(email, str) or "@" not in email:
            return False
        email = email.strip().lower()
        domain = "@" + email.rsplit("@", 1)[1]
        return email in self.allowed_users or domain in self.allowed_users

    def allows_token(self, token: str | None) -> bool:
        """Whether a bearer token is one of the configured ones. Only its hash is compared, with
        hmac.compare_digest against each stored hash, so the time taken says nothing about how
        close a wrong token came; the token itself is never kept or logged."""
        if not token:
            return False
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = False
        for stored in self.token_hashes:  # no early exit: every stored hash is compared
            found |= hmac.compare_digest(digest, stored)
        return found


def token_hash(token: str) -> str:
    """The hex SHA-256 of a token: what a deployment stores in place of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random API token (256 bits, URL-safe) and its hash."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def _listed(value: object) -> list[str]:
    """A setting given as a list (secrets.toml) or as comma-separated text (the environment)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise GenderError("an access setting must be a list of texts")
    return [str(item).strip() for item in items if str(item).strip()]


def _list_setting(env: str, key: str, conf: dict) -> tuple[list[str], str]:
    """A list setting: the variable `env`, else `key` in secrets; with where it was read, named as
    that place names it, for the messages (a deployment that set the variable has no such key)."""
    if os.environ.get(env):
        return _listed(os.environ[env]), env
    return _listed(conf.get(key)), f"[gender] {key}"


def _flag(env: str, key: str, conf: dict) -> bool:
    """A yes/no setting: the variable `env`, else `key` in secrets (default yes). The message names
    where the bad value was found, in the words that place takes (README documents 1/0)."""
    if env in os.environ:
        value, name, expected = os.environ[env], env, "1 or 0"
    else:
        value, name, expected = conf.get(key, True), f"[gender] {key}", "true or false"
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise GenderError(f"{name} is {str(value)[:20]!r}: expected {expected} (also yes/no, on/off)")


def load_access() -> Access:
    """The access settings of this deployment (environment first, then the secrets file)."""
    conf = _secrets()
    users, users_from = _list_setting("GENDER_ALLOWED_USERS", "allowed_users", conf)
    for user in users:
        if "@" not in user:
            raise GenderError(f"{users_from}: {user!r} is neither an address nor an @domain")
    hashes, hashes_from = _list_setting("GENDER_API_TOKENS_SHA256", "api_token_sha256", conf)
    for digest in hashes:
        if not _HEX_DIGEST.fullmatch(digest.lower()):
            # Never echo it: it may be a token pasted where its hash belongs.
            raise GenderError(
                f"{hashes_from} holds something that is not a SHA-256 hex digest; "
                "store the hash that `python -m gender api-token` prints, not the token"
            )
    return Access(
        allowed_users=tuple(user.lower() for user in users),
        token_hashes=tuple(bytes.fromhex(digest.lower()) for digest in hashes),
        metrics_public=_flag("GENDER_METRICS_PUBLIC", "metrics_public", conf),
        health_public=_flag("GENDER_HEALTH_PUBLIC", "health_public", conf),
    )
