/**
 * The node-opcua client of an OPC UA source: created with the configured
 * security and without node-opcua's own repair (the Worker reconnects),
 * connected on a new secure channel, and released with its session and
 * subscription.
 */
import { MessageSecurityMode, OPCUAClient, SecurityPolicy } from "node-opcua";
import type { Buffer } from "node:buffer";
import { type AgentPki, connectErrorText } from "./security.ts";
import { TRANSPORT_TIMEOUT_MS } from "./liveness.ts";
import { CLOSE_TIMEOUT_MS, type SourceRun, within } from "./state.ts";

function newClient(run: SourceRun, agent: AgentPki, serverCertificate?: Buffer): OPCUAClient {
  const { cfg } = run;
  const c = OPCUAClient.create({
    applicationName: "otedge",
    applicationUri: agent.applicationUri,
    clientName: cfg.name,
    serverCertificate,
    securityMode: MessageSecurityMode[cfg.security_mode],
    securityPolicy: SecurityPolicy[cfg.security_policy],
    endpointMustExist: false,
    requestedSessionTimeout: 60_000,
    // No repair inside node-opcua: this worker reconnects (and re-resolves everything).
    connectionStrategy: { initialDelay: 1000, maxDelay: 2000, maxRetry: 0 },
    // A link loss keeps the session: disconnect() leaves it to be activated again.
    keepPendingSessionsOnDisconnect: true,
    transportTimeout: TRANSPORT_TIMEOUT_MS,
    clientCertificateManager: agent.certs,
  });
  // Only the current client may end the connection (a released one may still report).
  c.on("connection_lost", () => {
    if (run.client === c) {
      run.lost(`connection to ${cfg.endpoint} lost (server stopped or link cut); reconnecting`);
    }
  });
  c.on("close", (err?: Error | null) => {
    if (err && run.client === c) {
      run.lost(`connection to ${cfg.endpoint} closed (${err.message}); reconnecting`);
    }
  });
  return c;
}

/**
 * Makes a new client (for `run.serverCertificate`) the one in use and
 * connects it to the endpoint; throws a text that says what to do when the
 * connect fails.
 */
export async function openClient(run: SourceRun, agent: AgentPki): Promise<OPCUAClient> {
  const c = newClient(run, agent, run.serverCertificate);
  run.client = c;
  await c.connect(run.cfg.endpoint).catch((e) => {
    throw new Error(connectErrorText(e, agent, run.cfg.endpoint));
  });
  return c;
}

/** Closes subscription, session and client; `graceful` false skips the subscription's goodbye. */
export async function release(run: SourceRun, graceful = true): Promise<void> {
  const sub = run.subscription, s = run.session, c = run.client;
  run.subscription = undefined;
  run.session = undefined;
  run.client = undefined;
  if (graceful && sub) await within(sub.terminate(), CLOSE_TIMEOUT_MS);
  // A session kept for the next connect stays open on the server; any other is closed
  // (disconnect() leaves sessions open, see newClient).
  if (s && s !== run.kept?.session) await within(s.close(), CLOSE_TIMEOUT_MS);
  if (c) await within(c.disconnect(), CLOSE_TIMEOUT_MS);
}
