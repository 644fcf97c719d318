"""Hot reload of the residual actor: checked on the last real observations, size-limited,
loaded off the control path (ResidualMixer and model_reload; no ROS)."""

from __future__ import annotations

import pathlib
import statistics
import time

import numpy as np
import pytest
from helpers import reload_model, replace_model, set_model_metadata, stop_process
from onnx_builders import (
    OBS_DIM,
    known_weights,
    linear_model,
    nan_in_range_model,
    padded_model,
)
from residual_driver import OBS_FIELDS, Driver, start_node

from rpl_interfaces import contract
from rpl_residual_node import mixer as m
from rpl_residual_node import model_reload
from rpl_residual_node import model_slot as slot
from rpl_residual_node.mixing import ResidualConfig, mix
from rpl_residual_node.onnx_actor import OnnxActor

# A real observation: observation[0] is a Fetch gripper x (m), inside nan_in_range_model's
# NaN range [1.0, 1.5]; the synthetic probe inputs miss that range.
REAL_OBS = np.r_[1.3, np.linspace(-0.5, 0.5, OBS_DIM - 1)]
OTHER_OBS = np.r_[-0.5, np.linspace(-0.5, 0.5, OBS_DIM - 1)]
GOAL = np.array([0.3, -0.2, 0.1])
BASE = np.array([0.5, -0.5, 0.9, -1.0])


def make_mixer(path: pathlib.Path, **config) -> m.ResidualMixer:
    return m.ResidualMixer(ResidualConfig(model_path=str(path), **config))


def step(mixer: m.ResidualMixer, k: int, obs: np.ndarray = REAL_OBS, episode: int = 1):
    assert mixer.add_observation(episode, k, obs, GOAL) is None
    return mixer.add_base_action(episode, k, BASE)


