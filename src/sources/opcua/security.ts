/**
 * Security of an OPC UA source connection (Worker only: loads node-opcua):
 * the agent's certificate store, the endpoint that matches the configured
 * mode and policy (never a weaker one), the trust check of the server's
 * certificate, the user identity, and error texts that say what to do.
 */
import { Buffer } from "node:buffer";
import {
  type EndpointDescription,
  MessageSecurityMode,
  OPCUACertificateManager,
  OPCUAClient,
  SecurityPolicy,
  type UserIdentityInfo,
  UserTokenType,
} from "node-opcua";
import { hostPortOf, TRANSPORT_TIMEOUT_MS } from "./liveness.ts";
import { errorText } from "./state.ts";
import type { SourceKit } from "../worker_kit.ts";
import { certificateDer, listCertificates, thumbprintOf } from "./pki.ts";
import type { OpcuaSourceConfig } from "./schema.ts";

/** A connect problem that only a change of config, server or trust list fixes. */
export class SecurityError extends Error {
  override name = "SecurityError";
}

/** The agent's OPC UA identity: its certificate store and application URI. */
export interface AgentPki {
  dir: string;
  certs: OPCUACertificateManager;
  applicationUri: string;
}

/**
 * The application URI in the agent's certificate, kept in
 * `own/application_uri.txt` so the certificate (created once) keeps matching
 * it when the host is renamed.
 */
async function applicationUriOf(dir: string): Promise<string> {
  const file = `${dir}/own/application_uri.txt`;
  const read = () => Deno.readTextFile(file).then((t) => t.trim()).catch(() => "");
  const found = await read();
  if (found) return found;
  const uri = `urn:${Deno.hostname()}:otedge`;
  await Deno.mkdir(`${dir}/own`, { recursive: true });
  await Deno.writeTextFile(file, `${uri}\n`, { createNew: true }).catch(() => {});
  return (await read()) || uri;
}

/** Opens (creating on first use) the agent's certificate store in `dir`. */
export async function openAgentPki(dir: string): Promise<AgentPki> {
  const certs = new OPCUACertificateManager({
    rootFolder: dir,
    automaticallyAcceptUnknownCertificate: false,
    // Trust changes come from other processes (CLI, API); the store is re-read before each connect.
    disableFileWatchers: true,
  });
  await certs.initialize();
  return { dir, certs, applicationUri: await applicationUriOf(dir) };
}

const policyName = (uri: string) => uri.slice(uri.lastIndexOf("#") + 1);
const modeName = (m: MessageSecurityMode) => MessageSecurityMode[m];
const TOKEN_NAMES: Record<number, string> = {
  [UserTokenType.Anonymous]: "anonymous",
  [UserTokenType.UserName]: "username/password",
  [UserTokenType.Certificate]: "X.509 certificate",
  [UserTokenType.IssuedToken]: "issued token",
};

/**
 * The server's endpoints, read over an unsecured channel (GetEndpoints is
 * open to all). `track` gets the discovery client, so a stop can disconnect it.
 */
export async function offeredEndpoints(
  endpointUrl: string,
  pki: AgentPki,
  track: (client: OPCUAClient) => void = () => {},
): Promise<EndpointDescription[]> {
  const client = OPCUAClient.create({
    applicationName: "otedge",
    applicationUri: pki.applicationUri,
    endpointMustExist: false,
    connectionStrategy: { initialDelay: 500, maxDelay: 1000, maxRetry: 0 },
    transportTimeout: TRANSPORT_TIMEOUT_MS,
    clientCertificateManager: pki.certs,
  });
  track(client);
  try {
    await client.connect(endpointUrl).catch((e) => {
      throw new Error(reachErrorText(e, endpointUrl));
    });
    return await client.getEndpoints();
  } finally {
    await client.disconnect().catch(() => {});
  }
}

/** `SignAndEncrypt/Basic256Sha256, ...`: what the server offers, without repeats. */
export function offerText(endpoints: EndpointDescription[]): string {
  const set = new Set(
    endpoints.map((e) => `${modeName(e.securityMode)}/${policyName(e.securityPolicyUri ?? "")}`),
  );
  return [...set].join(", ") || "no endpoints";
}

