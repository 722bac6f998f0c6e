"""FastAPI dependencies: everything a route needs comes from the lifespan's state, never from an import."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.cache import MetadataCache
from gateway.examples import Examples
from gateway.services.inference import InferenceService
from gateway.services.management import ModelManager
from gateway.services.models import ModelRegistry
from gateway.settings import Settings
from gateway.triton_client import TritonClient


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _triton(request: Request) -> TritonClient:
    return request.app.state.triton


def _inference(request: Request) -> InferenceService:
    return request.app.state.inference


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


def _cache(request: Request) -> MetadataCache:
    return request.app.state.cache


def _manager(request: Request) -> ModelManager:
    return request.app.state.manager


def _examples(request: Request) -> Examples:
    return request.app.state.examples


SettingsDep = Annotated[Settings, Depends(_settings)]
TritonDep = Annotated[TritonClient, Depends(_triton)]
InferenceDep = Annotated[InferenceService, Depends(_inference)]
RegistryDep = Annotated[ModelRegistry, Depends(_registry)]
ManagerDep = Annotated[ModelManager, Depends(_manager)]
CacheDep = Annotated[MetadataCache, Depends(_cache)]
ExamplesDep = Annotated[Examples, Depends(_examples)]
