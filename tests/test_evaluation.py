"""Whole-dataset evaluation through executors: a local Ray (2 CPUs) gives the local executor's numbers.

One Ray instance serves the module. The model is the bundled digits CNN; the set is 240
altered copies of its bundled photos plus one corrupt file, in class folders.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from augmented import write_augmented
from processes import listening_sockets, loopback, process_tree
from conftest import REPO
from quant_core.cli import main
from quant_core.compare import Workbench, measure_variants
from quant_core.errors import Cancelled, ImageError, InputError
from quant_core.inputs.datasets import Dataset, open_dataset
from quant_core.modes import Mode
from quant_core.recipe import compile_recipes
from quant_core.request import CompareOptions
from quant_core.results.dataset_compare import DatasetEvaluation
from quant_core.serving.dataset_evaluation import evaluate_dataset, evaluate_shard
from quant_core.serving.executors import LocalExecutor, RayExecutor, make_executor

pytest.importorskip("ray")

MODEL = REPO / "sample_models" / "digits_cnn.keras"
DIGITS = REPO / "sample_models" / "digits_images"
MODES = (Mode.FLOAT32, Mode.DYNAMIC_RANGE, Mode.INT8, Mode.INT8_FLOAT_IO)
SHARD = 16


@pytest.fixture(scope="module")
def ray_executor():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module
    executor = RayExecutor(cpus=2)
    yield executor
    executor.close()


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = write_augmented(DIGITS, tmp_path_factory.mktemp("generated") / "digits", 240, seed=1, flip=False)
    (root / "3" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    return root


@pytest.fixture(scope="module")
def built(generated, tmp_path_factory):
    """The variants, built on a sample of the set: (workbench, model set)."""
    from quant_core.cache import ArtifactCache

    options = CompareOptions(recipes=compile_recipes(MODES), measure_latency=False)
    bench = Workbench.open(MODEL, open_dataset([generated]).sample(40), options=options,
                           cache=ArtifactCache(tmp_path_factory.mktemp("cache")))
    result = measure_variants(bench, options, on_progress=lambda p: None)
    assert all(v.ok for v in result.variants), [v.error for v in result.variants]
    return bench, bench.model_set(result.variants)


def _evaluate(built, dataset: Dataset, executor, *, shard_size: int | None = SHARD, **kwargs) -> DatasetEvaluation:
    bench, models = built
    return evaluate_dataset(dataset, models, num_classes=bench.source.info.num_classes,
                            class_names=bench.labels.class_names, executor=executor, shard_size=shard_size, **kwargs)


@pytest.fixture(scope="module")
def local_result(built, generated) -> DatasetEvaluation:
    return _evaluate(built, open_dataset([generated]), LocalExecutor())


def _same_numbers(a: DatasetEvaluation, b: DatasetEvaluation) -> None:
    assert [s.name for s in a.variants] == [s.name for s in b.variants]
    for x, y in zip(a.variants, b.variants):
        assert x == y, x.name  # predictions per image and every metric, exactly
    assert a.images == b.images and a.labels == b.labels and a.skipped == b.skipped


def test_ray_gives_the_local_numbers(built, generated, local_result, ray_executor):
    result = _evaluate(built, open_dataset([generated]), ray_executor)
    _same_numbers(result, local_result)
    assert result.executor.startswith("ray (2 CPUs") and result.shards == -(-241 // SHARD)
    assert all(name.split(":")[1] != str(os.getpid()) for name in result.worker_names)  # ran in Ray's workers
    assert local_result.worker_names == (f"{os.uname().nodename}:{os.getpid()}",)


def test_a_local_ray_listens_on_loopback_only(ray_executor):
    """Every listening TCP socket of this process and its descendants (Ray's services and workers) is on loopback."""
    assert sorted(p for _, p in ray_executor.run(operator.add, [1, 2, 3, 4], 10)) == [11, 12, 13, 14]  # workers up
    listening = listening_sockets(process_tree(os.getpid()))
    names = {name for name, _ in listening}
    assert {"gcs_server", "raylet"} <= names, names  # Ray's own services were found, so the check means something
    exposed = [(name, address) for name, address in listening if not loopback(address)]
    assert not exposed, f"listening beyond this machine: {exposed}"


def test_numbers_are_real(built, local_result):
    _, models = built
    assert models.names[0] == "float32" and set(models.names) == {m.value for m in MODES}
    float32, int8 = local_result.score("float32"), local_result.score("int8")
    assert float32.top1_agreement == 1.0 and float32.kl_divergence == 0.0
    assert 0.9 <= float32.accuracy <= 1.0  # a trained digit net on altered digit photos
    assert 0.9 <= int8.top1_agreement <= 1.0 and int8.kl_divergence > 0
    assert int8.accuracy is not None and abs(int8.accuracy - float32.accuracy) < 0.05
    assert len(float32.top1) == 241 and set(float32.top1) <= set(range(10)) | {-1}


def test_same_as_the_workbench_on_the_same_images(built):
    """The sharded path and the in-memory comparison agree image by image (the bundled photos, unaltered)."""
    bench, _ = built
    photos = open_dataset([DIGITS])
    sample_bench = Workbench.open(MODEL, photos.sample(len(photos)), options=bench.options, cache=bench.cache,
                                  source=bench.source)
    expected = measure_variants(sample_bench, bench.options, on_progress=lambda p: None)
    got = evaluate_dataset(photos, sample_bench.model_set(expected.variants),
                           num_classes=bench.source.info.num_classes, class_names=bench.labels.class_names,
                           shard_size=SHARD)
    assert got.evaluated == len(photos) == len(expected.images)
    assert [i.file for i in expected.images] == list(got.images)
    for v in expected.variants:
        score = next(s for s in got.variants if s.tflite_sha256 == v.tflite_sha256)
        assert score.top1 == v.top1, v.name
        assert score.accuracy == pytest.approx(v.accuracy) and score.top1_agreement == pytest.approx(v.top1_agreement)
        assert score.kl_divergence == pytest.approx(v.kl_divergence, rel=1e-3, abs=1e-9)


def test_a_corrupt_image_is_skipped_and_named(local_result):
    names = [s.name for s in local_result.skipped]
    assert names == ["digits/3/corrupt.png"] and "not a readable image" in local_result.skipped[0].reason
    position = local_result.images.index("digits/3/corrupt.png")
    assert all(v.top1[position] == -1 for v in local_result.variants)
    assert local_result.evaluated == 240


def _dies_once(shard, models, *, marker: str, victim: int):
    """Kills its worker process the first time it is given shard `victim` (Ray retries the task)."""
    if shard.start == victim * SHARD and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)
    return evaluate_shard(shard, models)


