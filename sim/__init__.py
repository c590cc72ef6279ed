"""echoposed_sim: the simulated world (installed from the top-level ``sim/`` folder).

- ``volume``: the shared :class:`Volume` type (frames, units, time convention)
- ``phantom``: procedural beating-heart 3D+t echo volumes, acquisition styles, on-disk cache
- ``volume_io``: reading and writing real 3D / 3D+t volume files (NIfTI, MetaImage, npz, npy)
- ``volume_preview``: a volume's geometry as text and as a picture (``echoposed volume info / preview``)
- ``sector``, ``slicer``: 2D sector slices of a volume at a probe pose (docs/method.md section 2)
- ``sampling``: random poses around a volume's base pose (docs/method.md section 3)
- ``world``: PyBullet robot arm (or kinematic probe) holding the virtual probe
- ``session``: a volume, a world and the slicer ticking in time (the sim node's core)
"""
