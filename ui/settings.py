"""The quantization choices of the Quantize page, how the model's outputs are read (Model & data), and their
round-trip through a share link."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from quant_core import Backend, CalibrationSource, IOType, Mode, Recipe
from quant_core.errors import InputError, parse_choice
from quant_core.inputs import parse_json
from quant_core.modes import parse_modes
from quant_core.recipe import compile_recipes
from quant_core.tasks import (OutputSpec, Role, Task, parse_roles, parse_task, task_of, with_roles,
                              with_task)


@dataclass(frozen=True)
class Settings:
    """What to build. Each field maps to one control on the Quantize page."""

    modes: tuple[Mode, ...] = tuple(Mode)
    calibration_count: int = 100
    calibration_source: CalibrationSource = CalibrationSource.IMAGES
    per_channel: bool = True
    int8_io: IOType = IOType.INT8
    backend: Backend | None = None  # None: each mode's preferred backend
    threads: int = 1
    # Extra variants from the Layers page: a calibrated mode with these layers (output tensor names) in float.
    float_layers: tuple[tuple[Mode, tuple[str, ...]], ...] = ()

    def recipes(self) -> tuple[Recipe, ...]:
        """One recipe per selected mode, then the float-layer variants (quant_core's compiler; raises InputError)."""
        def compile_for(modes: tuple[Mode, ...]) -> tuple[Recipe, ...]:
            return compile_recipes(modes, backend=self.backend, calibration_count=self.calibration_count,
                                   calibration_source=self.calibration_source, per_channel=self.per_channel,
                                   int8_io=self.int8_io)
        extras = tuple(replace(compile_for((mode,))[0], float_layers=names) for mode, names in self.float_layers)
        return compile_for(self.modes) + extras

    def with_float_layers(self, mode: Mode, names: tuple[str, ...]) -> Settings:
        """These settings plus one variant of `mode` with `names` kept in float (the same set is not added twice)."""
        entry = (mode, tuple(sorted(set(names))))
        return self if entry in self.float_layers else replace(self, float_layers=(*self.float_layers, entry))

    def without_float_layers(self) -> Settings:
        """These settings for another model: the float-layer variants name this model's layers, so they end here."""
        return replace(self, float_layers=()) if self.float_layers else self

    def to_query(self, *, layers: Sequence[str] | None = None) -> dict[str, str]:
        """Query parameters for the settings that differ from the defaults.

        With `layers` (the model's `quant_core.builders.graph_layers`), float layers go by their
        place in the graph (`fl`: a few characters a layer, where their names take hundreds);
        without it, or for a name not among them, by name (`keep`: JSON).
        """
        default = Settings().to_all()
        params = {k: v for k, v in self.to_all().items() if v != default[k]}
        if self.float_layers and layers is not None and all(n in layers for _, names in self.float_layers
                                                           for n in names):
            del params["keep"]
            params[FLOAT_LAYERS_PARAM] = _by_place(self.float_layers, layers)
        return params

    def to_all(self) -> dict[str, str]:
        """All settings as query parameters."""
        return {
            "modes": ",".join(m.value for m in self.modes), "cal": str(self.calibration_count),
            "cal_src": self.calibration_source.value, "per_channel": "1" if self.per_channel else "0",
            "io": self.int8_io.value, "backend": self.backend.value if self.backend else "auto",
            "threads": str(self.threads),
            "keep": json.dumps([[m.value, list(n)] for m, n in self.float_layers], separators=(",", ":"))
            if self.float_layers else "",
        }

    @classmethod
    def from_query(cls, params: Mapping[str, str], *, layers: Callable[[], Sequence[str]] | None = None) -> Settings:
        """Settings from query parameters; unknown or invalid values raise InputError.

        `layers` gives the model's graph layers (`quant_core.builders.graph_layers`), asked
        for only when the link keeps layers in float: `fl` is read against them, and `keep`
        (names; older links) is checked against them.
        """
        s = cls()
        try:
            if "modes" in params:
                s = replace(s, modes=parse_modes(params["modes"]))
            if "cal" in params:
                s = replace(s, calibration_count=int(params["cal"]))
            if "cal_src" in params:
                source = parse_choice(CalibrationSource, params["cal_src"], "calibration source")
                s = replace(s, calibration_source=source)
            if "per_channel" in params:
                s = replace(s, per_channel=params["per_channel"] != "0")
            if "io" in params:
                s = replace(s, int8_io=parse_choice(IOType, params["io"], "io type"))
            if "backend" in params:
                s = replace(s, backend=None if params["backend"] == "auto" else parse_choice(Backend, params["backend"],
                                                                                          "backend"))
            if "threads" in params:
                s = replace(s, threads=int(params["threads"]))
            if params.get("keep"):
                s = replace(s, float_layers=_float_layers(params["keep"]))
            if params.get(FLOAT_LAYERS_PARAM) or s.float_layers:
                s = _with_graph_layers(s, params.get(FLOAT_LAYERS_PARAM, ""), layers)
        except (ValueError, TypeError) as err:
            raise InputError(f"the link's settings are not valid ({err})") from None
        s.recipes()  # validates
        return s


FLOAT_LAYERS_PARAM = "fl"  # float layers by place: "<graph digest>~<mode>-<i>.<j>~<mode>-<k>" (URL-safe as is)
_DIGEST_CHARS = 8  # of the graph's layer names' sha256: a link made on another graph is refused, not misread


def _graph_digest(layers: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(layers).encode()).hexdigest()[:_DIGEST_CHARS]


def _by_place(entries: tuple[tuple[Mode, tuple[str, ...]], ...], layers: Sequence[str]) -> str:
    """The `fl` parameter: each entry's layers as their places in `layers`, after the digest of `layers`."""
    place = {name: k for k, name in enumerate(layers)}
    return "~".join([_graph_digest(layers), *(f"{mode.value}-" + ".".join(str(place[n]) for n in sorted(
        names, key=place.__getitem__)) for mode, names in entries)])


def _with_graph_layers(s: Settings, text: str, layers: Callable[[], Sequence[str]] | None) -> Settings:
    """`s` plus the entries of an `fl` parameter, with every float layer checked against the model's graph.

    Raises:
        InputError: no graph to read the link against, one other than the link's, or a layer not in it.
    """
    if layers is None:
        if text:
            raise InputError("the link keeps layers in float by their place in a bundled sample's model, and names "
                             "no sample")
        return s  # names (`keep`): a build refuses the ones its model has not
    graph = tuple(layers())
    entries = list(s.float_layers)
    if text:
        digest, *parts = text.split("~")
        if digest != _graph_digest(graph):
            raise InputError("the link's float layers were chosen on another build of this model (its layers "
                             "differ): choose them again on Layers")
        for part in parts:
            mode, _, places = part.partition("-")
            entries.append((parse_choice(Mode, mode, "mode"), tuple(_layer_at(graph, k) for k in places.split("."))))
    known = set(graph)
    missing = [n for _, names in entries for n in names if n not in known]
    if missing:
        raise InputError(f"the link keeps in float {len(missing)} layer(s) this model does not have "
                         f"({', '.join(n.split(';')[0] for n in missing[:3])}): choose them again on Layers")
    return replace(s, float_layers=tuple((mode, tuple(sorted(set(names)))) for mode, names in entries))


def _layer_at(graph: tuple[str, ...], place: str) -> str:
    """The layer at a place given in a link (raises ValueError for anything but a place in the graph)."""
    if not place.isdigit() or int(place) >= len(graph):
        raise ValueError(f"float layer {place!r} is not a place in this model's {len(graph)} layers")
    return graph[int(place)]


def _float_layers(text: str) -> tuple[tuple[Mode, tuple[str, ...]], ...]:
    """The `keep` parameter: JSON [[mode, [tensor name, ...]], ...] (raises ValueError, TypeError or InputError)."""
    entries = parse_json(text, what="the link's keep setting")  # deep nesting: an InputError, not a RecursionError
    if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) == 2 and isinstance(e[1], list)
                                                for e in entries):
        raise ValueError("keep must be a list of [mode, [layer, ...]]")
    return tuple((parse_choice(Mode, mode, "mode"), tuple(str(n) for n in names)) for mode, names in entries)


