"""Models that say what they are: the identity metadata, its check, and the mixer's refusal.

A model states its task, controller and field names (rpl_residual_node.model_identity); the
residual mixer runs it only on a stream that says the same (observation frame_id and field
names, base action frame_id and field names): other fields are refused always, another task
or controller unless ``allow_model_mismatch``; a model that says nothing runs with one
warning. The node over DDS: tests/test_residual_node.py; ``rpl eval``: test_evaluation.py.
"""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np
import pytest
from helpers import reload_model, replace_model, set_model_metadata
from onnx_builders import OBS_DIM, linear_model

from rpl_interfaces import __version__, contract
from rpl_residual_node import decision as dec
from rpl_residual_node import mixer as m
from rpl_residual_node import model_slot as slot
from rpl_residual_node.mixing import ResidualConfig
from rpl_residual_node.model_identity import (
    IdentityError,
    MismatchError,
    ModelIdentity,
    StackIdentity,
    check_identity,
    clamp_warning,
)
from rpl_residual_node.onnx_actor import ModelError, OnnxActor

OBS_NAMES = tuple(f'obs_{i}' for i in range(OBS_DIM))
GOAL_NAMES = ('x', 'y', 'z')
STACK = StackIdentity('push', 'reactive_push', OBS_NAMES, GOAL_NAMES, contract.ACTION_FIELDS)
MODEL = ModelIdentity.for_stack(
    dataclasses.replace(STACK, action_bounds=(-1.0, 1.0)), residual_scale=2.0, training_steps=1000
)
OBS = np.linspace(-0.5, 0.5, OBS_DIM)
GOAL = np.array([1.3, 0.8, 0.42])
BASE = np.array([0.4, -0.3, 0.9, -0.8])


def test_identity_round_trips_through_metadata_strings():
    props = MODEL.to_props()
    assert props['observation_fields'] == '["obs_0", "obs_1", "obs_2", "obs_3", "obs_4"]'
    assert props['rpl_version'] == __version__ and props['training_steps'] == '1000'
    assert ModelIdentity.from_props(props) == MODEL
    assert ModelIdentity.from_props({}).unstated() == [
        'task',
        'controller',
        'observation_fields',
        'goal_fields',
        'action_fields',
        'action_bounds',
    ]
    with pytest.raises(IdentityError, match="'goal_fields' must be a JSON list"):
        ModelIdentity.from_props({'goal_fields': 'x,y,z'})


def test_stream_identity_comes_from_the_observation_names():
    names = contract.observation_fields(OBS_NAMES, GOAL_NAMES)
    stack = StackIdentity.of_stream('push', 'reactive_push', names, contract.ACTION_FIELDS)
    assert stack == STACK


def test_other_fields_are_refused_even_when_a_mismatch_is_allowed():
    live = dataclasses.replace(STACK, observation_fields=(*OBS_NAMES[:-1], 'other'))
    for allow in (False, True):
        with pytest.raises(MismatchError) as info:
            check_identity(MODEL, live, allow_mismatch=allow)
        assert str(info.value) == (
            "observation fields differ (model fields ['obs_4'] are not in the stream, stream "
            "fields ['other'] are not in the model)"
        )
        assert not info.value.overridable
    swapped = dataclasses.replace(STACK, action_fields=('dy', 'dx', 'dz', 'gripper'))
    with pytest.raises(MismatchError, match="another order, position 0: 'dx' in the model"):
        check_identity(MODEL, swapped)
    # Another robot altogether: the first names and a count (it was a 1871-character line).
    robot = dataclasses.replace(STACK, observation_fields=tuple(f'joint_{i}' for i in range(20)))
    with pytest.raises(MismatchError) as info:
        check_identity(MODEL, robot)
    assert '14 more are not in the model' in str(info.value)
    assert len(str(info.value)) < 300, str(info.value)


def test_another_task_or_controller_is_refused_unless_allowed():
    live = dataclasses.replace(STACK, task='pick_and_place', controller='reactive_pick')
    with pytest.raises(MismatchError) as info:
        check_identity(MODEL, live)
    assert str(info.value) == (
        "trained for task 'push', the running task is 'pick_and_place'; trained for "
        "controller 'reactive_push', the running controller is 'reactive_pick'"
    )
    assert info.value.overridable
    assert check_identity(MODEL, live, allow_mismatch=True) == str(info.value).split('; ')


