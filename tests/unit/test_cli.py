"""The one command line: every subcommand answers --help, --version works, and a training-side tool
without its optional dependency says how to install it instead of a traceback."""

from __future__ import annotations

import sys

import pytest

from gateway import __version__
from gateway.cli import TOOLS, main, run_tool


def test_version_flag_and_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"pd-gateway {__version__}"
    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pd-gateway {__version__}") and "tritonclient" in out


@pytest.mark.parametrize(
    "argv", [[], ["serve"], ["models"], ["models", "deploy"], ["version"], *[[t] for t in TOOLS]]
)
def test_every_subcommand_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: pd-gateway {' '.join(argv)}".rstrip())


@pytest.mark.parametrize("name, blocked", [("train", "torch"), ("export", "torch"), ("evaluate", "pywt")])
def test_a_missing_optional_dependency_is_a_message(
    name: str, blocked: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, blocked, None)  # `import torch` now fails as if not installed
    for module in [m for m in sys.modules if m.startswith("export")]:
        monkeypatch.delitem(sys.modules, module)
    assert run_tool(name, ["--help"]) == 3
    err = capsys.readouterr().err
    assert f"pd-gateway {name} needs {blocked}" in err and "pd-gateway[train]" in err
    if blocked == "torch":
        assert "pip install torch==2.13.0" in err
