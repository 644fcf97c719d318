"""`rpl train` settings: the shipped per-task configs (the committed models' settings),
--config, --set, --help, and the burn-in status shown while training."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from rpl_trainer.cli import main
from rpl_trainer.config import TrainConfig, make_config, read_config_file, shipped_config
from rpl_trainer.ddpg import BurnIn, UpdateStats
from rpl_trainer.train import burn_in_budget_note, burn_in_status, thread_contention_note

COMMITTED = {
    'slippery_push': 'slippery_push_reactive_push',
    'push': 'push_discrete_mpc_push',
    'pick_and_place': 'pick_and_place_reactive_pick_and_place',
    'mbrl_pusher': 'mbrl_pusher_cached_pets',
    'complex_hook': 'complex_hook_reactive_hook',
    'noisy_hook': 'noisy_hook_reactive_hook',
}


@pytest.mark.parametrize('task', sorted(COMMITTED))
def test_shipped_config_is_the_committed_models_settings(task, repo_root):
    model = json.loads((repo_root / 'models' / COMMITTED[task] / 'config.json').read_text())
    shipped = make_config({**read_config_file(shipped_config(task)), 'seed': model['seed']})
    if shipped.update_precision == 'auto':
        # auto takes the faster precision of the machine it runs on; the model was trained
        # with one of the two (its config says which, or says auto and its summary which).
        summary = json.loads((repo_root / 'models' / COMMITTED[task] / 'summary.json').read_text())
        used = model.get('update_precision', 'float32')
        if used == 'auto':
            used = summary['update_precision']
        assert used in ('float32', 'bfloat16')
        model = {**model, 'update_precision': 'auto'}
    if task in ('noisy_hook', 'complex_hook'):
        # A snapshot per periodic evaluation (for `rpl select`) writes files and changes no
        # learning; the hook configs turned it on after their models were trained.
        assert shipped.snapshots and not model.get('snapshots', False)
        model = {**model, 'snapshots': True}
    assert shipped == make_config(model)


def show(capsys, *args: str) -> tuple[str, dict]:
    """`rpl train ... --show-config`: the source line and the settings."""
    assert main(['train', *args, '--out', 'unused', '--show-config']) == 0
    source, _, settings = capsys.readouterr().out.partition('\n')
    return source, json.loads(settings)


def test_task_alone_trains_with_its_shipped_config(capsys):
    source, settings = show(capsys, '--task', 'slippery_push')
    assert source.startswith('settings from the shipped config for slippery_push')
    assert settings == make_config(read_config_file(shipped_config('slippery_push'))).to_dict()
    # The five settings behind the README's results, which the TrainConfig defaults lack.
    assert settings['goal_consistent_her'] is True and settings['greedy_envs'] == 1
    assert settings['burn_in_window'] == 500 and settings['target_update_interval'] == 1
    assert settings['updates_per_env_step'] == 0.25
    assert settings['controller'] == 'reactive_push'


@pytest.mark.parametrize('task', ['noisy_hook', 'complex_hook'])
def test_hook_configs_are_valid_and_noisy_hook_trains_two_frame(task, capsys):
    # The files load, pass make_config and carry the paper's hook settings (complex_hook's
    # are also its committed model's, see COMMITTED); `rpl train --show-config` prints them.
    values = read_config_file(shipped_config(task))
    config = make_config(values)
    assert config.task == task and config.controller == 'reactive_hook'
    assert config.noise_eps == 0.1 and config.residual_scale == 0.5
    assert config.total_env_steps == 1_000_000 and config.burn_in_window == 500
    noisy = task == 'noisy_hook'
    assert config.two_frame is noisy
    # noisy_hook's critic sees the executed action, which makes goal-consistent HER moot.
    assert config.critic_action == ('executed' if noisy else 'residual')
    assert config.goal_consistent_her is not noisy
    source, settings = show(capsys, '--task', task)
    assert source.startswith(f'settings from the shipped config for {task}')
    assert settings == config.to_dict()


def test_the_pusher_config_trains_rpl_on_cached_pets_without_goals(capsys):
    # The file loads and builds a trainable problem (the fixed-goal task's dense reward, no
    # goal-consistent HER) with the stop-26 settings: the executed-action critic at scale 1,
    # no burn-in, the actor's rate warmed up instead; `--show-config` prints it.
    from rpl_trainer.problem import registered_problem

    config = make_config(read_config_file(shipped_config('mbrl_pusher')))
    assert (config.task, config.controller, config.algo) == ('mbrl_pusher', 'cached_pets', 'rpl')
    assert config.goal_consistent_her is False and config.residual_scale == 2.0
    assert config.critic_action == 'executed' and config.burn_in_beta == 0.0
    assert config.actor_warmup_updates == 2500 and config.controller_params == ''
    assert config.base_input  # stop 28: the actor sees the cached action
    problem = registered_problem(config.task, config.controller)
    assert problem.dims.goal_dim == 0
    source, settings = show(capsys, '--task', 'mbrl_pusher')
    assert source.startswith('settings from the shipped config for mbrl_pusher')
    assert settings == config.to_dict()


def test_another_algo_over_a_shipped_executed_critic_config_gets_the_plain_critic(
    capsys, tmp_path
):
    # The shipped pusher and noisy_hook configs give RPL the executed-action critic; a
    # baseline trained from them (`--algo scratch`) has no base, so its critic sees the
    # action anyway: the CLI says so and trains it, rather than refusing the shipped file.
    for task, algo in (('mbrl_pusher', 'scratch'), ('noisy_hook', 'expert_explore')):
        source, settings = show(capsys, '--task', task, '--algo', algo)
        assert settings['critic_action'] == 'residual' and settings['algo'] == algo
        assert settings['base_input'] is False
        # The shipped pusher config also feeds the actor the base action.
        turned = 'critic_action=residual' + (', base_input=false' if task == 'mbrl_pusher' else '')
        assert source.endswith(f'; {turned} for algo {algo} (no base to add)')
    # The critic named on the command line: the base input is still turned off, and said.
    source, settings = show(capsys, '--task', 'mbrl_pusher', '--algo', 'scratch', '--set',
                            'critic_action=residual')  # fmt: skip
    assert settings['base_input'] is False and settings['critic_action'] == 'residual'
    assert source.endswith('; base_input=false for algo scratch (no base to add)')
    # Asked for explicitly, it is still the one-line refusal.
    assert main(['train', '--task', 'mbrl_pusher', '--algo', 'scratch', '--set',
                 'critic_action=executed', '--out', 'unused', '--show-config']) == 2  # fmt: skip
    assert "critic_action 'executed' is for algo rpl" in capsys.readouterr().err
    assert main(['train', '--task', 'mbrl_pusher', '--algo', 'scratch', '--set',
                 'base_input=true', '--out', 'unused', '--show-config']) == 2  # fmt: skip
    assert 'base_input is for algo rpl; scratch has no base action' in capsys.readouterr().err
    # So is a config file of the user's own that says both.
    mine = tmp_path / 'mine.yaml'
    mine.write_text('task: mbrl_pusher\ncontroller: cached_pets\ncritic_action: executed\n')
    assert main(['train', '--config', str(mine), '--algo', 'scratch', '--out', 'unused',
                 '--show-config']) == 2  # fmt: skip
    assert "critic_action 'executed' is for algo rpl" in capsys.readouterr().err


def test_config_file_set_and_flags_override_in_order(capsys, tmp_path):
    path = tmp_path / 'mine.yaml'
    path.write_text('task: push\ncontroller: reactive_push\nnoise_eps: 0.1\nhidden_size: 64\n')
    source, settings = show(
        capsys, '--config', str(path), '--set', 'hidden_size=32', '--set', 'num_envs=3',
        '--num-envs', '4', '--no-goal-consistent-her',
    )  # fmt: skip
    assert source.startswith(f'settings from config file {path}')
    assert 'hidden_size=32' in source and 'num_envs=4' in source
    assert settings['noise_eps'] == 0.1  # from the file
    assert settings['hidden_size'] == 32  # --set over the file
    assert settings['num_envs'] == 4  # the flag over --set
    assert settings['burn_in_window'] == TrainConfig().burn_in_window  # not the shipped push
    # --set also overrides a shipped config, and a flag turns a shipped switch off.
    _, settings = show(
        capsys, '--task', 'slippery_push', '--set', 'greedy_envs=0', '--no-goal-consistent-her'
    )
    assert settings['greedy_envs'] == 0 and settings['goal_consistent_her'] is False
    # A task with no shipped config trains with the TrainConfig defaults, and says so.
    source, settings = show(capsys, '--task', 'hook', '--controller', 'reactive_hook')
    assert "TrainConfig defaults (no shipped config for task 'hook')" in source
    assert settings['updates_per_env_step'] == TrainConfig().updates_per_env_step


def test_bad_settings_give_one_line_naming_them(capsys, tmp_path):
    def fails(*args: str) -> str:
        assert main(['train', *args, '--out', str(tmp_path / 'run')]) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and err.startswith('rpl train: error: '), err
        return err

    path = tmp_path / 'bad.yaml'
    path.write_text('task: push\nnoise_epz: 0.1\n')
    assert f"config file {path}: unknown setting 'noise_epz'; did you mean noise_eps?" in fails(
        '--config', str(path)
    )
    assert "--set: unknown setting 'hidden'" in fails('--task', 'push', '--set', 'hidden=3')
    assert "--set noise_eps: parameter 'noise_eps' must be a number, got 'abc'" in fails(
        '--task', 'push', '--set', 'noise_eps=abc'
    )
    # less than one episode: raised to one episode without a word
    assert 'buffer_size=1 holds less than one episode of this task (50 steps)' in fails(
        '--task', 'push', '--set', 'buffer_size=1'
    )
    # gamma 1 passed the range and divided by zero once training started (a traceback)
    assert "--set gamma: parameter 'gamma' = 1.0 is outside [0.0, 0.9999]" in fails(
        '--task', 'push', '--set', 'gamma=1'
    )
    path.write_text('task: push\ncontroller: reactive_push\nnoise_eps: 7e9\n')
    assert f"config file {path}: parameter 'noise_eps'" in fails('--config', str(path))
    path.write_text('task: [push\n')
    assert 'is not valid YAML' in fails('--config', str(path))
    path.write_text('- push\n')
    assert 'must hold a mapping' in fails('--config', str(path))
    # A key given twice (plain YAML keeps the last without a word).
    path.write_text('task: push\nactor_lr: 0.001\ncontroller: reactive_push\nactor_lr: 0.01\n')
    assert f"config file {path}: 'actor_lr' is given twice (lines 2 and 4)" in fails(
        '--config', str(path)
    )
    assert 'cannot read config file' in fails('--config', str(tmp_path / 'missing.yaml'))
    fifo = tmp_path / 'config.fifo'
    os.mkfifo(fifo)  # it was read forever (and /dev/zero until memory ran out)
    assert f'config file {fifo} is not a regular file' in fails('--config', str(fifo))
    assert '--task is required' in fails()
    assert 'no controller' in fails('--task', 'hook')  # registered, no shipped config
    assert "unknown task 'toy'; known tasks: " in fails('--task', 'toy')
    assert not (tmp_path / 'run').exists()


def test_resume_refuses_a_config_file_and_conflicting_flags(capsys, tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'config.json').write_text(make_config({'task': 'push'}).to_json())
    assert main(['train', '--out', str(run), '--resume', '--show-config']) == 2
    assert 'no checkpoint' in capsys.readouterr().err  # refused as the run refuses it
    (run / 'checkpoint.pt').write_bytes(b'')  # read only by the run itself
    assert main(['train', '--out', str(run), '--resume', '--config', 'x.yaml']) == 2
    assert '--config cannot be combined with --resume' in capsys.readouterr().err
    assert main(['train', '--out', str(run), '--resume', '--task', 'slippery_push']) == 2
    err = capsys.readouterr().err
    assert "task: 'push' -> 'slippery_push'" in err and 'total_env_steps' in err
    # Budgets may change; the rest comes from the run's config.json.
    assert main(['train', '--out', str(run), '--resume', '--steps', '9', '--show-config']) == 0
    source, _, settings = capsys.readouterr().out.partition('\n')
    assert source == f'settings from {run / "config.json"} (the run being resumed); ' + (
        'command line: total_env_steps=9'
    )
    assert json.loads(settings)['task'] == 'push'


def test_help_shows_the_defaults_and_the_shipped_configs(capsys):
    with pytest.raises(SystemExit) as done:
        main(['train', '--help'])
    assert done.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    assert (
        '--updates-per-step UPDATES_PER_STEP gradient steps per env step '
        "(default: the config's, else 0.1)"
    ) in text
    assert '--seed SEED run seed (default: 0)' in text
    assert 'slippery_push: controller=reactive_push total_env_steps=300000' in text
    assert 'goal_consistent_her=True greedy_envs=1 burn_in_window=500' in text
    assert 'push: controller=discrete_mpc_push' in text
    assert 'pick_and_place: controller=reactive_pick_and_place' in text


def test_wheel_ships_the_train_configs(repo_root, tmp_path):
    package = tmp_path / 'rpl_trainer'
    shutil.copytree(
        repo_root / 'src' / 'rpl_trainer',
        package,
        ignore=shutil.ignore_patterns('*.egg-info', 'build', '__pycache__'),
    )
    subprocess.run(
        [
            sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
            '--no-build-isolation', str(package), '-w', str(tmp_path / 'dist'),
        ],
        check=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / 'dist').glob('rpl_trainer-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = pathlib.Path(str(shipped_config('push'))).parent
    expected = {f'rpl_trainer/train_configs/{p.name}' for p in shipped.glob('*.yaml')}
    assert len(expected) == 6 and expected <= names


def stats(q: float) -> UpdateStats:
    return UpdateStats(critic_loss=0.5, actor_loss=0.0, q_mean=q)


def test_burn_in_status_says_how_far_along_it_is():
    burn_in = BurnIn('q_drift', beta=1.0, window=2, max_updates=10, enabled=True)
    assert burn_in_status(burn_in) == 'burn-in: critic 0 of 5 windows, actor frozen'
    for q in (-1.0, -1.0, -5.0, -5.0):  # two windows, the second drifts by 4
        burn_in.observe(stats(q))
    assert burn_in_status(burn_in) == (
        'burn-in: critic 2 of 5 windows (q_drift 4 > 1), actor frozen'
    )
    for q in (-5.5, -5.5):  # drift 0.5 < 1: the actor is released
        burn_in.observe(stats(q))
    assert burn_in_status(burn_in) == 'actor learning (burn-in ended after 3 windows, by q_drift)'
    assert burn_in_status(BurnIn('q_drift', 1.0, 2, 10, enabled=False)) == ''
    uncapped = BurnIn('critic_loss', 1.0, 2, 0, enabled=True)
    assert burn_in_status(uncapped) == 'burn-in: critic 0 windows, actor frozen'


def test_a_budget_too_short_for_burn_in_is_announced():
    config = make_config({'total_env_steps': 4000, 'updates_per_env_step': 0.25})
    note = burn_in_budget_note(config)  # 1000 updates < 2 windows of 2000
    assert note is not None and '~1000 gradient steps' in note and '4000' in note
    enough = make_config({'total_env_steps': 16_000, 'updates_per_env_step': 0.25})
    assert burn_in_budget_note(enough) is None
    assert burn_in_budget_note(make_config({'total_env_steps': 10, 'algo': 'scratch'})) is None


def test_threads_that_must_share_the_cores_are_announced():
    """`--threads 2` beside another job ran several times slower than 1 thread, silently."""
    two = make_config({'torch_threads': 2})
    note = thread_contention_note(two, cores=2, load=1.3)
    assert note is not None and note.startswith('--threads 2 on 2 core(s) with a load of 1.3')
    assert 'slower than with --threads 1' in note
    assert thread_contention_note(two, cores=2, load=0.2) is None  # the machine is free
    assert thread_contention_note(two, cores=16, load=3.0) is None
    assert thread_contention_note(make_config({}), cores=1, load=9.0) is None  # 1 thread


def test_a_zero_residual_scale_is_refused_before_a_run_starts():
    """The range of residual_scale includes 0 at its low end; a run with it made its folder,
    then failed at the first export (a NaN check) with advice to --resume that failed again."""
    from rpl_interfaces.params import ParameterError

    with pytest.raises(ParameterError, match='residual_scale must be above 0, got 0'):
        make_config({'task': 'slippery_push', 'residual_scale': 0.0})
