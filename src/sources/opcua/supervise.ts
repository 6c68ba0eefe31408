/**
 * The OPC UA source while connected: the link watch (`liveness.ts`) with the
 * subscription watchdog on its ticks, the recovery of unknown nodes
 * (`recover.ts`), and in polling mode the reads on the polling schedule,
 * until the connection is lost or the source stops.
 */
import { AttributeIds, type ClientSession } from "node-opcua";
import { readValues } from "./acquire.ts";
import { LinkWatch } from "./liveness.ts";
import type { OperationLimits } from "./nodes.ts";
import { nextTick } from "../schedule.ts";
import { connectedNote, errorText, sleep, type SourceRun } from "./state.ts";
import { checkSubscription } from "./subscription.ts";
import { noteStatus, recover } from "./recover.ts";
import { readingOf, type TargetNode } from "./values.ts";

/** Server/ServerStatus/CurrentTime: what the link probe reads. */
const SERVER_TIME = "i=2258";

/** Watches the connection until it is lost (or the source stops); gives the reason. */
export async function supervise(run: SourceRun, nodes: TargetNode[]): Promise<string> {
  const s = run.session!;
  run.nodes = nodes;
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
  // A storm seen before this point (notifications republished on resume) asked for a full setup.
  if (run.setUpAnew) run.lost("BadNodeIdUnknown storm; setting up anew");
  w.start();
  if (run.cfg.polling_mode) void poll(run, s, nodes, run.limits!, w);
  void recover(run, s, w);
  const reason = await ended;
  w.dead(reason);
  return reason;
}

/**
 * Reads every node on the polling schedule while `w` says the link is alive;
 * `nodes` may grow meanwhile (recovered nodes).
 */
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
      const list = [...nodes];
      const dvs = await readValues(s, list, limits.read);
      if (!w.alive) return;
      w.heard();
      if (!run.stopped) dvs.forEach((dv, i) => kit.emit(readingOf(list[i], dv)));
      dvs.forEach((dv, i) => noteStatus(run, list[i], dv.statusCode.value));
      detail.max_nodes_per_read = limits.read.size;
      // A failed read or a batch shrink showed `error`: this read went well.
      if ((failing || run.errorShown) && !run.stopped) {
        kit.status("connected", connectedNote(run), detail);
      }
      failing = run.errorShown = false;
    } catch (e) {
      if (!failing && !run.stopped && w.alive) {
        kit.status("error", `read failed: ${errorText(e)}`, detail);
      }
      failing = true;
    }
    if (!w.alive) return; // the retry loop owns the wake-up from here
    await sleep(run, nextTick(start, interval, performance.now()) - performance.now());
  }
}
