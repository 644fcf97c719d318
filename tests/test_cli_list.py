"""`rpl list tasks|controllers|models`, and the held-out records of the committed models."""

from __future__ import annotations

import json
import re

import pytest

from rpl_base_controllers.registry import available_controllers, controller_info
from rpl_bringup import catalog, cli
from rpl_sim_bridge.tasks import available_tasks


def _listed(capsys, what: str) -> list[str]:
    assert cli.main(['list', what]) == 0
    return capsys.readouterr().out.splitlines()


def test_list_tasks_names_every_registered_task(capsys):
    lines = _listed(capsys, 'tasks')
    assert [line.split()[0] for line in lines] == available_tasks()
    assert any('slippery_push' in line and '50 steps' in line for line in lines)


def test_list_controllers_names_each_with_the_tasks_it_suits(capsys):
    lines = _listed(capsys, 'controllers')
    assert [line.split()[0] for line in lines] == available_controllers()
    for line in lines:
        name = line.split()[0]
        assert f'tasks: {", ".join(controller_info(name).tasks)};' in line


def test_list_models_shows_task_controller_and_heldout_success(capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    text = '\n'.join(_listed(capsys, 'models'))
    assert 'models/slippery_push_reactive_push/actor.onnx\n' in text
    assert (
        '    slippery_push / reactive_push: held-out success 0.965 (95% CI 0.930-0.983, '
        '200 episodes, seeds 1000..1199); base alone 0.450'
    ) in text
    assert 'push / discrete_mpc_push: held-out success 0.900' in text
    assert 'pick_and_place / reactive_pick_and_place: held-out success 0.955' in text
    assert (
        'complex_hook / reactive_hook: held-out success 0.830 (95% CI 0.772-0.876, 200 '
        'episodes, seeds 1000..1199); base alone 0.765'
    ) in text
    assert 'models/push_discrete_mpc_push/final_actor.onnx\n' in text
    # A fixed-goal task's results are returns: listed next to the success rate.
    assert (
        '    mbrl_pusher / cached_pets: held-out success 0.000 (95% CI 0.000-0.019, 200 '
        'episodes, seeds 1000..1199), mean return -86.3; base alone 0.000, mean return -113.6'
    ) in text


def test_a_malformed_heldout_record_is_one_line(capsys, repo_root, tmp_path, monkeypatch):
    """A heldout.json whose 'models' is not a mapping gave an AttributeError traceback."""
    folder = tmp_path / 'models' / 'mine'
    folder.mkdir(parents=True)
    model = repo_root / 'models' / 'slippery_push_reactive_push' / 'actor.onnx'
    (folder / 'actor.onnx').write_bytes(model.read_bytes())
    (folder / 'heldout.json').write_text(json.dumps({'episodes': 1, 'seed': 0, 'models': []}))
    monkeypatch.chdir(tmp_path)
    assert cli.main(['list', 'models']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'not a valid held-out record' in err, err


def test_list_rejects_an_unknown_kind(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(['list', 'robots'])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    'folder',
    [
        'slippery_push_reactive_push',
        'slippery_push_reactive_push_live',
        'push_discrete_mpc_push',
        'pick_and_place_reactive_pick_and_place',
        'mbrl_pusher_cached_pets',
        'complex_hook_reactive_hook',
        'noisy_hook_reactive_hook',
    ],
)
def test_heldout_records_agree_with_command_md_results_and_model_metadata(repo_root, folder):
    model_dir = repo_root / 'models' / folder
    record = json.loads((model_dir / catalog.HELDOUT_FILE).read_text())
    command_md = ' '.join((model_dir / 'COMMAND.md').read_text().split())
    quoted = {float(x) for x in re.findall(r'\b0\.\d{3}\b', command_md)}
    for name, figures in [*record['models'].items(), ('base', record['base'])]:
        result = json.loads((repo_root / figures['result']).read_text())
        assert result['episodes'] == record['episodes'] and result['seed'] == record['seed']
        assert (result['task'], result['controller']) == (record['task'], record['controller'])
        assert result['success_rate'] == figures['success_rate']
        assert result['ci95'] == figures['ci95']
        assert (result['model'] is None) == (name == 'base')
        assert round(figures['success_rate'], 3) in quoted, (name, sorted(quoted))
        if 'mean_return' in figures:  # a fixed-goal task: its results are returns
            returns = result['returns']
            assert len(returns) == record['episodes']
            assert figures['mean_return'] == pytest.approx(sum(returns) / len(returns))
            assert f'{figures["mean_return"]:.1f}' in command_md, name
    for name in record['models']:
        meta = catalog.onnx_metadata(str(model_dir / name))
        assert (meta['task'], meta['controller']) == (record['task'], record['controller'])
    assert (model_dir / 'actor.onnx').is_file() and 'actor.onnx' in record['models']
