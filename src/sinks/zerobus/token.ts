/**
 * OAuth2 machine-to-machine tokens for Zerobus: one token per target table
 * (the authorization details name the table), cached and refreshed ahead of
 * expiry.
 */

/** A target table, as named in the config. */
export interface TableRef {
  catalog: string;
  schema: string;
  table: string;
}

/** Why a token could not be had, and whether trying again can help. */
export class TokenError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
  }
}

/** Settings of the token provider. */
export interface TokenOptions {
  workspaceUrl: string;
  /** First DNS label of the Zerobus endpoint. */
  workspaceId: string;
  clientId: string;
  clientSecret: string;
  table: TableRef;
  fetchFn?: typeof fetch;
  /** Refresh when less than this many seconds remain (default 300, or half the lifetime). */
  refreshAheadS?: number;
}

/** The `authorization_details` list granting write access to one table. */
export function authorizationDetails(t: TableRef): unknown[] {
  const full = `${t.catalog}.${t.schema}.${t.table}`;
  return [
    {
      type: "unity_catalog_privileges",
      privileges: ["USE CATALOG"],
      object_type: "CATALOG",
      object_full_path: t.catalog,
    },
    {
      type: "unity_catalog_privileges",
      privileges: ["USE SCHEMA"],
      object_type: "SCHEMA",
      object_full_path: `${t.catalog}.${t.schema}`,
    },
    {
      type: "unity_catalog_privileges",
      privileges: ["SELECT", "MODIFY"],
      object_type: "TABLE",
      object_full_path: full,
    },
  ];
}

/** The workspace id: the first DNS label of the Zerobus endpoint host. */
export function workspaceIdOf(endpoint: string): string {
  try {
    return new URL(endpoint).hostname.split(".")[0];
  } catch {
    return endpoint.split(".")[0];
  }
}

/** Caches one table's token; `get()` returns a valid one, fetching when needed. */
export class TokenProvider {
  #token?: string;
  #expiresAt = 0;
  #inflight?: Promise<string>;

  constructor(private readonly opts: TokenOptions) {}

  /** A valid bearer token (cached unless close to expiry). */
  get(): Promise<string> {
    if (this.#token && Date.now() < this.#expiresAt) return Promise.resolve(this.#token);
    this.#inflight ??= this.#fetch().finally(() => (this.#inflight = undefined));
    return this.#inflight;
  }

  /** Forgets the cached token (after the server refused it). */
  invalidate(): void {
    this.#token = undefined;
    this.#expiresAt = 0;
  }

  async #fetch(): Promise<string> {
    const o = this.opts;
    const url = `${o.workspaceUrl.replace(/\/+$/, "")}/oidc/v1/token`;
    const body = new URLSearchParams({
      grant_type: "client_credentials",
      scope: "all-apis",
      resource: `api://databricks/workspaces/${o.workspaceId}/zerobusDirectWriteApi`,
      authorization_details: JSON.stringify(authorizationDetails(o.table)),
    });
    let res: Response;
    try {
      res = await (o.fetchFn ?? fetch)(url, {
        method: "POST",
        headers: {
          authorization: `Basic ${btoa(`${o.clientId}:${o.clientSecret}`)}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        body,
        signal: AbortSignal.timeout(30_000),
      });
    } catch (e) {
      throw new TokenError(
        `token endpoint ${url} unreachable: ${
          (e as Error).message
        }; check zerobus.workspace_host and the network`,
        true,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      const hint = res.status === 401 || res.status === 403
        ? "check zerobus.auth.client_id and client_secret, and that the service principal may write the table"
        : res.status >= 500
        ? "the workspace is failing; the agent retries"
        : "check zerobus.workspace_host and the target table name";
      throw new TokenError(
        `token endpoint refused (${res.status}): ${text.slice(0, 200)}; ${hint}`,
        res.status >= 500,
      );
    }
    let json: { access_token?: string; expires_in?: number };
    try {
      json = JSON.parse(text);
    } catch {
      throw new TokenError(`token endpoint answered non-JSON: ${text.slice(0, 100)}`, true);
    }
    if (!json.access_token) {
      throw new TokenError("token endpoint answered without access_token", true);
    }
    const lifetime = Math.max(1, json.expires_in ?? 3600);
    const ahead = Math.min(o.refreshAheadS ?? 300, lifetime / 2);
    this.#token = json.access_token;
    this.#expiresAt = Date.now() + (lifetime - ahead) * 1000;
    return json.access_token;
  }
}
