"""DDPG + HER residual policy learning, ONNX export, bag I/O and the trainer node."""
