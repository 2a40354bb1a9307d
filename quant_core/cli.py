"""`python -m quant_core`: compare, quantize and inspect from the command line.

Contract: exit 0 on success; exit 2 on bad input with one `error: ...` line on stderr;
exit 1 for internal errors. stdout carries only this tool's output: the backends' chatter
(converter output) is sent to a log (shown with --verbose on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from quant_core import _quiet
from quant_core.boxes import choices
from quant_core.builders import graph_layers, match_layers
from quant_core.detection import SsdPreset
from quant_core.errors import Cancelled, InputError, QuantError, first_line
from quant_core.inputs.preprocess import (ChannelOrder, Normalization, PreprocessingOverride, Preset, ResizeMethod,
                                          parse_numbers)
from quant_core.micro import Budget
from quant_core.modes import MODE_INFO, Backend, IOType, Mode, parse_mode, parse_modes
from quant_core.outputs import AGREEMENT
from quant_core.recipe import CalibrationSource, Recipe, compile_recipes
from quant_core.results.compare_result import CompareResult
from quant_core.results.summary import ACCURACY, TOP5_ACCURACY, Unit, failure_lines, summarize
from quant_core.results.verdict import Floor, FloorKind, Verdict, agreement_text, decide
from quant_core.tasks import OutputSpec, Role, Task, parse_roles, parse_task

if TYPE_CHECKING:
    from quant_core.reference import Reference

STDOUT = "-"  # a --json PATH of "-" (or --json alone) puts the JSON on stdout instead of the text
_Commands = argparse._SubParsersAction  # what add_subparsers returns


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Values such as "-1,1" (a preset) or "-0.5,0,0.5" (a mean) are values, not options.
        self._negative_number_matcher = re.compile(r"^-[\d.,]+$")

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser.

    One spelling per option across subcommands: `--json [PATH]` writes the command's JSON to
    PATH with the text still on stdout, or, with `-` or no PATH, prints the JSON on stdout
    instead of the text; `-o/--output` names one .tflite file, `--out-dir` a folder of them.
    Old spellings stay as aliases hidden from --help.
    """
    parser = _Parser(prog="python -m quant_core",
                     description="Post-training quantization workbench for TF/Keras and TFLite image models: "
                                 "classifiers, detectors, segmenters, landmark and embedding models, any outputs.")
    _add_verbose_option(parser)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_compare_command(sub)
    _add_quantize_command(sub)
    _add_tune_command(sub)
    _add_inspect_command(sub)
    return parser


def _command(sub: _Commands, name: str, what: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help starts with what it does and takes -v/--verbose there too."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".",
                                                **kwargs)
    _add_verbose_option(p, default=argparse.SUPPRESS)
    return p


def _add_compare_command(sub: _Commands) -> None:
    modes_help = "; ".join(f"{m.value}: {MODE_INFO[m].title}" for m in Mode)
    cmp = _command(sub, "compare", "build every variant and compare them side by side")
    _add_model_argument(cmp)
    _add_images_option(cmp, required=True, text="image files, folders, .zip or .tar of any size "
                                                "(class subfolders = labels)")
    _add_executor_options(cmp)
    _add_labels_option(cmp)
    cmp.add_argument("--modes", default=",".join(m.value for m in Mode), help=f"comma-separated ({modes_help})")
    _add_threads_option(cmp)
    cmp.add_argument("--top-k", type=int, default=5, metavar="K", help="classes kept per image and variant (default 5)")
    cmp.add_argument("--no-latency", action="store_true", help="skip latency measurement")
    cmp.add_argument("--out-dir", metavar="DIR",
                     help="write each variant's .tflite, recipe JSON and recipe script (.recipe.py) here")
    _add_json_option(cmp, what="the full report", old="--report-json")
    floor = cmp.add_mutually_exclusive_group()
    floor.add_argument("--min-agreement", type=float, default=None, metavar="FRACTION",
                       help="verdict: fidelity floor as the task's agreement with float32, 0..1 (default 0.99): "
                            "top-1 agreement for a classifier, mask IoU, PCK@5%%, nearest-neighbour agreement, "
                            "or cosine similarity")
    floor.add_argument("--max-accuracy-drop", type=float, default=None, metavar="FRACTION",
                       help="verdict: fidelity floor as accuracy points lost vs float32, 0..1 (a classifier with "
                            "labels)")
    cmp.add_argument("--mcu-budget", default="512,2048", metavar="RAM_KB,FLASH_KB",
                     help="verdict: the microcontroller an integer-only variant must fit in TFLite Micro, RAM for "
                          "its tensor arena and flash for the model, in KB (default 512,2048)")
    _add_task_options(cmp)
    _add_recipe_options(cmp)
    _add_float_layer_options(cmp, compare=True)
    _add_preprocessing_options(cmp)


def _add_quantize_command(sub: _Commands) -> None:
    qnt = _command(sub, "quantize", "build one variant and write it")
    _add_model_argument(qnt)
    what = qnt.add_mutually_exclusive_group(required=True)
    what.add_argument("--mode", help=", ".join(m.value for m in Mode))
    what.add_argument("--recipe", metavar="FILE.recipe.json",
                      help="build the variant a recipe JSON describes (mode, options, preprocessing), calibrated on "
                           "the images it lists: --images gives exactly those, or the images it was made with")
    _add_images_option(qnt, required=False, text="calibration (and check) images")
    _add_output_option(qnt, required=True, text="the variant (its recipe JSON and script are written beside)")
    _add_recipe_options(qnt)
    _add_float_layer_options(qnt, compare=False)
    _add_preprocessing_options(qnt)


