from setuptools import find_packages, setup

package_name = 'rpl_trainer'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    # The per-task `rpl train` settings, read with importlib.resources.
    package_data={package_name: ['train_configs/*.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
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
        'torch',
        'onnx>=1.16',
        'onnxruntime>=1.18',
        'PyYAML>=6',
        'matplotlib>=3.8',
        'tqdm>=4.66',
        'ros-rclpy',
        'ros-sensor-msgs',
    ],
    zip_safe=True,
    maintainer='RPL maintainers',
    maintainer_email='maintainers@rpl-ros.dev',
    description='DDPG + HER residual policy learning, ONNX export and the trainer node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'trainer_node = rpl_trainer.trainer_node:main',
        ],
    },
)
