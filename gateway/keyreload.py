"""Re-read API_KEYS_FILE when it changes: rotate keys without restarting the gateway.

`watchfiles` (inotify; polling as fallback) watches the file's DIRECTORY, because a Kubernetes Secret
volume swaps a `..data` symlink rather than writing the file. A new file that does not parse, cannot
be read, or would leave no key at all (which would open inference to everyone) keeps the old keys and
logs a warning that names the problem, never a key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
import watchfiles
from fastapi import FastAPI

from gateway.apikeys import KeyRing, load_api_keys
from gateway.metrics import API_KEY_RELOADS_TOTAL
from gateway.settings import Settings

log = structlog.get_logger(__name__)

_DEBOUNCE_MS = 200


def reload_keys(app: FastAPI, settings: Settings) -> bool:
    """Re-read the keys into `app.state.keys`; False (old keys kept, warning logged) if the new set is bad."""
    current: KeyRing = app.state.keys
    try:
        keys = load_api_keys(settings.API_KEYS.get_secret_value(), settings.API_KEYS_FILE)
    except ValueError as e:  # apikeys' messages name entries by position or name, never by key
        API_KEY_RELOADS_TOTAL.labels("error").inc()
        log.warning("api_keys_reload_rejected", reason=str(e), kept=current.names)
        return False
    if not keys and current.configured:
        API_KEY_RELOADS_TOTAL.labels("error").inc()
        log.warning("api_keys_reload_rejected", reason="the new file has no key", kept=current.names)
        return False
    if set(keys) == set(current.keys):
        return True  # an event that changed nothing (touch, the other files of a Secret volume)
    app.state.keys = KeyRing(keys)
    API_KEY_RELOADS_TOTAL.labels("ok").inc()
    log.info("api_keys_reloaded", names=[k.name for k in keys])
    return True


async def _watch(app: FastAPI, settings: Settings, path: Path, stop: asyncio.Event) -> None:
    reload_keys(app, settings)  # a change between start-up and this watch would otherwise wait for the next
    force_polling: bool | None = None
    while not stop.is_set():
        try:
            async for _ in watchfiles.awatch(
                path.parent,
                watch_filter=None,
                debounce=_DEBOUNCE_MS,
                stop_event=stop,
                force_polling=force_polling,
                recursive=False,
            ):
                reload_keys(app, settings)
        except Exception as e:  # e.g. inotify watch limit reached, directory gone: poll instead
            emit = log.debug if force_polling else log.warning  # warn once, not every second
            emit("api_keys_watch_failed", error=type(e).__name__, fallback="polling")
            force_polling = True
            await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def watch_api_keys(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """While inside, changes to API_KEYS_FILE take effect within about a second (nothing if unset)."""
    path = settings.API_KEYS_FILE
    if path is None:
        yield
        return
    stop = asyncio.Event()
    # absolute(), not resolve(): a Secret volume replaces the directory its symlinks point into.
    task = asyncio.create_task(_watch(app, settings, Path(path).absolute(), stop), name="api-keys-watch")
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
