"""Settings: names without prefix, defaults, and validation that fails before serving."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import Settings, get_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    s = Settings()
    assert s.TRITON_GRPC_URL == ""
    assert (s.TRITON_TIMEOUT_S, s.TRITON_CONTROL_TIMEOUT_S, s.TRITON_STARTUP_TIMEOUT_S) == (30, 5, 120)
    assert s.DEFAULT_MODEL == "pd_unet1d"
    assert s.MODEL_REPOSITORY.as_posix() == "model_repository"
    assert s.REDIS_URL is None
    assert s.MAX_BODY_BYTES == 64 * 1024 * 1024
    assert (s.HOST, s.PORT, s.LOG_LEVEL, s.LOG_JSON) == ("127.0.0.1", 8000, "info", True)


def test_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_GRPC_URL", " triton:8001 ")
    monkeypatch.setenv("TRITON_TIMEOUT_S", "2.5")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/1")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LOG_JSON", "false")
    monkeypatch.setenv("MODEL_REPOSITORY", "/srv/models")
    s = Settings()
    assert s.TRITON_GRPC_URL == "triton:8001"
    assert s.TRITON_TIMEOUT_S == 2.5
    assert s.REDIS_URL is not None and s.REDIS_URL.get_secret_value() == "redis://cache:6379/1"
    assert "cache:6379" not in repr(s)  # REDIS_URL may carry a password: hidden like API_KEYS
    assert (s.LOG_LEVEL, s.LOG_JSON) == ("debug", False)
    assert s.MODEL_REPOSITORY.as_posix() == "/srv/models"


def test_empty_redis_url_means_no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")
    assert Settings().REDIS_URL is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRITON_TIMEOUT_S", "0"),
        ("CACHE_TTL_S", "-1"),
        ("MAX_CONCURRENT_TRITON_CALLS", "0"),
        ("PORT", "70000"),
        ("LOG_LEVEL", "loud"),
        ("REDIS_URL", "cache:6379"),
        ("MAX_TOTAL_SAMPLES", "10"),  # below MAX_SIGNAL_SAMPLES
    ],
)
def test_bad_values_fail(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_get_settings_is_cached() -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()
