from setuptools import find_packages, setup

package_name = 'rpl_bags'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    # What its modules import (tests/test_packaging_deps.py); ros-* are the ROS 2 wheels.
    # No torch: `rpl bag replay-model` runs the ONNX model through rpl_residual_node.
    install_requires=[
        'setuptools',
        'rpl_interfaces',
        'rpl_residual_node',
        'numpy>=1.26,<3',
        'rosbags>=0.10',
        'matplotlib>=3.8',
        'ros-rclpy',
        'ros-sensor-msgs',
        'ros-diagnostic-msgs',
    ],
    zip_safe=True,
    maintainer='RPL maintainers',
    maintainer_email='maintainers@rpl-ros.dev',
    description=(
        'rosbag2 bags of the RPL stack: recorder and player nodes, reader with damaged-file '
        'salvage, `rpl bag` (record, play, eval, replay-model).'
    ),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'bag_recorder_node = rpl_bags.bag_recorder_node:main',
        ],
    },
)