def test_a_killed_worker_shard_is_retried(built, generated, local_result, ray_executor, tmp_path):
    marker = tmp_path / "died"
    killer = functools.partial(_dies_once, marker=str(marker), victim=3)
    result = _evaluate(built, open_dataset([generated]), ray_executor, shard_fn=killer)
    assert marker.exists()  # a worker really died mid-shard
    _same_numbers(result, local_result)  # ...and its shard was run again: nothing lost or duplicated
    assert not result.cancelled


def _slow(shard, models, *, started: str):
    Path(started, f"{shard.start}").touch()
    time.sleep(0.5)
    return evaluate_shard(shard, models)


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_cancel_keeps_the_shards_done_and_stops_the_rest(built, generated, ray_executor, tmp_path, executor):
    started = tmp_path / "started"
    started.mkdir()

    def stop_after_two(progress):
        if progress.done >= 2 * SHARD:
            raise Cancelled("stopped by the user")

    result = _evaluate(built, open_dataset([generated]), ray_executor if executor == "ray" else LocalExecutor(),
                       shard_fn=functools.partial(_slow, started=str(started)), on_progress=stop_after_two)
    assert result.cancelled and 2 * SHARD <= result.evaluated < 240
    time.sleep(1.0)  # a forcibly cancelled task cannot start another shard after this
    ran = {int(p.name) for p in started.iterdir()}
    assert len(ran) < result.shards  # the rest never ran
    never = [k for k in range(len(result.images)) if k // SHARD * SHARD not in ran]
    assert never and all(result.score("int8").top1[k] == -1 for k in never)


def test_to_dict_round_trips(local_result):
    data = json.loads(json.dumps(local_result.to_dict()))
    assert data["evaluated"] == 240 and data["images_per_second"] > 0
    assert DatasetEvaluation.from_dict(data) == local_result


def test_labels_that_do_not_fit_are_refused(built, tmp_path):
    write_augmented(DIGITS, tmp_path / "d", 12, flip=False)
    (tmp_path / "d" / "3").rename(tmp_path / "d" / "cat")
    with pytest.raises(ImageError, match="cat"):
        _evaluate(built, open_dataset([tmp_path / "d"]), LocalExecutor())


def test_executor_choice(monkeypatch):
    assert isinstance(make_executor(), LocalExecutor)
    with pytest.raises(InputError, match="unknown executor 'spark'"):
        make_executor("spark")
    with pytest.raises(InputError, match="--ray-address needs --executor ray"):
        make_executor("local", address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(InputError, match=r"requirements-ray\.txt"):
        make_executor("ray")
    monkeypatch.setenv("QW_EXECUTOR", "ray")
    with pytest.raises(InputError, match="not installed"):
        make_executor()


def _cli(args: list[str], capfd) -> tuple[int, str, str]:
    code = main(args)
    out, err = capfd.readouterr()
    return code, out, err


def test_cli_compare_on_a_big_folder_with_ray(generated, ray_executor, tmp_path, capfd):
    cache = str(tmp_path / "cache")
    common = ["compare", str(MODEL), "--images", str(generated), "--modes", "float32,int8", "--sample", "30",
              "--no-latency", "--cache-dir", cache]
    code, out, err = _cli([*common, "--executor", "ray", "--report-json", str(tmp_path / "ray.json")], capfd)
    assert code == 0, err
    assert "whole set: 240 of 241 images, 1 skipped; ray (2 CPUs" in out
    assert "240 scored, a sample of 30" in out and "skipped digits/3/corrupt.png" in err
    code, out_local, err = _cli([*common, "--executor", "local", "--report-json", str(tmp_path / "local.json")], capfd)
    assert code == 0, err
    assert "whole set: 240 of 241 images, 1 skipped; local (this process)" in out_local
    ray_report, local_report = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ray", "local"))
    assert ray_report["evaluation"]["variants"] == local_report["evaluation"]["variants"]
    int8 = next(v for v in ray_report["variants"] if v["name"] == "int8")
    score = next(v for v in ray_report["evaluation"]["variants"] if v["name"] == "int8")
    assert int8["top1_agreement"] == pytest.approx(score["top1_agreement"], abs=1e-4)  # the table shows the whole set
    assert np.isclose(int8["accuracy"], score["accuracy"], atol=1e-4)


def test_cli_bad_sample_is_one_line(generated, capfd):
    code, out, err = _cli(["compare", str(MODEL), "--images", str(generated), "--sample", "0"], capfd)
    assert code == 2 and err.strip() == "error: --sample is a number of images, at least 1; got 0" and not out


def test_default_shards_give_every_worker_several(built, generated, ray_executor):
    from quant_core.serving.dataset_evaluation import _shard_size

    assert _shard_size(50_000, 32) == 64 and _shard_size(241, 2) == 31 and _shard_size(20, 2) == 8
    result = _evaluate(built, open_dataset([generated]), ray_executor, shard_size=None)
    assert result.shards == 8  # 241 images in shards of 31: four per worker



@pytest.mark.parametrize("search", ["tune", "calibration"])
def test_searches_judge_on_the_whole_set_through_an_executor(built, generated, ray_executor, search):
    """The accuracy-budget search and the calibration what-ifs, each variant scored on every image: Ray = local."""
    from quant_core.serving.dataset_evaluation import DatasetScorer
    from quant_core.tune import calibration_sweep, tune
    from quant_core.results.verdict import Floor, FloorKind

    bench, _ = built
    dataset = open_dataset([generated])
    outcomes = []
    for executor in (LocalExecutor(), ray_executor):
        scorer = DatasetScorer(bench, dataset, executor)
        if search == "tune":
            result = tune(bench, Floor(FloorKind.AGREEMENT, 1.0), max_steps=3, scorer=scorer)
            assert len(scorer.passes) == len(result.steps) + 1  # float32, then one pass per step
            outcomes.append([(s.name, s.variant.top1_agreement, s.variant.accuracy, s.within_budget)
                             for s in result.steps])
            last = result.steps[-1].variant
        else:
            sweep = calibration_sweep(bench, scorer=scorer)
            assert len(scorer.passes) == 1  # every calibration in one pass
            outcomes.append([(p.count, p.source, p.agreement, p.accuracy) for p in sweep.points])
            last = None
        assert all(p.evaluated == 240 for p in scorer.passes)
        if last is not None:  # a step's numbers are the whole set's, not the 40-image sample's
            score = next(s for s in scorer.passes[-1].variants if s.tflite_sha256 == last.tflite_sha256)
            assert last.top1_agreement == score.top1_agreement and last.accuracy == score.accuracy
    assert outcomes[0] == outcomes[1]


def test_cli_tune_on_a_big_folder_with_ray(generated, ray_executor, tmp_path, capfd):
    report = tmp_path / "tune.json"
    code, out, err = _cli(["tune", str(MODEL), "--images", str(generated), "--executor", "ray", "--sample", "30",
                           "--max-steps", "2", "--max-drop", "0", "--json", str(report),
                           "--cache-dir", str(tmp_path / "cache")], capfd)
    assert code == 0, err
    assert "every step scored on the whole set" in out and "240 of 241 images, 1 skipped; ray (2 CPUs" in out
    data = json.loads(report.read_text())
    assert data["whole_set_passes"] == len(data["steps"]) + 1 and "ray (2 CPUs" in data["whole_set"]


def test_ray_gives_the_local_numbers_for_a_model_that_is_not_a_classifier(ray_executor, tmp_path):
    """The bundled face landmarker (points and a presence score) on its face crops: every output's figures, exactly."""
    from quant_core.cache import ArtifactCache
    from quant_core.inputs.images import load_images
    from quant_core.recipe import Recipe
    from quant_core.tasks import Task

    faces = REPO / "sample_models" / "face_images"
    options = CompareOptions(recipes=(Recipe(Mode.INT8),), measure_latency=False)
    bench = Workbench.open(REPO / "sample_models" / "face_landmark.tflite", load_images((faces,)), options=options,
                           cache=ArtifactCache(tmp_path / "cache"))
    models = bench.model_set(measure_variants(bench, options, on_progress=lambda p: None).variants)
    runs = [evaluate_dataset(open_dataset([faces]), models, num_classes=0, executor=executor, shard_size=2)
            for executor in (LocalExecutor(), ray_executor)]
    assert runs[0].task is Task.LANDMARKS and runs[0].shards == 4 and runs[0].evaluated == 7
    assert runs[0].variants == runs[1].variants and runs[0].read == runs[1].read
    int8 = runs[1].score("int8")
    assert len(int8.outputs) == 2 and not int8.outputs[0].whole.exact and len(int8.per_image) == 7