TASK_PARAM, ROLES_PARAM = "task", "roles"  # a link's reading: "landmarks"; "conv2d_31=score,conv2d_21=landmarks"
DECODER_PARAM = "decoder"  # a detector's decoder: "ssd:palm_detection", "yolo"


@dataclass(frozen=True)
class Reading:
    """How the model's outputs are read, where the inferred reading is wrong (Model & data's Task and Role choices).

    The default is the inferred reading. It enters every request (`CompareOptions.task`,
    `roles`) and the worker key (`ui.engine.worker_key`), and ends with the inputs
    (`ui.state.use_inputs`): it names one model's outputs.
    """

    task: Task | None = None  # None: inferred from the outputs' roles
    roles: tuple[tuple[str, Role], ...] = ()  # (output name, role) set by the user, in output order
    decoder: str = ""  # a detector's decoder chosen by the user (quant_core.boxes.parse_decoder); "": inferred

    @property
    def inferred(self) -> bool:
        """True when nothing is set: the workbench's own reading."""
        return self.task is None and not self.roles and not self.decoder

    def applied(self, specs: Sequence[OutputSpec]) -> tuple[tuple[OutputSpec, ...], Task]:
        """The inferred specs with these roles, then this task, and the task they give (as a comparison reads them).

        Raises:
            InputError: a role names no output or does not fit its shape; no output can hold the task.
        """
        chosen = with_roles(specs, dict(self.roles)) if self.roles else tuple(specs)
        if self.task is not None:
            chosen = with_task(chosen, self.task)
        return chosen, self.task or task_of(chosen)

    def with_role(self, spec: OutputSpec, role: Role, *, inferred: Role) -> Reading:
        """This reading with `role` for one output (the inferred role again: its entry is dropped)."""
        roles = tuple((name, r) for name, r in self.roles if name != spec.name)
        if role is not inferred:
            roles = (*roles, (spec.name, role))
        return replace(self, roles=roles)

    def to_query(self) -> dict[str, str]:
        """Query parameters for what is set (none for the inferred reading)."""
        params = {TASK_PARAM: self.task.value} if self.task is not None else {}
        if self.roles:
            params[ROLES_PARAM] = ",".join(f"{name}={role.value}" for name, role in self.roles)
        if self.decoder:
            params[DECODER_PARAM] = self.decoder
        return params

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Reading:
        """The reading a link carries (the inferred one when it has none).

        Whether its outputs exist is checked when the comparison runs (one line, on Compare).

        Raises:
            InputError: an unknown task or role, or a malformed roles parameter.
        """
        task = parse_task(params[TASK_PARAM]) if params.get(TASK_PARAM) else None
        roles = parse_roles(params.get(ROLES_PARAM, ""))
        return cls(task, tuple((str(name), role) for name, role in roles.items()), params.get(DECODER_PARAM, "")[:500])
