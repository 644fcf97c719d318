from setuptools import find_packages, setup

package_name = 'rpl_sim_bridge'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    # What its modules import (tests/test_packaging_deps.py); ros-* are the ROS 2 wheels.
    install_requires=[
        'setuptools',
        'rpl_interfaces',
        'numpy>=1.26,<3',
        'mujoco>=3.3,<3.4',
        'gymnasium>=1.0,<2',  # the pusher's MJCF (Pusher-v5 asset)
        'gymnasium-robotics==1.4.2',
        'ros-rclpy',
        'ros-sensor-msgs',
    ],
    zip_safe=True,
    maintainer='RPL maintainers',
    maintainer_email='maintainers@rpl-ros.dev',
    description='MuJoCo goal tasks (Fetch push family) and the simulator bridge node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['sim_bridge_node = rpl_sim_bridge.sim_bridge_node:main'],
    },
)
