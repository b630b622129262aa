import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The module graph of src/, read with a regex (no TypeScript compiler, so this stays fast).
 * Type-only imports count: a cycle of `import type` still ties the files together.
 */
const SRC = fileURLToPath(new URL("../src/", import.meta.url));

// `import x from "./a.ts"`, `import type { X } from "./a.ts"`, `export { y } from "./a.ts"`,
// `import "./a.ts"` and `import("./a.ts")`; specifiers that are not relative are packages.
const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(?\s*)["'](\.{1,2}\/[^"']+)["']/g;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

/** Repo-relative file -> the repo-relative src files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const rel = (file: string) => path.relative(path.dirname(SRC), file).split(path.sep).join("/");
  for (const file of sourceFiles(SRC)) {
    const text = readFileSync(file, "utf8");
    const targets = new Set<string>();
    for (const match of text.matchAll(SPECIFIER)) {
      const target = path.resolve(path.dirname(file), match[1] as string);
      if (target.startsWith(SRC)) targets.add(rel(target));
    }
    graph.set(rel(file), [...targets].sort());
  }
  return graph;
}

/** Every strongly connected component with more than one file (or a file importing itself). */
function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node) as number, low.get(next) as number));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node) as number, index.get(next) as number));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string | undefined;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) found.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return found;
}

/** One concrete loop inside a component, for the failure message: a -> b -> ... -> a. */
function loopIn(graph: Map<string, string[]>, component: string[]): string {
  const members = new Set(component);
  const start = component[0] as string;
  const seen = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const node = queue.shift() as string;
    for (const next of graph.get(node) ?? []) {
      if (!members.has(next)) continue;
      if (next === start) {
        const path = [start];
        for (let at = node; at !== start; at = seen.get(at) as string) path.splice(1, 0, at);
        return [...path, start].join(" -> ");
      }
      if (!seen.has(next)) {
        seen.set(next, node);
        queue.push(next);
      }
    }
  }
  return component.join(", ");
}

describe("architecture: the src/ import graph", () => {
  const graph = importGraph();

  it("reads the graph (sanity: the regex finds imports, including import type)", () => {
    expect(graph.get("src/server.ts")).toContain("src/app.ts");
    expect(graph.get("src/app.ts")).toContain("src/modules/index.ts");
    expect(graph.size).toBeGreaterThan(50);
  });

  it("has no import cycle, type-only imports included", () => {
    const found = cycles(graph).map(
      (component) => `${component.length} files: ${loopIn(graph, component)}\n  ${component.join("\n  ")}`,
    );
    expect(found, `import cycles in src/:\n${found.join("\n")}`).toEqual([]);
  });

  it("src/platform/ never imports src/app.ts or src/modules/index.ts", () => {
    const upward = [...graph]
      .filter(([file]) => file.startsWith("src/platform/"))
      .flatMap(([file, targets]) =>
        targets.filter((t) => t === "src/app.ts" || t === "src/modules/index.ts").map((t) => `${file} -> ${t}`),
      );
    expect(upward).toEqual([]);
  });

  it("src/platform/ reaches into src/modules/ only for the two types Platform exposes, type-only", () => {
    // Platform carries the engine and the rate limits, whose types are still declared in their
    // modules. Moving them down too would make platform/ import nothing from modules/.
    const allowed = new Set([
      "src/platform/platform.ts -> src/modules/inference/inference.service.ts",
      "src/platform/platform.ts -> src/modules/rate-limit/rate-limits.ts",
    ]);
    const intoModules = [...graph]
      .filter(([file]) => file.startsWith("src/platform/"))
      .flatMap(([file, targets]) => targets.filter((t) => t.startsWith("src/modules/")).map((t) => `${file} -> ${t}`));
    expect(intoModules.filter((edge) => !allowed.has(edge))).toEqual([]);
    const platformSource = readFileSync(path.join(SRC, "platform/platform.ts"), "utf8");
    for (const line of platformSource.split("\n").filter((l) => l.includes('"../modules/'))) {
      expect(line, "platform.ts may import module types only with `import type`").toMatch(/^import type /);
    }
  });
});