def _add_tune_command(sub: _Commands) -> None:
    tun = _command(sub, "tune", "search the smallest (or fastest) variant within a fidelity budget")
    _add_model_argument(tun)
    _add_images_option(tun, required=True, text="image files, folders, .zip or .tar (class subfolders = labels): "
                                                "calibration and the fidelity check")
    _add_executor_options(tun)
    _add_labels_option(tun)
    tun.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                     help="the budget, in points below float32: of accuracy with labels (of mAP@0.5, mask IoU or "
                          "PCK@5%% with --truth), else of the task's agreement with float32 (top-1 agreement, box "
                          "F1, mask IoU, PCK@5%%, ...) (default 1.0)")
    tun.add_argument("--objective", choices=["size", "latency"], default="size",
                     help="what to minimize within the budget (default size; latency measures every step)")
    tun.add_argument("--target", choices=["cpu", "gpu", "integer-only"], default="cpu",
                     help="where the winner will run, as in the verdict (default cpu): cpu searches every mode and "
                          "int8 with layers kept in float; gpu float16; integer-only int8 and int16x8 whose ops are "
                          "all integer")
    tun.add_argument("--no-latency", action="store_true",
                     help="time nothing (the winner is then not checked against float32's speed)")
    tun.add_argument("--max-steps", type=int, default=12, metavar="N",
                     help="at most this many recipes are built (default 12)")
    _add_threads_option(tun)
    _add_json_option(tun, what="the search (every step and the winner)")
    _add_output_option(tun, required=False, text="write the winner here (its recipe JSON beside)")
    _add_task_options(tun)
    _add_recipe_options(tun)
    _add_preprocessing_options(tun)


def _add_inspect_command(sub: _Commands) -> None:
    # MODEL is optional to argparse only so that `inspect --json MODEL` (from when --json was a flag) still
    # reads MODEL: --json takes it as its PATH and _inspect_target gives it back; the usage says MODEL is needed.
    ins = _command(sub, "inspect", "describe a model",
                   usage="%(prog)s [-h] [-v] [--json [PATH]] [--images PATH ...] [--task TASK] [--roles ROLES] "
                         "model")
    _add_model_argument(ins, nargs="?")
    _add_json_option(ins, what="the description")
    _add_images_option(ins, required=False, text="images to run the model on: each output is then described (what "
                                                 "it holds and its values), not only its shape")
    _add_task_options(ins)
    ins.add_argument("--cache-dir", metavar="DIR",
                     help="cache folder (default $QUANT_CACHE_DIR or ~/.cache/quant-workbench)")
    _add_preprocessing_options(ins)


def _add_task_options(p: argparse.ArgumentParser) -> None:
    tasks = ", ".join(t.value for t in Task)
    p.add_argument("--task", metavar="TASK",
                   help=f"what the model does, when the inferred task is wrong: {tasks} (default: inferred from "
                        "its outputs on the images)")
    p.add_argument("--roles", metavar="NAME=ROLE[,...]",
                   help="what an output holds, when the inferred role is wrong: an output index or name = "
                        f"{', '.join(r.value for r in Role)}; e.g. 0=mask,conv2d_31=score")
    p.add_argument("--decoder", metavar="DECODER", default="",
                   help="how a detector's outputs become boxes, when the inferred decoder is wrong or none could be "
                        "inferred: ssd:<preset> (" + ", ".join(p.value for p in SsdPreset) + "), 'ssd:custom "
                        "strides=8,16,16,16 keypoints=6 ...' (MediaPipe's SsdAnchorsCalculator options), yolo "
                        "(optionally yolo:classes=80,layout=channels_first), or postprocess")
    if p.prog.split()[-1] != "inspect":
        p.add_argument("--truth", metavar="PATH", nargs="+", default=[],
                       help="ground truth: a segmentation model's PNG masks named like the images (files or "
                            "folders); a landmark model's JSON file {\"image name\": [[x, y], ...]}; a detector's "
                            "COCO .json file or YOLO .txt files (or their folder); the variants are then also "
                            "scored against it (mask IoU, PCK@5%%, or mAP@0.5 and mAP@0.5:0.95)")


def _task_choices(args: argparse.Namespace) -> tuple[Task | None, tuple[tuple[str, Role], ...]]:
    """--task and --roles, checked before any work (one-line errors naming the valid choices)."""
    task = parse_task(args.task) if args.task else None
    roles = parse_roles(args.roles) if args.roles else {}
    return task, tuple((str(key), role) for key, role in roles.items())


def _labels_unused(args: argparse.Namespace, task: Task, err: TextIO) -> None:
    """Warns on stderr that --labels says nothing about a model that is not a classifier."""
    if getattr(args, "labels", None) and task is not Task.CLASSIFICATION:
        err.write(f"warning: --labels not used: the model's task is {task.value}, not classification\n")


def _add_verbose_option(p: argparse.ArgumentParser, *, default: object = False) -> None:
    # Under a subcommand the default is SUPPRESS, so `-v compare ...` is not reset by the subcommand's parser.
    p.add_argument("-v", "--verbose", action="store_true", default=default,
                   help="show the backends' logs (converter output) on stderr")


