"""The committed models say what they are, matching their folders (tools/stamp_models.py).

Each models/<name>/*.onnx states the task and controller its folder's config.json (or
heldout.json) names, the field names the sim bridge publishes for that task, and its scale;
the residual node's loader reads the same, and the stamp is current (``--check``).
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from rpl_residual_node.model_identity import StackIdentity, check_identity
from rpl_residual_node.onnx_actor import OnnxActor
from rpl_sim_bridge.bridge import observation_layout
from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.config import make_config
from rpl_trainer.residual import axis_scales, largest_scale, residual_scales

MODELS = sorted((pathlib.Path(__file__).parents[1] / 'models').glob('*/*.onnx'))


def _folder_facts(folder: pathlib.Path) -> dict:
    for name in ('config.json', 'heldout.json'):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    raise AssertionError(f'{folder} has neither config.json nor heldout.json')


def test_there_are_committed_models():
    assert len(MODELS) >= 6


@pytest.mark.parametrize('model', MODELS, ids=lambda p: f'{p.parent.name}/{p.name}')
def test_committed_model_states_its_folders_task_controller_and_fields(model):
    facts = _folder_facts(model.parent)
    identity = OnnxActor.load(model).identity
    assert identity.unstated() == []
    assert (identity.task, identity.controller) == (facts['task'], facts['controller'])
    spec = task_spec(identity.task)
    if facts.get('residual_axis_scales'):  # per-axis: the largest, and the list
        scales = residual_scales(make_config(facts), spec.action_fields)
        assert identity.residual_scale == largest_scale(scales)
        assert identity.residual_scales == axis_scales(scales)
    else:
        assert identity.residual_scale == facts.get('residual_scale', 2.0)
        assert identity.residual_scales is None
    assert identity.version is not None
    names = observation_layout(spec).fields
    live = StackIdentity.of_task(spec, facts['controller'], names, spec.action_fields)
    assert check_identity(identity, live) == []
    assert identity.action_bounds == (spec.action_low, spec.action_high)
    if (model.parent / 'config.json').is_file():  # rpl train runs: steps and evaluation
        assert identity.training_steps is not None and 0.0 <= identity.eval_success <= 1.0


def test_the_stamp_is_current(repo_root):
    done = subprocess.run(
        [sys.executable, str(repo_root / 'tools' / 'stamp_models.py'), '--check'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
