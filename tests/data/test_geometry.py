import numpy as np

from slowfast_data.geometry import (absolute_to_relative, matrix_to_quat, pose_to_pos_rot6d, quat_to_matrix,
                                 relative_to_absolute, rot6d_to_matrix)


def _random_poses(rng, n, arms):
    q = rng.normal(size=(n, arms, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    p = rng.normal(size=(n, arms, 3))
    return np.concatenate([p, q], -1).reshape(n, arms * 7)


def test_quaternion_matrix_round_trip():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    back = matrix_to_quat(quat_to_matrix(q))
    assert np.allclose(np.abs(np.sum(back * q, -1)), 1.0, atol=1e-9)  # same rotation up to sign


def test_rot6d_round_trip():
    rng = np.random.default_rng(1)
    m = quat_to_matrix(rng.normal(size=(20, 4)))
    assert np.allclose(rot6d_to_matrix(pose_to_pos_rot6d(np.concatenate([np.zeros((20, 3)), matrix_to_quat(m)], -1))[:, 3:]), m, atol=1e-6)


def test_relative_absolute_inverse_two_arms():
    rng = np.random.default_rng(2)
    poses = _random_poses(rng, 10, 2)
    start = _random_poses(rng, 1, 2)[0]
    rel = absolute_to_relative(poses, start)
    assert rel.shape == (10, 18)
    back = relative_to_absolute(rel, start)
    assert np.allclose(back[:, :3], poses[:, :3], atol=1e-5)
    for arm in range(2):
        q1, q2 = back[:, arm * 7 + 3: arm * 7 + 7], poses[:, arm * 7 + 3: arm * 7 + 7]
        assert np.allclose(np.abs(np.sum(q1 * q2, -1)), 1.0, atol=1e-5)


def test_start_pose_is_identity():
    rng = np.random.default_rng(3)
    start = _random_poses(rng, 1, 1)[0]
    rel = absolute_to_relative(start[None], start)[0]
    assert np.allclose(rel, [0, 0, 0, 1, 0, 0, 0, 1, 0], atol=1e-6)