def test_other_action_bounds_are_refused_even_when_a_mismatch_is_allowed():
    """A model trained to command torques in [-2, 2] must not run behind a node that clips
    its commands to [-1, 1] (the residual node's default), nor the other way round."""
    torques = dataclasses.replace(MODEL, action_bounds=(-2.0, 2.0))
    props = torques.to_props()
    assert props['action_bounds'] == '[-2.0, 2.0]'
    assert ModelIdentity.from_props(props) == torques
    default_node = dataclasses.replace(STACK, action_bounds=(-1.0, 1.0))
    for allow in (False, True):
        with pytest.raises(MismatchError) as info:
            check_identity(torques, default_node, allow_mismatch=allow)
        assert str(info.value) == (
            'the model was trained to command actions in [-2, 2], the stack clips commands '
            'to [-1, 1] (residual node action_low / action_high)'
        )
        assert not info.value.overridable
    assert check_identity(torques, dataclasses.replace(STACK, action_bounds=(-2.0, 2.0))) == []
    assert check_identity(MODEL, default_node) == []  # an old model states no bounds
    with pytest.raises(IdentityError, match="'action_bounds' must be a JSON list"):
        ModelIdentity.from_props({'action_bounds': '2'})


def test_the_node_refuses_a_model_trained_for_other_bounds(tmp_path):
    """The residual node's model slot checks the model's bounds against its own clip
    range: refused in one line (the base action runs), accepted with the right range."""
    path = _model(tmp_path, dataclasses.replace(MODEL, action_bounds=(-2.0, 2.0)))
    refused = slot.ModelSlot(ResidualConfig(model_path=str(path)), collections.Counter())
    assert 'trained to command actions in [-2, 2]' in refused.refusal(refused.actor)
    right = ResidualConfig(model_path=str(path), action_low=-2.0, action_high=2.0)
    accepted = slot.ModelSlot(right, collections.Counter())
    assert accepted.refusal(accepted.actor) is None


def test_a_limit_below_the_models_scale_is_loaded_with_one_warning(tmp_path):
    """A torque model (residual_scale 4) behind the default residual_limit 2 would run with
    its residuals clamped to half the range it learned: it runs (a deliberate smaller
    limit is the user's choice), with one line naming both numbers and the fix."""
    torques = dataclasses.replace(MODEL, action_bounds=(-2.0, 2.0), residual_scale=4.0)
    expected = (
        'its residuals reach +-4 (residual_scale) but residual_limit clamps them to +-2, so '
        'it runs other than trained (residual_limit:=4.0 runs it as trained)'
    )
    assert clamp_warning(torques, 2.0) == expected
    assert clamp_warning(torques, 4.0) is None
    assert clamp_warning(dataclasses.replace(torques, residual_scale=None), 2.0) is None
    path = _model(tmp_path, torques)
    bounds = {'model_path': str(path), 'action_low': -2.0, 'action_high': 2.0}
    clamped = slot.ModelSlot(ResidualConfig(**bounds), collections.Counter())
    assert clamped.last_reload.loaded
    assert clamped.last_reload.warning == f'model {path}: {expected}'
    full = slot.ModelSlot(ResidualConfig(**bounds, residual_limit=4.0), collections.Counter())
    assert full.last_reload.loaded and full.last_reload.warning == ''


def test_what_either_side_does_not_say_is_not_checked():
    assert check_identity(ModelIdentity(), STACK) == []
    assert check_identity(MODEL, StackIdentity()) == []


