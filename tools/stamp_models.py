"""Stamp the committed models with what they are, without touching their graphs.

The models under ``models/`` were exported before the exporter wrote the identity metadata
(:mod:`rpl_residual_node.model_identity`). This writes it once, from the facts in each
folder: ``config.json`` (task, controller, scale; ``rpl train`` wrote it), ``summary.json``
(the run's evaluation success at the model's step), ``heldout.json`` (task, controller and
the held-out success, for a folder without ``config.json``) and the model's own metadata
(``env_steps``, ``residual_scale``). Only ``metadata_props`` change: the script refuses to
write a file whose graph, opsets or initialisers would differ, so every per-episode
result stays as it was.

Run from the repository root::

    .venv/bin/python tools/stamp_models.py            # stamp every models/*/*.onnx
    .venv/bin/python tools/stamp_models.py --check    # exit 1 if one is not stamped as here
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

import onnx

from rpl_sim_bridge.tasks import task_spec
from rpl_trainer.export import task_identity

MODELS = pathlib.Path(__file__).resolve().parent.parent / 'models'
STAMPED_BY = 'tools/stamp_models.py'


def _read_json(path: pathlib.Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _eval_success(summary: dict, env_steps: int | None) -> float | None:
    """The run's evaluation success when the model at ``env_steps`` was written."""
    if env_steps is None:
        return None
    for steps_key, success_key in (
        ('env_steps', 'eval/success_rate'),
        ('best/env_steps', 'best/success_rate'),
    ):
        if summary.get(steps_key) == env_steps and success_key in summary:
            return round(float(summary[success_key]), 4)  # float32 in the summary
    return None


def stamped_props(model: pathlib.Path, props: dict[str, str]) -> dict[str, str]:
    """The metadata a committed model gets: its own, plus the identity from its folder."""
    folder = model.parent
    config = _read_json(folder / 'config.json')
    heldout = _read_json(folder / 'heldout.json')
    facts = config or heldout
    if not facts.get('task') or not facts.get('controller'):
        raise ValueError(f'{folder}: neither config.json nor heldout.json names the task')
    task, controller = facts['task'], facts['controller']
    for key, value in (('task', task), ('controller', controller)):
        if props.get(key, value) != value:
            raise ValueError(f'{model}: metadata {key} {props[key]!r}, folder says {value!r}')
    env_steps = int(props['env_steps']) if 'env_steps' in props else None
    scale = float(props.get('residual_scale', config.get('residual_scale', 'nan')))
    identity = task_identity(
        task_spec(task),
        controller,
        residual_scale=scale,
        training_steps=env_steps,
        eval_success=_eval_success(_read_json(folder / 'summary.json'), env_steps),
    )
    stamped = {**props, **identity.to_props(), 'stamped_by': STAMPED_BY}
    result = heldout.get('models', {}).get(model.name)
    if result is not None:
        stamped['heldout_success'] = repr(float(result['success_rate']))
        stamped['heldout_episodes'] = f'{heldout["episodes"]} (seeds {heldout["seed"]}..)'
        if result.get('mean_return') is not None:  # a fixed-goal task: results are returns
            stamped['heldout_return'] = repr(float(result['mean_return']))
    return stamped


def _without_metadata(proto: onnx.ModelProto) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    del copy.metadata_props[:]
    return copy.SerializeToString(deterministic=True)


def stamp(model: pathlib.Path) -> bytes:
    """The stamped file's bytes (the same graph, new ``metadata_props``)."""
    proto = onnx.load(str(model))
    before = _without_metadata(proto)
    props = {prop.key: prop.value for prop in proto.metadata_props}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, stamped_props(model, props))
    if _without_metadata(proto) != before:  # cannot happen; the guarantee, checked
        raise RuntimeError(f'{model}: stamping would change more than the metadata')
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Stamp (or ``--check``) the given models, default every ``models/*/*.onnx``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('models', nargs='*', type=pathlib.Path, help='ONNX files')
    parser.add_argument('--check', action='store_true', help='only check, write nothing')
    args = parser.parse_args(argv)
    models = args.models or sorted(MODELS.glob('*/*.onnx'))
    stale = []
    for model in models:
        try:
            data = stamp(model)
        except (ValueError, OSError) as exc:
            print(f'stamp_models: {exc}', file=sys.stderr)
            return 2
        if data == model.read_bytes():
            continue
        stale.append(model)
        if not args.check:
            model.write_bytes(data)
            print(f'stamped {model}')
    if args.check and stale:
        print(f'stamp_models: not stamped: {", ".join(map(str, stale))}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