def _add_model_argument(p: argparse.ArgumentParser, *, nargs: str | None = None) -> None:
    p.add_argument("model", nargs=nargs, help=".keras, .h5, .tflite, SavedModel folder or .zip")


def _add_images_option(p: argparse.ArgumentParser, *, required: bool, text: str) -> None:
    p.add_argument("--images", nargs="+", required=required, default=[], metavar="PATH", help=text)


def _add_labels_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", metavar="FILE", help="class names: text file (one per line) or JSON")


def _add_threads_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=1, metavar="N", help="interpreter threads (default 1)")


def _add_output_option(p: argparse.ArgumentParser, *, required: bool, text: str) -> None:
    p.add_argument("-o", "--output", required=required, metavar="OUT.tflite", help=text)


def _add_json_option(p: argparse.ArgumentParser, *, what: str, old: str | None = None) -> None:
    """--json [PATH] (the one spelling), and an old spelling that takes a PATH, hidden from --help."""
    p.add_argument("--json", nargs="?", const=STDOUT, metavar="PATH",
                   help=f"write {what} as JSON to PATH, the text still on stdout; '-' or no PATH: "
                        "the JSON on stdout instead of the text")
    if old:
        p.add_argument(old, dest="json", metavar="PATH", help=argparse.SUPPRESS)


def _write_json(data: dict, path: str, out: TextIO) -> None:
    """The JSON to PATH (its folder created), or to stdout for `-`."""
    text = json.dumps(data, indent=2) + "\n"
    if path == STDOUT:
        out.write(text)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def _text_wanted(args: argparse.Namespace) -> bool:
    """The human-readable output goes to stdout unless the JSON does."""
    return args.json != STDOUT


def _add_recipe_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration-count", type=int, default=100, metavar="N", help="calibration images (default 100)")
    p.add_argument("--calibration-source", choices=[c.value for c in CalibrationSource], default="images",
                   help="'random' is a what-if that shows why real images matter")
    p.add_argument("--backend", choices=[b.value for b in Backend], help="preferred backend where a mode has a choice")
    p.add_argument("--int8-io", choices=[IOType.INT8.value, IOType.UINT8.value], default=None, help="I/O type of int8")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor instead of per-channel weights")
    p.add_argument("--cache-dir", metavar="DIR",
                   help="cache folder (default $QUANT_CACHE_DIR or ~/.cache/quant-workbench)")


def _add_float_layer_options(p: argparse.ArgumentParser, *, compare: bool) -> None:
    what = ("adds the variant MODE+Nfloat beside --modes (MODE: --float-layers-mode)" if compare else
            "with a calibrated --mode: int8, int8_float_io or int16x8")
    p.add_argument("--float-layers", action="append", metavar="NAME[,NAME...]",
                   help="keep these layers in float, the rest quantized: Keras layer names (as the app's Layers page "
                        f"lists them) or tensor names (a recipe JSON's float_layers); {what}")
    if compare:
        p.add_argument("--float-layers-mode", metavar="MODE",
                       help="the calibrated mode --float-layers applies to (default int8; int8_float_io, int16x8)")


def _add_preprocessing_options(p: argparse.ArgumentParser) -> None:
    presets = "; ".join(f"{n.value}: {n.description}" for n in Preset)
    choices = [n.value for n in Preset]
    p.add_argument("--normalization", choices=choices, help=f"override the inferred input normalization ({presets})")
    p.add_argument("--value-range", dest="normalization", choices=choices, help=argparse.SUPPRESS)  # the old spelling
    p.add_argument("--mean", metavar="M[,M,M]",
                   help="custom per-channel mean in units of x/255, e.g. 0.485,0.456,0.406 (with --std)")
    p.add_argument("--std", metavar="S[,S,S]",
                   help="custom per-channel std in units of x/255, e.g. 0.229,0.224,0.225 (with --mean)")
    p.add_argument("--resize", choices=[r.value for r in ResizeMethod])
    p.add_argument("--channel-order", choices=[c.value for c in ChannelOrder])
    p.add_argument("--center-crop", action="store_true", default=None)


def _recipes(modes: Sequence[Mode], args: argparse.Namespace) -> tuple[Recipe, ...]:
    """The recipes for these modes from the command-line options."""
    return compile_recipes(modes, backend=Backend(args.backend) if args.backend else None,
                           calibration_count=args.calibration_count,
                           calibration_source=CalibrationSource(args.calibration_source),
                           per_channel=not args.per_tensor, int8_io=IOType(args.int8_io) if args.int8_io else None)


def _float_layer_recipe(args: argparse.Namespace, mode: Mode) -> Recipe | None:
    """`mode` with --float-layers kept in float, each name matched in the model's graph; None without the option.

    Raises:
        InputError: a mode that quantizes no activations, or a name that is no layer of this model.
    """
    if not args.float_layers:
        if getattr(args, "float_layers_mode", None):
            raise InputError("--float-layers-mode says which mode --float-layers applies to: give --float-layers too")
        return None
    wanted = tuple(name.strip() for value in args.float_layers for name in value.split(",") if name.strip())
    if not wanted:
        raise InputError("--float-layers needs at least one layer name")
    recipe = replace(_recipes([mode], args)[0], float_layers=wanted)  # a mode without activations fails here, early
    return replace(recipe, float_layers=match_layers(wanted, _model_layers(args)))


