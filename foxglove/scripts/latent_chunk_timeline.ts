// One point per latent chunk the slow policy issued (policy/latent_chunk, a
// trajectory_msgs/JointTrajectory stamped with its observation's capture time): how old
// its observation was when the chunk was recorded (the slow side's latency), its rows and
// dimensions, and the size of its first row (how much the plan changed).
import { Input } from "./types";

type Output = { age_ms: number; rows: number; dims: number; row0_norm: number };

export const inputs = ["/policy/latent_chunk"];
export const output = "/studio_script/latent_chunk_timeline";

export default function script(event: Input<"/policy/latent_chunk">): Output {
  const m: any = event.message;
  const stamp: any = m.header.stamp;
  const obs = stamp.sec + (stamp.nsec ?? stamp.nanosec ?? 0) * 1e-9;
  const got = event.receiveTime.sec + event.receiveTime.nsec * 1e-9;
  const row0: number[] = m.points.length ? Array.from(m.points[0].positions as ArrayLike<number>) : [];
  return {
    age_ms: (got - obs) * 1000,
    rows: m.points.length,
    dims: m.joint_names.length,
    row0_norm: Math.sqrt(row0.reduce((s, v) => s + v * v, 0)),
  };
}
