/**
 * HTTP side of the local Zerobus stand-in: the OAuth token endpoint, table
 * counters, health, and runtime fault injection.
 */
import { type Faults, type FaultsUpdate, parseFaultsUpdate } from "./faults.ts";
import { handleTokenRequest, type TokenEndpointOptions, type TokenStore } from "./oauth.ts";
import type { TableStats } from "./table_writer.ts";

/** What the HTTP routes need from the server. */
export interface HttpContext {
  token: TokenEndpointOptions;
  tokens: TokenStore;
  tables(): Record<string, TableStats>;
  faults(): Faults;
  setFaults(update: FaultsUpdate): Faults;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/**
 * Builds the request handler: `POST /oidc/v1/token`, `GET /tables`, `GET /health`,
 * `GET /faults` and `POST /faults` (JSON body, null clears a fault).
 */
export function makeHttpHandler(ctx: HttpContext): (req: Request) => Promise<Response> {
  return async (req) => {
    const { pathname } = new URL(req.url);
    const route = `${req.method} ${pathname}`;
    switch (route) {
      case "POST /oidc/v1/token":
        return await handleTokenRequest(req, ctx.token, ctx.tokens);
      case "GET /tables":
        return json(200, { tables: ctx.tables() });
      case "GET /health":
        return new Response("ok\n", { headers: { "content-type": "text/plain" } });
      case "GET /faults":
        return json(200, { faults: ctx.faults() });
      case "POST /faults": {
        let update: FaultsUpdate;
        try {
          update = parseFaultsUpdate(JSON.parse(await req.text()));
        } catch (e) {
          return json(400, { error: (e as Error).message });
        }
        return json(200, { faults: ctx.setFaults(update) });
      }
    }
    const known = ["/oidc/v1/token", "/tables", "/health", "/faults"].includes(pathname);
    return json(known ? 405 : 404, { error: known ? "method not allowed" : "not found" });
  };
}
