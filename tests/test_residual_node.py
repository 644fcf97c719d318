"""The real residual node in its own process, driven over DDS (loopback) by this test.

Good, malformed (NaN, wrong length, missing meta fields, wrong names) observations and
base actions: the node must survive and publish the residual command when it can; an
invalid message is rejected (counted, logged) without any effect, so the valid message of
the same step still wins, and a step with only an invalid half gets no command at all
(never a zero command: the sim bridge then applies the real base action it received).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from helpers import ros_args, set_model_metadata, stop_process
from onnx_builders import GOAL_DIM, OBS_DIM, known_weights, linear_model
from residual_driver import BASE, NAMESPACE, NODE_EXE, OBS, OBS_FIELDS, Driver, start_node
from sensor_msgs.msg import JointState

from rpl_interfaces import contract
from rpl_interfaces.codec import StampedVector, encode
from rpl_residual_node.mixing import ResidualConfig, mix
from rpl_residual_node.model_identity import ModelIdentity, StackIdentity

pytestmark = pytest.mark.integration


@pytest.fixture
def driver():
    drv = Driver()
    yield drv
    drv.close()


def expected_residual_command() -> np.ndarray:
    observation, goal = OBS[:OBS_DIM], OBS[-GOAL_DIM:]
    command, _ = mix(BASE, known_weights() @ np.r_[observation, goal], ResidualConfig())
    return command


def test_node_survives_malformed_messages_and_falls_back(tmp_path, driver):
    model = linear_model(tmp_path / 'actor.onnx')
    proc, log = start_node(tmp_path, f'model_path:={model}', 'diagnostics_period_s:=0.2')
    try:
        driver.meet(log)
        assert driver.spin_until(lambda: driver.diagnostics, 5.0)
        ok_before = int({kv.key: kv.value for kv in driver.diagnostics[-1].values}['count.ok'])
        nan_obs = OBS.copy()
        nan_obs[2] = np.nan
        short_fields = OBS_FIELDS[1:]  # one observation field missing, names consistent
        action = contract.ACTION_FIELDS
        nan_base = np.array([0.1, np.nan, 0.0, 0.2])
        residual = expected_residual_command()
        plan = [
            # (step, observation, base action, expected command or None, expected source)
            (0, (OBS, OBS_FIELDS), (BASE, action), residual, 'residual'),
            (1, (nan_obs, OBS_FIELDS), (BASE, action), None, None),
            (2, (OBS[1:], short_fields), (BASE, action), BASE, 'base'),  # not the model's size
            (3, 'names_values_mismatch', (BASE, action), None, None),
            (4, 'no_meta', (BASE, action), None, None),
            (5, (OBS, OBS_FIELDS), (nan_base, action), None, None),
            # 3 fields where the model and the stream agree on 4: rejected (it went out as
            # a 3-value command and took the step from the real base action).
            (6, (OBS, OBS_FIELDS), (BASE[:3], action[:3]), None, None),
            (7, (OBS, OBS_FIELDS), (BASE, ('dx', 'dx', 'dz', 'gripper')), None, None),
            (8, (OBS, OBS_FIELDS), 'no_meta', None, None),
            (9, (OBS, OBS_FIELDS), (BASE, action), residual, 'residual'),
            # A forged NaN base action for the current step, then the real one: the real
            # one wins (it used to be dropped as a duplicate after a zero command).
            (10, (OBS, OBS_FIELDS), 'forged_then_real', residual, 'residual'),
            # Forged NaN observations of other steps, then the real step: nothing cleared.
            (11, 'forged_other_steps', (BASE, action), residual, 'residual'),
        ]
        for step, obs, base, expected, source in plan:
            if obs == 'forged_other_steps':
                driver.send(driver.base_pub, step, BASE, action)  # base first: it waits
                base = None
                for forged in (0, step + 1, 10_000):
                    driver.send(driver.obs_pub, forged, nan_obs, OBS_FIELDS)
                driver.send(driver.obs_pub, step, OBS, OBS_FIELDS)
            elif obs == 'names_values_mismatch':
                msg = encode(JointState(), StampedVector(0, step, OBS, 0, 'test'), OBS_FIELDS)
                msg.position = list(msg.position)[:-2]
                driver.obs_pub.publish(msg)
            elif obs == 'no_meta':
                msg = JointState(name=list(OBS_FIELDS), position=OBS.tolist())
                driver.obs_pub.publish(msg)
            else:
                driver.send(driver.obs_pub, step, *obs)
            if base == 'no_meta':
                driver.base_pub.publish(JointState(name=list(action), position=BASE.tolist()))
            elif base == 'forged_then_real':
                driver.send(driver.base_pub, step, nan_base, action)
                driver.send(driver.base_pub, step, BASE, action)
            elif base is not None:
                driver.send(driver.base_pub, step, *base)
            if expected is not None:
                got = driver.spin_until(
                    lambda s=step: any(c.step == s for c in driver.commands), 10.0
                )
                assert got, f'no command for step {step}\n{log.read_text()}'
                command = next(c for c in driver.commands if c.step == step)
                assert command.tag == source, (step, command.tag)
                assert np.all(np.isfinite(command.values))
                np.testing.assert_allclose(command.values, expected, atol=1e-5)
        # Commands are reliable and ordered: had steps 1 or 3 to 8 been answered, they would
        # have arrived before the command of step 9; nothing was answered twice.
        assert [c.step for c in driver.commands] == [0, 2, 9, 10, 11]
        assert driver.names['command'][1] == (*contract.META_FIELDS, *action)  # step 2
        assert driver.spin_until(lambda: len(driver.residuals) == 5, 5.0)
        assert driver.residuals[0].tag == 'actor.onnx'
        np.testing.assert_array_equal(driver.residuals[1].values, np.zeros(4))

        def diagnostics_caught_up() -> bool:
            if not driver.diagnostics:
                return False
            values = {kv.key: kv.value for kv in driver.diagnostics[-1].values}
            return values.get('count.ok') == str(ok_before + 4)

        assert driver.spin_until(diagnostics_caught_up, 5.0)
        status = driver.diagnostics[-1]
        values = {kv.key: kv.value for kv in status.values}
        assert 'residual_node' in status.name
        assert values['model_loaded'] == 'True' and values['model_path'] == str(model)
        assert values['count.rejected_observation_non_finite'] == '4'  # step 1, 3 forged
        assert values['count.malformed_observation'] == '2'  # values mismatch, no meta
        assert values['count.observation_wrong_size'] == '1'
        assert values['count.rejected_base_action_non_finite'] == '2'  # steps 5 and 10
        assert values['count.rejected_base_action_wrong_size'] == '1'  # step 6: 3 fields
        assert values['count.malformed_base_action'] == '2'  # repeated names, no meta
        assert 'count.base_action_wrong_size' not in values
        for gone in ('dropped_duplicate', 'stream_restart'):
            assert f'count.{gone}' not in values, (gone, values)
        assert float(values['inference_p50_us']) > 0
        assert float(values['decision_p99_us']) > 0
        assert proc.poll() is None, log.read_text()
    finally:
        code = stop_process(proc, timeout_s=10.0)
    assert code == 0, log.read_text()
    text = log.read_text()
    assert 'loaded model actor.onnx' in text
    assert 'dropped an observation' in text and 'Traceback' not in text
    assert 'rejected the base action of episode 1 step 5: non-finite values' in text
    assert 'rejected the base action of episode 1 step 6: 3 values, expected 4' in text


def test_node_without_model_forwards_the_base_action(tmp_path, driver):
    proc, log = start_node(tmp_path)
    try:
        driver.meet(log)
        # Observation first, as on the real stack (the controller answers the observation).
        driver.send_pair(0)
        assert driver.spin_until(lambda: driver.commands, 10.0), log.read_text()
        (command,) = driver.commands
        assert command.tag == 'base' and command.step == 0
        np.testing.assert_array_equal(command.values, BASE)
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()


def test_node_late_and_lost_inputs(tmp_path, driver):
    """A node behind its input sent residuals computed from old inputs as if fresh, and the
    steps whose messages were overwritten in its input queue vanished without a count or a
    line. Late: with max_input_age_s far below any callback's delay after the reception
    (1 us), every step gets the base action and the model is not run. Lost: the node stopped
    (SIGSTOP) while 30 more steps were sent keeps only the last 10 of each topic; the
    missing ones are counted per topic, logged and make /diagnostics warn."""
    model = linear_model(tmp_path / 'actor.onnx')
    params = ['max_input_age_s:=0.000001', 'diagnostics_period_s:=0.2', 'reload_period_s:=0.1']
    proc, log = start_node(tmp_path, f'model_path:={model}', *params)
    try:
        driver.meet(log)
        for k in range(3):
            driver.send_pair(k)
        assert driver.spin_until(lambda: len(driver.commands) >= 3, 10.0), log.read_text()
        assert {c.tag for c in driver.commands} == {'base'}, driver.commands
        for command in driver.commands:
            np.testing.assert_array_equal(command.values, BASE)
        assert driver.spin_until(lambda: 'its input waited' in log.read_text(), 5.0)
        assert 'base action used, the model not run: its input waited ' in log.read_text()
        proc.send_signal(signal.SIGSTOP)
        try:
            for k in range(3, 33):
                driver.send_pair(k)
                driver.spin_until(lambda: False, 0.01)
        finally:
            proc.send_signal(signal.SIGCONT)

        def lost() -> dict:
            last = {kv.key: kv.value for kv in driver.diagnostics[-1].values}
            return {k: int(v) for k, v in last.items() if k.startswith('count.lost_')}

        def counted() -> bool:
            return bool(driver.diagnostics) and sum(lost().values()) >= 20

        assert driver.spin_until(counted, 10.0), (driver.diagnostics[-1:], log.read_text())
        assert driver.spin_until(lambda: 'never reached the node' in log.read_text(), 5.0)
        text = log.read_text()
        assert 'input message(s) never reached the node (observation ' in text, text
        assert lost()['count.lost_observation'] >= 10, lost()
        assert any(
            status.level == DiagnosticStatus.WARN and 'never reached the node' in status.message
            for status in driver.diagnostics
        ), [status.message for status in driver.diagnostics]
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()


def test_node_says_when_the_observation_stream_starts_over(tmp_path, driver):
    """A second observation source re-sending older steps reset the pairing again and again,
    counted on /diagnostics only (stream_restart), never logged."""
    proc, log = start_node(tmp_path, 'reload_period_s:=0.1')
    try:
        driver.meet(log)
        driver.send_pair(5)
        assert driver.spin_until(lambda: driver.commands, 10.0), log.read_text()
        driver.send_pair(2)  # older than 5: the stream started over
        line = 'the observation stream started over 1 time(s) (an older step after a newer one'
        assert driver.spin_until(lambda: line in log.read_text(), 5.0), log.read_text()
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()


def test_node_names_the_unmatched_link_when_step_halves_expire(tmp_path, driver):
    """Observations without any base action (the controller's link gone): each expires after
    sync_timeout_s, no command is made, and the log says so with the matched publisher
    counts of both inputs: base_action 0 names the broken link."""
    proc, log = start_node(tmp_path, 'sync_timeout_s:=0.2', 'reload_period_s:=0.1')
    try:
        driver.meet(log)
        driver.node.destroy_publisher(driver.base_pub)  # the base action link goes away
        line = 'matched publishers now: observation 1, base_action 0'
        # The node's graph may still hold the destroyed writer for a moment, and the line is
        # throttled (one per 10 s): keep the halves coming until a line names the link.
        deadline = time.monotonic() + 25.0
        step = 0
        while line not in log.read_text() and time.monotonic() < deadline:
            driver.send(driver.obs_pub, step, OBS, OBS_FIELDS)
            driver.spin_until(lambda: False, 0.1)
            step += 1
        text = log.read_text()
        assert line in text, text
        assert 'step half(s) dropped without the other half (it did not come within ' in text
        assert 'sync_timeout_s=0.2' in text
        assert driver.commands == []
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()


def test_node_explores_only_on_model_steps(tmp_path, driver):
    model = linear_model(tmp_path / 'actor.onnx')
    params = ('residual_limit:=1.0', 'explore_random:=1.0', 'explore_seed:=3')
    proc, log = start_node(tmp_path, f'model_path:={model}', 'diagnostics_period_s:=0.2', *params)
    try:
        driver.meet(log)
        short = OBS[1:]  # an observation of the wrong size for the model: a base fallback
        plan = [OBS, OBS, OBS, short, OBS]
        for k, obs in enumerate(plan):
            driver.send(driver.obs_pub, k, obs, OBS_FIELDS if obs is OBS else OBS_FIELDS[1:])
            driver.send(driver.base_pub, k, BASE, contract.ACTION_FIELDS)

        def answers(vectors: list[StampedVector]) -> list[StampedVector]:
            return [v for v in vectors if v.episode == 1]  # not the handshake's late ones

        done = driver.spin_until(
            lambda: len(answers(driver.commands)) == len(answers(driver.residuals)) == len(plan),
            10.0,
        )
        assert done, log.read_text()
        commands, residuals = answers(driver.commands), answers(driver.residuals)
        _, model_residual = mix(
            BASE,
            known_weights() @ np.r_[OBS[:OBS_DIM], OBS[-GOAL_DIM:]],
            ResidualConfig(residual_limit=1.0),
        )
        for k, (command, residual) in enumerate(zip(commands, residuals, strict=True)):
            assert command.step == residual.step == k
            if k == 3:  # the wrong-size observation: the base action, no exploration
                assert command.tag == 'base'
                np.testing.assert_array_equal(command.values, BASE)
                np.testing.assert_array_equal(residual.values, np.zeros(4))
                continue
            assert command.tag == 'residual'
            assert np.all(np.abs(residual.values) <= 1.0)
            assert np.all(np.abs(residual.values - model_residual) > 1e-6)
            np.testing.assert_allclose(
                command.values, np.clip(BASE + residual.values, -1.0, 1.0), atol=1e-12
            )
            assert np.all(np.abs(command.values) <= 1.0)
        # Four different uniform draws, not one repeated residual.
        explored = [r.values for k, r in enumerate(residuals) if k != 3]
        assert len({tuple(v) for v in explored}) == 4

        def diagnostics_caught_up() -> bool:
            if not driver.diagnostics:
                return False
            values = {kv.key: kv.value for kv in driver.diagnostics[-1].values}
            # After step 4 (the last one), not between steps 3 and 4.
            return (
                values.get('count.observation_wrong_size') == '1' and values['last_reason'] == 'ok'
            )

        assert driver.spin_until(diagnostics_caught_up, 5.0)
        status = driver.diagnostics[-1]
        values = {kv.key: kv.value for kv in status.values}
        assert 'exploration on' in status.message
        assert (values['explore_noise'], values['explore_random']) == ('0.0', '1.0')
        assert values['explore_seed'] == '3'
        assert values['explored_steps'] == values['explored_random_steps'] == values['count.ok']
        assert int(values['count.ok']) >= 5  # the handshake's steps explored too
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()
    assert 'exploration on' in log.read_text()


@pytest.mark.parametrize(
    ('param', 'line'),
    [
        ('residual_gain:=5.0', "'residual_gain' = 5.0 is outside [0.0, 2.0]"),
        (
            'residual_scale:=1.5',
            "parameter 'residual_scale' was renamed to 'residual_gain' (the gain on the "
            "clamped residual; 'residual_scale' now names only the model's scale inside its "
            'graph): set residual_gain:=1.5 instead',
        ),
        ('explore_noise:=1.5', "'explore_noise' = 1.5 is outside [0.0, 1.0]"),
        ('explore_seed:=-2', "'explore_seed' = -2 is outside [0, 9223372036854775807]"),
    ],
)
def test_out_of_range_parameter_exits_with_one_clear_line(tmp_path, param, line):
    proc, log = start_node(tmp_path, param)
    assert proc.wait(timeout=20) == 2
    text = log.read_text()
    assert line in text
    assert 'Traceback' not in text


def test_a_node_that_hears_nothing_says_where_it_listens(tmp_path):
    """A residual node started outside the stack's namespace heard nothing and said
    nothing: the robot's bridge fell back to the base action on every step."""
    namespace = f'/silent_{os.getpid()}'  # no driver of another test publishes here
    log = tmp_path / 'node.log'
    with open(log, 'wb') as out:
        proc = subprocess.Popen(
            [str(NODE_EXE), *ros_args(namespace, 'silence_warning_s:=1.0')],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20.0
        while 'no observation or base_action' not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.1)
    finally:
        stop_process(proc, timeout_s=10.0)
    text = log.read_text()
    assert (
        'no observation or base_action in 1 s and no publisher of either: listening on '
        f'{namespace}/observation and {namespace}/base_action; is the node in the namespace'
    ) in text, text
    assert text.count('no observation or base_action') == 1, text


def test_a_parameter_file_with_the_gains_old_name_is_refused(tmp_path):
    # A user's launch file or YAML written before the rename: refused, not silently ignored.
    params = tmp_path / 'old.yaml'
    params.write_text('/**:\n  ros__parameters:\n    residual_scale: 0.5\n')
    log = tmp_path / 'node.log'
    with open(log, 'wb') as out:
        proc = subprocess.Popen(
            [str(NODE_EXE), *ros_args(NAMESPACE, params_file=params)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    assert proc.wait(timeout=20) == 2
    text = log.read_text()
    assert "'residual_scale' was renamed to 'residual_gain'" in text
    assert 'set residual_gain:=0.5 instead' in text and 'Traceback' not in text
    assert len(text.strip().splitlines()) == 1, text


def _model_for(tmp_path: pathlib.Path, task: str, controller: str) -> pathlib.Path:
    """The linear model, stating that it was made for ``task`` / ``controller`` and OBS_FIELDS."""
    layout = contract.split_observation_fields(OBS_FIELDS)
    stack = StackIdentity.of_stream(task, controller, OBS_FIELDS, contract.ACTION_FIELDS)
    assert stack.observation_fields == OBS_FIELDS[layout.observation]
    identity = ModelIdentity.for_stack(stack)
    return set_model_metadata(linear_model(tmp_path / 'actor.onnx'), identity.to_props())


def _diagnostic_values(driver: Driver) -> dict[str, str]:
    assert driver.spin_until(lambda: driver.diagnostics, 5.0)
    return {kv.key: kv.value for kv in driver.diagnostics[-1].values}


def test_node_refuses_a_model_of_another_task_with_one_line(tmp_path, driver):
    model = _model_for(tmp_path, 'push', 'reactive_push')
    proc, log = start_node(tmp_path, f'model_path:={model}', 'diagnostics_period_s:=0.2')
    driver.obs_tag, driver.base_tag = 'pick_and_place', 'reactive_push'
    try:
        driver.meet(log)
        for step in range(3):
            driver.send_pair(step)
        assert driver.spin_until(lambda: len(driver.commands) == 3, 10.0), log.read_text()
        assert {c.tag for c in driver.commands} == {'base'}
        np.testing.assert_array_equal(driver.commands[-1].values, BASE)
        driver.diagnostics.clear()
        values = _diagnostic_values(driver)
        assert int(values['count.model_refused_mismatch']) == 1
        assert int(values['count.model_mismatch']) >= 3  # the handshake's steps and these
        assert "running task is 'pick_and_place'" in values['model_mismatch']
        # The stack now runs the model's task: the residual is applied.
        driver.obs_tag = 'push'
        driver.send_pair(3)
        assert driver.spin_until(lambda: len(driver.commands) == 4, 10.0), log.read_text()
        assert driver.commands[-1].tag == 'residual'
        np.testing.assert_allclose(
            driver.commands[-1].values, expected_residual_command(), atol=1e-6
        )
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()
    lines = [line for line in log.read_text().splitlines() if 'does not fit' in line]
    assert len(lines) == 1, log.read_text()
    assert lines[0].endswith(
        "does not fit this stack, using the base action: trained for task 'push', the running "
        "task is 'pick_and_place' (allow_model_mismatch:=true runs it anyway)"
    )
    assert 'base action used (model_mismatch)' not in log.read_text()


def test_node_runs_another_task_when_allowed_but_not_other_fields(tmp_path, driver):
    model = _model_for(tmp_path, 'push', 'reactive_push')
    proc, log = start_node(tmp_path, f'model_path:={model}', 'allow_model_mismatch:=true')
    driver.obs_tag, driver.base_tag = 'pick_and_place', 'other_controller'
    try:
        driver.meet(log)
        driver.send_pair(0)
        assert driver.spin_until(lambda: driver.commands, 10.0), log.read_text()
        assert driver.commands[-1].tag == 'residual'
        # Same sizes, other observation names: refused although mismatches are allowed.
        renamed = (*OBS_FIELDS[:2], 'renamed', *OBS_FIELDS[3:])
        driver.send(driver.obs_pub, 1, OBS, renamed)
        driver.send(driver.base_pub, 1, BASE, contract.ACTION_FIELDS)
        assert driver.spin_until(lambda: len(driver.commands) == 2, 10.0), log.read_text()
        assert driver.commands[-1].tag == 'base'
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()
    text = log.read_text()
    assert "runs although trained for task 'push', the running task is 'pick_and_place'" in text
    assert "observation fields differ (model fields ['obs_2'] are not in the stream" in text


JOINTS = tuple(f'j{i}' for i in range(7))
BASE7 = np.array([0.95, -0.95, 0.5, -0.5, 0.0, 1.0, -1.0])


def test_node_runs_a_seven_field_action_and_refuses_other_fields(tmp_path, driver):
    """The node knows no action layout: a 7-output model naming j0..j6 runs on a j0..j6
    base action (7-field command and residual, clamped); before that, on the handshake's
    Fetch fields, the model was refused (the base action went out, one line naming the
    difference); after it, a base action of Fetch's size is rejected."""
    weights = known_weights(action_dim=7) * 3.0  # large: the residual clamp matters
    stack = StackIdentity.of_stream('arm', 'hold', OBS_FIELDS, JOINTS)
    model = set_model_metadata(
        linear_model(tmp_path / 'arm.onnx', weights=weights),
        ModelIdentity.for_stack(stack).to_props(),
    )
    proc, log = start_node(tmp_path, f'model_path:={model}')
    driver.obs_tag, driver.base_tag = 'arm', 'hold'
    try:
        driver.meet(log)  # Fetch fields: answered with the base
        driver.send(driver.obs_pub, 0, OBS, OBS_FIELDS)
        driver.send(driver.base_pub, 0, BASE7, JOINTS)
        assert driver.spin_until(lambda: driver.commands, 10.0), log.read_text()
        config = ResidualConfig()
        raw = weights @ np.r_[OBS[:OBS_DIM], OBS[-GOAL_DIM:]]
        expected, applied = mix(BASE7, raw, config)
        assert driver.commands[0].tag == 'residual'
        np.testing.assert_allclose(driver.commands[0].values, expected, atol=1e-5)
        assert np.all(np.abs(driver.commands[0].values) <= config.action_high)
        assert np.max(np.abs(raw)) > config.residual_limit  # the clamp was exercised
        assert driver.names['command'][0] == (*contract.META_FIELDS, *JOINTS)
        assert driver.spin_until(lambda: driver.residuals, 5.0)
        assert driver.names['residual'][0] == (*contract.META_FIELDS, *JOINTS)
        np.testing.assert_allclose(driver.residuals[0].values, applied, atol=1e-5)
        # Now that model and stream agree on 7, a 4-field base action is invalid: no
        # command from it, and the real 7-field one of the same step still wins.
        driver.send_pair(1)
        driver.send(driver.base_pub, 1, BASE7, JOINTS)
        assert driver.spin_until(lambda: len(driver.commands) == 2, 10.0), log.read_text()
        assert driver.commands[1].tag == 'residual' and driver.commands[1].step == 1
        assert driver.names['command'][1] == (*contract.META_FIELDS, *JOINTS)
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()
    text = log.read_text()
    # Before the stream said 7 (the handshake's Fetch fields), the model did not fit it.
    assert "action fields differ (model fields ['j0', 'j1'" in text
    assert 'rejected the base action of episode 1 step 1: 4 values, expected 7' in text


def test_node_sends_no_command_for_a_terminal_observation(tmp_path, driver):
    """o_T (step T, frame_id 'push/terminal') gets no command, not even when a controller
    answered it, and its tag is not taken for another task (before: a model mismatch and a
    command for step T); the next episode's step 0 gets the residual."""
    model = _model_for(tmp_path, 'push', 'reactive_push')
    proc, log = start_node(tmp_path, f'model_path:={model}', 'diagnostics_period_s:=0.2')
    driver.obs_tag, driver.base_tag = 'push', 'reactive_push'
    try:
        driver.meet(log)
        for step in range(3):
            driver.send_pair(step)
        driver.obs_tag = contract.terminal_tag('push')
        driver.send(driver.obs_pub, 3, OBS, OBS_FIELDS)  # o_T of an episode of 3 steps
        driver.send(driver.base_pub, 3, BASE, contract.ACTION_FIELDS)  # an answer to it
        driver.obs_tag = 'push'
        driver.send(driver.obs_pub, 0, OBS, OBS_FIELDS, episode=2)
        driver.send(driver.base_pub, 0, BASE, contract.ACTION_FIELDS, episode=2)
        done = lambda: any(c.episode == 2 for c in driver.commands)  # noqa: E731
        assert driver.spin_until(done, 10.0), log.read_text()
        driver.spin_until(lambda: False, 0.3)  # anything late would arrive now
        steps = [(c.episode, c.step) for c in driver.commands]
        assert steps == [(1, 0), (1, 1), (1, 2), (2, 0)], steps
        assert {c.tag for c in driver.commands} == {'residual'}
        driver.diagnostics.clear()
        values = _diagnostic_values(driver)
        assert values['count.terminal_observation'] == '1', values
        assert values['count.dropped_base_action_for_terminal'] == '1', values
        assert 'count.model_refused_mismatch' not in values, values
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()


def _set_parameters(driver: Driver, values: dict) -> list:
    """Call the node's set_parameters service; one result per parameter."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = driver.node.create_client(SetParameters, f'{NAMESPACE}/residual_node/set_parameters')
    try:
        assert client.wait_for_service(timeout_sec=20.0)
        request = SetParameters.Request(
            parameters=[Parameter(n, value=v).to_parameter_msg() for n, v in values.items()]
        )
        future = client.call_async(request)
        assert driver.spin_until(future.done, 20.0)
        return list(future.result().results)
    finally:
        driver.node.destroy_client(client)


def test_residual_gain_can_be_set_while_the_node_runs_and_nothing_else(tmp_path, driver):
    """Every parameter was read-only: taking a residual out on a robot (or bringing it in
    from 0) meant restarting the node. residual_gain now changes at runtime within its
    range, with one line, and the next steps' commands follow; the other parameters, a
    value out of range and an integer stay refused."""
    proc, log = start_node(tmp_path, f'model_path:={linear_model(tmp_path / "actor.onnx")}')
    try:
        driver.meet(log)
        observation, goal = OBS[:OBS_DIM], OBS[-GOAL_DIM:]
        residual = known_weights() @ np.r_[observation, goal]
        for k, gain in enumerate((1.0, 0.0, 0.5)):
            if k:
                (result,) = _set_parameters(driver, {'residual_gain': gain})
                assert result.successful, result.reason
            driver.send_pair(k)
            assert driver.spin_until(lambda n=k + 1: len(driver.commands) == n, 10.0)
            wanted = mix(BASE, residual, ResidualConfig(residual_gain=gain))[0]
            np.testing.assert_allclose(driver.commands[-1].values, wanted, atol=1e-5)
        commands = [c.values for c in driver.commands]
        assert not np.allclose(commands[0], commands[2])  # the gain shows
        refused = _set_parameters(driver, {'residual_gain': 3.0})
        refused += _set_parameters(driver, {'residual_limit': 1.0})
        refused += _set_parameters(driver, {'residual_gain': 1})  # an integer for a double
        assert [r.successful for r in refused] == [False, False, False], refused
        assert 'read-only' in refused[1].reason, refused[1].reason
        driver.send_pair(3)  # still 0.5: the refusals changed nothing
        assert driver.spin_until(lambda: len(driver.commands) == 4, 10.0)
        np.testing.assert_allclose(driver.commands[-1].values, commands[2], atol=1e-6)
        (again,) = _set_parameters(driver, {'residual_gain': 0.5})  # its target already
        # ROS takes a value within its float tolerance of a bound; the node holds it to 2.
        (edge,) = _set_parameters(driver, {'residual_gain': 2.0000019})
        assert again.successful and edge.successful
        driver.send_pair(4)
        assert driver.spin_until(lambda: len(driver.commands) == 5, 10.0)
        wanted = mix(BASE, residual, ResidualConfig(residual_gain=2.0))[0]
        np.testing.assert_allclose(driver.commands[-1].values, wanted, atol=1e-5)
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()
    text = log.read_text()
    assert 'residual_gain set to 0 at runtime, from 1' in text, text
    assert 'residual_gain set to 0.5 at runtime, from 0' in text, text
    assert 'residual_gain set to 0.5 again: unchanged' in text, text
    assert 'residual_gain set to 2 at runtime, from 0.5' in text, text


def test_an_exploring_node_keeps_its_gain_at_most_one(tmp_path, driver):
    """On a learning stack's explorer a gain above 1 would store other actions than the
    ones run (the learner clips (command - base) / scale to +-1): refused there, with the
    reason; at most 1 (a take-out too) is taken."""
    model = linear_model(tmp_path / 'actor.onnx')
    proc, log = start_node(tmp_path, f'model_path:={model}', 'explore_noise:=0.1')
    try:
        driver.meet(log)
        (refused,) = _set_parameters(driver, {'residual_gain': 1.5})
        (taken,) = _set_parameters(driver, {'residual_gain': 0.0})
    finally:
        assert stop_process(proc, timeout_s=10.0) == 0, log.read_text()
    assert not refused.successful
    assert refused.reason.startswith('a residual node that explores (explore_noise 0.1, ')
    assert 'keeps residual_gain at most 1 (got 1.5)' in refused.reason, refused.reason
    assert taken.successful, taken.reason
