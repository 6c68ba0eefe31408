/**
 * OAuth2 client-credentials token endpoint of the local Zerobus stand-in
 * (`POST /oidc/v1/token`), and the store of the tokens it issued.
 */

/** Tokens issued by the stand-in, with their expiry. */
export class TokenStore {
  #tokens = new Map<string, number>();
  issued = 0;

  /** Issues a new random bearer token valid for `ttlS` seconds. */
  issue(ttlS: number): string {
    const bytes = crypto.getRandomValues(new Uint8Array(24));
    const token = "zl-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    this.#tokens.set(token, Date.now() + ttlS * 1000);
    this.issued++;
    if (this.#tokens.size > 10_000) this.#prune();
    return token;
  }

  /** True when `token` was issued here and has not expired. */
  valid(token: string): boolean {
    const exp = this.#tokens.get(token);
    if (exp === undefined) return false;
    if (exp > Date.now()) return true;
    this.#tokens.delete(token);
    return false;
  }

  #prune(): void {
    const now = Date.now();
    for (const [t, exp] of this.#tokens) if (exp <= now) this.#tokens.delete(t);
  }
}

/** Settings of the token endpoint. */
export interface TokenEndpointOptions {
  clientId: string;
  clientSecret: string;
  ttlS: number;
}

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

function oauthError(status: number, error: string, description: string): Response {
  return jsonResponse(status, { error, error_description: description });
}

/** Reads `client_id:client_secret` from an HTTP Basic authorization header. */
export function parseBasicAuth(header: string | null): [string, string] | null {
  const m = header?.match(/^Basic\s+([A-Za-z0-9+/=]+)\s*$/i);
  if (!m) return null;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(atob(m[1]), (c) => c.charCodeAt(0)),
    );
  } catch {
    return null;
  }
  const i = text.indexOf(":");
  return i < 0 ? null : [text.slice(0, i), text.slice(i + 1)];
}

/** Checks the `authorization_details` form value; returns an error text or null. */
export function checkAuthorizationDetails(value: string | null): string | null {
  if (!value) return "authorization_details is required";
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return "authorization_details is not valid JSON";
  }
  if (!Array.isArray(parsed)) return "authorization_details must be a JSON list";
  const hasTable = parsed.some((e) =>
    typeof e === "object" && e !== null && e.object_type === "TABLE" &&
    typeof e.object_full_path === "string" && e.object_full_path !== ""
  );
  return hasTable ? null : "authorization_details has no TABLE entry";
}

/** Handles `POST /oidc/v1/token`: client credentials grant, JSON reply. */
export async function handleTokenRequest(
  req: Request,
  opts: TokenEndpointOptions,
  store: TokenStore,
): Promise<Response> {
  const creds = parseBasicAuth(req.headers.get("authorization"));
  if (!creds || creds[0] !== opts.clientId || creds[1] !== opts.clientSecret) {
    return oauthError(401, "invalid_client", "Client authentication failed");
  }
  const type = req.headers.get("content-type") ?? "";
  if (!type.toLowerCase().startsWith("application/x-www-form-urlencoded")) {
    return oauthError(400, "invalid_request", "expected an application/x-www-form-urlencoded body");
  }
  const form = new URLSearchParams(await req.text());
  const grant = form.get("grant_type");
  if (grant !== "client_credentials") {
    return oauthError(400, "unsupported_grant_type", `grant_type ${grant} is not supported`);
  }
  // scope and resource are optional here; a resource, when sent, must name the Zerobus API.
  const resource = form.get("resource");
  if (
    resource !== null &&
    !/^api:\/\/databricks\/workspaces\/[^/]+\/zerobusDirectWriteApi$/.test(resource)
  ) {
    return oauthError(
      400,
      "invalid_request",
      "resource must be api://databricks/workspaces/<workspace-id>/zerobusDirectWriteApi",
    );
  }
  const detailsError = checkAuthorizationDetails(form.get("authorization_details"));
  if (detailsError) return oauthError(400, "invalid_request", detailsError);
  return jsonResponse(200, {
    access_token: store.issue(opts.ttlS),
    token_type: "Bearer",
    expires_in: opts.ttlS,
    scope: form.get("scope") ?? "all-apis",
  });
}
