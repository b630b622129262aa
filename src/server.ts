import { buildApp } from "./app.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { reloadAndLog } from "./modules/models/registry-reload.ts";
import { DataDirLockedError } from "./platform/db/data-dir-lock.ts";

/**
 * Process entry: config -> app -> listen, graceful shutdown on SIGTERM/SIGINT, and a live reload
 * of the model registry on SIGHUP (this process only; docs/models.md, "Live reload").
 */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw e;
  }

  const startedAt = performance.now();
  let app: Awaited<ReturnType<typeof buildApp>>;
  try {
    app = await buildApp(config);
  } catch (e) {
    if (e instanceof DataDirLockedError) {
      // A second server (or a CLI command) on the same DATA_DIR: the embedded database is one process's.
      process.stderr.write(`cannot start: ${e.message}; stop it or give this server another DATA_DIR\n`);
      process.exit(75); // EX_TEMPFAIL
    }
    throw e;
  }
  // Without a handler SIGHUP would end the process (its default action).
  process.on("SIGHUP", () => {
    void reloadAndLog(app.platform.engine, app.log, "sighup");
  });
  const address = await app.listen({ host: config.http.host, port: config.http.port });
  const { database, redis, notices, engine } = app.platform;
  const base = config.http.publicBaseUrl;
  const models = engine
    .list()
    .map((m) => `${m.id} (${m.backend})`)
    .join(", ");
  app.log.info(
    {
      url: address,
      docs: `${base}/docs`,
      database: database.description,
      redis: redis.description,
      email: config.email.smtpUrl === undefined ? `outbox ${config.email.outboxDir}` : "smtp",
      models,
      startup_ms: Math.round(performance.now() - startedAt),
    },
    `VLA Inference API listening on ${base} | docs ${base}/docs | database: ${database.kind} | redis: ${redis.client === null ? "none" : "redis"} | email: ${config.email.smtpUrl === undefined ? "outbox" : "smtp"} | models: ${models}`,
  );
  for (const line of notices) process.stdout.write(`${line}\n`);

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) {
      app.log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    app.log.info({ signal, deadline_ms: config.http.shutdownTimeoutMs }, "shutting down");
    const force = setTimeout(() => {
      app.log.error("shutdown deadline passed: exiting with work unfinished");
      process.exit(1);
    }, config.http.shutdownTimeoutMs);
    force.unref();
    app.close().then(
      () => {
        clearTimeout(force);
        process.exit(0);
      },
      (err: unknown) => {
        app.log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

main().catch((err: unknown) => {
  process.stderr.write(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
