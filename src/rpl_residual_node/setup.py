from setuptools import find_packages, setup

package_name = 'rpl_residual_node'

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
        'onnxruntime>=1.18',
        'ros-rcl-interfaces',
        'ros-sensor-msgs',
    ],
    zip_safe=True,
    maintainer='RPL maintainers',
    maintainer_email='maintainers@rpl-ros.dev',
    description='Residual mixing with an ONNX actor: clamp, base-action fallback, hot reload.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': ['residual_node = rpl_residual_node.residual_node:main'],
    },
)
