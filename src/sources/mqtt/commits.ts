/**
 * The spool commit a message's ack waits for. The messages of one batch share
 * one promise (one reaction per spool commit, not one per message).
 */
import type { MqttRun } from "./run.ts";

/** The kit's promise for the batch being filled, and what acks wait for on it. */
interface Batch {
  commit: Promise<boolean>;
  acked: Promise<void>;
  messages: number;
}

/** The batch being filled and the posting of it. */
export class BatchCommits {
  #batch: Batch | undefined;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** Messages whose records the spool dropped (acknowledged all the same). */
  #dropped = 0;

  constructor(readonly run: MqttRun) {}

  /**
   * Resolves once what was emitted so far is committed; logs records the
   * spool dropped (`topic` names the message that opened the batch).
   */
  committed(topic: string): Promise<void> {
    const commit = this.run.kit.whenCommitted();
    if (this.#batch?.commit !== commit) this.#batch = this.#open(commit, topic);
    this.#batch.messages++;
    return this.#batch.acked;
  }

  #open(commit: Promise<boolean>, topic: string): Batch {
    const { run } = this;
    const b: Batch = { commit, acked: Promise.resolve(), messages: 0 };
    b.acked = commit.then((stored) => {
      if (stored || run.stopping) return;
      this.#dropped += b.messages;
      run.kit.log("warning", "records of MQTT messages were dropped by the spool; acknowledged", {
        topic,
        messages: b.messages,
        dropped_messages: this.#dropped,
      });
    });
    return b;
  }

  /** Posts the current batch once the packets already read are handled (after their nextTicks). */
  flushSoon(): void {
    this.#flushTimer ??= setTimeout(() => {
      this.#flushTimer = undefined;
      this.run.kit.flush();
    }, 0);
  }

  /** Cancels a pending post (stop). */
  stop(): void {
    clearTimeout(this.#flushTimer);
  }
}
