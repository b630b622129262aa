import { describe, expect, it } from "vitest";
import type { KeyDefaults, Principal } from "../../platform/auth.ts";
import { isAppError } from "../../platform/errors.ts";
import { withKeyDefaults } from "./key-defaults.ts";

const principal = (keyDefaults?: KeyDefaults): Principal => ({
  kind: keyDefaults === undefined ? "user" : "api_key",
  customerId: "c",
  userId: null,
  apiKeyId: keyDefaults === undefined ? null : "k",
  scopes: ["inference"],
  isSuperuser: false,
  tier: "pro",
  ...(keyDefaults === undefined ? {} : { keyDefaults }),
});

const DEFAULT = "mock-openvla-7b";
const bound = principal({ robotId: "arm-1", model: "demo-vla-tiny", unnormKey: "bridge_orig" });

describe("withKeyDefaults", () => {
  it("fills what the request left out from the key", () => {
    expect(withKeyDefaults(bound, {}, DEFAULT)).toEqual({
      robotId: "arm-1",
      model: "demo-vla-tiny",
      unnormKey: "bridge_orig",
    });
  });

  it("the key's robot binds: the same robot passes, another is 403 robot_mismatch", () => {
    expect(withKeyDefaults(bound, { robotId: "arm-1" }, DEFAULT).robotId).toBe("arm-1");
    let thrown: unknown;
    try {
      withKeyDefaults(bound, { robotId: "arm-2" }, DEFAULT);
    } catch (e) {
      thrown = e;
    }
    expect(isAppError(thrown)).toBe(true);
    expect(thrown).toMatchObject({ code: "robot_mismatch", status: 403 });
  });

  it("model and unnorm_key in the request win; the key's unnorm_key does not follow another model", () => {
    expect(withKeyDefaults(bound, { unnormKey: "x" }, DEFAULT).unnormKey).toBe("x");
    expect(withKeyDefaults(bound, { model: DEFAULT }, DEFAULT)).toEqual({
      robotId: "arm-1",
      model: DEFAULT,
      unnormKey: undefined,
    });
    expect(withKeyDefaults(bound, { model: "demo-vla-tiny" }, DEFAULT).unnormKey).toBe("bridge_orig");
    // A key without a model: its unnorm_key belongs to the default model, named or not.
    const noModel = principal({ robotId: null, model: null, unnormKey: "fractal" });
    expect(withKeyDefaults(noModel, {}, DEFAULT)).toEqual({
      robotId: undefined,
      model: undefined,
      unnormKey: "fractal",
    });
    expect(withKeyDefaults(noModel, { model: DEFAULT }, DEFAULT).unnormKey).toBe("fractal");
    expect(withKeyDefaults(noModel, { model: "demo-vla-tiny" }, DEFAULT).unnormKey).toBeUndefined();
  });

  it("a key without a robot binds nothing; sessions pass through unchanged", () => {
    const free = principal({ robotId: null, model: null, unnormKey: null });
    expect(withKeyDefaults(free, { robotId: "any" }, DEFAULT).robotId).toBe("any");
    expect(withKeyDefaults(principal(), { robotId: "r", model: "m" }, DEFAULT)).toEqual({
      robotId: "r",
      model: "m",
      unnormKey: undefined,
    });
  });
});
