"""Residual mixing with an ONNX actor: clamp, base-action fallback, hot reload.

Modules: :mod:`~rpl_residual_node.mixing` (the rule and its config),
:mod:`~rpl_residual_node.onnx_actor` (validated ONNX actor),
:mod:`~rpl_residual_node.mixer` (the node's pure state machine: message intake composing
:mod:`~rpl_residual_node.step_pairing` (halves by episode and step),
:mod:`~rpl_residual_node.decision` (inference, clamp, fallback reasons) and
:mod:`~rpl_residual_node.model_slot` (load, hot reload, identity check)),
:mod:`~rpl_residual_node.policy` (in-process evaluation policy) and
:mod:`~rpl_residual_node.residual_node` (the ROS 2 node, the only one importing rclpy).
"""
