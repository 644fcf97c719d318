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
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='RPL maintainers',
    maintainer_email='maintainers@rpl-ros.dev',
    description='DDPG + HER residual policy learning, ONNX export, bag I/O and the trainer node.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'bag_recorder_node = rpl_trainer.bag_recorder_node:main',
            'trainer_node = rpl_trainer.trainer_node:main',
        ],
    },
)
