"""`python -m ui.prewarm` (run by `make run`): the bundled samples described and converted once, on disk."""

from __future__ import annotations

import pytest

from quant_core import ArtifactCache


def test_prewarm_stores_the_description_and_the_float_model_then_needs_no_worker(tmp_path, monkeypatch):
    from ui import inputs, prewarm

    digits = [s for s in inputs.samples() if s.name == "digits_cnn"]
    monkeypatch.setattr(prewarm, "samples", lambda: digits)  # the small sample: the code path is the same
    monkeypatch.setenv("QUANT_CACHE_DIR", str(tmp_path))
    assert prewarm.main() == 0
    cache = ArtifactCache()
    assert cache.root == tmp_path
    assert len(list((tmp_path / "descriptions").rglob("*.json"))) == 1
    assert len(list((tmp_path / "floats").rglob("*.json"))) == 1  # the float conversion, by model content

    def no_worker(*args, **kwargs):
        raise AssertionError("prepared already: no worker needed")

    monkeypatch.setattr(prewarm.JobClient, "run", no_worker)
    assert prewarm.main() == 0


def test_prewarm_says_what_failed_and_exits_2(tmp_path, monkeypatch, capsys):
    from quant_core.errors import InputError
    from ui import inputs, prewarm

    monkeypatch.setattr(prewarm, "samples", lambda: [s for s in inputs.samples() if s.name == "digits_cnn"])
    monkeypatch.setenv("QUANT_CACHE_DIR", str(tmp_path))

    def broken(*args, **kwargs):
        raise InputError("digits_cnn.keras: no such file or folder")

    monkeypatch.setattr(prewarm.JobClient, "run", broken)
    assert prewarm.main() == 2
    assert capsys.readouterr().err.strip() == "prewarm: digits_cnn: digits_cnn.keras: no such file or folder"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    from conftest import REPO

    monkeypatch.chdir(REPO)
