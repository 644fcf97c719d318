"""rpl_bringup: the repository's launch/ and config/ folders plus the `rpl` command line.

The launch files and parameter YAML live at the top of the repository (launch/, config/) as
the design asks; this setup installs them into share/rpl_bringup so that `ros2 launch
rpl_bringup slippery_push.launch.py` finds them after `colcon build`, and `rpl launch` finds
them after a plain pip install.

They are reached through the committed relative symlinks launch -> ../../launch and
config -> ../../config next to this file, so every data_files path is relative to the
package and stays inside it: a `../..` path made `colcon build --symlink-install` in a
ws/src/<repo>/ workspace create stray ws/launch and ws/config links.
"""

import glob
import os

from setuptools import find_packages, setup

package_name = 'rpl_bringup'
here = os.path.dirname(os.path.abspath(__file__))


def _files(pattern: str) -> list[str]:
    """Files matching ``pattern`` under this package's folder, as package-relative paths."""
    found = sorted(glob.glob(os.path.join(here, pattern)))
    if not found:
        raise SystemExit(f'rpl_bringup setup: no files match {pattern!r} in {here}')
    return [os.path.relpath(path, here) for path in found]


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', _files('launch/*.launch.py')),
        ('share/' + package_name + '/config', _files('config/*.yaml') + _files('config/*.xml')),
    ],
    # What its modules import (tests/test_packaging_deps.py); ros-* are the ROS 2 wheels.
    install_requires=[
        'setuptools',
        'rpl_interfaces',
        'rpl_sim_bridge',
        'rpl_base_controllers',
        'rpl_residual_node',
        'rpl_bags',
        'numpy>=1.26,<3',
        'onnxruntime>=1.18',
        'PyYAML>=6',
        'tqdm>=4.66',
        'ros-ament-index-python',
        'ros-sensor-msgs',
    ],
    zip_safe=False,
    maintainer='RPL maintainers',
    maintainer_email='maintainers@rpl-ros.dev',
    description='Launch files, parameter YAML and the `rpl` command line of the RPL stack.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'rpl = rpl_bringup.entry:main',
            'episode_monitor_node = rpl_bringup.episode_monitor_node:main',
        ],
    },
)
