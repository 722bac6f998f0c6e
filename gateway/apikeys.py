"""API keys with roles: parsing (environment text or a file) and constant-time lookup. Pure stdlib.

Formats accepted by `parse_api_keys` (API_KEYS, and the content of API_KEYS_FILE)::

    name:role:key,name2:role:key2          comma- or newline-separated; '#' starts a comment line
    [{"name": "ci", "role": "operator", "key": "..."}, ...]     a JSON list

Roles: "operator" (model management, and everything "inference" may do) and "inference". Error
messages name the entry by position or name, never by its key, so a typo cannot leak a key into a log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["inference", "operator"]
ROLES: tuple[Role, ...] = ("inference", "operator")
_RANK = {"inference": 1, "operator": 2}  # operator ⊃ inference
MIN_KEY_CHARS = 16
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its public name and role, and only the SHA-256 digest of the secret."""

    name: str
    role: Role
    digest: bytes = b""

    def allows(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def __repr__(self) -> str:  # never print the digest either
        return f"ApiKey(name={self.name!r}, role={self.role!r})"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _entry(
    where: str, name: object, role: object, key: object, secrets_out: list[str] | None = None
) -> ApiKey:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"{where}: name must be 1-64 characters of [A-Za-z0-9_.-]")
    if role not in ROLES:
        raise ValueError(f"{where} ({name}): role must be one of {', '.join(ROLES)}")
    if not isinstance(key, str) or len(key) < MIN_KEY_CHARS or key != key.strip() or "," in key:
        raise ValueError(
            f"{where} ({name}): key must be at least {MIN_KEY_CHARS} characters, "
            "without surrounding spaces or commas"
        )
    if secrets_out is not None:
        secrets_out.append(key)
    return ApiKey(name, role, _digest(key))


def parse_api_keys(text: str, secrets_out: list[str] | None = None) -> list[ApiKey]:
    """Parse the API_KEYS text (either format above); "" gives no keys. Raises ValueError.

    `secrets_out`, if given, receives the raw keys (for the log redaction list, never to be stored).
    """
    text = text.strip()
    if not text:
        return []
    keys: list[ApiKey] = []
    if text.startswith("["):
        try:
            doc = json.loads(text)
        except ValueError:
            raise ValueError("API keys: not valid JSON (expected a list of {name, role, key})") from None
        for i, item in enumerate(doc):
            if not isinstance(item, dict):
                raise ValueError(f"API key entry {i + 1}: expected an object with name, role, key")
            keys.append(
                _entry(
                    f"API key entry {i + 1}", item.get("name"), item.get("role"), item.get("key"), secrets_out
                )
            )
    else:
        lines = [ln for ln in text.splitlines() if not ln.strip().startswith("#")]
        entries = [e.strip() for ln in lines for e in ln.split(",") if e.strip()]
        for i, entry in enumerate(entries):
            parts = entry.split(":", 2)  # the key itself may contain ':'
            if len(parts) != 3:
                raise ValueError(f"API key entry {i + 1}: expected name:role:key")
            keys.append(
                _entry(f"API key entry {i + 1}", parts[0].strip(), parts[1].strip(), parts[2], secrets_out)
            )
    return _unique(keys)


def _unique(keys: list[ApiKey]) -> list[ApiKey]:
    names = [k.name for k in keys]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"API keys: duplicate name(s) {', '.join(dupes)}")
    digests = [k.digest for k in keys]
    if len(set(digests)) != len(digests):
        raise ValueError("API keys: the same key is configured under two names")
    return keys


def load_api_keys(
    text: str = "", path: str | Path | None = None, secrets_out: list[str] | None = None
) -> list[ApiKey]:
    """Keys from API_KEYS text plus API_KEYS_FILE (same formats); names and keys must be unique."""
    keys = parse_api_keys(text, secrets_out)
    if path is not None:
        try:
            content = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"API_KEYS_FILE {path}: cannot read it ({e.strerror})") from None
        try:
            keys += parse_api_keys(content, secrets_out)
        except ValueError as e:
            raise ValueError(f"API_KEYS_FILE {path}: {e}") from None
    return _unique(keys)


class KeyRing:
    """The configured keys; `identify` compares a presented key against every one in constant time."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys = tuple(keys)

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    @property
    def keys(self) -> tuple[ApiKey, ...]:
        return self._keys

    @property
    def has_operator(self) -> bool:
        return any(k.role == "operator" for k in self._keys)

    @property
    def names(self) -> list[str]:
        return [k.name for k in self._keys]

    def identify(self, presented: str) -> ApiKey | None:
        """The key matching `presented`, else None.

        Digests have equal length, so compare_digest never returns early on length, and the loop
        visits every key whatever matched: timing reveals neither the key nor its position.
        """
        candidate = _digest(presented)
        found: ApiKey | None = None
        for key in self._keys:
            if hmac.compare_digest(candidate, key.digest) and found is None:
                found = key
        return found
