"""Learning code: Reactive Diffusion Policy (``policy.rdp``) and StreamVLN (``policy.streamvln``).

Pure PyTorch / ONNX; nothing here imports ROS.
"""
