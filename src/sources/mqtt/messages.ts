/**
 * One MQTT message → readings: the size limit, the payload decoder, the topic
 * mapping and the retained-message rule, compiled once per source.
 */
import type { Reading } from "../worker_protocol.ts";
import { decodePayload, type PayloadOptions, QUALITY_CODES } from "./payload.ts";
import { compileTopicMapper, type TopicTag } from "./topics.ts";

/** Topics whose tag is remembered; a plant publishes on a fixed set of topics. */
const TOPIC_CACHE_SIZE = 10_000;

/** The source settings a message reader needs. */
export interface MessageReaderConfig {
  topic_template?: string;
  payload: PayloadOptions;
  retained_as_uncertain: boolean;
  /** A value whose source timestamp is older than this (seconds) gets quality uncertain. */
  stale_after_s?: number;
}

/** What the broker says about a message besides topic and payload. */
export interface MessageFlags {
  qos: number;
  retain: boolean;
}

/** The readings of a message, or why it goes to the dead-letter store. */
export type MessageResult =
  | { ok: true; readings: Reading[] }
  | { ok: false; reason: string };

/**
 * Compiles the settings into a message → readings function. Retained
 * messages (values the broker replays on subscribe) and values whose source
 * timestamp is older than `stale_after_s` get quality uncertain unless the
 * payload says bad, and quality_code 1 unless it has its own.
 */
export function compileMessageReader(
  cfg: MessageReaderConfig,
): (topic: string, payload: Uint8Array, flags: MessageFlags, nowMicros?: number) => MessageResult {
  const tagOf = rememberTags(compileTopicMapper(cfg.topic_template));
  const staleMicros = cfg.stale_after_s === undefined ? undefined : cfg.stale_after_s * 1e6;
  return (topic, payload, flags, nowMicros = Date.now() * 1000) => {
    const decoded = decodePayload(payload, cfg.payload);
    if (!decoded.ok) return decoded;
    const tag = tagOf(topic);
    const retainedUncertain = flags.retain && cfg.retained_as_uncertain;
    const metadata = flags.retain ? `{"qos":${flags.qos},"retained":true}` : `{"qos":${flags.qos}}`;
    const readings = decoded.values.map((v): Reading => {
      const r: Reading = {
        address: topic,
        // Rules' browse_path globs and the {browse_path} placeholder see the topic.
        browse_path: topic,
        tag_name: v.name ?? tag.tag_name,
        value: v.value,
        quality_code: v.quality_code ?? 0,
        metadata,
      };
      if (v.value_type) r.value_type = v.value_type;
      if (v.event_time !== undefined) r.event_time = v.event_time;
      if (v.quality) r.quality = v.quality;
      if (v.unit) r.unit = v.unit;
      if (tag.context) r.context = tag.context;
      const stale = staleMicros !== undefined && v.event_time !== undefined &&
        nowMicros - v.event_time > staleMicros;
      if ((retainedUncertain || stale) && r.quality !== "bad") {
        r.quality = "uncertain";
        r.quality_code = v.quality_code ?? QUALITY_CODES.uncertain;
      }
      if (stale) r.metadata = `${metadata.slice(0, -1)},"stale":true}`;
      return r;
    });
    return { ok: true, readings };
  };
}

/**
 * Remembers the tag of each topic (at most TOPIC_CACHE_SIZE, then starts
 * over), so a topic is split and matched once, not for every message. The
 * tags are shared between readings and never changed.
 */
function rememberTags(tagOf: (topic: string) => TopicTag): (topic: string) => TopicTag {
  const cache = new Map<string, TopicTag>();
  return (topic) => {
    let tag = cache.get(topic);
    if (tag === undefined) {
      if (cache.size >= TOPIC_CACHE_SIZE) cache.clear();
      tag = tagOf(topic);
      cache.set(topic, tag);
    }
    return tag;
  };
}
