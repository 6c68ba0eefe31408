/**
 * The HTTP API (Hono): health, status, metrics in JSON and Prometheus text.
 * A later issue extends it to the full REST API and the UI.
 */
import { Hono } from "hono";
import type { Agent } from "../agent.ts";
import { createRegistry } from "../metrics.ts";

/** Builds the Hono app for a running agent. */
export function createApi(agent: Agent, version: string): Hono {
  const app = new Hono();
  const registry = createRegistry({
    bridge: agent.bridge,
    spool: () => agent.spool.stats(),
    sources: () => agent.host.status(),
    targets: () => agent.sink?.targetStats() ?? {},
    droppedByReason: () => agent.dropped,
  });

  app.get("/health", (c) => {
    const st = agent.status();
    const sourcesInError = Object.values(st.sources).filter((s) =>
      s.enabled && s.state === "error"
    ).length;
    const healthy = !st.spool.full && st.circuit_breaker_state !== "open";
    return c.json(
      {
        status: healthy ? "ok" : "degraded",
        version,
        uptime_s: st.uptime_s,
        sources_in_error: sourcesInError,
        zerobus_connected: st.zerobus_connected,
        spool_full: st.spool.full,
      },
      healthy ? 200 : 503,
    );
  });
  app.get("/api/status", (c) => c.json(agent.status()));
  app.get("/api/metrics", (c) => c.json(agent.metrics()));
  app.get("/metrics", async (c) => {
    c.header("content-type", registry.contentType);
    return c.body(await registry.metrics());
  });
  app.notFound((c) =>
    c.json({
      error:
        `no route ${c.req.method} ${c.req.path}; see /api/status, /api/metrics, /metrics, /health`,
    }, 404)
  );
  app.onError((err, c) => c.json({ error: err.message }, 500));
  return app;
}
