"""FastAPI dependencies: everything a route needs comes from the lifespan's state, never from an import."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from gateway.cache import MetadataCache
from gateway.examples import Examples
from gateway.services.inference import InferenceService
from gateway.services.management import ModelManager
from gateway.services.models import ModelRegistry
from gateway.settings import Settings
from gateway.triton_client import TritonClient


def _state(name: str) -> Callable[[Request], Any]:
    """A dependency that returns `app.state.<name>` (set by create_app or the lifespan)."""

    def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"app_state_{name}"
    return dependency


SettingsDep = Annotated[Settings, Depends(_state("settings"))]
TritonDep = Annotated[TritonClient, Depends(_state("triton"))]
InferenceDep = Annotated[InferenceService, Depends(_state("inference"))]
RegistryDep = Annotated[ModelRegistry, Depends(_state("registry"))]
ManagerDep = Annotated[ModelManager, Depends(_state("manager"))]
CacheDep = Annotated[MetadataCache, Depends(_state("cache"))]
ExamplesDep = Annotated[Examples, Depends(_state("examples"))]