def test_other_base_parameters_are_a_warning_never_a_refusal():
    from rpl_base_controllers.registry import params_from_text, stated_params

    # The canonical text: non-default parameters only, sorted, readable back.
    assert stated_params('cached_pets', {'neighbours': 1, 'cache_size': 0}) == ''
    text = stated_params('cached_pets', {'neighbours': 2, 'cache_size': 300})
    assert text == 'cache_size=300,neighbours=2'
    assert params_from_text('cached_pets', text) == {'cache_size': 300, 'neighbours': 2}
    assert stated_params('reactive_push', {'push_gain': 7}) == 'push_gain=7.0'  # its kind
    # What a training run states: its base's, the zero controller's none for the learners
    # without a base, nothing for a base outside the registry (a test problem's).
    from rpl_trainer.config import make_config

    run = {'task': 'push', 'controller': 'reactive_push', 'controller_params': 'push_gain=7'}
    assert make_config({**run, 'algo': 'rpl'}).deployed_controller_params == 'push_gain=7.0'
    assert make_config({**run, 'algo': 'scratch'}).deployed_controller_params == ''
    toy = make_config({'task': 'push', 'controller': 'toy_biased', 'algo': 'rpl'})
    assert toy.deployed_controller_params is None
    blended = dataclasses.replace(MODEL, controller_params='neighbours=2')
    assert ModelIdentity.from_props(blended.to_props()) == blended
    plain = dataclasses.replace(MODEL, controller_params='')  # stated: the defaults
    assert ModelIdentity.from_props(plain.to_props()) == plain
    assert 'controller_params' not in MODEL.to_props()  # not stated: not written
    assert blended.describe() == 'push / reactive_push (neighbours=2)'
    running = dataclasses.replace(STACK, controller_params='')
    [warning] = check_identity(blended, running)
    assert "parameters 'neighbours=2', this run uses the defaults" in warning
    [warning] = check_identity(plain, dataclasses.replace(STACK, controller_params='k=3'))
    assert "parameters the defaults, this run uses 'k=3'" in warning
    # Unknown on either side (a stack: the base is another node), or the same: nothing.
    assert check_identity(blended, STACK) == []
    assert check_identity(MODEL, running) == []
    assert (
        check_identity(blended, dataclasses.replace(running, controller_params='neighbours=2'))
        == []
    )
    # Another controller is the refusal that matters; its parameters are not compared.
    other = dataclasses.replace(running, controller='zero')
    assert check_identity(blended, other, allow_mismatch=True) == [
        "trained for controller 'reactive_push', the running controller is 'zero'"
    ]


def _model(tmp_path, identity: ModelIdentity | None = MODEL, name: str = 'actor.onnx'):
    scale = None if identity is None else identity.residual_scale
    path = linear_model(tmp_path / name, scale=scale)  # keeps to the scale it states
    return set_model_metadata(path, identity.to_props()) if identity is not None else path


def test_loader_reads_the_identity_and_refuses_a_malformed_or_inconsistent_one(tmp_path):
    assert OnnxActor.load(_model(tmp_path)).identity == MODEL
    assert OnnxActor.load(_model(tmp_path, None)).identity == ModelIdentity()
    bad = set_model_metadata(linear_model(tmp_path / 'bad.onnx'), {'action_fields': '[1, 2]'})
    with pytest.raises(ModelError, match="'action_fields' must be a JSON list of names"):
        OnnxActor.load(bad)
    short = dataclasses.replace(MODEL, observation_fields=OBS_NAMES[:2])
    with pytest.raises(ModelError, match='names 2 observation_fields but the graph has 5'):
        OnnxActor.load(_model(tmp_path, short, 'short.onnx'))


@pytest.mark.parametrize(
    ('key', 'value', 'message'),
    [
        ('residual_scale', 'nan', "'residual_scale' must be a finite number >= 0, got 'nan'"),
        ('residual_scale', '-5', "'residual_scale' must be a finite number >= 0, got '-5'"),
        ('residual_scale', 'abc', "'residual_scale' must be a finite number >= 0, got 'abc'"),
        ('training_steps', '-1', "'training_steps' must be a whole number >= 0, got '-1'"),
        ('eval_success', 'inf', "'eval_success' must be a finite number >= 0, got 'inf'"),
        ('action_bounds', '[1, -1]', "'action_bounds' must be a JSON list [low, high] of"),
        ('action_bounds', '[-1, NaN]', "'action_bounds' must be a JSON list [low, high] of"),
    ],
)
def test_malformed_metadata_values_refuse_the_model_like_a_corrupt_one(
    tmp_path, key, value, message
):
    """A value no exporter writes (a negative or NaN scale, bounds that leave no range) is
    refused in one line when the model loads, never acted on."""
    with pytest.raises(IdentityError, match=re.escape(message)):
        ModelIdentity.from_props({key: value})
    path = set_model_metadata(linear_model(tmp_path / 'odd.onnx'), {key: value})
    with pytest.raises(ModelError, match=re.escape(message)):
        OnnxActor.load(path)


