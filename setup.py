"""echoposed: ament_python package (ROS 2) and plain pip-installable Python package.

Python packages: ``echoposed_ros`` (the system: geometry, estimator, policy, nodes, training,
evaluation, command line) and ``echoposed_sim`` (the simulator, kept in the top-level ``sim/``
folder and installed under that distinct name, so nothing ever imports a bare ``sim``).
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'echoposed'

sim_packages = ['echoposed_sim'] + [
    'echoposed_sim.' + name for name in find_packages(where='sim')]

# Node executables: ``ros2 run echoposed <name>`` on a ROS 2 install.
NODES = {
    'pose_node': 'echoposed_ros.nodes.pose_node:main',
    'sim_node': 'echoposed_ros.nodes.sim_node:main',
    'controller_node': 'echoposed_ros.nodes.controller_node:main',
    'target_node': 'echoposed_ros.nodes.target_node:main',
    'adapt_node': 'echoposed_ros.nodes.adapt_node:main',
    'bag_recorder': 'echoposed_ros.bag.recorder:main',
    'bag_player': 'echoposed_ros.bag.player:main',
}

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=['echoposed_ros', 'echoposed_ros.*']) + sim_packages,
    package_dir={'echoposed_sim': 'sim'},
    package_data={'echoposed_sim': ['styles/*.yaml']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.rviz')),
        ('share/' + PACKAGE + '/models', glob('models/*.onnx') + glob('models/*.md')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='echoposed developers',
    maintainer_email='dev@echoposed.invalid',
    description='Cardiac ultrasound probe guidance on SO(3) x SO(3) from 2D images.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'echoposed = echoposed_ros.cli:main',
        ] + [f'{name} = {target}' for name, target in NODES.items()],
    },
)
