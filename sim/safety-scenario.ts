import type { EpisodeResult, EpisodeSetup } from "./episode.ts";
import { BLOCK_SIZE, COLOURS, type Colour, type Scene, WORKSPACE } from "./scene.ts";
import { InferenceError, type ServerOptions } from "./server-policy.ts";

/**
 * The safety-profile scenario (`npm run sim -- --safety-profile exclude-red`): before each
 * episode the robot's profile (`PUT /v1/robots/{robot_id}/safety-profile`, docs/safety.md) gets
 * a workspace box that leaves the named block out, so a task on that block must fail safely:
 * the server clamps actions at the boundary. After the episode every end-effector position
 * (before each step and at the end) is checked against the box. restore() puts the robot's
 * profile back as it was (the rest of a stored profile is kept during the run).
 */

export type Box = { x: [number, number]; y: [number, number]; z: [number, number] };

/** Room kept between the box and the excluded block's faces (m). */
export const EXCLUSION_MARGIN = 0.01;
const TOLERANCE = 1e-9;

export function parseSafetyProfile(name: string): { exclude: Colour } | null {
  const m = /^exclude-(\w+)$/.exec(name);
  const colour = m?.[1] as Colour | undefined;
  return colour && (COLOURS as readonly string[]).includes(colour) ? { exclude: colour } : null;
}

/**
 * The scene's workspace with the block cut off: along the horizontal axis where the block lies
 * farthest from the gripper's start, the box ends EXCLUSION_MARGIN before the block's near face.
 * When the gripper starts too close to the block for such a cut, the floor of the box is raised
 * above the block's top instead (the gripper cannot reach down to it). The start stays inside.
 */
export function exclusionBox(scene: Scene, colour: Colour): Box {
  const box: Box = {
    x: [WORKSPACE.xMin, WORKSPACE.xMax],
    y: [WORKSPACE.yMin, WORKSPACE.yMax],
    z: [WORKSPACE.zMin, WORKSPACE.zMax],
  };
  const block = scene.blocks.find((b) => b.colour === colour);
  if (!block) return box;
  const reach = BLOCK_SIZE / 2 + EXCLUSION_MARGIN;
  const axes = (["x", "y"] as const)
    .map((axis) => ({ axis, d: block.pos[axis] - scene.ee[axis] }))
    .sort((a, b) => Math.abs(b.d) - Math.abs(a.d));
  for (const { axis, d } of axes) {
    const cut = d > 0 ? block.pos[axis] - reach : block.pos[axis] + reach;
    const start = scene.ee[axis];
    if (d > 0 && cut > start + TOLERANCE) {
      box[axis] = [box[axis][0], cut];
      return box;
    }
    if (d < 0 && cut < start - TOLERANCE) {
      box[axis] = [cut, box[axis][1]];
      return box;
    }
  }
  box.z = [block.pos.z + BLOCK_SIZE / 2 + EXCLUSION_MARGIN, WORKSPACE.zMax];
  return box;
}

export function inside(box: Box, p: readonly number[]): boolean {
  const [x, y, z] = p as [number, number, number];
  return (
    x >= box.x[0] - TOLERANCE &&
    x <= box.x[1] + TOLERANCE &&
    y >= box.y[0] - TOLERANCE &&
    y <= box.y[1] + TOLERANCE &&
    z >= box.z[0] - TOLERANCE &&
    z <= box.z[1] + TOLERANCE
  );
}

export type SafetyEpisode = {
  seed: number;
  box: Box;
  /** End-effector positions checked (before every step, and the final one). */
  positions: number;
  /** Positions outside the box (must be 0). */
  outside: number;
  /** Calls the server answered `clamped` in this episode. */
  clamped: number;
  /** Of those, the ones with a `workspace` violation (clamped at the box's boundary). */
  clampedAtBoundary: number;
  success: boolean;
};

export type SafetyReport = {
  profile: string;
  robotId: string;
  episodes: SafetyEpisode[];
  /** True when no checked position of any episode left its box. */
  neverOutside: boolean;
  clampedCalls: number;
  /** Clamped calls with a `workspace` violation. */
  clampedAtBoundary: number;
};

/** Sets the profile before each episode; after it, checks the positions and counts the episode's clamped calls. */
export function safetyScenario(
  options: Pick<ServerOptions, "url" | "key" | "fetch" | "timeoutMs"> & {
    /** Sets profiles (PUT/DELETE need the owner or the admin scope); reading one takes the inference key. */
    adminKey: string;
    robotId: string;
    profile: string;
  },
  calls: readonly { safety: string; violations: readonly string[] }[],
) {
  const parsed = parseSafetyProfile(options.profile);
  if (!parsed) throw new Error(`unknown safety profile "${options.profile}" (exclude-<${COLOURS.join("|")}>)`);
  const report: SafetyReport = {
    profile: options.profile,
    robotId: options.robotId,
    episodes: [],
    neverOutside: true,
    clampedCalls: 0,
    clampedAtBoundary: 0,
  };
  let box: Box | null = null;
  let mark = 0;
  /** The robot's stored profile before the first episode (null: none), put back by restore(). */
  let previous: { stored: Record<string, unknown> | null } | undefined;
  const url = new URL(`/v1/robots/${encodeURIComponent(options.robotId)}/safety-profile`, options.url);
  const request = async (method: string, body?: unknown): Promise<unknown> => {
    const response = await (options.fetch ?? fetch)(url, {
      method,
      headers: {
        "x-api-key": method === "GET" ? options.key : options.adminKey,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
    });
    const json = (await response.json().catch(() => null)) as { code?: unknown; detail?: unknown } | null;
    if (!response.ok) {
      throw new InferenceError(
        `${method} ${url.pathname}`,
        response.status,
        typeof json?.code === "string" ? json.code : null,
        String(json?.detail ?? ""),
      );
    }
    return json;
  };
  return {
    report,
    async before(setup: EpisodeSetup): Promise<void> {
      if (previous === undefined) {
        const current = (await request("GET")) as { stored?: Record<string, unknown> | null };
        previous = { stored: current.stored ?? null };
      }
      box = exclusionBox(setup.scene, parsed.exclude);
      await request("PUT", { ...(previous.stored ?? {}), workspace: box });
      mark = calls.length;
    },
    /** Puts the robot's profile back as it was before the first episode (deletes it if there was none). */
    async restore(): Promise<void> {
      if (previous === undefined) return;
      if (previous.stored === null) await request("DELETE");
      else await request("PUT", previous.stored);
      previous = undefined;
    },
    async after(result: EpisodeResult): Promise<void> {
      if (!box) return;
      const positions = [
        ...result.states.map((s) => s.eePosition),
        [result.final.ee.x, result.final.ee.y, result.final.ee.z],
      ];
      const outside = positions.filter((p) => !inside(box as Box, p)).length;
      const clampedCalls = calls.slice(mark).filter((c) => c.safety === "clamped");
      const clamped = clampedCalls.length;
      const clampedAtBoundary = clampedCalls.filter((c) => c.violations.includes("workspace")).length;
      report.episodes.push({
        seed: result.seed,
        box,
        positions: positions.length,
        outside,
        clamped,
        clampedAtBoundary,
        success: result.success,
      });
      report.clampedAtBoundary += clampedAtBoundary;
      report.neverOutside &&= outside === 0;
      report.clampedCalls += clamped;
    },
  };
}
