"""Evaluation protocols (docs/method.md section 7): ``calibration`` (angular calibration, sigma^2 as a
quality signal); further protocols (guidance, rosbag scoring) live in their own modules.
Import the module you need; this package imports nothing itself."""
