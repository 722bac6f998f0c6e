"""Issue 11: the two generators are deterministic and disjoint in code; training never sees the cross one."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.crossgen.generator import LONG_N, SHORT_N, generate
from export.sim import simulator as sim

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_cross_generator_imports_nothing_of_the_project() -> None:
    for path in (ROOT / "export" / "crossgen").glob("*.py"):
        own = {m for m in _imports(path) if m.split(".")[0] in ("export", "gateway")}
        assert own <= {"export.crossgen", "export.crossgen.generator"}, (path.name, own)


def test_simulator_and_training_code_never_import_the_cross_generator() -> None:
    training = [*(ROOT / "export" / "sim").glob("*.py"), *(ROOT / "export").glob("*.py")]
    allowed = {"evaluate.py", "cross_eval.py"}  # evaluation only
    for path in training:
        if path.name in allowed:
            continue
        bad = {m for m in _imports(path) if m.startswith(("export.crossgen", "export.cross_eval"))}
        assert not bad, (path, bad)
    # and transitively: importing the training entry point loads no cross-generator module
    code = (
        "import sys, export.train, export.data, export.sim.simulator\n"
        "bad = [m for m in sys.modules if m.startswith(('export.crossgen', 'export.cross_eval'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={"PYTHONPATH": str(ROOT)})


def test_cross_generator_is_deterministic_and_labelled() -> None:
    a, b = generate("short", 5, 3), generate("short", 5, 3)
    assert np.array_equal(a.signal, b.signal) and a.events == b.events and a.interference == b.interference
    assert a.signal.shape == (SHORT_N,) and a.signal.dtype == np.float64
    assert not np.array_equal(a.signal, generate("short", 5, 4).signal)
    kinds: set[str] = set()
    free = 0
    for i in range(40):
        s = generate("short", 5, i)
        kinds |= {k for k, _, _ in s.interference}
        free += not s.events
        spans = sorted([*s.events, *((x, y) for _, x, y in s.interference)])
        assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(spans))  # disjoint
    assert kinds == {"pair", "bipolar", "train", "spike"} and 3 <= free <= 20


@pytest.mark.parametrize("index", [0])
def test_long_regime_is_int8_vsb_format(index: int) -> None:
    s = generate("long", 5, index)
    assert s.signal.shape == (LONG_N,) and s.signal.dtype == np.int8
    assert np.array_equal(s.signal, generate("long", 5, index).signal)


def test_family_profile_is_deterministic_unlabelled_and_leaves_short_alone() -> None:
    def cfg(seed: int, profile: str) -> sim.SimConfig:
        return sim.random_config(np.random.default_rng(seed), regime="mixed", profile=profile)

    assert cfg(1, "short").interference_style == "short" and cfg(1, "short").bipolar_count == 0
    kinds: set[str] = set()
    for seed in range(30):
        c = cfg(seed, "family")
        s1, s2 = sim.simulate(c, seed, return_components=True), sim.simulate(c, seed)
        assert np.array_equal(s1.signal, s2.signal) and np.array_equal(s1.mask, s2.mask)
        assert s1.components is not None and not np.any(s1.components["interference"][s1.mask])
        kinds |= {i.kind for i in s1.interference}
    assert kinds == {"pair", "bipolar", "train", "impulsive"}