def _model_layers(args: argparse.Namespace) -> tuple[str, ...]:
    """The layers of the model's float graph (its float .tflite comes from the cache when converted before)."""
    from quant_core.compare import float_tflite  # pylint: disable=import-outside-toplevel
    from quant_core.inputs.models import load_model  # pylint: disable=import-outside-toplevel

    if not Path(args.model).exists():
        raise InputError(f"{args.model}: no such file or folder")
    return graph_layers(float_tflite(load_model(args.model), _cache(args)))


def _override(args: argparse.Namespace) -> PreprocessingOverride:
    return PreprocessingOverride(normalization=_normalization(args), resize=args.resize,
                                 channel_order=args.channel_order, center_crop=args.center_crop)


def _normalization(args: argparse.Namespace) -> Normalization | None:
    """--normalization, or --mean/--std (the custom preset); None keeps the inferred one."""
    custom = args.mean is not None or args.std is not None
    if custom and args.normalization not in (None, Preset.CUSTOM.value):
        raise InputError(f"--mean/--std define a custom normalization; drop --normalization {args.normalization}")
    if custom or args.normalization == Preset.CUSTOM.value:
        if args.mean is None or args.std is None:
            raise InputError("a custom normalization needs both --mean and --std, e.g. "
                             "--mean 0.485,0.456,0.406 --std 0.229,0.224,0.225")
        return Normalization.custom(parse_numbers(args.mean, name="--mean"), parse_numbers(args.std, name="--std"))
    return None if args.normalization is None else Normalization.of(args.normalization)


def _cache(args: argparse.Namespace):
    from quant_core.cache import ArtifactCache  # pylint: disable=import-outside-toplevel
    return ArtifactCache(Path(args.cache_dir) if args.cache_dir else None)


def cmd_compare(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Runs the comparison and prints a table."""
    from quant_core.compare import CompareOptions, CompareRequest  # pylint: disable=import-outside-toplevel
    from quant_core.serving.client import JobClient  # pylint: disable=import-outside-toplevel
    from quant_core.serving.protocol import CompareJob, Place  # pylint: disable=import-outside-toplevel
    from quant_core.results.dataset_compare import describe  # pylint: disable=import-outside-toplevel
    from quant_core.serving.dataset_evaluation import compare_on_dataset  # pylint: disable=import-outside-toplevel
    from quant_core.inputs.images import read_labels_file  # pylint: disable=import-outside-toplevel
    from quant_core.results.report import kernel_lines, report_dict  # pylint: disable=import-outside-toplevel

    floor, budget = _floor(args), _budget(args)
    task, roles = _task_choices(args)
    kept = _float_layer_recipe(args, parse_mode(args.float_layers_mode or Mode.INT8.value))
    options = CompareOptions(recipes=_recipes(parse_modes(args.modes), args) + ((kept,) if kept else ()),
                             threads=args.threads, top_k=args.top_k, preprocessing=_override(args),
                             measure_latency=not args.no_latency, task=task, roles=roles,
                             truth=tuple(args.truth), decoder=args.decoder)
    cache = _cache(args)
    evaluation = None
    dataset = _whole_set(args)
    if dataset is None:
        request = CompareRequest(args.model, tuple(args.images), args.labels, options)
        result = JobClient.in_process().run(CompareJob(request, Place.of(cache, None)), on_progress=_log_progress)
    else:
        executor = _executor(args)
        try:  # Ray prints what its cluster reports (a node lost) to stdout, which is the tool's own
            with _quiet.stdout_to_stderr():
                result, evaluation = compare_on_dataset(
                    args.model, dataset, options, executor=executor, sample=_sample(args),
                    class_names=read_labels_file(args.labels) if args.labels else None, cache=cache,
                    on_progress=_log_progress, on_evaluation=_log_progress)
        finally:
            executor.close()
    _labels_unused(args, result.task, err)
    paths = result.save(Path(args.out_dir), cache) if args.out_dir else None
    if args.json:
        report = report_dict(result, tflite_paths=paths, floor=floor, budget=budget)
        if evaluation is not None:
            report["evaluation"] = evaluation.to_dict()
        _write_json(report, args.json, out)
    if _text_wanted(args):
        out.write(format_table(result))
        if evaluation is not None:
            measure = "agreement, accuracy and output error" if result.task is Task.CLASSIFICATION else \
                AGREEMENT[result.task][0]
            out.write(f"whole set: {describe(evaluation)}; {measure} above {'are' if ',' in measure else 'is'} on "
                      "it, the rest on the sample\n")
        out.write(format_verdict(decide(result, floor=floor, budget=budget)))
        kernels = kernel_lines(result)
        if kernels:
            measure = "top-1 agreement" if result.task is Task.CLASSIFICATION else AGREEMENT[result.task][0]
            out.write(f"\nOn other kernels than XNNPACK ({measure} with float32; integer-only variants also in "
                      "TFLite Micro, which the integer-only pick uses):\n" + "\n".join(kernels) + "\n")
    for s in (evaluation or result).skipped:
        err.write(f"warning: skipped {s.name}: {s.reason}\n")
    return _evaluation_outcome(evaluation, err)


def _evaluation_outcome(evaluation: Any, err: TextIO) -> int:
    """What the run overcame (a node lost, a hung task) as warnings; a run that stopped early as the exit code."""
    for incident in evaluation.incidents if evaluation is not None else ():
        err.write(f"warning: {incident}\n")
    if evaluation is None or not evaluation.cancelled:
        return 0
    if evaluation.stopped_because:
        err.write(f"error: {evaluation.stopped_because}; the numbers above cover the {evaluation.evaluated:,} "
                  f"images evaluated of {len(evaluation.images):,}\n")
        return 1
    err.write("error: interrupted; the numbers above cover the images evaluated so far\n")
    return 130


def _log_progress(message: Any) -> None:
    """A job's progress message (quant_core.serving.protocol.Message) on the progress log (stderr with -v)."""
    fraction = getattr(message, "fraction", None)
    log = logging.getLogger("quant_core.progress")
    if fraction is None:
        log.info("%s", message.message)
    else:
        log.info("%3.0f%% %s", 100 * fraction, message.message)


def _sample(args: argparse.Namespace) -> int:
    """--sample, checked (default: quant_core.serving.dataset_evaluation.SAMPLE_IMAGES)."""
    from quant_core.serving.dataset_evaluation import SAMPLE_IMAGES  # pylint: disable=import-outside-toplevel

    sample = SAMPLE_IMAGES if args.sample is None else args.sample
    if sample < 1:
        raise InputError(f"--sample is a number of images, at least 1; got {sample}")
    return sample


def _executor_kind(args: argparse.Namespace) -> str:
    from quant_core.config import config  # pylint: disable=import-outside-toplevel

    return args.executor or config().executor


def _executor(args: argparse.Namespace):
    from quant_core.serving.executors import make_executor  # pylint: disable=import-outside-toplevel

    return make_executor(_executor_kind(args), address=args.ray_address)


def _whole_set(args: argparse.Namespace):
    """The --images as a streamed Dataset when they are to be scored by an executor, else None (in memory).

    Streamed: an executor other than local is asked for, the set has more than --sample
    images, or it is a .tar (uploads and the in-memory path take no .tar). Otherwise files the
    listing cannot use are left for the in-memory path to report, in its own words.
    """
    from quant_core.inputs.datasets import Container, open_dataset  # pylint: disable=import-outside-toplevel

    sample = _sample(args)
    if not Path(args.model).exists():
        raise InputError(f"{args.model}: no such file or folder")
    asked = _executor_kind(args) != "local" or args.ray_address is not None
    try:
        dataset = open_dataset(tuple(args.images))
    except QuantError:
        if asked:
            raise
        return None
    streamed = asked or len(dataset) > sample or any(e.container is Container.TAR for e in dataset.entries)
    return dataset if streamed else None


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="where the whole set is evaluated: this process or Ray (default $QW_EXECUTOR or local); "
                        "ray, or more images than --sample, scores every variant on every image")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="a Ray cluster to join (default $QW_RAY_ADDRESS; none: a local Ray on this machine's CPUs)")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="images kept in memory for calibration, checks, latency and per-image detail when the "
                        "whole set is evaluated by an executor (default 500)")


