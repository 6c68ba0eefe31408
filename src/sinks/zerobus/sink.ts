/**
 * The Zerobus sink: one gRPC channel per endpoint, and per target table a
 * token provider and a sender reading that table's spool lane.
 */
import type { Spool } from "../../spool/spool.ts";
import { connectGrpc, type GrpcClientChannel } from "../../http2/grpc_client.ts";
import {
  type BreakerState,
  type SenderEvent,
  type SenderOptions,
  type SenderStats,
  TargetSender,
} from "./sender.ts";
import { type TableRef, TokenProvider, workspaceIdOf } from "./token.ts";
import type { RecordTypeName } from "./wire.ts";

/** Settings of the sink, derived from the `zerobus` config section. */
export interface SinkOptions {
  endpoint: string;
  workspaceUrl: string;
  clientId: string;
  clientSecret: string;
  maxRecords: number;
  maxBytes: number;
  lingerMs: number;
  streamsPerTarget: number;
  maxInflight: number;
  ackTimeoutMs: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  fatalRetryMs?: number;
}

/** Event from a sender, for metrics and logs. */
export type SinkEvent = SenderEvent & { target: string };

/** Streams every target's spool lane into Zerobus. */
export class ZerobusSink {
  readonly senders = new Map<string, TargetSender>();
  #channel: GrpcClientChannel;

  constructor(
    private readonly opts: SinkOptions,
    private readonly spool: Spool,
    private readonly onEvent: (e: SinkEvent) => void = () => {},
  ) {
    // Keep-alive PINGs only every 5 minutes on an idle connection: gRPC servers
    // commonly refuse more frequent ones (GOAWAY too_many_pings). A dead link
    // under load is found sooner by the ack timeout.
    this.#channel = connectGrpc(opts.endpoint, { userAgent: "otedge/0.1", keepaliveMs: 300_000 });
  }

  /** Starts (once) the sender of a target lane (`key`: the lane name, see `laneName`). */
  addTarget(key: string, table: TableRef, recordType: RecordTypeName): TargetSender {
    let s = this.senders.get(key);
    if (s) return s;
    const o = this.opts;
    const tokens = new TokenProvider({
      workspaceUrl: o.workspaceUrl,
      workspaceId: workspaceIdOf(o.endpoint),
      clientId: o.clientId,
      clientSecret: o.clientSecret,
      table,
    });
    const senderOpts: SenderOptions = {
      table,
      recordType,
      maxRecords: o.maxRecords,
      maxBytes: o.maxBytes,
      lingerMs: o.lingerMs,
      streams: o.streamsPerTarget,
      maxInflight: o.maxInflight,
      ackTimeoutMs: o.ackTimeoutMs,
      backoffMinMs: o.backoffMinMs,
      backoffMaxMs: o.backoffMaxMs,
      fatalRetryMs: o.fatalRetryMs,
    };
    s = new TargetSender(
      this.#channel,
      this.spool,
      key,
      tokens,
      senderOpts,
      (e) => this.onEvent({ ...e, target: key }),
    );
    this.senders.set(key, s);
    s.start();
    return s;
  }

  /** Stops every sender (waiting up to `graceMs` for acks) and closes the channel. */
  async stop(graceMs = 5000): Promise<void> {
    await Promise.all([...this.senders.values()].map((s) => s.stop(graceMs)));
    await this.#channel.close();
  }

  /** True when every target has a live stream. */
  connected(): boolean {
    if (this.senders.size === 0) return false;
    for (const s of this.senders.values()) if (s.stats.state !== "streaming") return false;
    return true;
  }

  /** The worst breaker state over all targets. */
  breakerState(): BreakerState {
    let state: BreakerState = "closed";
    for (const s of this.senders.values()) {
      if (s.stats.breaker === "open") return "open";
      if (s.stats.breaker === "half_open") state = "half_open";
    }
    return state;
  }

  /** Per-target delivery figures, with latency percentiles in ms. */
  targetStats(): Record<
    string,
    SenderStats & { p50_latency_ms: number | null; p99_latency_ms: number | null }
  > {
    const out: Record<
      string,
      SenderStats & { p50_latency_ms: number | null; p99_latency_ms: number | null }
    > = {};
    for (const [key, s] of this.senders) {
      out[key] = {
        ...s.stats,
        p50_latency_ms: s.latency.percentile(0.5),
        p99_latency_ms: s.latency.percentile(0.99),
      };
    }
    return out;
  }
}
