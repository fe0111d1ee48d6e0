"""The WebXR page the teleop server serves (index.html, package data)."""