def test_a_two_frame_note_that_contradicts_the_graph_refuses_the_model(tmp_path):
    one_frame = linear_model(tmp_path / 'one.onnx')  # no previous_observation input
    assert OnnxActor.load(set_model_metadata(one_frame, {'two_frame': 'false'})).two_frame is False
    path = set_model_metadata(linear_model(tmp_path / 'true.onnx'), {'two_frame': 'true'})
    with pytest.raises(ModelError) as info:
        OnnxActor.load(path)
    assert "metadata 'two_frame' is 'true' but the graph has no 'previous_observation'" in (
        str(info.value)
    )
    # A value no exporter writes is named as that (not as a contradiction with the graph).
    for stated in ('maybe', 'False'):
        path = set_model_metadata(linear_model(tmp_path / f'{stated}.onnx'), {'two_frame': stated})
        with pytest.raises(ModelError) as info:
            OnnxActor.load(path)
        assert f"metadata 'two_frame' must be 'true' or 'false', got {stated!r}" in str(info.value)


class Notes(list):
    def __call__(self, level: str, text: str) -> None:
        self.append((level, text))


def _mixer(path, notes: Notes, **config) -> m.ResidualMixer:
    cfg = ResidualConfig(model_path=str(path), **config)
    return m.ResidualMixer(cfg, action_dim=4, on_model_note=notes)


def _step(mixer: m.ResidualMixer, step: int, task: str, controller: str = 'reactive_push'):
    mixer.note_observation_source(task, OBS_NAMES, GOAL_NAMES)
    mixer.note_base_action_source(controller, contract.ACTION_FIELDS)
    mixer.add_observation(0, step, OBS, GOAL)
    return mixer.add_base_action(0, step, BASE)


def test_mixer_falls_back_on_a_model_of_another_task_with_one_line(tmp_path):
    notes = Notes()
    mixer = _mixer(_model(tmp_path), notes)
    assert mixer.last_reload.loaded and mixer.last_reload.warning == ''
    decisions = [_step(mixer, step, 'pick_and_place') for step in range(3)]
    assert [d.reason for d in decisions] == [dec.MODEL_MISMATCH] * 3
    assert all(d.source == dec.SOURCE_BASE for d in decisions)
    np.testing.assert_array_equal(decisions[0].command, BASE)
    assert notes == [
        (
            'error',
            'model actor.onnx does not fit this stack, using the base action: trained for '
            "task 'push', the running task is 'pick_and_place' (allow_model_mismatch:=true "
            'runs it anyway)',
        )
    ]
    level, message, values = mixer.diagnostics()
    assert level == 'error' and 'pick_and_place' in message
    assert values['count.model_mismatch'] == 3 and values['count.model_refused_mismatch'] == 1
    assert values['model_made_for'] == 'push / reactive_push'
    # The stream now says the model's task: the residual runs.
    assert _step(mixer, 3, 'push').reason == dec.OK
    assert mixer.diagnostics()[0] == 'ok' and len(notes) == 1


