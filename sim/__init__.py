"""echoposed_sim: the simulated world (installed from the top-level ``sim/`` folder).

- ``phantom``: procedural beating-heart 3D+t echo volumes
- ``volumes``: reading real 3D / 3D+t volume files
- ``slicer``: 2D sector slices of a volume at a probe pose (METHOD.md section 2)
- ``world``: PyBullet robot arm holding the virtual probe
"""