/**
 * The endpoint with exactly the configured mode and policy. Throws a
 * SecurityError listing what the server offers: there is no fallback.
 */
export function pickEndpoint(
  endpoints: EndpointDescription[],
  cfg: OpcuaSourceConfig,
): EndpointDescription {
  const mode = MessageSecurityMode[cfg.security_mode];
  const policy = SecurityPolicy[cfg.security_policy];
  const hit = endpoints.find((e) => e.securityMode === mode && e.securityPolicyUri === policy);
  if (hit) return hit;
  throw new SecurityError(
    `server does not offer security_mode ${cfg.security_mode} with security_policy ` +
      `${cfg.security_policy}; it offers ${offerText(endpoints)}. Set security_mode/` +
      `security_policy to one of these or enable the combination on the server ` +
      `(the source never falls back to a weaker one)`,
  );
}

/** The token type the source logs in with. */
function tokenTypeOf(cfg: OpcuaSourceConfig): UserTokenType {
  if (cfg.user_certificate) return UserTokenType.Certificate;
  return cfg.username ? UserTokenType.UserName : UserTokenType.Anonymous;
}

/** Throws when the endpoint does not accept the configured kind of login. */
export function checkLogin(endpoint: EndpointDescription, cfg: OpcuaSourceConfig): void {
  const want = tokenTypeOf(cfg);
  const offered = (endpoint.userIdentityTokens ?? []).map((t) => t.tokenType);
  if (offered.length === 0 || offered.includes(want)) return;
  throw new SecurityError(
    `server endpoint ${cfg.security_mode}/${cfg.security_policy} does not accept ` +
      `${TOKEN_NAMES[want]} logins; it accepts ${
        [...new Set(offered.map((t) => TOKEN_NAMES[t] ?? String(t)))].join(", ")
      }. Configure ${
        want === UserTokenType.Anonymous ? "username/password or user_certificate" : "another login"
      } accordingly`,
  );
}

/**
 * Checks the server's certificate against the agent's trust list (re-read
 * from disk, so a `certificates trust` from another process counts). An
 * unknown certificate lands in `rejected/` and the error says how to trust
 * it; with `trust_server_certificate: auto` an unknown one is trusted instead
 * (logged as a warning). A certificate in `rejected/` stays rejected.
 */
export async function checkServerCertificate(
  pki: AgentPki,
  der: Uint8Array,
  cfg: OpcuaSourceConfig,
  kit: SourceKit,
): Promise<void> {
  const thumbprint = await thumbprintOf(der);
  const stored = (await listCertificates(pki.dir)).filter((c) => c.thumbprint === thumbprint);
  await pki.certs.reloadCertificates();
  if (stored.length === 0 && cfg.trust_server_certificate === "auto") {
    await pki.certs.trustCertificate(Buffer.from(der));
    kit.log("warning", "opcua server certificate trusted on first contact", {
      endpoint: cfg.endpoint,
      thumbprint,
      trust_server_certificate: "auto",
    });
  }
  const status = await pki.certs.checkCertificate(Buffer.from(der));
  if (status.isGood()) return;
  const rejected = (await listCertificates(pki.dir)).find(
    (c) => c.thumbprint === thumbprint && c.state === "rejected",
  );
  if (rejected) {
    throw new SecurityError(
      `server certificate not trusted (thumbprint ${thumbprint}, ${
        rejected.subject || "no subject"
      }` +
        `, saved as ${rejected.path}): check it is the server's, then run ` +
        `\`otedge certificates trust ${thumbprint}\` or move the file to ${pki.dir}/trusted/certs/;` +
        ` the source retries by itself`,
    );
  }
  throw new SecurityError(
    `server certificate ${thumbprint} failed verification: ${status.name}. Renew the server's ` +
      `certificate or add its issuer and CRL to ${pki.dir}/issuers/`,
  );
}