def linear_command(obs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    weights = known_weights() if weights is None else weights
    return mix(BASE, weights @ np.r_[obs, GOAL], ResidualConfig())[0]


# ------------------------------------------------------------- the last real observations
def test_a_model_nan_on_the_recent_real_observations_is_refused_and_the_old_one_stays(
    tmp_path,
):
    path = linear_model(tmp_path / 'actor.onnx')
    mixer = make_mixer(path)
    good = mixer.actor
    for k in range(40):  # more than the 32 kept
        assert step(mixer, k).reason == 'ok'
    replace_model(path, nan_in_range_model(tmp_path / 'nan_on_real.onnx'))
    event = reload_model(mixer)
    assert not event.loaded and event.refusal == model_reload.BAD_ON_RECENT
    assert event.message.startswith('rejected the new model, keeping actor.onnx')
    assert 'non-finite residual on 32 of the last 32 real observations' in event.message
    assert '(first: episode 1, step 8)' in event.message and '\n' not in event.message
    assert mixer.actor is good
    decision = step(mixer, 40)
    assert decision.reason == 'ok'
    np.testing.assert_allclose(decision.command, linear_command(REAL_OBS), atol=1e-5)
    level, message, values = mixer.diagnostics()
    assert level == 'warn' and 'non-finite residual' in message
    rejected, bad = slot.MODEL_REJECTED, slot.MODEL_BAD_ON_RECENT
    assert values[f'count.{rejected}'] == values[f'count.{bad}'] == 1
    assert reload_model(mixer) is None  # not retried until the file changes again
    # A good model afterwards is checked on the same observations and swapped in.
    replace_model(
        path, linear_model(tmp_path / 'doubled.onnx', weights=2 * known_weights()), 2 * 10**9
    )
    event = reload_model(mixer)
    assert event.loaded and 'finite on the last 32 real observations' in event.message
    np.testing.assert_allclose(
        step(mixer, 41).command, linear_command(REAL_OBS, 2 * known_weights()), atol=1e-5
    )


def test_the_same_model_is_accepted_when_the_real_observations_are_outside_its_nan_range(
    tmp_path,
):
    path = linear_model(tmp_path / 'actor.onnx')
    mixer = make_mixer(path)
    for k in range(5):
        step(mixer, k, obs=OTHER_OBS)
    replace_model(path, nan_in_range_model(tmp_path / 'nan_on_real.onnx'))
    event = reload_model(mixer)
    assert event.loaded and 'finite on the last 5 real observations' in event.message
    assert step(mixer, 5, obs=OTHER_OBS).reason == 'ok'


def test_a_model_beyond_its_stated_scale_on_the_real_observations_is_refused(tmp_path):
    """The probe's inputs are small; a model whose residual keeps inside its stated scale
    there but not on the robot's own observations is refused on reload, the running model
    kept."""
    path = linear_model(tmp_path / 'actor.onnx')
    mixer = make_mixer(path, residual_limit=100.0)
    good = mixer.actor
    big = np.r_[60.0, np.zeros(OBS_DIM - 1)]  # residual ~ 60 * W[:, 0]: up to ~70
    for k in range(3):
        assert step(mixer, k, obs=big).reason == 'ok'
    stated = linear_model(tmp_path / 'stated.onnx')
    set_model_metadata(stated, {'residual_scale': '20'})  # the probe stays within 20
    assert OnnxActor.load(stated).identity.residual_scale == 20.0
    replace_model(path, stated)
    event = reload_model(mixer)
    assert not event.loaded and mixer.actor is good, event
    assert event.refusal == model_reload.BAD_ON_RECENT  # shown by the real inputs only
    assert 'on the last 3 real observations its residual reaches ' in event.message
    assert 'beyond the 20 its metadata states (residual_scale)' in event.message
    assert '\n' not in event.message


def test_check_on_recent_inputs_feeds_two_frame_models_their_previous_observation(tmp_path):
    actor = OnnxActor.load(linear_model(tmp_path / 'two.onnx', two_frame=True))
    recent = [
        model_reload.RecentInput(1, 0, REAL_OBS, GOAL, None),
        model_reload.RecentInput(1, 1, OTHER_OBS, GOAL, REAL_OBS),
        model_reload.RecentInput(1, 2, np.zeros(OBS_DIM + 1), GOAL, None),  # other sizes
    ]
    assert model_reload.check_on_recent_inputs(actor, recent) == 2
    assert model_reload.check_on_recent_inputs(actor, []) == 0
    fragile = OnnxActor.load(nan_in_range_model(tmp_path / 'nan.onnx'))
    with pytest.raises(model_reload.RecentInputError, match='1 of the last 2 .* step 0'):
        model_reload.check_on_recent_inputs(fragile, recent)


def test_a_model_slower_than_the_decided_steps_is_loaded_with_a_warning(tmp_path):
    """A model five times slower than the input period passed the reload check (finite on
    the recent inputs) without a word, and the node fell behind its input."""
    from rpl_residual_node.model_slot import slow_warning

    actor = OnnxActor.load(linear_model(tmp_path / 'a.onnx'))
    recent = [model_reload.RecentInput(1, k, REAL_OBS, GOAL, None) for k in range(3)]
    step_s = model_reload.step_time_s(actor, recent)
    assert 0.0 < step_s < 0.5
    assert model_reload.step_time_s(actor, []) == 0.0
    line = slow_warning(0.120, 0.040)
    assert line.startswith('one step of it takes 120.0 ms, more than the 40.0 ms between')
    assert 'fall back to the base action (input_late)' in line
    assert slow_warning(0.010, 0.040) is None  # faster than the steps
    assert slow_warning(0.120, 0.0) is None and slow_warning(0.0, 0.040) is None  # unknown


# ------------------------------------------------------------------- size and blocking
def test_an_oversized_file_is_refused_unread_without_blocking(tmp_path):
    path = linear_model(tmp_path / 'actor.onnx')
    mixer = make_mixer(path)
    assert step(mixer, 0).reason == 'ok'
    huge = tmp_path / 'huge.onnx'
    with open(huge, 'wb') as handle:
        handle.truncate(2**30)  # 1 GiB (sparse: no disk space), e.g. a file being written
    replace_model(path, huge)
    start = time.perf_counter()
    event = mixer.check_reload()
    took_s = time.perf_counter() - start
    assert event is not None and not mixer.reload_in_flight  # decided from the size alone
    assert took_s < 0.05, took_s  # reading 1 GiB, as before, takes far longer
    assert not event.loaded and event.refusal == model_reload.TOO_LARGE
    assert f'is {2**30} bytes, more than the limit of {64 * 2**20} bytes' in event.message
    assert 'max_model_bytes' in event.message and 'refused unread' in event.message
    assert step(mixer, 1).reason == 'ok'
    values = mixer.diagnostics()[2]
    assert values[f'count.{slot.MODEL_TOO_LARGE}'] == values[f'count.{slot.MODEL_REJECTED}'] == 1
    # The limit is a parameter; a file at the limit is accepted.
    size = linear_model(tmp_path / 'small.onnx').stat().st_size
    assert make_mixer(tmp_path / 'small.onnx', max_model_bytes=size).last_reload.loaded
    at_start = make_mixer(tmp_path / 'small.onnx', max_model_bytes=size - 1).last_reload
    assert not at_start.loaded and at_start.refusal == model_reload.TOO_LARGE


def test_a_large_model_loads_in_the_background_while_steps_are_decided(tmp_path):
    """A 48 MB model (under the 64 MiB limit) takes a while to load; the control thread
    must keep deciding steps meanwhile (before the fix, check_reload loaded it inline)."""
    path = linear_model(tmp_path / 'actor.onnx')
    mixer = make_mixer(path)
    old = mixer.actor
    for k in range(10):
        step(mixer, k)
    replace_model(path, padded_model(tmp_path / 'big.onnx', 48.0))
    start = time.perf_counter()
    assert mixer.check_reload() is None
    check_s = time.perf_counter() - start
    assert mixer.reload_in_flight and mixer.actor is old
    latencies, k, event = [], 10, None
    while event is None:
        begin = time.perf_counter()
        decision = step(mixer, k)
        latencies.append(time.perf_counter() - begin)
        assert decision.reason == 'ok'
        np.testing.assert_allclose(decision.command, linear_command(REAL_OBS), atol=1e-5)
        event = mixer.finish_reload()
        k += 1
        time.sleep(0.002)  # a 500 Hz control loop
        assert time.perf_counter() - start < 60.0
    load_s = time.perf_counter() - start
    assert event.loaded and mixer.actor is not old and mixer.actor.path == str(path)
    assert 'finite on the last 10 real observations' in event.message  # those at the start
    assert check_s < 0.05, check_s
    assert len(latencies) >= 5, (len(latencies), load_s)
    assert statistics.median(latencies) < 0.01, latencies
    assert max(latencies) < max(0.1, load_s / 2), (max(latencies), load_s)
    print(
        f'48 MB model loaded in the background in {load_s:.2f} s; check_reload {check_s * 1e3:.2f}'
        f' ms; {len(latencies)} steps meanwhile, decision p50 '
        f'{statistics.median(latencies) * 1e3:.2f} ms, max {max(latencies) * 1e3:.1f} ms'
    )


# ------------------------------------------------------------------- the node, over DDS
@pytest.mark.integration
def test_node_keeps_answering_steps_while_bad_and_large_models_are_handled(tmp_path):
    """The real node: a model NaN on the real observations is refused and the old one
    keeps running; a 1 GiB file is refused unread; a 48 MB model loads in the background.
    Every step meanwhile is answered with the residual command, promptly."""
    path = linear_model(tmp_path / 'actor.onnx')
    payload = np.r_[REAL_OBS, [1.2, 0.7, 0.42], GOAL]  # observation, achieved, desired goal
    expected = linear_command(REAL_OBS)
    huge = tmp_path / 'huge.onnx'
    with open(huge, 'wb') as handle:
        handle.truncate(2**30)
    files = [
        (nan_in_range_model(tmp_path / 'nan_on_real.onnx'), 'non-finite residual on 32 of'),
        (huge, 'refused unread'),
        (padded_model(tmp_path / 'big.onnx', 48.0), 'finite on the last 32 real observations'),
    ]
    proc, log = start_node(
        tmp_path, f'model_path:={path}', 'reload_period_s:=0.1', 'diagnostics_period_s:=0.2'
    )
    driver = Driver()
    latencies: list[float] = []
    k = 0

    def answer_one_step() -> None:
        nonlocal k
        begin = time.perf_counter()
        driver.send(driver.obs_pub, k, payload, OBS_FIELDS)
        driver.send(driver.base_pub, k, BASE, contract.ACTION_FIELDS)
        got = driver.spin_until(lambda s=k: any(c.step == s for c in driver.commands), 5.0)
        latencies.append(time.perf_counter() - begin)
        assert got, f'no command for step {k}\n{log.read_text()}'
        command = next(c for c in driver.commands if c.step == k and c.episode == 1)
        assert command.tag == 'residual', (k, command.tag, log.read_text())
        np.testing.assert_allclose(command.values, expected, atol=1e-5)
        k += 1

    try:
        assert driver.spin_until(driver.connected, 20.0), log.read_text()
        assert driver.handshake(), log.read_text()
        for _ in range(40):
            answer_one_step()
        latencies.clear()
        for i, (source, line) in enumerate(files):
            replace_model(path, source, (i + 1) * 10**9)
            deadline = time.monotonic() + 30.0
            while line not in log.read_text():
                answer_one_step()
                assert time.monotonic() < deadline, log.read_text()
            for _ in range(5):
                answer_one_step()

        def counted() -> bool:
            if not driver.diagnostics:
                return False
            values = {kv.key: kv.value for kv in driver.diagnostics[-1].values}
            return (
                values.get(f'count.{slot.MODEL_BAD_ON_RECENT}') == '1'
                and values.get(f'count.{slot.MODEL_TOO_LARGE}') == '1'
                and values.get('model_reload_running') == 'False'
            )

        assert driver.spin_until(counted, 5.0), driver.diagnostics[-1:]
    finally:
        code = stop_process(proc, timeout_s=10.0)
        driver.close()
    text = log.read_text()
    assert code == 0 and 'Traceback' not in text, text
    assert 'rejected the new model, keeping actor.onnx' in text
    p50, worst = statistics.median(latencies), max(latencies)
    print(
        f'{len(latencies)} steps during the reloads: round trip p50 {p50 * 1e3:.1f} ms, '
        f'max {worst * 1e3:.1f} ms'
    )
    assert p50 < 0.05 and worst < 1.0, (p50, worst)  # before: 7 s stalls on the 1 GiB file
