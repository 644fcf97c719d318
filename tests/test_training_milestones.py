"""benchmarks/training_milestones.py: first evaluation at each level, of success or return."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest


@pytest.fixture
def milestones_module(repo_root):
    path = repo_root / 'benchmarks' / 'training_milestones.py'
    spec = importlib.util.spec_from_file_location('training_milestones', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path, name, rows, algo='rpl'):
    run = tmp_path / name
    run.mkdir()
    (run / 'config.json').write_text(
        json.dumps({'task': 'mbrl_pusher', 'controller': 'cached_pets', 'algo': algo,
                    'eval_episodes': 20, 'seed': int(name[-1])})
    )  # fmt: skip
    lines = ['env_steps,episodes,updates,wall_s,eval/success_rate,eval/return']
    lines += [f'{s},0,0,{s / 100},0,{r}' for s, r in rows]
    (run / 'metrics.csv').write_text('\n'.join(lines) + '\n')
    return run


def test_return_levels_give_the_first_evaluation_at_or_above_each(milestones_module, tmp_path):
    run = _run(tmp_path, 'r_s0', [(0, -113.5), (7500, -101.0), (15000, -95.0), (22500, -99.0)])
    result = milestones_module.milestones(run, (-100.0, -95.0, -90.0), 'return')
    assert result['levels']['-100'] == {'env_steps': 15000, 'wall_s': 150.0}
    assert result['levels']['-95'] == {'env_steps': 15000, 'wall_s': 150.0}
    assert result['levels']['-90'] is None
    assert result['best'] == {'return': -95.0, 'env_steps': 15000}
    assert result['last']['return'] == -99.0
    # Success levels read the success column, which stays 0 here.
    assert milestones_module.milestones(run)['levels']['0.50'] is None


def test_the_command_line_needs_levels_for_returns_and_groups_seeds(repo_root, tmp_path):
    runs = [_run(tmp_path, f'r_s{s}', [(0, -110.0), (7500, -100.0 + s)]) for s in range(2)]
    script = [sys.executable, str(repo_root / 'benchmarks' / 'training_milestones.py')]
    out = tmp_path / 'm'
    bad = subprocess.run(
        [*script, *map(str, runs), '--metric', 'return', '--out', str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and '--metric return needs --levels' in bad.stderr
    assert not out.with_suffix('.md').exists()
    done = subprocess.run(
        [*script, *map(str, runs), '--metric', 'return', '--levels', '-100', '-99.5',
         '--out', str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert '2 of 2: median 7.5k' in done.stdout  # -100: both seeds at 7500
    assert '1 of 2' in done.stdout  # -99.5: seed 1 only
    saved = json.loads(out.with_suffix('.json').read_text())
    assert [r['metric'] for r in saved['runs']] == ['return', 'return']
