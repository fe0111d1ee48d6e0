// The tactile field as the headset shows it: one arrow per marker, from its rest position
// along its displacement (magnified GAIN times), in the pad frame of the message
// (<arm>/tactile/markers: PointCloud2 with float32 fields x, y, dx, dy, metres). Lost
// markers (NaN) are left out; a marker that has not moved is a dot.
import { Input } from "./types";
import { SceneUpdate } from "@foxglove/schemas";

export const inputs = ["/arm/tactile/markers"];
export const output = "/studio_script/tactile_field";

const GAIN = 20; // as teleop_tactar.feedback.marker_arrows (what the headset draws)

export default function script(event: Input<"/arm/tactile/markers">): SceneUpdate {
  const m: any = event.message;
  const stamp: any = m.header.stamp;
  const time = { sec: stamp.sec, nsec: stamp.nsec ?? stamp.nanosec ?? 0 };
  const off: Record<string, number> = {};
  for (const f of m.fields) off[f.name] = f.offset;
  const arrows: any[] = [];
  const spheres: any[] = [];
  const names = ["x", "y", "dx", "dy"];
  if (names.every((n) => off[n] !== undefined) && m.point_step > 0) {
    const data: Uint8Array = m.data;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const le = !m.is_bigendian;
    const n = Math.min(m.width * m.height, Math.floor(data.byteLength / m.point_step));
    for (let i = 0; i < n; i++) {
      const b = i * m.point_step;
      const [x, y, dx, dy] = names.map((k) => view.getFloat32(b + off[k]!, le));
      if (![x, y, dx, dy].every(Number.isFinite)) continue;
      const position = { x, y, z: 0 };
      const len = GAIN * Math.hypot(dx!, dy!);
      spheres.push({ pose: { position, orientation: { x: 0, y: 0, z: 0, w: 1 } },
        size: { x: 0.0015, y: 0.0015, z: 0.0015 }, color: { r: 0.6, g: 0.6, b: 0.6, a: 1 } });
      if (len < 1e-5) continue;
      const yaw = Math.atan2(dy!, dx!);
      arrows.push({ pose: { position, orientation: { x: 0, y: 0, z: Math.sin(yaw / 2), w: Math.cos(yaw / 2) } },
        shaft_length: 0.7 * len, shaft_diameter: 0.0008, head_length: 0.3 * len, head_diameter: 0.002,
        color: { r: 0.27, g: 0.8, b: 1.0, a: 1 } });
    }
  }
  return {
    deletions: [],
    entities: [{ timestamp: time, frame_id: m.header.frame_id, id: "tactile_field", lifetime: { sec: 0, nsec: 0 },
      frame_locked: true, metadata: [], arrows, spheres, cubes: [], cylinders: [], lines: [], triangles: [],
      texts: [], models: [] }],
  };
}
