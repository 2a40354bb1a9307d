"""The reading of a model's outputs chosen on Model & data (task and roles): applied to the inferred specs, carried
by every request and worker key, and round-tripped through a share link. Pure Python: no model runs."""

from __future__ import annotations

import numpy as np
import pytest

from quant_core import Mode, PreprocessingOverride
from quant_core.errors import InputError
from quant_core.tasks import Role, Task, infer_outputs
from ui.settings import Reading, Settings

INPUT_HW = (64, 64)


def face_like_specs():
    """A landmark model's outputs as inferred: 10 (x, y, z) points in input pixels, and a presence score."""
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(8, 56, (6, 10, 2)), rng.normal(0, 3, (6, 10, 1))], axis=-1)
    presence = rng.normal(5, 2, (6, 1, 1, 1))
    return infer_outputs([("landmarks_xyz", (1, 1, 1, 30)), ("presence", (1, 1, 1, 1))],
                         [points.reshape(6, 1, 1, 30), presence], input_hw=INPUT_HW)


def test_the_inferred_reading_changes_nothing():
    specs = face_like_specs()
    assert [s.role for s in specs] == [Role.LANDMARKS, Role.SCORE]
    assert Reading().inferred and Reading().applied(specs) == (specs, Task.LANDMARKS)


def test_a_role_set_by_the_user_is_applied_and_said():
    specs = face_like_specs()
    reading = Reading().with_role(specs[1], Role.GENERIC, inferred=specs[1].role)
    assert reading == Reading(None, (("presence", Role.GENERIC),)) and not reading.inferred
    chosen, task = reading.applied(specs)
    assert chosen[1].role is Role.GENERIC and chosen[1].set_by_user and "(set by you)" in chosen[1].description
    assert chosen[0] == specs[0] and task is Task.LANDMARKS
    # Choosing the inferred role again drops the entry: the reading is the inferred one again.
    assert reading.with_role(specs[1], Role.SCORE, inferred=Role.SCORE) == Reading()


def test_a_task_gives_its_role_to_the_first_output_that_can_hold_it():
    chosen, task = Reading(Task.EMBEDDING).applied(face_like_specs())
    assert task is Task.EMBEDDING and chosen[0].role is Role.EMBEDDING and chosen[1].role is Role.SCORE


def test_a_reading_that_does_not_fit_the_model_is_refused_in_one_line():
    specs = face_like_specs()
    with pytest.raises(InputError, match="no output 'segment'"):
        Reading(None, (("segment", Role.MASK),)).applied(specs)
    with pytest.raises(InputError, match=r"cannot hold mask: expected a map \[1, H, W, 1\]"):
        Reading(None, (("presence", Role.MASK),)).applied(specs)
    with pytest.raises(InputError, match="no output can be read as segmentation"):
        Reading(Task.SEGMENTATION).applied(specs)


def test_a_reading_round_trips_through_a_link():
    reading = Reading(Task.LANDMARKS, (("presence", Role.GENERIC), ("landmarks_xyz", Role.LANDMARKS)))
    params = reading.to_query()
    assert params == {"task": "landmarks", "roles": "presence=generic,landmarks_xyz=landmarks"}
    assert Reading.from_query(params) == reading
    assert Reading().to_query() == {} and Reading.from_query({"sample": "x"}) == Reading()


@pytest.mark.parametrize(("params", "message"), [
    ({"task": "pose"}, "unknown task 'pose'; expected one of: classification, segmentation"),
    ({"roles": "presence=halo"}, "unknown role 'halo'; expected one of: class_scores, mask"),
    ({"roles": "presence"}, "roles: expected OUTPUT=ROLE pairs"),
])
def test_a_bad_link_reading_is_one_line(params, message):
    with pytest.raises(InputError, match=message):
        Reading.from_query(params)


def test_the_share_link_carries_the_reading():
    from urllib.parse import parse_qs

    from ui.share import reading_from_query, share_query

    reading = Reading(Task.LANDMARKS, (("conv2d_31", Role.GENERIC),))
    settings = Settings(modes=(Mode.FLOAT32,))
    query = parse_qs(share_query("face_landmark", settings, PreprocessingOverride(), reading)[1:])
    assert query["task"] == ["landmarks"] and query["roles"] == ["conv2d_31=generic"]
    assert reading_from_query({k: v[0] for k, v in query.items()}) == reading
    plain = parse_qs(share_query("face_landmark", Settings(), PreprocessingOverride())[1:])
    assert "task" not in plain and "roles" not in plain


def test_every_request_and_worker_key_carry_the_reading():
    from ui.engine import compare_request, worker_key
    from ui.inputs import sample_inputs

    inputs, override, settings = sample_inputs("face_landmark"), PreprocessingOverride(), Settings(
        modes=(Mode.FLOAT32,))
    reading = Reading(Task.LANDMARKS, (("conv2d_31", Role.GENERIC),))
    options = compare_request(inputs, override, settings, reading=reading).options
    assert options.task is Task.LANDMARKS and options.roles == (("conv2d_31", Role.GENERIC),)
    # Outside a script run (ui.prewarm, bench) the default is the inferred reading; the key is the one it always was.
    inferred = compare_request(inputs, override, settings).options
    assert inferred.task is None and inferred.roles == ()
    assert worker_key(inputs, override) == worker_key(inputs, override, Reading()) == \
        f"{inputs.digest}:{{'normalization': None, 'resize': None, 'channel_order': None, 'center_crop': None}}"
    assert worker_key(inputs, override, reading) != worker_key(inputs, override)