@pytest.mark.parametrize(
    ('task', 'controller', 'said'),
    [
        ('push', '', "controller 'reactive_push', the base_action messages do not name their"),
        ('', 'reactive_push', "task 'push', the observation messages do not name their task"),
    ],
)
def test_a_stream_that_names_no_task_or_controller_does_not_run_a_model_that_does(
    tmp_path, task, controller, said
):
    """An empty header.frame_id (JointState's default, left so by a hand-written bridge or
    controller) switched the check off and the model ran on any controller or task; it is
    refused as another task or controller is, and runs only when allowed."""
    notes = Notes()
    mixer = _mixer(_model(tmp_path), notes)
    decision = _step(mixer, 0, task, controller)
    assert (decision.source, decision.reason) == (dec.SOURCE_BASE, dec.MODEL_MISMATCH)
    np.testing.assert_array_equal(decision.command, BASE)
    assert len(notes) == 1 and notes[0][0] == 'error', notes
    assert f'trained for {said}' in notes[0][1] and 'empty header.frame_id' in notes[0][1]
    assert notes[0][1].endswith('(allow_model_mismatch:=true runs it anyway)')

    allowed = Notes()
    mixer = _mixer(_model(tmp_path), allowed, allow_model_mismatch=True)
    assert _step(mixer, 0, task, controller).reason == dec.OK
    assert allowed[0][0] == 'warning' and said in allowed[0][1], allowed


def test_mixer_runs_another_task_when_allowed_but_never_other_fields(tmp_path):
    notes = Notes()
    mixer = _mixer(_model(tmp_path), notes, allow_model_mismatch=True)
    assert _step(mixer, 0, 'pick_and_place').reason == dec.OK
    assert notes == [
        (
            'warning',
            "model actor.onnx runs although trained for task 'push', the running task is "
            "'pick_and_place' (allow_model_mismatch)",
        )
    ]
    mixer.note_observation_source('push', ('a', 'b', 'c', 'd', 'e'), GOAL_NAMES)
    mixer.add_observation(0, 1, OBS, GOAL)
    assert mixer.add_base_action(0, 1, BASE).reason == dec.MODEL_MISMATCH
    assert notes[-1][0] == 'error' and 'observation fields differ' in notes[-1][1]
    assert 'allow_model_mismatch:=true' not in notes[-1][1]


def test_a_model_that_states_all_but_its_action_bounds_is_run_with_one_warning(tmp_path):
    """Exports between two versions stated task, controller and fields but not the bounds:
    such a model ran behind any clip range without a word."""
    path = _model(tmp_path, dataclasses.replace(MODEL, action_bounds=None))
    notes = Notes()
    mixer = _mixer(path, notes)
    assert mixer.last_reload.loaded
    assert mixer.last_reload.warning.endswith(
        'does not state action_bounds: it is not checked against the running stack for that'
    ), mixer.last_reload.warning


def test_mixer_runs_a_model_without_metadata_with_one_warning(tmp_path):
    notes = Notes()
    mixer = _mixer(_model(tmp_path, None), notes)
    assert mixer.last_reload.loaded
    assert mixer.last_reload.warning.endswith(
        'does not state task, controller, observation_fields, goal_fields, action_fields, '
        'action_bounds (no rpl metadata): it is not checked against the running stack for that'
    )
    assert _step(mixer, 0, 'anything', 'any_controller').reason == dec.OK
    assert notes == []


def test_a_reloaded_model_of_another_task_is_refused_and_the_running_one_kept(tmp_path):
    notes = Notes()
    path = _model(tmp_path)
    mixer = _mixer(path, notes)
    assert _step(mixer, 0, 'push').reason == dec.OK
    other = dataclasses.replace(MODEL, task='pick_and_place')
    replace_model(path, _model(tmp_path, other, 'other.onnx'))
    event = reload_model(mixer)
    assert not event.loaded and event.refusal == 'mismatch'
    assert "trained for task 'pick_and_place', the running task is 'push'" in event.message
    assert mixer.actor.identity == MODEL and mixer.counts[slot.MODEL_REFUSED_MISMATCH] == 1
    assert _step(mixer, 1, 'push').reason == dec.OK


def test_goal_fields_against_a_fixed_goal_say_which_side_has_none():
    fixed = dataclasses.replace(STACK, goal_fields=())
    with pytest.raises(MismatchError) as info:
        check_identity(MODEL, fixed, allow_mismatch=True)
    assert str(info.value) == (
        "goal fields differ (the model takes goal fields ['x', 'y', 'z'], the stream has none "
        '(fixed goal))'
    )
    fixed_model = ModelIdentity.for_stack(fixed)
    with pytest.raises(MismatchError, match=r'model is for a fixed goal, the stream has goal '):
        check_identity(fixed_model, STACK)
    assert check_identity(fixed_model, fixed) == []
