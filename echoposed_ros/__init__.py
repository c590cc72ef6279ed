"""echoposed: cardiac ultrasound probe guidance on SO(3) x SO(3) from 2D images.

Subpackages follow the system diagram:

- ``geometry``: the pose group SO(3) x SO(3), gauge, distances, ensemble mean (pure numpy)
- ``estimator``: ONNX ensemble inference on images (runtime, no torch)
- ``policy``: proportional guidance controller and its state machine (pure)
- ``nodes``: thin ROS 2 shells around the cores
- ``training``: self-distillation training and ONNX export (PyTorch; not needed at runtime)
- ``eval``: calibration and guidance protocols, rosbag scoring
- ``cli``: the ``echoposed`` command

The simulator (phantom, volume files, slicer, PyBullet world) is the sibling package
``echoposed_sim``.
"""

__version__ = '0.1.0'
