/**
 * The OPC UA source while connected: the link watch (`liveness.ts`) with the
 * subscription watchdog on its ticks, and in polling mode the reads on the
 * polling schedule, until the connection is lost or the source stops.
 */
import { AttributeIds, type ClientSession } from "node-opcua";
import { readValues } from "./acquire.ts";
import { LinkWatch } from "./liveness.ts";
import type { OperationLimits } from "./nodes.ts";
import { nextTick } from "../schedule.ts";
import { connectedNote, errorText, sleep, type SourceRun } from "./state.ts";
import { checkSubscription } from "./subscription.ts";
import { readingOf, type TargetNode } from "./values.ts";

/** Server/ServerStatus/CurrentTime: what the link probe reads. */
const SERVER_TIME = "i=2258";

/** Watches the connection until it is lost (or the source stops); gives the reason. */
export async function supervise(run: SourceRun, nodes: TargetNode[]): Promise<string> {
  const s = run.session!;
  const ended = new Promise<string>((resolve) => {
    run.lost = (reason) => {
      run.lost = () => {};
      run.wake();
      resolve(reason);
    };
  });
  const w = new LinkWatch(
    () => s.read({ nodeId: SERVER_TIME, attributeId: AttributeIds.Value }),
    (reason) => run.lost(reason),
    (w) => void checkSubscription(run, w, nodes),
  );
  run.watch = w;
  w.start();
  if (run.cfg.polling_mode) void poll(run, s, nodes, run.limits!, w);
  const reason = await ended;
  w.dead(reason);
  return reason;
}

/** Reads every node on the polling schedule while `w` says the link is alive. */
async function poll(
  run: SourceRun,
  s: ClientSession,
  nodes: TargetNode[],
  limits: OperationLimits,
  w: LinkWatch,
): Promise<void> {
  const { kit, detail } = run;
  const interval = run.cfg.polling_interval_ms;
  const start = performance.now();
  let failing = false;
  while (!run.stopped && w.alive) {
    await kit.waitForCredit();
    if (run.stopped || !w.alive) return;
    try {
      const dvs = await readValues(s, nodes, limits.read);
      if (!w.alive) return;
      w.heard();
      if (!run.stopped) dvs.forEach((dv, i) => kit.emit(readingOf(nodes[i], dv)));
      detail.max_nodes_per_read = limits.read.size;
      if (failing) kit.status("connected", connectedNote(run), detail);
      failing = false;
    } catch (e) {
      if (!failing && !run.stopped && w.alive) {
        kit.status("error", `read failed: ${errorText(e)}`, detail);
      }
      failing = true;
    }
    await sleep(run, nextTick(start, interval, performance.now()) - performance.now());
  }
}
