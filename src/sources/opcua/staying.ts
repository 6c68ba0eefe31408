/**
 * Pure helpers of the OPC UA source's connection handling: subscription
 * parameters sized for a keep-alive target, and the status text of nodes the
 * server does not know.
 */

/**
 * CreateSubscription parameters: the publishing interval, a keep-alive count
 * so that a keep-alive comes about every `keepAliveTargetMs` (at least every
 * publishing interval), and a lifetime of at least a minute and at least
 * three keep-alive periods.
 */
export function subscriptionParameters(publishingIntervalMs: number, keepAliveTargetMs: number) {
  const keepAlive = Math.max(1, Math.ceil(keepAliveTargetMs / publishingIntervalMs));
  const lifetime = Math.max(3 * keepAlive, Math.ceil(60_000 / publishingIntervalMs));
  return {
    requestedPublishingInterval: publishingIntervalMs,
    requestedMaxKeepAliveCount: keepAlive,
    requestedLifetimeCount: lifetime,
    maxNotificationsPerPublish: 0,
    publishingEnabled: true,
    priority: 1,
  };
}

/** `N configured node(s) are not on the server (e.g. a: BadNodeIdUnknown, ...)`, or undefined. */
export function unknownNodesText(
  unknown: ReadonlyArray<{ address: string; error: string }>,
  shown: number,
): string | undefined {
  if (unknown.length === 0) return undefined;
  const first = unknown.slice(0, shown).map((u) => `${u.address} (${shortError(u.error)})`);
  const more = unknown.length > shown ? `, and ${unknown.length - shown} more` : "";
  return `${unknown.length} configured node(s) are not on the server: ${
    first.join(", ")
  }${more}; ` +
    "check the NodeIds and browse paths in nodes (the other nodes are read)";
}

/** `BadNodeIdUnknown (0x80340000)` → `BadNodeIdUnknown`; other texts unchanged. */
function shortError(error: string): string {
  return /^(Bad[A-Za-z]+)\b/.exec(error)?.[1] ?? error;
}
