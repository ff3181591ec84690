"""API keys: ``Authorization: Bearer KEY`` on every API call when the server has keys.

A key is never stored in logs, metrics or cache entries: each key is known by its *owner id*, ``key-`` and the
first 12 hex digits of its SHA-256, which names it in the access log and namespaces the images it uploads (an
image is found only with the key that uploaded it; any other key gets 404).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

MIN_KEY_CHARS = 16
ENV_VAR = "FASTSAM_API_KEYS"


def owner_id(key: str) -> str:
    """The name a key is known by: ``key-`` + 12 hex digits of its SHA-256 (not reversible for a random key)."""
    return "key-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


class KeyRing:
    """The accepted API keys.

    Args:
        keys: the keys; each at least 16 characters of printable ASCII without spaces.

    Raises:
        ValueError: a key that is too short or has characters a header cannot carry (the key is not echoed).
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._owners: dict[bytes, str] = {}
        for n, key in enumerate(keys, 1):
            if len(key) < MIN_KEY_CHARS:
                raise ValueError(f"API key #{n} has {len(key)} characters: use at least {MIN_KEY_CHARS} (e.g. the "
                                 "output of 'openssl rand -hex 24')")  # fmt: skip
            if not all(33 <= ord(c) <= 126 for c in key):
                raise ValueError(f"API key #{n} has spaces or characters other than printable ASCII: a bearer token "
                                 "cannot carry them")  # fmt: skip
            self._owners[hashlib.sha256(key.encode()).digest()] = owner_id(key)

    def __len__(self) -> int:
        return len(self._owners)

    def owner(self, authorization: str | None) -> str | None:
        """The owner id of the key in an ``Authorization`` header value (``Bearer KEY``), or None if it is not one
        of ours. The key is looked up by its SHA-256, so the time taken says nothing about how close a guess was."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._owners.get(hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest())


def read_keys_file(path: str | os.PathLike[str]) -> list[str]:
    """Keys from a file: one per line; blank lines and lines starting with ``#`` are skipped.

    Raises:
        OSError: the file cannot be read (the message names it).
        ValueError: the file holds no key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise OSError(f"cannot read the API keys file {path}: {err}") from None
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise ValueError(f"the API keys file {path} holds no key (one key per line; '#' starts a comment)")
    return keys


def keys_from_env(value: str | None) -> list[str]:
    """Keys from the ``FASTSAM_API_KEYS`` value: separated by commas or whitespace."""
    return [k for k in (value or "").replace(",", " ").split() if k]