def _budget(args: argparse.Namespace) -> Budget:
    """The microcontroller budget from --mcu-budget RAM_KB,FLASH_KB (checked before any work)."""
    parts = str(args.mcu_budget).split(",")
    try:
        ram, flash = (int(float(v) * 1024) for v in parts)
    except ValueError:
        raise InputError(f"--mcu-budget {args.mcu_budget!r}: expected RAM_KB,FLASH_KB, e.g. 512,2048") from None
    return Budget(ram, flash)


def _floor(args: argparse.Namespace) -> Floor:
    """The verdict's fidelity floor from --min-agreement / --max-accuracy-drop (checked before any work)."""
    if args.max_accuracy_drop is not None:
        return Floor(FloorKind.ACCURACY_DROP, args.max_accuracy_drop)
    return Floor(FloorKind.AGREEMENT, 0.99 if args.min_agreement is None else args.min_agreement)


def format_verdict(verdict: Verdict) -> str:
    """The verdict as plain text: one line per target."""
    lines = ["", f"Which variant to ship ({verdict.floor_label}):"]
    lines += [f"  {p.target.heading}: {p.variant or 'none fits'}. {p.reason}" for p in verdict.picks]
    if verdict.note:
        lines.append(f"  Note: {verdict.note}")
    return "\n".join(lines) + "\n"


def format_table(result: CompareResult) -> str:
    """A CompareResult in plain text: the summary columns (quant_core.results.summary) as the app shows them."""
    m = result.model
    source = ""
    if result.source_accuracy is not None:
        source = f", source model accuracy {ACCURACY.format_number(result.source_accuracy)}"
        if result.has_top5 and result.source_top5_accuracy is not None:
            source += f" (top-5 {TOP5_ACCURACY.format_number(result.source_top5_accuracy)})"
    classifier = result.task is Task.CLASSIFICATION
    what = f"{m.num_classes} classes" if classifier else \
        f"{len(result.output_specs)} output{'s' * (len(result.output_specs) != 1)}"
    lines = [
        f"model: {m.name} ({m.format.value}), input {list(m.input_shape)}, {what}, {m.param_count:,} params",
        *([] if classifier else _task_lines(result.task, result.output_specs)),
        *([f"decoder: {result.decoder.choice}: {result.decoder.description}; boxes kept at score >= "
           f"{result.decoder.threshold:g}"] if result.decoder is not None else []),
        f"preprocessing: {result.preprocessing.normalization.label}, {result.preprocessing.resize.value} "
        f"resize ({result.preprocessing.source})",
        f"images: {_images_line(result)}" + (f" ({result.labels_source}){source}" if classifier else ""),
        "",
    ]
    table = summarize(result)
    cells = [[c.title for c in table.columns]] + [[table.text(r, c) for c in table.columns] for r in table.rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(table.columns))]
    for row in cells:
        padded = [text.ljust(w) if c.unit is Unit.TEXT else text.rjust(w)
                  for text, w, c in zip(row, widths, table.columns)]
        lines.append("  ".join(padded).rstrip())
    if failures := failure_lines(result):  # whole reasons beneath the table: a column of them would stretch every row
        lines += ["", *failures]
    return "\n".join(lines) + "\n"


