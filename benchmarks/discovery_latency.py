"""How long a process that joins a running ROS 2 graph takes to match a publisher there.

Two DDS profiles, measured in one run: the project's loopback profile
(config/fastdds_loopback.xml: participants announce themselves every 0.5 s) and the same
profile without that setting (Fast DDS's default announcement period, 3 s). For each
profile a long-lived process publishes a topic in its own DDS domain; then, trial after
trial, alternating between the profiles, a fresh process starts, subscribes to the topic
and records the time from its node's creation until the subscription has matched the
publisher (``get_publisher_count() > 0``). A new participant often learns of the running
one only from that one's next periodic announcement, so the announcement period bounds
the slow tail. Prints the median, 90th percentile and maximum per profile and saves
``OUT.json`` and ``OUT.png`` (the times of every trial).

Run: ``.venv/bin/python benchmarks/discovery_latency.py [--trials 30]
[--out results/discovery_latency]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROFILE = ROOT / 'config' / 'fastdds_loopback.xml'
TOPIC = '/discovery_latency'

PUBLISHER = textwrap.dedent(
    f"""
    import rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node('discovery_latency_publisher')
    node.create_publisher(String, '{TOPIC}', 10)
    print('up', flush=True)
    try:
        rclpy.spin(node)
    except Exception:
        pass
    """
)

JOINER = textwrap.dedent(
    f"""
    import time, rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node('discovery_latency_joiner')
    start = time.monotonic()
    sub = node.create_subscription(String, '{TOPIC}', lambda msg: None, 10)
    while sub.get_publisher_count() == 0 and time.monotonic() - start < 20.0:
        rclpy.spin_once(node, timeout_sec=0.005)
    print(f'{{time.monotonic() - start:.4f}}' if sub.get_publisher_count() else 'never')
    """
)


def default_period_profile(folder: pathlib.Path) -> pathlib.Path:
    """The project's profile without its ``<builtin>`` block (Fast DDS's 3 s period)."""
    text = re.sub(r'\s*<builtin>.*?</builtin>', '', PROFILE.read_text(), flags=re.S)
    if 'leaseAnnouncement' in text:
        raise SystemExit(f'discovery_latency: could not take the period out of {PROFILE}')
    path = folder / 'fastdds_default_period.xml'
    path.write_text(text)
    return path


def environment(profile: pathlib.Path, domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
        RMW_IMPLEMENTATION='rmw_fastrtps_cpp',
        FASTDDS_DEFAULT_PROFILES_FILE=str(profile),
    )
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--trials', type=int, default=30, help='joins per profile')
    parser.add_argument('--out', default=str(ROOT / 'results' / 'discovery_latency'))
    parser.add_argument('--domain', type=int, default=150, help='first of two DDS domain ids')
    args = parser.parse_args()
    if args.trials < 1:
        parser.error('--trials must be at least 1')
    out = pathlib.Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        profiles = {
            'project profile (0.5 s announcements)': PROFILE,
            'Fast DDS default (3 s announcements)': default_period_profile(pathlib.Path(tmp)),
        }
        envs = {
            name: environment(path, args.domain + i)
            for i, (name, path) in enumerate(profiles.items())
        }
        publishers = []
        try:
            for env in envs.values():
                proc = subprocess.Popen(
                    [sys.executable, '-c', PUBLISHER], env=env, stdout=subprocess.PIPE, text=True
                )
                publishers.append(proc)
                if proc.stdout.readline().strip() != 'up':
                    raise SystemExit('discovery_latency: the publisher process did not start')
            time.sleep(1.0)
            times: dict[str, list[float]] = {name: [] for name in envs}
            load_before = os.getloadavg()
            started = time.monotonic()
            for trial in range(args.trials):
                for name, env in envs.items():
                    done = subprocess.run(
                        [sys.executable, '-c', JOINER],
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=60,
                    )
                    said = done.stdout.strip()
                    if done.returncode or said == 'never':
                        raise SystemExit(
                            f'discovery_latency: trial {trial} ({name}) did not match: '
                            f'{said or done.stderr.strip()[-300:]}'
                        )
                    times[name].append(float(said))
                print(f'trial {trial + 1}/{args.trials}', end='\r', flush=True, file=sys.stderr)
        finally:
            for proc in publishers:
                proc.terminate()
                proc.wait(timeout=10)
    elapsed = time.monotonic() - started
    summary = {}
    print(f'\n{"profile":40s} {"median s":>9s} {"p90 s":>7s} {"max s":>7s}')
    for name, values in times.items():
        arr = np.asarray(values)
        row = {
            'median_s': float(np.median(arr)),
            'p90_s': float(np.percentile(arr, 90)),
            'max_s': float(arr.max()),
        }
        summary[name] = row
        print(f'{name:40s} {row["median_s"]:9.2f} {row["p90_s"]:7.2f} {row["max_s"]:7.2f}')
    machine = f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs'
    load_after = os.getloadavg()
    print(
        f'{args.trials} joins per profile, {elapsed:.0f} s; {machine}; load average (1 min) '
        f'{load_before[0]:.2f} before, {load_after[0]:.2f} after'
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        'trials': args.trials,
        'seconds_to_match': times,
        'summary': summary,
        'machine': machine,
        'load_average_1min': {'before': load_before[0], 'after': load_after[0]},
        'wall_s': elapsed,
    }
    out.with_suffix('.json').write_text(json.dumps(report, indent=2) + '\n')
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for row, (name, values) in enumerate(times.items()):
        jitter = np.linspace(-0.15, 0.15, len(values))
        ax.scatter(values, row + jitter, s=12, label=name)
    ax.set_yticks(range(len(times)), [name.split(' (')[0] for name in times])
    ax.set_xlabel('seconds from a new node to a matched publisher')
    ax.set_title(f'Joining a running graph ({args.trials} trials each; {machine})', fontsize=9)
    ax.grid(axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix('.png'), dpi=120)
    print(f'saved {out.with_suffix(".json")} and {out.with_suffix(".png")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
