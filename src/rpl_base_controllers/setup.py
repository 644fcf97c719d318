from setuptools import find_packages, setup

package_name = 'rpl_base_controllers'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    # The shipped PETS ensemble and CachedPETS cache of mbrl_pusher (tools/train_pets.py).
    package_data={package_name: ['data/*.npz']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    # What its modules import (tests/test_packaging_deps.py); ros-* are the ROS 2 wheels.
    install_requires=[
        'setuptools',
        'rpl_interfaces',
        'rpl_sim_bridge',
        'numpy>=1.26,<3',
        'mujoco>=3.3,<3.4',
        'gymnasium-robotics==1.4.2',
        'ros-rclpy',
        'ros-rcl-interfaces',
        'ros-sensor-msgs',
    ],
    zip_safe=True,
    maintainer='RPL maintainers',
    maintainer_email='maintainers@rpl-ros.dev',
    description='Base controllers (pure observation -> action) and the controller node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['controller_node = rpl_base_controllers.controller_node:main'],
    },
)
