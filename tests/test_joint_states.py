"""The robot's joint state: ``GoalTask.joint_state()`` and the sim bridge's ``joint_states``.

Unit part: on the Fetch tasks, ``joint_state()`` names the MJCF hinge and slide joints
(the Fetch arm's among them, no free joint), and its arrays are the joints' entries of
``qpos``, ``qvel`` and ``qfrc_actuator``, looked up here by name; reading it does not
change an episode. DDS part: the real sim bridge node in its own process publishes one
``sensor_msgs/JointState`` on ``joint_states`` per simulation step (reset and o_T
included), stamped like that step's observation, with the joints of that step's state
(the same task replayed in-process with the same actions), for push and mbrl_pusher (its 7
arm joints); ``publish_joint_states:=false`` turns the topic off.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import mujoco
import numpy as np
import pytest

from rpl_sim_bridge.tasks import make_task, task_spec
from rpl_sim_bridge.tasks.joints import JointIndex

FETCH_TASKS = ('push', 'slippery_push', 'pick_and_place', 'hook', 'noisy_hook', 'complex_hook')
FETCH_ARM = tuple(
    f'robot0:{joint}'
    for joint in (
        'shoulder_pan_joint',
        'shoulder_lift_joint',
        'upperarm_roll_joint',
        'elbow_flex_joint',
        'forearm_roll_joint',
        'wrist_flex_joint',
        'wrist_roll_joint',
    )
)
FINGERS = ('robot0:r_gripper_finger_joint', 'robot0:l_gripper_finger_joint')
PUSHER_ARM = (
    'r_shoulder_pan_joint',
    'r_shoulder_lift_joint',
    'r_upper_arm_roll_joint',
    'r_elbow_flex_joint',
    'r_forearm_roll_joint',
    'r_wrist_flex_joint',
    'r_wrist_roll_joint',
)
MOVE = np.array([0.6, -0.4, 0.3, -1.0])  # gripper displacement and a closing finger command


def _joint_rows(model: mujoco.MjModel, names: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """qpos and dof addresses of the named joints, looked up by name."""
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in names]
    assert min(ids) >= 0, names
    return [int(model.jnt_qposadr[j]) for j in ids], [int(model.jnt_dofadr[j]) for j in ids]


@pytest.mark.parametrize('name', FETCH_TASKS)
def test_fetch_joint_state_is_the_named_joints_entries_of_qpos_qvel_and_actuator_force(name):
    task = make_task(name)
    task.reset(seed=3)
    for _ in range(4):
        task.step(MOVE)
    sample = task.joint_state()
    n = len(sample.names)
    assert set(FETCH_ARM + FINGERS) <= set(sample.names)
    assert sample.names[:3] == ('robot0:slide0', 'robot0:slide1', 'robot0:slide2')
    assert n == 15 and len(set(sample.names)) == n  # hinge and slide joints only
    assert 'object0:joint' not in sample.names  # a free joint
    m, d = task.model, task.data
    assert all(
        m.jnt_type[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]
        in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)
        for j in sample.names
    )
    for values in (sample.position, sample.velocity, sample.effort):
        assert values.shape == (n,) and values.dtype == np.float64
    qpos_adr, dof_adr = _joint_rows(m, sample.names)
    np.testing.assert_array_equal(sample.position, d.qpos[qpos_adr])
    np.testing.assert_array_equal(sample.velocity, d.qvel[dof_adr])
    np.testing.assert_array_equal(sample.effort, d.qfrc_actuator[dof_adr])
    arm = [sample.names.index(j) for j in FETCH_ARM]
    assert np.abs(sample.velocity[arm]).max() > 1e-3  # the arm moved: real values, not zeros
    # A copy: the next step changes data, not the sample taken before it.
    before = sample.position.copy()
    task.step(MOVE)
    np.testing.assert_array_equal(sample.position, before)
    assert not np.array_equal(task.joint_state().position, before)


def test_mbrl_pusher_joint_state_is_its_seven_arm_joints_by_their_real_names():
    task = make_task('mbrl_pusher')
    task.reset(seed=2)
    torque = np.array([1.5, -1.0, 0.5, 1.0, -0.5, 0.8, -1.2])  # N m, one per arm joint
    for _ in range(5):
        task.step(torque)
    sample = task.joint_state()
    assert sample.names == PUSHER_ARM  # not the object's or the goal's slide joints
    m, d = task.model, task.data
    qpos_adr, dof_adr = _joint_rows(m, sample.names)
    np.testing.assert_array_equal(sample.position, d.qpos[qpos_adr])
    np.testing.assert_array_equal(sample.velocity, d.qvel[dof_adr])
    np.testing.assert_array_equal(sample.effort, d.qfrc_actuator[dof_adr])
    np.testing.assert_allclose(sample.effort, torque)  # the motors' torques of the step
    assert np.abs(sample.velocity).min() > 0.0


def test_finger_effort_is_the_position_actuator_force_and_zero_without_actuators():
    hook, push = make_task('hook'), make_task('push')
    for task in (hook, push):
        task.reset(seed=1)
        for _ in range(3):
            task.step(MOVE)
    fingers = [hook.joint_state().names.index(j) for j in FINGERS]
    assert np.abs(hook.joint_state().effort[fingers]).min() > 0.0  # the fingers are driven
    np.testing.assert_array_equal(push.joint_state().effort, 0.0)  # push has no actuators


def test_reading_joint_states_leaves_the_episode_bit_identical():
    plain, read = make_task('pick_and_place'), make_task('pick_and_place')
    a, _ = plain.reset(seed=7)
    b, _ = read.reset(seed=7)
    read.joint_state()
    rng = np.random.default_rng(0)
    for _ in range(12):
        action = rng.uniform(-1.0, 1.0, 4)
        a, *_ = plain.step(action)
        read.joint_state()
        b, *_ = read.step(action)
        read.joint_state()
        for part in a:
            np.testing.assert_array_equal(a[part], b[part])
    np.testing.assert_array_equal(plain.get_state(), read.get_state())


def test_bridge_core_reads_the_joints_once_per_state_and_hands_over_those_of_o_t():
    from rpl_sim_bridge.bridge import SimBridge, SimBridgeConfig

    task = make_task('push')
    reads = []
    read = task.joint_state
    task.joint_state = lambda: reads.append(1) or read()  # counts, then the real read
    bridge = SimBridge(task, task.spec, SimBridgeConfig(seed=5, episodes=2))
    replay = make_task('push')
    replay.reset(seed=5)
    bridge.begin(now=0.0)
    steps = task.spec.max_episode_steps
    for step in range(steps):
        np.testing.assert_array_equal(bridge.joint_state().position, replay.joint_state().position)
        action = _action('push', 0, step)
        assert bridge.offer_command(0, step, action, now=0.0) is None
        outcome = bridge.advance(now=0.0)
        replay.step(action)
    assert outcome.result is not None and not outcome.finished
    end = replay.joint_state()
    np.testing.assert_array_equal(outcome.terminal_joints.position, end.position)
    replay.reset(seed=6)  # episode 1 began right after o_T, from the initial arm pose
    np.testing.assert_array_equal(bridge.joint_state().position, replay.joint_state().position)
    assert np.abs(end.position - replay.joint_state().position).max() > 0.05  # o_T's own
    assert len(reads) == 1 + steps + 1  # resets and steps, never twice per state
    off = make_task('push')
    quiet = SimBridge(off, off.spec, SimBridgeConfig(episodes=1, publish_joint_states=False))
    quiet.begin(now=0.0)
    for _ in range(steps):
        outcome = quiet.advance(now=0.0)
    assert quiet.joint_state() is None and outcome.terminal_joints is None


def test_joint_index_names_an_unnamed_joint_and_skips_free_and_ball_joints():
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody>'
        '<body><freejoint name="free"/><geom size="0.1"/></body>'
        '<body><joint name="ball" type="ball"/><geom size="0.1"/>'
        '<body><joint type="hinge"/><geom size="0.1"/>'
        '<body><joint name="slider" type="slide"/><geom size="0.1"/></body></body></body>'
        '</worldbody></mujoco>'
    )
    index = JointIndex(model)
    assert index.names == ('joint2', 'slider')
    data = mujoco.MjData(model)
    data.qpos[:] = np.arange(model.nq)
    data.qvel[:] = 10 + np.arange(model.nv)
    sample = index.read(data)
    np.testing.assert_array_equal(sample.position, [11.0, 12.0])  # after free 7 + ball 4
    np.testing.assert_array_equal(sample.velocity, [19.0, 20.0])  # after free 6 + ball 3


# --- over DDS: the real sim bridge node ---------------------------------------------------

NS = f'/rpl_test_joints_{os.getpid()}'
SIM_BRIDGE = pathlib.Path(sys.executable).parent / 'sim_bridge_node'
SEED = 11


def _action(task: str, episode: int, step: int) -> np.ndarray:
    """The probe's command for (episode, step): a wandering gripper motion (Fetch) or
    wandering torques (mbrl_pusher, N m)."""
    if task == 'mbrl_pusher':
        return 1.5 * np.sin(np.arange(7) + step / 6 + episode)
    return np.array(
        [0.9 * np.cos(step / 5 + episode), 0.9 * np.sin(step / 7), 0.4 * np.cos(step / 3), 0.0]
    )


class JointProbe:
    """Plays the residual node (answers every observation with :func:`_action`) and keeps
    the observations and the ``joint_states`` messages."""

    def __init__(self, task: str) -> None:
        from helpers import SideNode
        from sensor_msgs.msg import JointState

        from rpl_interfaces import contract
        from rpl_interfaces.base_node import qos_profile

        self.task = task
        self.action_fields = task_spec(task).action_fields
        self.side = SideNode('joint_probe', NS)
        self.observations = []
        self.joints: list[JointState] = []
        # Readers first, the command writer last: the bridge starts when it sees the
        # command writer, and by then it knows this participant's readers (announced in
        # order), so the first joint state is not sent before its reader matched.
        self.side.on_topic(contract.OBSERVATION, self._on_observation)
        self.joint_sub = self.side.node.create_subscription(
            JointState,
            contract.JOINT_STATES,
            self.joints.append,
            qos_profile(contract.JOINT_STATES_QOS),
        )
        self.commands = self.side.topic_publisher(contract.COMMAND)

    def _on_observation(self, msg) -> None:
        from sensor_msgs.msg import JointState

        from rpl_interfaces import contract
        from rpl_interfaces.codec import StampedVector, decode, encode

        vec = decode(msg)
        self.observations.append(vec)
        if contract.is_terminal(vec.tag):
            return
        action = _action(self.task, vec.episode, vec.step)
        answer = StampedVector(vec.episode, vec.step, action, 0, 'probe')
        self.commands.publish(encode(JointState(), answer, self.action_fields))


def _run_bridge(probe: JointProbe, episodes: int, *params: str) -> tuple[int, str, int]:
    """Run the sim bridge node until it exits; (exit code, output, joint_states publishers
    seen on the graph while it ran)."""
    from helpers import ros_args, stop_process

    from rpl_interfaces import contract

    proc = subprocess.Popen(
        [
            str(SIM_BRIDGE),
            *ros_args(
                NS,
                f'task:={probe.task}',
                f'episodes:={episodes}',
                f'seed:={SEED}',
                'min_subscribers:=1',
                'startup_timeout_s:=20.0',
                'result_linger_s:=0.2',
                *params,
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    topic = f'{NS}/{contract.JOINT_STATES}'
    publishers = 0
    try:
        deadline = time.monotonic() + 60.0
        while proc.poll() is None and time.monotonic() < deadline:
            probe.side.spin_until(lambda: False, 0.1)
            publishers = max(publishers, probe.side.node.count_publishers(topic))
        assert proc.poll() is not None, 'the sim bridge did not finish within 60 s'
        probe.side.spin_until(lambda: False, 0.5)  # take what is still queued
    finally:
        stop_process(proc)
        output = proc.stdout.read()
        probe.side.close()
    return proc.returncode, output, publishers


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


@pytest.mark.integration
@pytest.mark.parametrize('task_name, episodes', [('push', 2), ('mbrl_pusher', 1)])
def test_sim_bridge_publishes_each_steps_joints_stamped_like_its_observation(task_name, episodes):
    probe = JointProbe(task_name)
    code, output, publishers = _run_bridge(probe, episodes)
    assert code == 0, output
    assert publishers == 1
    steps = task_spec(task_name).max_episode_steps
    # The first publication of each (episode, step) observation, by stamp (the start-up
    # handshake may re-send observation (0, 0); its joints go with the first one).
    first: dict[tuple[int, int], int] = {}
    for vec in probe.observations:
        first.setdefault((vec.episode, vec.step), vec.stamp_ns)
    assert len(first) == episodes * (steps + 1)  # steps 0 .. T - 1 and o_T
    key_of = {stamp: key for key, stamp in first.items()}
    seen = {}
    for msg in probe.joints:
        key = key_of.get(_stamp_ns(msg))
        assert key is not None, 'a joint state without an observation of the same stamp'
        assert key not in seen, f'two joint states for {key}'
        seen[key] = msg
    assert sorted(seen) == sorted(first), 'one joint state per simulation step'
    # Replay the episodes in-process with the same actions: the same joints, step by step.
    task = make_task(task_name)
    for episode in range(episodes):
        task.reset(seed=SEED + episode)
        for step in range(steps + 1):
            expected = task.joint_state()
            msg = seen[(episode, step)]
            assert msg.header.frame_id == task_name
            assert tuple(msg.name) == expected.names
            np.testing.assert_array_equal(msg.position, expected.position)
            np.testing.assert_array_equal(msg.velocity, expected.velocity)
            np.testing.assert_array_equal(msg.effort, expected.effort)
            if step < steps:
                task.step(_action(task_name, episode, step))
    arm = FETCH_ARM if task_name != 'mbrl_pusher' else PUSHER_ARM
    assert set(arm) <= set(expected.names)
    first_joint = expected.names.index(arm[0])
    assert np.ptp([seen[(0, k)].position[first_joint] for k in range(steps)]) > 1e-3  # moved


@pytest.mark.integration
def test_publish_joint_states_false_turns_the_topic_off():
    probe = JointProbe('push')
    code, output, publishers = _run_bridge(probe, 1, 'publish_joint_states:=false')
    assert code == 0, output
    assert len(probe.observations) >= task_spec('push').max_episode_steps + 1  # it ran
    assert publishers == 0 and probe.joints == []
