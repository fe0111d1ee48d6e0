"""The data layer under the simulator, the policies and teleoperation: what a recorded
robot stream looks like on disk and in memory, imported by every core and importing none.

* :mod:`slowfast_data.features`: the dataset's feature keys, paths and per-arm layouts.
* :mod:`slowfast_data.writer`: ``DatasetWriter``, the LeRobot-v3.0-layout writer.
* :mod:`slowfast_data.reader`: ``LeRobotDataset``, its reader.
* :mod:`slowfast_data.geometry`: pose and quaternion geometry (x, y, z, w; MuJoCo's w, x, y, z).
* :mod:`slowfast_data.camera`: ``CameraIntrinsics``, the one pinhole intrinsics type.
* :mod:`slowfast_data.fileio`: reading user-supplied files with one clear error.

Nothing heavy is imported here: import the submodule.
"""
