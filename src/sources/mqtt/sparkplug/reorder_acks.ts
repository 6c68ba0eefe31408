/**
 * Acks of Sparkplug messages held in the host's reorder buffer: a QoS 1/2
 * message waiting for a missing sequence number is acknowledged only after the
 * commit of the batch its readings were released into (or its window closed).
 */
import type { MqttRun } from "../run.ts";
import type { BatchCommits } from "../commits.ts";
import type { HostResult, SparkplugHost } from "./host.ts";

/** The Sparkplug reorder acks and the timer that closes reorder windows. */
export class ReorderAcks {
  /** Held acks: token → gives the commit to wait for. */
  readonly #waiting = new Map<number, (commit: Promise<void>) => void>();
  #nextToken = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly run: MqttRun,
    readonly host: SparkplugHost,
    readonly commits: BatchCommits,
  ) {}

  /** A new token for a message's ack (QoS 1/2), or undefined (QoS 0: no ack). */
  token(qos: number): number | undefined {
    return qos > 0 ? ++this.#nextToken : undefined;
  }

  /** Resolves once the buffered message of `token` is released and its batch committed. */
  hold(token: number): Promise<void> {
    return new Promise<void>((resolve) =>
      this.#waiting.set(token, (commit) => commit.then(resolve, resolve))
    );
  }

  /** Acts on a host result: publishes its rebirth request, releases the acks it carries. */
  settle(out: HostResult, commit: () => Promise<void>): void {
    const { kit, client } = this.run;
    if (out.rebirth) {
      kit.log("info", "requesting a Sparkplug rebirth", {
        topic: out.rebirth.topic,
        reason: out.rebirth.reason,
      });
      client?.publish(out.rebirth.topic, out.rebirth.payload as never, { qos: 0, retain: false });
    }
    if (out.released?.length) {
      const c = commit();
      for (const token of out.released) this.#waiting.get(token)?.(c), this.#waiting.delete(token);
    }
    this.arm();
  }

  /** Closes the Sparkplug reorder windows when the next one ends. */
  arm(): void {
    clearTimeout(this.#timer);
    const next = this.host.nextDeadline();
    if (next === undefined || this.run.stopping) return;
    this.#timer = setTimeout(() => this.#expire(), Math.max(0, next - Date.now()));
  }

  #expire(): void {
    const { kit } = this.run;
    for (const out of this.host.expire(Date.now())) {
      for (const r of out.readings) kit.emit(r);
      if (out.readings.length > 0) this.commits.flushSoon();
      this.settle(out, () => this.commits.committed("sparkplug reorder buffer"));
    }
    this.arm();
  }

  /**
   * The connection closed: the acks of `discarded` (and all others) would go
   * to a closed connection, so they are released at once and forgotten; the
   * broker redelivers these messages.
   */
  drop(discarded: readonly number[]): void {
    for (const token of discarded) this.#waiting.get(token)?.(Promise.resolve());
    this.#waiting.clear();
  }

  /** Stops the reorder timer (stop). */
  stop(): void {
    clearTimeout(this.#timer);
  }
}
