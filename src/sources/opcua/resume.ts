/**
 * Resuming after a link loss (OPC 10000-4, 6.7): the session the server
 * still holds is activated again on a new secure channel, and the
 * NotificationMessages its subscription sent while the link was down (lost
 * on the way, still in the server's retransmission queue) are fetched with
 * Republish before normal publishing goes on. The publish engine of the
 * node-opcua session is held while the link is down so that no Publish
 * overtakes the Republish calls. When the server refuses to activate the
 * session but still holds its subscription, the session object gets a new
 * server session and the subscription is moved to it (TransferSubscriptions).
 */
import type { ClientSession, ClientSubscription, OPCUAClient, UserIdentityInfo } from "node-opcua";

/** What node-opcua's session publish engine offers (not in its public types). */
interface PublishEngine {
  suspend(suspended: boolean): void;
  acknowledge_notification(subscriptionId: number, sequenceNumber: number): void;
}

/** What node-opcua's subscription offers beyond its public types. */
interface SubscriptionInside {
  subscriptionId: number;
  onNotificationMessage(message: NotificationMessage): void;
}

interface NotificationMessage {
  sequenceNumber: number;
  notificationData?: unknown[] | null;
}

/** Per subscription: the sequence number of the next NotificationMessage with data. */
const nextSequence = new WeakMap<ClientSubscription, number>();

/**
 * Follows the sequence numbers `sub` receives: a message with data moves the
 * next expected number past it, a keep-alive carries the next number itself.
 */
export function followSequence(sub: ClientSubscription): void {
  sub.on("raw_notification", (m: NotificationMessage) => {
    const data = (m.notificationData?.length ?? 0) > 0;
    nextSequence.set(sub, data ? m.sequenceNumber + 1 : m.sequenceNumber);
  });
}

function engineOf(session: ClientSession): PublishEngine | undefined {
  const s = session as unknown as { getPublishEngine?: () => PublishEngine };
  return s.getPublishEngine?.();
}

/** Holds (true) or resumes (false) the Publish requests of `session`. */
export function holdPublishing(session: ClientSession, hold: boolean): void {
  engineOf(session)?.suspend(hold);
}

/** True when the error says the server no longer knows the subscription. */
export function subscriptionUnknown(e: unknown): boolean {
  return /BadSubscriptionIdInvalid|BadNoSubscription/.test(String(e));
}

/** True when both NamespaceArrays list the same URIs in the same order. */
export function sameNamespaces(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((uri, i) => uri === b[i]);
}

/** One Republish call; resolves with the NotificationMessage, or undefined when there is none. */
function republishOne(
  session: ClientSession,
  subscriptionId: number,
  sequenceNumber: number,
): Promise<NotificationMessage | undefined> {
  const call = session as unknown as {
    republish(
      request: { subscriptionId: number; retransmitSequenceNumber: number },
      done: (err: Error | null, res?: { notificationMessage: NotificationMessage }) => void,
    ): void;
  };
  return new Promise((resolve, reject) => {
    call.republish({ subscriptionId, retransmitSequenceNumber: sequenceNumber }, (err, res) => {
      // None left, or a server without Republish (its lost messages cannot be fetched).
      if (err && /BadMessageNotAvailable|BadServiceUnsupported/.test(String(err))) {
        resolve(undefined);
      } else if (err || !res) reject(err ?? new Error("Republish answered nothing"));
      else resolve(res.notificationMessage);
    });
  });
}

/**
 * Asks the server for each NotificationMessage after the last one `sub`
 * received (see `followSequence`), by sequence number, until the server has
 * no more (BadMessageNotAvailable), and hands them to `sub` in order
 * (acknowledged with the next Publish). Returns how many came. Throws what
 * the server answered otherwise (BadSubscriptionIdInvalid: the subscription
 * is gone).
 */
export async function republishMissed(
  session: ClientSession,
  sub: ClientSubscription,
): Promise<number> {
  const inside = sub as unknown as SubscriptionInside;
  const engine = engineOf(session);
  let count = 0;
  for (let next = nextSequence.get(sub) ?? 1;; next++) {
    const message = await republishOne(session, inside.subscriptionId, next);
    if (!message) return count;
    inside.onNotificationMessage(message);
    engine?.acknowledge_notification(inside.subscriptionId, next);
    count++;
  }
}

/** node-opcua client internals that give an existing session object a new server session. */
interface ClientInside {
  /** The endpoint the client settled on (set once the client resolved it, e.g. by ActivateSession). */
  endpoint?: { server?: { applicationUri?: string | null } };
  /** Set by CreateSession; needed before a session is created on this client. */
  serverUri?: string;
  __createSession_step2(session: ClientSession, done: (err: Error | null) => void): void;
  _activateSession(
    session: ClientSession,
    identity: unknown,
    done: (err: Error | null) => void,
  ): void;
  _addSession(session: ClientSession): void;
}

function called(run: (done: (err: Error | null) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => run((err) => (err ? reject(err) : resolve())));
}

/**
 * Gives the kept `session` object a new session on the server
 * (CreateSession, ActivateSession on `client`'s channel) so that its
 * subscription objects, bound to it, can receive a transferred subscription.
 */
export async function renewSession(
  client: OPCUAClient,
  session: ClientSession,
  identity: UserIdentityInfo,
): Promise<void> {
  const inside = client as unknown as ClientInside;
  const serverUri = inside.endpoint?.server?.applicationUri;
  if (!serverUri) throw new Error("the server's endpoint is not known on this connection");
  inside.serverUri ??= serverUri;
  await called((done) => inside.__createSession_step2(session, done));
  await called((done) => inside._activateSession(session, identity, done));
  inside._addSession(session);
}

/**
 * TransferSubscriptions of `sub` to `session` without initial values (what
 * the subscription queued comes with the next Publish, what it sent and was
 * lost comes with Republish). True when the server moved it.
 */
export async function transferSubscription(
  session: ClientSession,
  sub: ClientSubscription,
): Promise<boolean> {
  const id = (sub as unknown as SubscriptionInside).subscriptionId;
  const service = session as unknown as {
    transferSubscriptions(
      request: { subscriptionIds: number[]; sendInitialValues: boolean },
    ): Promise<
      { results?: Array<{ statusCode: { isGood(): boolean } }> | null }
    >;
  };
  const res = await service.transferSubscriptions({
    subscriptionIds: [id],
    sendInitialValues: false,
  });
  return res.results?.[0]?.statusCode.isGood() ?? false;
}
