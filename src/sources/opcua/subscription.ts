/**
 * The subscription of an OPC UA source: created with every node as a
 * monitored item (`acquire.ts`), followed for Republish (`resume.ts`), and its
 * watchdog: a subscription without data or keep-alive for WATCHDOG_PERIODS
 * keep-alive periods, on a session that still answers, is deleted and
 * created again with the same nodes.
 */
import type { ClientSession, ClientSubscription, DataValue } from "node-opcua";
import { type Monitored, monitorNodes } from "./acquire.ts";
import {
  KEEPALIVE_TARGET_MS,
  type LinkWatch,
  SILENCE_MS,
  TICK_MS,
  WATCHDOG_PERIODS,
} from "./liveness.ts";
import type { OperationLimits } from "./nodes.ts";
import { followSequence } from "./resume.ts";
import { subscriptionParameters } from "./staying.ts";
import {
  CLOSE_TIMEOUT_MS,
  count,
  errorText,
  reportUnresolved,
  setUnknown,
  type SourceRun,
  within,
} from "./state.ts";
import { noteStatus } from "./recover.ts";
import { readingOf, type TargetNode } from "./values.ts";

/** Data or a keep-alive from the subscription. */
function subscriptionAlive(run: SourceRun): void {
  run.subscriptionHeard = performance.now();
  run.watch?.heard();
}

/** Creates the subscription and its monitored items; `first` reports refused items. */
export async function subscribe(
  run: SourceRun,
  s: ClientSession,
  nodes: TargetNode[],
  limits: OperationLimits,
  first: boolean,
): Promise<void> {
  const { cfg, detail } = run;
  const t0 = performance.now();
  const sub = await s.createSubscription2(
    subscriptionParameters(cfg.publishing_interval_ms ?? 1000, KEEPALIVE_TARGET_MS),
  );
  run.subscription = sub;
  followSequence(sub);
  run.keepAliveMs = sub.publishingInterval * sub.maxKeepAliveCount;
  detail.keep_alive_ms = run.keepAliveMs;
  run.subscriptionHeard = performance.now();
  sub.on("keepalive", () => run.subscription === sub && subscriptionAlive(run));
  const res = await monitorNodes(
    sub,
    nodes,
    cfg,
    run.withRange,
    limits.monitoredItems,
    itemChanged(run, sub),
  );
  run.items = res.items;
  leaveOut(nodes, res);
  // Refused items are tried again (`recover.ts`); the first time they are reported.
  if (first) reportUnresolved(run, res.refused);
  else setUnknown(run, [...run.unknown, ...res.refused]);
  detail.monitored_items = res.monitored;
  detail.create_monitored_items_calls = res.calls;
  detail.max_monitored_items_per_call = limits.monitoredItems.size;
  detail.subscription_setup_ms = Math.round(performance.now() - t0);
  if (first && res.withoutRange.length > 0) warnWithoutRange(run, res.withoutRange);
}

/** What a change of a monitored item of `sub` does: a reading, and its status followed. */
function itemChanged(run: SourceRun, sub: ClientSubscription) {
  return (n: TargetNode, dv: DataValue) => {
    if (run.subscription === sub) subscriptionAlive(run);
    if (!run.stopped) run.kit.emit(readingOf(n, dv));
    if (run.subscription === sub) noteStatus(run, n, dv.statusCode.value);
  };
}

/** Takes the refused nodes out of `nodes` (in place: the list the acquisition uses). */
function leaveOut(nodes: TargetNode[], res: Monitored): void {
  const refused = new Set(res.refused.map((u) => u.node));
  for (let i = nodes.length - 1; i >= 0; i--) if (refused.has(nodes[i])) nodes.splice(i, 1);
}

/**
 * Adds monitored items for `more` to the running subscription (batched as
 * at setup); gives the nodes now monitored and the refused ones.
 */
export async function monitorMore(
  run: SourceRun,
  more: TargetNode[],
): Promise<Monitored> {
  const sub = run.subscription!;
  const res = await monitorNodes(
    sub,
    more,
    run.cfg,
    run.withRange,
    run.limits!.monitoredItems,
    itemChanged(run, sub),
  );
  for (const [n, item] of res.items) run.items.set(n, item);
  run.detail.monitored_items = run.items.size;
  return res;
}

/** Says that the nodes without an EURange are monitored without the percent deadband. */
function warnWithoutRange(run: SourceRun, withoutRange: TargetNode[]): void {
  const list = withoutRange.slice(0, 3).map((n) => n.address).join(", ");
  const msg = `deadband_type percent needs an EURange; ${withoutRange.length} node(s) ` +
    `have none and are monitored without a deadband (e.g. ${list}); use deadband_type ` +
    "absolute for them";
  run.kit.log("warning", "opcua percent deadband without EURange", {
    nodes: withoutRange.length,
  });
  run.detail.without_eurange = withoutRange.length;
  run.deadbandWarning = msg;
}

/**
 * The watchdog, on each tick of `w`: rebuilds the subscription when it has
 * been silent too long while the link is not; `w` is declared dead when
 * rebuilding fails.
 */
export async function checkSubscription(
  run: SourceRun,
  w: LinkWatch,
  nodes: TargetNode[],
): Promise<void> {
  const sub = run.subscription, s = run.session;
  if (!sub || !s || !run.limits || run.rebuilding || run.stopped) return;
  const silent = performance.now() - run.subscriptionHeard;
  if (silent < WATCHDOG_PERIODS * run.keepAliveMs + TICK_MS || w.silentMs >= SILENCE_MS) return;
  run.rebuilding = true;
  const seconds = Math.round(silent / 1000);
  run.kit.log("warning", "opcua subscription silent; rebuilding it", { silent_s: seconds });
  run.subscription = undefined;
  try {
    await within(sub.terminate(), CLOSE_TIMEOUT_MS);
    await subscribe(run, s, nodes, run.limits!, false);
    count(run, "subscription_rebuilds");
    if (!run.stopped) {
      run.kit.status(
        "connected",
        `the subscription sent neither data nor keep-alive for ${seconds} s; rebuilt it`,
        run.detail,
      );
    }
  } catch (e) {
    w.dead(`rebuilding the silent subscription failed: ${errorText(e)}`);
  } finally {
    run.rebuilding = false;
  }
}
