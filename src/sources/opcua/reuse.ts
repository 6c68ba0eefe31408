/**
 * Reusing the session of a lost link on the next connect (the services are
 * in `resume.ts`): the session and its subscription are kept with their
 * Publish requests held; the next connect activates the session on a new
 * secure channel and fetches what the subscription sent meanwhile, or, when
 * the server refuses the session, moves the subscription to a new session.
 * When the server knows neither or renumbered its namespaces, the caller
 * sets everything up anew.
 */
import type { ClientSubscription } from "node-opcua";
import { namespacesOf } from "./nodes.ts";
import { userIdentity } from "./security.ts";
import {
  holdPublishing,
  renewSession,
  republishMissed,
  sameNamespaces,
  subscriptionUnknown,
  transferSubscription,
} from "./resume.ts";
import { openClient, release } from "./client.ts";
import { CLOSE_TIMEOUT_MS, count, errorText, type Kept, type SourceRun, within } from "./state.ts";
import { subscribe } from "./subscription.ts";
import type { TargetNode } from "./values.ts";

/** Attempts that activate a kept session but fail afterwards before it is given up. */
const RESUME_FAILURES = 3;

/** Holds the session (and subscription) of a lost link for the next connect. */
export function keep(run: SourceRun, nodes: TargetNode[]): void {
  const { session, subscription } = run;
  if (!session || run.stopped) return;
  if (subscription) holdPublishing(session, true);
  run.kept = {
    session,
    subscription,
    nodes,
    namespaces: run.namespaces,
    monitored: run.detail.monitored_items as number,
    failures: 0,
  };
}

/**
 * Connects on a new secure channel and activates the kept session there;
 * undefined when the server no longer knows it (restarted, timed out) or
 * renumbered its namespaces: then the full setup follows. Throws when the
 * server cannot be reached (the session stays kept for the next attempt).
 */
export async function resume(run: SourceRun, k: Kept): Promise<TargetNode[] | undefined> {
  const c = await openClient(run, run.pki!);
  try {
    await c.reactivateSession(k.session);
  } catch (e) {
    run.kept = undefined;
    run.kit.log("info", "opcua session not activated again", { reason: errorText(e) });
    return k.subscription ? await transfer(run, k, k.subscription) : await forget(run);
  }
  run.session = k.session;
  run.subscription = k.subscription;
  run.kept = undefined;
  try {
    if (!await sameNamespacesAs(run, k)) return undefined;
    count(run, "sessions_reactivated");
    if (k.subscription) await resumeSubscription(run, k.subscription, k);
  } catch (e) {
    // The link failed again (most likely): keep the session for the next attempts.
    if (++k.failures < RESUME_FAILURES) {
      run.kept = k;
      if (k.subscription) holdPublishing(k.session, true);
    }
    throw e;
  }
  run.kit.log("info", "opcua session resumed", { endpoint: run.cfg.endpoint });
  return k.nodes;
}

/** Lets the kept session go (and whatever is attached to the client); undefined. */
async function forget(run: SourceRun): Promise<undefined> {
  run.kit.log("info", "opcua session and subscription not kept; setting up anew", {});
  await release(run, true);
  return undefined;
}

/** False (after letting the session go) when the server's NamespaceArray changed. */
async function sameNamespacesAs(run: SourceRun, k: Kept): Promise<boolean> {
  const namespaces = await namespacesOf(k.session);
  if (sameNamespaces(namespaces, k.namespaces)) return true;
  run.kit.log("info", "opcua namespaces changed; setting up anew", {
    namespaces: namespaces.length,
  });
  await release(run, true);
  return false;
}

/**
 * The server refused the kept session: a new session for the same session
 * object, and the subscription moved to it if the server still has it;
 * undefined (full setup) when it does not.
 */
async function transfer(
  run: SourceRun,
  k: Kept,
  sub: ClientSubscription,
): Promise<TargetNode[] | undefined> {
  try {
    await renewSession(run.client!, k.session, await userIdentity(run.cfg));
  } catch (e) {
    run.kit.log("info", "opcua new session for the transfer failed", { reason: errorText(e) });
    return await forget(run);
  }
  run.session = k.session;
  run.subscription = sub;
  if (!await transferSubscription(k.session, sub).catch(() => false)) return await forget(run);
  if (!await sameNamespacesAs(run, k)) return undefined;
  count(run, "subscriptions_transferred");
  await resumeSubscription(run, sub, k);
  run.kit.log("info", "opcua subscription transferred to a new session", {
    endpoint: run.cfg.endpoint,
  });
  return k.nodes;
}

/**
 * Fetches what the subscription sent while the link was down (Republish),
 * then lets it publish again; a subscription the server dropped is created
 * again on the same session (what it queued is lost then).
 */
async function resumeSubscription(
  run: SourceRun,
  sub: ClientSubscription,
  k: Kept,
): Promise<void> {
  const s = k.session;
  try {
    count(run, "notifications_republished", await republishMissed(s, sub));
    holdPublishing(s, false);
    run.subscriptionHeard = performance.now();
    run.detail.monitored_items = k.monitored;
  } catch (e) {
    if (!subscriptionUnknown(e)) throw e;
    run.kit.log("warning", "opcua subscription gone on the server; creating it again", {
      reason: errorText(e),
    });
    holdPublishing(s, false);
    run.subscription = undefined;
    await within(sub.terminate(), CLOSE_TIMEOUT_MS);
    await subscribe(run, s, k.nodes, run.limits!, false);
    count(run, "subscriptions_recreated");
  }
}
