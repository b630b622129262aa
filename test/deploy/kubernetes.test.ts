import { readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { configEnvNames, parseConcatenatedJson, readmeConfigNames, repoRoot, run, tool } from "./tools.ts";

// Debian's kubernetes-client is kubectl 1.20 (kustomize 2.0.3); the manifests also render with
// newer kubectl. Nothing here talks to a cluster.
const kubectl = tool("kubectl", "kubernetes-client");

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects, checked field by field
type K8sObject = any;

const OVERLAY = "deploy/kubernetes/overlays/production";

/** Renders a kustomization and turns its YAML into objects with kubectl itself (no YAML parser here). */
function render(dir: string): K8sObject[] {
  const bin = kubectl.require();
  const yaml = run(bin, ["kustomize", dir]);
  expect(yaml.status, `kubectl kustomize ${dir}: ${yaml.stderr}`).toBe(0);
  const json = run(bin, ["annotate", "--local", "-f", "-", "vla.test/rendered=1", "-o", "json"], yaml.stdout);
  expect(json.status, `kubectl annotate --local: ${json.stderr}`).toBe(0);
  return parseConcatenatedJson(json.stdout).flatMap((o) =>
    (o as K8sObject).kind === "List" ? (o as K8sObject).items : [o],
  ) as K8sObject[];
}

/** deploy/kubernetes/secret.example.yaml: the keys of the Secret the pods read (kept out of kustomize). */
function secretExample(): { name: string; data: Record<string, string> } {
  const text = readFileSync(path.join(repoRoot, "deploy/kubernetes/secret.example.yaml"), "utf8");
  const name = /^metadata:\n(?:\s+.*\n)*?\s+name:\s*(\S+)/m.exec(text)?.[1];
  const block = text.split(/^stringData:\n/m)[1] ?? "";
  const data: Record<string, string> = {};
  for (const m of block.matchAll(/^ {2}([A-Z][A-Z0-9_]*):\s*"([^"]*)"\s*$/gm)) data[m[1] as string] = m[2] as string;
  if (name === undefined) throw new Error("secret.example.yaml has no metadata.name");
  return { name, data };
}

function one(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  expect(
    found.map((o) => o.metadata.name),
    kind,
  ).toHaveLength(1);
  return found[0];
}

function matches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

describe.skipIf(kubectl.skip)("Kubernetes manifests (kubectl kustomize)", () => {
  let objects: K8sObject[];
  let configMap: K8sObject;
  let deployment: K8sObject;
  let container: K8sObject;
  const secret = secretExample();

  beforeAll(() => {
    objects = render(OVERLAY);
    configMap = one(objects, "ConfigMap");
    deployment = one(objects, "Deployment");
    container = deployment.spec.template.spec.containers.find((c: K8sObject) => c.name === "api");
  });

  it("renders the production overlay: Deployment, Service, HPA, PDB, migrate Job, ConfigMap; no Secret", () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(
      ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget", "Service"].sort(),
    );
    for (const o of objects) expect(o.metadata.namespace, `${o.kind} namespace`).toBe("vla");
    // The real Secret is created outside git; applying the overlay must never overwrite it.
    expect(objects.some((o) => o.kind === "Secret")).toBe(false);
    expect(container.image).toMatch(/^registry\.example\.com\/vla\/vla-inference-api:/);
  });

  it("wires every setting of src/config.ts and the README table through the ConfigMap or the Secret", () => {
    const fromCode = configEnvNames(readFileSync(path.join(repoRoot, "src/config.ts"), "utf8"));
    const fromReadme = readmeConfigNames(readFileSync(path.join(repoRoot, "README.md"), "utf8"));
    // The extraction itself must work, or the check below proves nothing.
    expect(fromCode.length).toBeGreaterThan(90);
    expect(fromCode).toEqual(expect.arrayContaining(["SECRET_KEY", "DATABASE_URL", "SHUTDOWN_TIMEOUT_MS"]));
    expect(fromReadme).toEqual(fromCode);

    const inConfigMap = Object.keys(configMap.data);
    const inSecret = Object.keys(secret.data);
    const wired = [...inConfigMap, ...inSecret].sort();
    expect(
      fromCode.filter((n) => !wired.includes(n)),
      "not wired",
    ).toEqual([]);
    expect(
      wired.filter((n) => !fromCode.includes(n)),
      "wired but unknown to src/config.ts",
    ).toEqual([]);
    expect(
      inConfigMap.filter((n) => inSecret.includes(n)),
      "in both",
    ).toEqual([]);
    // Credentials belong in the Secret, never in the ConfigMap.
    for (const name of [
      "SECRET_KEY",
      "DATABASE_URL",
      "DATABASE_READ_URL",
      "REDIS_URL",
      "SMTP_URL",
      "STRIPE_SECRET_KEY",
      "STRIPE_WEBHOOK_SECRET",
      "S3_ACCESS_KEY_ID",
      "S3_SECRET_ACCESS_KEY",
    ]) {
      expect(inSecret, name).toContain(name);
    }

    // Both reach the API container and the migrate Job.
    const job = one(objects, "Job");
    for (const c of [container, job.spec.template.spec.containers[0]]) {
      expect(c.envFrom).toEqual(
        expect.arrayContaining([
          { configMapRef: { name: configMap.metadata.name } },
          { secretRef: { name: secret.name } },
        ]),
      );
    }
  });

  it("the wired values pass the production config validation", () => {
    const env = { ...configMap.data, ...secret.data } as Record<string, string>;
    const config = loadConfig(env, { dotenv: false, persistGeneratedSecret: false });
    expect(config.env).toBe("production");
    expect(config.db.url).toBeDefined();
    expect(config.redis.url).toBeDefined();
    expect(config.auth.secretKeyGenerated).toBe(false);
    expect(config.http.trustProxy).toBe(true);
    // Without the Secret the pods would not start: the production rules need it.
    expect(() => loadConfig(configMap.data, { dotenv: false, persistGeneratedSecret: false })).toThrow(
      /SECRET_KEY: required in production[\s\S]*DATABASE_URL: required in production/,
    );
  });

  it("ports and probes: container port = PORT, Service targets it, readiness /health, liveness /health/live", () => {
    const port = Number(configMap.data.PORT);
    const http = container.ports.find((p: K8sObject) => p.name === "http");
    expect(http.containerPort).toBe(port);
    expect(container.readinessProbe.httpGet).toMatchObject({ path: "/health", port: "http" });
    expect(container.livenessProbe.httpGet).toMatchObject({ path: "/health/live", port: "http" });
    expect(container.startupProbe?.httpGet?.path).toBe("/health/live");

    const service = one(objects, "Service");
    expect(service.spec.ports[0].targetPort).toBe("http");
    const podLabels = deployment.spec.template.metadata.labels;
    expect(matches(service.spec.selector, podLabels)).toBe(true);
    expect(matches(deployment.spec.selector.matchLabels, podLabels)).toBe(true);
    expect(matches(one(objects, "PodDisruptionBudget").spec.selector.matchLabels, podLabels)).toBe(true);
    // The migrate Job's pods must not receive API traffic.
    const jobLabels = one(objects, "Job").spec.template.metadata.labels;
    expect(matches(service.spec.selector, jobLabels)).toBe(false);
  });

  it("the grace period outlasts SHUTDOWN_TIMEOUT_MS plus the preStop sleep", () => {
    const shutdownSeconds = Number(configMap.data.SHUTDOWN_TIMEOUT_MS) / 1000;
    expect(shutdownSeconds).toBeGreaterThan(0);
    const preStop: string[] = container.lifecycle?.preStop?.exec?.command ?? [];
    const preStopSeconds = preStop[0] === "sleep" ? Number(preStop[1]) : 0;
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(
      shutdownSeconds + preStopSeconds,
    );
  });

  it("resources, HPA, PDB and the migrate Job", () => {
    for (const k of ["cpu", "memory"]) {
      expect(container.resources.requests[k], `requests.${k}`).toBeDefined();
      expect(container.resources.limits[k], `limits.${k}`).toBeDefined();
    }
    const hpa = one(objects, "HorizontalPodAutoscaler");
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: "Deployment", name: deployment.metadata.name });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas);
    // The fallback limiter divides every limit by LIMITS_INSTANCE_COUNT: keep it at the floor.
    expect(Number(configMap.data.LIMITS_INSTANCE_COUNT)).toBe(hpa.spec.minReplicas);

    const pdb = one(objects, "PodDisruptionBudget");
    const budget = pdb.spec.maxUnavailable ?? hpa.spec.minReplicas - pdb.spec.minAvailable;
    expect(budget).toBeGreaterThanOrEqual(1);
    expect(budget).toBeLessThan(hpa.spec.minReplicas);

    const job = one(objects, "Job");
    const migrate = job.spec.template.spec.containers[0];
    expect(migrate.command).toEqual(["node", "src/cli.ts", "migrate"]);
    expect(migrate.image).toBe(container.image);
    expect(job.spec.template.spec.restartPolicy).toBe("Never");
    // `npm run migrate` is the same command.
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8"));
    expect(pkg.scripts.migrate).toBe("node src/cli.ts migrate");
  });
});
