"""The README's commands and code stay true: CI runs its test command; its Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    setup = _blocks("bash")[:2]
    assert len(setup) == 2, "the README must open with exactly two set-up commands"
    main_job, tests = (b.strip() for b in setup)
    assert "innerloop train" in main_job and "--backend cpu" in main_job and "innerloop eval" in main_job
    assert tests in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in tests and "ruff check" in tests


def test_python_example_runs():
    (example,) = [b for b in _blocks("python") if "il.algorithms.MAML" in b]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["losses"].shape == (32,)
    assert namespace["adapted"]["layer0.weight"].shape[0] == 32


def test_amortized_python_example_runs():
    (example,) = [b for b in _blocks("python") if "il.algorithms.AttentiveNP" in b]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["nll"].shape == (16,)
    assert set(namespace["grad"]) == set(namespace["params"])


def test_theory_python_example_runs():
    (example,) = [b for b in _blocks("python") if "il.theory.implicit_prior" in b]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert float(namespace["precision"][0]) == 20.0  # 1/(Nα) at zero curvature
    bound = namespace["bound"]
    assert bound.tasks == 1000 and bound.bound == bound.empirical + bound.across_task + bound.within_task
    expected = (2 * namespace["smoothness"] * 1.0 + namespace["variance"]) / 1000 ** 0.5
    assert abs(namespace["rate"] - expected) <= 1e-12 * expected


def test_generalization_theory_python_example_runs(capsys):
    (example,) = [b for b in _blocks("python") if "il.theory.bernoulli_environment" in b]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    meta, memr = namespace["meta"], namespace["memr"]
    assert abs(meta["gen_error"]) <= meta["bound"] and meta["tasks"] == 4
    assert memr["memr"]["mean"] <= memr["bound"] and memr["tasks"] == 8
    assert "|ΔL_avg|" in capsys.readouterr().out
