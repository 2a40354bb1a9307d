"""The CLI contract: exit codes, one-line errors on stderr, clean stdout, and the report JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from quant_core.modes import Mode


def run_cli(*args: str, cache_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, QUANT_CACHE_DIR=str(cache_dir), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "quant_core", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, lines[0]), lines[0]


def test_compare_writes_report_models_and_a_clean_table(model_files, image_dir, labels_file, tmp_path):
    report, out_dir = tmp_path / "report.json", tmp_path / "out"
    proc = run_cli("compare", model_files["keras"], "--images", image_dir, "--labels", labels_file,
                   "--modes", "float32,dynamic_range,int8,int16x8", "--calibration-count", "10",
                   "--json", report, "--out-dir", out_dir, cache_dir=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("model: tiny (keras)")
    start = lines.index("") + 2  # after the blank line and the header; the verdict follows another blank line
    rows = [line.split()[0] for line in lines[start:lines.index("", start)]]
    assert rows == ["float32", "dynamic_range", "int8", "int16x8"]
    assert lines[lines.index("", start) + 1] == "Which variant to ship (agreement with float32 ≥ 99%):"
    for chatter in ("Saved artifact", "fully_quantize", "Endpoint", "TensorSpec", "W0000", "INFO:"):
        assert chatter not in proc.stdout
    data = json.loads(report.read_text())
    assert data["model"]["name"] == "tiny" and data["model"]["num_classes"] == 3
    assert data["model"]["input_shape"] == [None, 16, 16, 3] and len(data["model"]["sha256"]) == 64
    assert data["environment"]["threads"] == 1
    variants = {v["mode"]: v for v in data["variants"]}
    assert list(variants) == ["float32", "dynamic_range", "int8", "int16x8"]
    for mode, v in variants.items():
        assert v["status"] == "ok" and v["error"] is None
        assert v["latency_ms"]["median"] > 0 and v["latency_ms"]["p90"] >= v["latency_ms"]["median"]
        assert 0 <= v["top1_agreement"] <= 1 and v["accuracy"] >= 0.9
        assert (out_dir / f"tiny_{mode}.tflite").read_bytes()[4:8] == b"TFL3"
        assert json.loads((out_dir / f"tiny_{mode}.recipe.json").read_text())["recipe"]["mode"] == mode
        assert v["tflite"] == str(out_dir / f"tiny_{mode}.tflite")
    assert variants["int8"]["integer_only"] is True and variants["int8"]["ops"]["float"] == 0
    assert variants["int8"]["calibration_samples"] == 10
    assert variants["int8"]["size_ratio"] < 0.75
    image = data["images"][0]
    assert image["label"] in ("red", "green", "blue")
    assert len(image["predictions"]["int8"]) == 3 and {"label", "prob"} <= set(image["predictions"]["int8"][0])


def test_compare_on_unlabelled_files_reports_null_accuracy(model_files, image_dir, tmp_path):
    files = sorted(image_dir.rglob("*.png"))[:4]
    report = tmp_path / "r.json"
    proc = run_cli("compare", model_files["tflite"], "--images", *files, "--modes", "int8", "--no-latency",
                   "--json", report, cache_dir=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert [v["mode"] for v in data["variants"]] == ["float32", "int8"]
    assert all(v["accuracy"] is None for v in data["variants"])
    assert all(img["label"] is None for img in data["images"])


@pytest.mark.parametrize("args,pattern", [
    (["compare", "missing.keras", "--images", "x"], r"missing\.keras: no such file"),
    (["compare", "{keras}", "--images", "{images}", "--modes", "int9"], r"unknown mode 'int9'; expected one of"),
    (["compare", "{keras}", "--images", "/nonexistent/dir"], r"/nonexistent/dir: no such file"),
    (["compare", "{keras}"], r"required: --images"),
    (["compare", "{keras}", "--images", "{images}", "--calibration-count", "0"], r"calibration count must be"),
    (["compare", "{keras}", "--images", "{images}", "--threads", "0"], r"threads must be"),
    (["frobnicate"], r"invalid choice"),
    (["inspect", "{garbage}"], r"not a valid \.keras file"),
    (["inspect", "{text}"], r"unsupported model file"),
    (["quantize", "{keras}", "--mode", "int8", "-o", "{out}"], r"int8 needs calibration images"),
    (["quantize", "{keras}", "--mode", "int4", "-o", "{out}"], r"unknown mode 'int4'"),
    (["quantize", "{keras}", "--mode", "int8", "--images", "{images}", "-o", "{bad_out}"], r"must end in \.tflite"),
    (["compare", "{keras}", "--images", "{text}"], r"no usable images found"),
])
def test_bad_input_exits_2_with_one_line(args, pattern, model_files, image_dir, tmp_path):
    garbage = tmp_path / "garbage.keras"
    garbage.write_bytes(b"nope")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    values = {"keras": model_files["keras"], "images": image_dir, "garbage": garbage, "text": text,
              "out": tmp_path / "o.tflite", "bad_out": tmp_path / "o.bin"}
    proc = run_cli(*[a.format(**values) for a in args], cache_dir=tmp_path / "cache")
    assert_one_line_error(proc, pattern)


def test_lambda_model_is_refused_by_the_cli(tmp_path, image_dir):
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Flatten()(keras.layers.Lambda(lambda t: t + 1.0)(inputs))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(path)
    assert_one_line_error(run_cli("compare", path, "--images", image_dir, cache_dir=tmp_path / "c"), "Lambda layer")


def test_quantize_writes_model_and_recipe(model_files, image_dir, tmp_path):
    out = tmp_path / "q" / "tiny_int8.tflite"
    proc = run_cli("quantize", model_files["keras"], "--mode", "int8", "--images", image_dir,
                   "--calibration-count", "12", "--int8-io", "uint8", "-o", out, cache_dir=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out}") and len(proc.stdout.splitlines()) == 1
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=out.read_bytes())
    assert interp.get_input_details()[0]["dtype"].__name__ == "uint8"
    recipe = json.loads(out.with_suffix(".recipe.json").read_text())
    assert recipe["recipe"] == {"mode": "int8", "backend": "tf_converter", "calibration_count": 12,
                                "calibration_source": "images", "per_channel": True, "io_type": "uint8"}
    assert recipe["calibration_samples"] == 12


def test_inspect_json(model_files, tmp_path):
    proc = run_cli("inspect", model_files["tflite"], "--json", cache_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["num_classes"] == 3 and data["format"] == "tflite" and data["input_shape"] == [None, 16, 16, 3]
    assert set(data["modes"]) == {m.value for m in Mode}
    assert data["modes"]["dynamic_range"] == ["litert_quantizer"]


def test_help_goes_to_stdout(tmp_path):
    proc = run_cli("compare", "--help", cache_dir=tmp_path)
    assert proc.returncode == 0 and "--calibration-count" in proc.stdout and "int16x8" in proc.stdout
    words = " ".join(proc.stdout.split())  # argparse wraps help text
    assert "preferred backend where a mode has a choice" in words and "show the backends' logs" in words
    assert "engine" not in words.lower()  # one word for the converter backend


def test_internal_errors_exit_1_with_one_line(monkeypatch, capfd, model_files, image_dir):
    from quant_core import cli

    def crash(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    from quant_core.serving import jobs  # the CLI's comparison runs there (JobClient.in_process)

    monkeypatch.setattr(jobs, "run_compare", crash)
    code = cli.main(["compare", str(model_files["keras"]), "--images", str(image_dir)])
    captured = capfd.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.splitlines() == ["internal error: RuntimeError: boom (run with --verbose for details)"]


def test_quantize_without_images_checks_on_noise(model_files, tmp_path):
    out = tmp_path / "tiny_fp16.tflite"
    proc = run_cli("quantize", model_files["keras"], "--mode", "float16", "-o", out, cache_dir=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "random inputs only" in proc.stdout
    assert 0.4 < out.stat().st_size / model_files["tflite"].stat().st_size < 0.9


@pytest.mark.parametrize("flags", [["--normalization", p] for p in ("0,1", "-1,1", "0,255", "imagenet", "caffe")]
                         + [["--mean", "0.4,0.5,0.6", "--std", "0.2,0.25,0.3"]], ids=lambda f: f[1])
def test_every_normalization_round_trips_through_the_cli_and_gives_hand_written_numbers(
        flags, model_files, image_dir, tiny_model, tmp_path):
    from PIL import Image

    from conftest import HAND_WRITTEN

    report, out_dir = tmp_path / "report.json", tmp_path / "out"
    proc = run_cli("compare", model_files["keras"], "--images", image_dir, "--modes", "float32", "--no-latency",
                   "--json", report, "--out-dir", out_dir, *flags, cache_dir=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    norm = data["preprocessing"]["normalization"]
    recipe = json.loads((out_dir / "tiny_float32.recipe.json").read_text())
    assert recipe["preprocessing"] == data["preprocessing"] and data["preprocessing"]["source"] == "chosen by the user"
    if flags[0] == "--mean":
        assert norm == {"preset": "custom", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
        def by_hand(rgb):
            return (rgb / 255.0 - [0.4, 0.5, 0.6]) / [0.2, 0.25, 0.3]
    else:
        assert norm["preset"] == flags[1]
        by_hand = HAND_WRITTEN[flags[1]]
    assert data["preprocessing"]["channel_order"] == ("bgr" if flags[1] == "caffe" else "rgb")
    # The float32 variant's probabilities are the Keras model's on inputs normalized by hand.
    pixels = np.stack([np.asarray(Image.open(image_dir.parent / img["file"]).convert("RGB")) for img in data["images"]])
    expected = np.asarray(tiny_model(by_hand(pixels.astype(np.float64)).astype(np.float32), training=False))
    for k, img in enumerate(data["images"]):
        for p in img["predictions"]["float32"]:
            assert p["prob"] == pytest.approx(float(expected[k, p["index"]]), abs=1e-4)
    assert len({tuple(row) for row in expected.round(3)}) > 1  # the inputs differ per image: not a constant


@pytest.mark.parametrize(("flags", "pattern"), [
    (["--mean", "0.5"], "needs both --mean and --std"),
    (["--normalization", "custom"], "needs both --mean and --std"),
    (["--normalization", "imagenet", "--mean", "0.5", "--std", "0.5"], "drop --normalization imagenet"),
    (["--mean", "-0.5", "--std", "0"], "std values must be positive"),
    (["--mean", "a,b,c", "--std", "1"], "comma-separated numbers"),
    (["--normalization", "0..1"], "invalid choice"),
])
def test_bad_normalization_flags_are_one_line_errors(flags, pattern, model_files, image_dir, tmp_path):
    proc = run_cli("compare", model_files["keras"], "--images", image_dir, "--modes", "float32", "--no-latency",
                   *flags, cache_dir=tmp_path / "cache")
    assert_one_line_error(proc, pattern)


def run_main(*args, capfd) -> tuple[int, str, str]:
    """`python -m quant_core ARGS` in this process (no second TensorFlow import): exit code, stdout, stderr.

    sys.stdout and sys.stderr write to file descriptors 1 and 2 as in a real process (capfd
    would take Python's prints straight to its capture), so the backends' chatter meets the CLI's
    redirection and stdout holds only what the CLI writes.
    """
    from quant_core import cli

    saved = sys.stdout, sys.stderr
    with open(1, "w", closefd=False) as sys.stdout, open(2, "w", closefd=False) as sys.stderr:
        try:
            code = cli.main([str(a) for a in args])
        finally:
            sys.stdout, sys.stderr = saved
    out, err = capfd.readouterr()
    return code, out, err


def without_timings(data):
    """A report minus what differs between two identical runs (seconds, latency)."""
    if isinstance(data, dict):
        return {k: without_timings(v) for k, v in data.items() if k not in {"seconds", "build_seconds", "latency_ms"}}
    if isinstance(data, list):
        return [without_timings(v) for v in data]
    return data


def test_compare_json_path_stdout_and_the_old_spellings_give_one_report(model_files, image_dir, tmp_path, capfd,
                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)  # a '-' taken for a file name would land here
    common = ["compare", model_files["keras"], "--images", image_dir, "--modes", "int8", "--calibration-count", "4",
              "--no-latency", "--cache-dir", tmp_path / "cache"]
    new, old = tmp_path / "new" / "report.json", tmp_path / "old.json"
    runs = {"--json PATH": [*common, "--normalization", "0,255", "--json", new],
            "--report-json PATH (old)": [*common, "--value-range", "0,255", "--report-json", old],
            "--json -": [*common, "--normalization", "0,255", "--json", "-"],
            "--json": [*common, "--normalization", "0,255", "--json"]}
    reports = {}
    for name, args in runs.items():
        code, out, err = run_main(*args, capfd=capfd)
        assert code == 0 and err == "", (name, err)
        if name.endswith("PATH") or name.endswith("(old)"):  # the file, and the table still on stdout
            assert out.startswith("model: tiny (keras)") and "Which variant to ship" in out, name
            reports[name] = json.loads((new if name == "--json PATH" else old).read_text())
        else:  # stdout is the report alone, ready for a pipe
            reports[name] = json.loads(out)
    first = reports["--json PATH"]
    assert [v["mode"] for v in first["variants"]] == ["float32", "int8"] and first["verdict"]["picks"]
    assert first["preprocessing"]["normalization"]["preset"] == "0,255"
    assert {name: without_timings(r) for name, r in reports.items()} == dict.fromkeys(runs, without_timings(first))
    assert not (tmp_path / "-").exists()


def test_tune_json_path_and_stdout_give_one_search(model_files, image_dir, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ["tune", model_files["keras"], "--images", image_dir, "--max-steps", "1", "--calibration-count", "4",
              "--no-latency", "--cache-dir", tmp_path / "cache"]
    path = tmp_path / "tune" / "search.json"
    code, text, err = run_main(*common, "--json", path, capfd=capfd)
    assert code == 0, err
    assert text.startswith("budget: ") and "Winner: " in text
    searches = [json.loads(path.read_text())]
    for flags in (["--json", "-"], ["--json"]):
        code, out, err = run_main(*common, *flags, capfd=capfd)
        assert code == 0, err
        searches.append(json.loads(out))
    assert [s["steps"][0]["name"] for s in searches] == ["int8"] * 3
    assert [without_timings(s) for s in searches] == [without_timings(searches[0])] * 3
    assert not (tmp_path / "-").exists()


def test_inspect_json_flag_either_side_of_the_model_a_path_and_verbose_after_the_command(model_files, tmp_path,
                                                                                         capfd):
    model, path = model_files["tflite"], tmp_path / "out" / "describe.json"
    code, text, _ = run_main("inspect", model, capfd=capfd)
    assert code == 0 and text.startswith("name: tiny\nformat: tflite\n")
    outputs = {}
    for args in (["inspect", model, "--json"], ["inspect", "--json", model], ["inspect", model, "--json", "-"],
                 ["inspect", "--json", "-", model], ["-v", "inspect", model, "--json"],
                 ["inspect", model, "--json", "-v"]):
        code, out, err = run_main(*args, capfd=capfd)
        assert code == 0, (args, err)
        outputs[" ".join(map(str, args))] = json.loads(out)
    code, out, err = run_main("inspect", model, "--json", path, capfd=capfd)
    assert code == 0 and out == text, err  # the file gets the JSON, stdout keeps the text
    expected = json.loads(path.read_text())
    assert expected["format"] == "tflite" and expected["num_classes"] == 3
    assert outputs == dict.fromkeys(outputs, expected)
    assert run_main("inspect", "--json", capfd=capfd) == (2, "", "error: the following arguments are required: model\n")


@pytest.mark.parametrize("command", ["compare", "quantize", "tune", "inspect"])
def test_help_shows_one_spelling_per_option_and_hides_the_old_ones(command, capfd):
    code, out, _ = run_main(command, "--help", capfd=capfd)
    assert code == 0
    assert "-v, --verbose" in out  # -v works after the command too, as before it
    assert ("--json [PATH]" in out) == (command != "quantize")
    for old in ("--report-json", "--value-range", "REPORT_JSON", "OUT_DIR", "OUTPUT", "IMAGES"):
        assert old not in out, old
    if command != "inspect":
        assert "--images PATH [PATH ...]" in out
    if command in ("quantize", "tune"):
        assert "-o OUT.tflite, --output OUT.tflite" in out