def _task_lines(task: Task, specs: Sequence[OutputSpec]) -> list[str]:
    """The task with what its agreement means, then each output's one-line description."""
    title, explanation = AGREEMENT[task]
    return [f"task: {task.value} ({title}: {explanation})", "outputs:", *(f"  {s.description}" for s in specs)]


def _images_line(result: CompareResult) -> str:
    if result.scored_images is None:
        return str(len(result.images))
    return f"{result.scored_images:,} scored, a sample of {len(result.images)} for calibration, latency and detail"


def cmd_quantize(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Builds one variant, checks it on the images when given, and writes it."""
    from quant_core.quantize import quantize_file  # pylint: disable=import-outside-toplevel

    if args.recipe:
        return _quantize_recipe(args, out, err)
    mode = parse_mode(args.mode)
    recipe = _float_layer_recipe(args, mode) or _recipes([mode], args)[0]
    summary = quantize_file(args.model, recipe, images=tuple(args.images), output=Path(args.output),
                            preprocessing=_override(args), cache=_cache(args))
    out.write(summary + "\n")
    return 0


def _quantize_recipe(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`quantize --recipe`: the recipe JSON's variant, calibrated on exactly its images, and whether it is its bytes."""
    import hashlib  # pylint: disable=import-outside-toplevel

    from quant_core.cache import content_sha256  # pylint: disable=import-outside-toplevel
    from quant_core.inputs.images import ImageSet, load_images  # pylint: disable=import-outside-toplevel
    from quant_core.quantize import quantize_file  # pylint: disable=import-outside-toplevel
    from quant_core.recipe_code import RecipeRecord, calibration_set  # pylint: disable=import-outside-toplevel

    _refuse_recipe_options(args)
    path = Path(args.recipe)
    record = RecipeRecord.read(path)
    if not Path(args.model).exists():
        raise InputError(f"{args.model}: no such file or folder")
    if content_sha256(Path(args.model)) != record.model_sha256:
        err.write(f"warning: {args.model} is not the model {path.name} was made from; the bytes will differ\n")
    images: tuple[str, ...] | ImageSet = tuple(args.images)
    if record.calibrates_on_images:
        if not args.images:
            raise InputError(f"{path.name} calibrates on {len(record.calibration_images)} images: pass them with "
                             "--images")
        images = calibration_set(record, load_images(tuple(args.images)))
    output = Path(args.output)
    summary = quantize_file(args.model, record.recipe, images=images, output=output,
                            preprocessing=record.preprocessing, cache=_cache(args))
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    same = ("the recipe's bytes" if digest == record.tflite_sha256 else
            f"not the recipe's bytes (sha256 {(record.tflite_sha256 or '?')[:16]}..., built by {record.built_by})")
    out.write(f"{summary}; {same}\n")
    return 0


def _refuse_recipe_options(args: argparse.Namespace) -> None:
    """--recipe sets the mode, its options and the preprocessing: the options that would change them are refused."""
    given = {"--backend": args.backend, "--int8-io": args.int8_io, "--per-tensor": args.per_tensor,
             "--calibration-count": args.calibration_count != 100,
             "--calibration-source": args.calibration_source != CalibrationSource.IMAGES.value,
             "--float-layers": args.float_layers, "--normalization": args.normalization, "--mean": args.mean,
             "--std": args.std, "--resize": args.resize, "--channel-order": args.channel_order,
             "--center-crop": args.center_crop}
    chosen = [option for option, value in given.items() if value]
    if chosen:
        raise InputError(f"--recipe sets the mode, its options and the preprocessing; drop {', '.join(chosen)}")


def cmd_tune(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Runs the accuracy-budget search and prints its trail and winner."""
    from quant_core.tune import (  # pylint: disable=import-outside-toplevel
        TARGETS, Objective, Step, TuneResult, budget_of, tune)

    options = _tune_options(args)
    objective, target = Objective(args.objective), TARGETS[args.target]
    bench, scorer = _tune_workbench(args, options)
    _labels_unused(args, bench.reference.task, err)
    budget = budget_of(args.max_drop, task=bench.reference.task,
                       labelled=bench.labels.known or bool(bench.reference.truth_source))
    progress = logging.getLogger("quant_core.progress")
    steps: list[Step] = []
    start = time.perf_counter()
    try:
        with _quiet.stdout_to_stderr() if scorer is not None else contextlib.nullcontext():  # Ray's prints
            result = tune(bench, budget, objective=objective, target=target, base=options.recipes[-1],
                          max_steps=args.max_steps, on_progress=lambda p: progress.info("%s", p.message),
                          on_step=steps.append, scorer=scorer)
    except (KeyboardInterrupt, Cancelled):  # Ctrl-C: the steps measured so far, their best, and exit 130
        result = TuneResult.of(budget, objective, steps, target=target, cancelled=True,
                               seconds=time.perf_counter() - start, task=bench.reference.task)
    finally:
        if scorer is not None:
            scorer.executor.close()
    _write_tune(args, result, bench, scorer, out, task=bench.reference.task)
    if result.cancelled:
        err.write("error: interrupted; the steps so far and their best are above\n")
        return 130
    return 0


def _tune_options(args: argparse.Namespace):
    """The search's CompareOptions, once --max-drop, --output and the objective are checked (before any work)."""
    from quant_core.compare import CompareOptions  # pylint: disable=import-outside-toplevel
    from quant_core.tune import Objective  # pylint: disable=import-outside-toplevel

    if not 0.0 <= args.max_drop <= 100.0:
        raise InputError(f"--max-drop is in points from 0 to 100, got {args.max_drop}")
    if args.output and not args.output.endswith(".tflite"):
        raise InputError(f"{args.output}: the output file must end in .tflite")
    if Objective(args.objective) is Objective.LATENCY and args.no_latency:
        raise InputError("the latency objective measures latency: drop --no-latency")
    task, roles = _task_choices(args)
    return CompareOptions(recipes=_recipes([Mode.INT8], args), threads=args.threads,
                          preprocessing=_override(args), measure_latency=not args.no_latency, task=task, roles=roles,
                          truth=tuple(args.truth), decoder=args.decoder)


def _tune_workbench(args: argparse.Namespace, options):
    """The workbench the search builds on and, for a whole set, the DatasetScorer judging each step on every image.

    Returns:
        (workbench, scorer or None); the scorer's executor is the caller's to close.
    """
    from quant_core.compare import Workbench  # pylint: disable=import-outside-toplevel
    from quant_core.inputs.images import load_images, read_labels_file  # pylint: disable=import-outside-toplevel
    from quant_core.serving.dataset_evaluation import DatasetScorer, open_sampled  # pylint: disable=import-outside-toplevel

    class_names = read_labels_file(args.labels) if args.labels else None
    dataset = _whole_set(args)
    if dataset is None:
        bench = Workbench.open(args.model, load_images(tuple(args.images)), class_names=class_names,
                               options=options, cache=_cache(args))
        return bench, None
    # built on a sample, each step judged on every image
    bench = open_sampled(args.model, dataset, options, sample=_sample(args), class_names=class_names,
                         cache=_cache(args))
    scorer = DatasetScorer(bench, dataset, _executor(args),
                           on_evaluation=lambda p: logging.getLogger("quant_core.progress").info("%s", p.message))
    return bench, scorer


def _write_tune(args: argparse.Namespace, result, bench, scorer, out: TextIO, *,
                task: Task = Task.CLASSIFICATION) -> None:
    """The search's JSON (with the whole set's last pass), the winner's files and the text, as the options ask."""
    from quant_core.results.compare_result import write_files  # pylint: disable=import-outside-toplevel
    from quant_core.results.dataset_compare import describe  # pylint: disable=import-outside-toplevel

    whole = describe(scorer.passes[-1]) if scorer is not None and scorer.passes else None
    if args.json:
        _write_json(result.to_dict() | ({"whole_set": whole, "whole_set_passes": len(scorer.passes)}
                                        if scorer is not None else {}), args.json, out)
    best = result.best
    if args.output and best is not None:
        path = Path(args.output)
        write_files(path.parent, best.variant.files(path.stem, bench.source.info, bench.preprocessing, bench.cache))
    if _text_wanted(args):
        out.write(format_tune(result, task=task))
        if whole is not None:
            out.write(f"every step scored on the whole set (one pass each, float32 beside it); last pass: {whole}\n")


def format_tune(result, *, task: Task = Task.CLASSIFICATION) -> str:
    """The search's trail, one line per step, and its winner (said when it runs far slower than float32).

    A model that is not a classifier is measured by its task's agreement (`outputs.AGREEMENT`).
    """
    from quant_core.tune import no_winner_advice, target_name  # pylint: disable=import-outside-toplevel

    lines = [f"budget: {result.budget.label_for(task)}; objective: smallest {result.objective.value}; "
             f"target: {target_name(result.target)} ({result.target.heading})", ""]
    for k, step in enumerate(result.steps, 1):
        v = step.variant
        if not v.ok:
            lines.append(f"{k:2d}. {v.name}: failed ({v.error})")
            continue
        agreement = f"{step.measure if task is not Task.CLASSIFICATION else AGREEMENT[task][0]} " \
            f"{_agreement_number(task, v.top1_agreement)}"
        fidelity = agreement if v.accuracy is None else f"{step.truth} {ACCURACY.format_number(v.accuracy)}" + (
            f" ({agreement})" if task is not Task.CLASSIFICATION else "")
        latency = f", {step.latency_ms:.2f} ms" if step.latency_ms is not None else ""
        mark = "within" if step.within_budget else "outside"
        lines.append(f"{k:2d}. {v.name}: {fidelity}, {(v.size_bytes or 0):,} bytes{latency}; {mark} the budget. "
                     f"Tried: {step.why}")
    best = result.best
    lines.append("")
    if best is None:
        lines.append("No recipe could be built.")
    elif result.met:
        lines.append(f"Winner: {best.name} (step {result.winner + 1}), within the budget.")
    else:
        lines.append(f"No recipe met the budget{' (cancelled)' if result.cancelled else ''}; the most faithful: "
                     f"{best.name} (step {result.winner + 1}). {no_winner_advice(result.target)}")
    if result.speed_note:
        lines.append(f"Note: {result.speed_note}")
    if result.note:
        lines.append(f"Stopped short: {result.note}")
    return "\n".join(lines) + "\n"


def _agreement_number(task: Task, value: float | None) -> str:
    """A classifier's agreement as the tables print it ("95.8%"); another task's as the verdict writes it."""
    return ACCURACY.format_number(value) if task is Task.CLASSIFICATION else agreement_text(task, value)


def cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Prints what the workbench understands about a model; with --images, what each of its outputs holds."""
    from quant_core.quantize import describe_model  # pylint: disable=import-outside-toplevel
    from quant_core.results.report import output_spec_dict  # pylint: disable=import-outside-toplevel

    model, json_path = _inspect_target(args)
    task_choices = _task_choices(args)
    if not args.images and any(task_choices):
        raise InputError("--task and --roles are checked against the model's outputs on images: give --images too")
    data = describe_model(model)
    if getattr(args, "decoder", "") and not args.images:
        raise InputError("--decoder is checked against the model's outputs on images: give --images too")
    reference = _described_outputs(args, model, *task_choices) if args.images else None
    described = (reference.task, reference.specs) if reference is not None else None
    if reference is not None:
        data |= {"task": reference.task.value, "output_specs": [output_spec_dict(s) for s in reference.specs]}
        if reference.decoder is not None:
            data |= {"decoder": {"choice": reference.decoder.choice, "description": reference.decoder.description,
                                 "choices": list(choices(reference.specs))}}
    if json_path:
        _write_json(data, json_path, out)
    if json_path != STDOUT:
        for key, value in data.items():
            if key not in ("task", "output_specs", "decoder"):
                out.write(f"{key}: {value}\n")
        out.write("\n".join(_task_lines(*described) if described else _output_shapes(data)) + "\n")
        if reference is not None and reference.decoder is not None:
            out.write(f"decoder: {reference.decoder.choice}: {reference.decoder.description}\n")
    return 0


def _output_shapes(data: dict[str, Any]) -> list[str]:
    """Each output's name and shape (what can be said without running the model on images)."""
    names, shapes = data.get("output_names") or (), data.get("outputs") or ()
    shown = ("[" + ",".join("?" if d is None else str(d) for d in shape) + "]" for shape in shapes)
    return ["outputs (shapes only; give --images to read what each holds):",
            *(f"  {name} {shape}" for name, shape in zip(names, shown))]


def _described_outputs(args: argparse.Namespace, model: str, task: Task | None,
                       roles: tuple[tuple[str, Role], ...]) -> Reference:
    """The model's task and what each output holds, from the float model's outputs on the images."""
    from quant_core.compare import CompareOptions, Workbench  # pylint: disable=import-outside-toplevel
    from quant_core.inputs.images import load_images  # pylint: disable=import-outside-toplevel

    options = CompareOptions(recipes=(Recipe(Mode.FLOAT32),), preprocessing=_override(args), measure_latency=False,
                             task=task, roles=roles, decoder=args.decoder)
    bench = Workbench.open(model, load_images(tuple(args.images)), options=options, cache=_cache(args))
    return bench.reference


def _inspect_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The model and where its JSON goes; `inspect --json MODEL` reads MODEL, as when --json was a flag."""
    if args.model is not None:
        return args.model, args.json
    if args.json in (None, STDOUT):
        raise InputError("the following arguments are required: model")
    return args.json, STDOUT


def _parse(argv: Sequence[str] | None, out: TextIO) -> argparse.Namespace | int:
    """Parses arguments with --help going to the real stdout; an int is an exit code."""
    saved, sys.stdout = sys.stdout, out
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.stdout = saved


_COMMANDS = {"compare": cmd_compare, "quantize": cmd_quantize, "tune": cmd_tune, "inspect": cmd_inspect}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code.

    While a command runs, file descriptors 1 and 2 point at a log file (or stderr with
    --verbose) so that the backends' output cannot reach stdout; the tool writes its own output
    to saved copies of the real descriptors, which are restored on return.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in args_list or "--verbose" in args_list
    _quiet.silence_tf_logging()
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    out = os.fdopen(os.dup(saved_out), "w", buffering=1)
    err = os.fdopen(os.dup(saved_err), "w", buffering=1)
    log_file = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - fds 1 and 2 point at it until `finally`
    os.dup2(saved_err if verbose else log_file.fileno(), 1)
    os.dup2(saved_err if verbose else log_file.fileno(), 2)
    diagnostics = err if verbose else log_file
    handler = logging.StreamHandler(diagnostics)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        args = _parse(args_list, out)
        if isinstance(args, int):
            return args
        return _COMMANDS[args.command](args, out, err)
    except QuantError as e:
        err.write(f"error: {e}\n")
        return 2
    except KeyboardInterrupt:
        err.write("error: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, details in the log
        traceback.print_exc(file=diagnostics)
        err.write(f"internal error: {type(e).__name__}: {first_line(e)} (run with --verbose for details)\n")
        return 1
    finally:
        root.removeHandler(handler)
        sys.stdout.flush()
        sys.stderr.flush()
        out.close()
        err.close()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        log_file.close()
