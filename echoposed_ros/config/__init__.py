"""The nodes' configuration without ROS: parameter tables and the frozen configs built from them.

``params`` (:class:`~echoposed_ros.config.params.Param` rows, the node YAML reader
``configured_values``), ``pose`` (the pose node's table and config, ``pose_config_from_yaml``
for offline tools), ``sim`` (the simulation node's table and config), ``errors``
(``ConfigError``). The controller's core config is :class:`echoposed_ros.policy.ControllerConfig`.
Nothing here imports rclpy, so command-line tools read a node's settings as a launch would.
Import the module you need; this package imports nothing itself.
"""
