from setuptools import find_packages, setup

package_name = 'rpl_interfaces'

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
        'numpy>=1.26,<3',
        'PyYAML>=6',  # parameter files, read as rcl reads them (params.check_parameter_files)
        'ros-rclpy',
        'ros-rcl-interfaces',
        'ros-sensor-msgs',
        'ros-diagnostic-msgs',
        'ros-rmw-fastrtps-cpp',
    ],
    zip_safe=True,
    maintainer='RPL maintainers',
    maintainer_email='maintainers@rpl-ros.dev',
    description='RPL topic contract: topic names, QoS roles, message codecs, shared node base.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [],
    },
)