/** The user identity of the session: anonymous, username/password or X.509 certificate. */
export async function userIdentity(cfg: OpcuaSourceConfig): Promise<UserIdentityInfo> {
  if (cfg.user_certificate && cfg.user_private_key) {
    const read = async (key: string, path: string) => {
      try {
        return await Deno.readFile(path);
      } catch (e) {
        throw new SecurityError(`${key}: cannot read ${path}: ${errorText(e)}`);
      }
    };
    let certificateData: Uint8Array;
    try {
      certificateData = certificateDer(await read("user_certificate", cfg.user_certificate));
    } catch (e) {
      if (e instanceof SecurityError) throw e;
      throw new SecurityError(`user_certificate: ${cfg.user_certificate}: ${errorText(e)}`);
    }
    const key = new TextDecoder().decode(await read("user_private_key", cfg.user_private_key));
    if (!/-----BEGIN (RSA )?PRIVATE KEY-----/.test(key)) {
      throw new SecurityError(
        `user_private_key: ${cfg.user_private_key} is not an unencrypted PEM private key`,
      );
    }
    return {
      type: UserTokenType.Certificate,
      certificateData: Buffer.from(certificateData),
      privateKey: key,
    };
  }
  if (cfg.username) {
    return { type: UserTokenType.UserName, userName: cfg.username, password: cfg.password ?? "" };
  }
  return { type: UserTokenType.Anonymous };
}

/** A session error (ActivateSession refused) as a text that says what to do. */
export function sessionErrorText(e: unknown, cfg: OpcuaSourceConfig): string {
  const msg = errorText(e);
  const code = /Bad[A-Za-z]+/.exec(msg)?.[0] ?? msg;
  const who = cfg.user_certificate
    ? `user certificate ${cfg.user_certificate}`
    : cfg.username
    ? `user '${cfg.username}'`
    : "anonymous login";
  if (code === "BadUserSignatureInvalid") {
    return `server refused the session for ${who} (${code}): user_private_key ` +
      `${cfg.user_private_key} is not the key of that certificate`;
  }
  if (/BadUserAccessDenied|BadIdentityToken|BadCertificate/.test(code)) {
    return `server refused the session for ${who} (${code}): ${
      cfg.user_certificate
        ? "the server must trust the user certificate and map it to a user"
        : cfg.username
        ? "check username and password (or the credential the password refers to)"
        : "the server does not allow anonymous access; set username/password or user_certificate"
    }`;
  }
  return `session for ${who} failed: ${msg}`;
}

/** A connect error as a text that says what to do. */
export function connectErrorText(e: unknown, pki: AgentPki, endpoint: string): string {
  const msg = reachErrorText(e, endpoint);
  if (/BadSecurityChecksFailed|BadCertificate|BadSecurityPolicyRejected/.test(msg)) {
    return `the server refused the secure channel (${
      /Bad[A-Za-z]+/.exec(msg)?.[0]
    }): it may not trust the agent's certificate ${pki.dir}/own/certs/client_certificate.pem; ` +
      `add that file to the server's trusted certificates. (${msg})`;
  }
  return msg;
}

/** A failure to reach the server (refused, unknown host, no answer) as a text that says what to do. */
export function reachErrorText(e: unknown, endpoint: string): string {
  const msg = errorText(e);
  const { hostname, port } = hostPortOf(endpoint);
  if (/ECONNREFUSED|connection refused/i.test(msg)) {
    return `nothing accepts connections at ${hostname}:${port} (connection refused): check the ` +
      `endpoint's host and port and that the OPC UA server runs (${msg})`;
  }
  if (/ENOTFOUND|EAI_AGAIN|getaddrinfo|failed to lookup/i.test(msg)) {
    return `host ${hostname} not found: check the endpoint's host name (${msg})`;
  }
  if (/timeout|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|Abandoned|premature/i.test(msg)) {
    return `no answer from ${hostname}:${port} (${msg}): check the network path and firewall ` +
      "to the server and that it is an OPC UA server";
  }
  return msg;
}
