"""Thin ROS 2 shells around the pure cores: parameters -> frozen config -> core call -> message.

One node per module, each with ``main()``: ``pose_node`` (estimator), ``controller_node``
(policy), ``sim_node`` (simulator), ``target_node`` (one-shot target setter). Shared plumbing:
``params`` (declaring a parameter table with descriptions), ``convert`` (messages <-> numpy),
``diagnostics`` (``/diagnostics`` publishing), ``process`` (a node's process lifecycle), ``qos``
(shared QoS profiles). The
parameter tables and the frozen configs built from them are in :mod:`echoposed_ros.config`.
"""
