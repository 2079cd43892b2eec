// A chat client that survives faults, as a careful customer's app would be
// written against docs/PROTOCOL.md: socket.io-client with its own
// reconnection on; after every (re)connect it joins its room again from the
// newest `seq` it has (less an overlap) and syncs its notifications; every
// `send` is retried, with the same `client_id` and `retry: true`, until it is
// acknowledged `{ok}`. Everything it receives is kept by `seq` (messages) and
// by id (notifications), and every attempt and connection event is logged
// with a timestamp, so a test can count and order them.

import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import type { ChatMessage, Notification } from '../protocol';

/** An error reply: `{"error": {code, reason, retry_after_ms?}}`. */
export interface ErrorBody {
  code: string;
  reason: string;
  retry_after_ms?: number;
}

export type Reply<T> = { ok: T } | { error: ErrorBody };

/**
 * Join again from this many sequence numbers before the newest one held:
 * two concurrent sends can be broadcast in the opposite order of their
 * numbers (docs/PROTOCOL.md, "Reconnecting"; Herald's own client uses 16).
 */
export const JOIN_OVERLAP = 16;
/** How long one acknowledgement may take before the attempt counts as lost. */
export const ACK_TIMEOUT_MS = 10_000;
/** How long `send` keeps trying one message before the test fails. */
export const SEND_DEADLINE_MS = 40_000;
/** Retry pacing after `unavailable` (storage down): doubles up to the max. */
const UNAVAILABLE_BACKOFF_MS = { first: 100, max: 1_000 };

export interface ChatterOptions {
  url: string;
  label: string;
  room: string;
  /** A user token for the handshake; anonymous without one. */
  token?: string;
  /** `['websocket']`, `['polling']`; default: long-polling, then upgrade. */
  transports?: ('polling' | 'websocket')[];
  /** socket.io-client's reconnection pacing (ms); defaults below. */
  reconnectionDelay?: number;
  reconnectionDelayMax?: number;
}

/** One thing that happened to the connection, in order. */
export type ConnectionEvent =
  | { kind: 'connect'; at: number; session: number; transport: string }
  | { kind: 'ready'; at: number; session: number; since: number; caughtUp: number; truncated: boolean }
  | { kind: 'closing'; at: number; payload: unknown }
  | { kind: 'disconnect'; at: number; reason: string };

/** One `send` attempt and what came of it. */
export interface Attempt {
  clientId: string;
  retry: boolean;
  /** `performance.now()` when it was emitted and when its outcome was known. */
  at: number;
  doneAt: number;
  /** `ok`, an error code, or `no-ack` (disconnected or timed out). */
  outcome: string;
  /** The connection (session) it was emitted on. */
  session: number;
}

export interface SendOutcome {
  stored: ChatMessage;
  attempts: number;
}

/** The single result of one emitted `send`: a reply, or none. */
export type SendOnce = { reply: Reply<ChatMessage>; ms: number } | { reply: undefined; ms: number; why: string };

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class Chatter {
  readonly socket: Socket;
  /** The room's messages this client has, by `seq`. */
  readonly messages = new Map<number, ChatMessage>();
  /** How each message first arrived: `live` (a `message` event) or `catch-up` (a join reply). */
  readonly arrivedBy = new Map<number, 'live' | 'catch-up'>();
  /** Messages received again (same `seq`): expected overlap, counted. */
  repeats = 0;
  /** Anything inconsistent: one `seq` with two messages, one `client_id` at two `seq`s. */
  readonly conflicts: string[] = [];
  /** Notifications by id, and the newest `seq` of each stream. */
  readonly notifications = new Map<string, Notification>();
  inboxSeq = 0;
  broadcastSeq = 0;
  readonly timeline: ConnectionEvent[] = [];
  readonly attempts: Attempt[] = [];
  /** Error replies to `join`/`sync` while resuming, by code. */
  readonly resumeErrors: string[] = [];

  /** Incremented on every `connect`; `readySession` once that connection has re-joined and synced. */
  private session = 0;
  private readySession = 0;
  private readonly seqOfClientId = new Map<string, number>();
  private readonly waiters = new Set<() => void>();
  private handshakeGate: Promise<void> = Promise.resolve();
  private openGate: () => void = () => undefined;

  constructor(private readonly options: ChatterOptions) {
    const socketOptions: Partial<ManagerOptions & SocketOptions> = {
      forceNew: true,
      reconnection: true,
      reconnectionDelay: options.reconnectionDelay ?? 250,
      reconnectionDelayMax: options.reconnectionDelayMax ?? 2_000,
      timeout: ACK_TIMEOUT_MS,
      // Called for every (re)connection's handshake: `holdHandshakes` can
      // make the next one wait, so a test decides when this client is back.
      auth: (cb) => {
        void this.handshakeGate.then(() => cb(options.token === undefined ? {} : { token: options.token }));
      },
      ...(options.transports === undefined ? {} : { transports: options.transports }),
    };
    this.socket = io(options.url, socketOptions);
    this.socket.on('connect', () => {
      this.session += 1;
      this.record({ kind: 'connect', at: performance.now(), session: this.session, transport: this.transport() });
      // The sync cursors as they are now, before this connection delivers
      // anything: the handshake already put it in the user's channel, so a
      // notification published from here on arrives live, and must not move
      // the cursor past one that was lost with the previous connection.
      void this.resume(this.session, { inbox: this.inboxSeq, broadcast: this.broadcastSeq });
    });
    this.socket.on('disconnect', (reason: string) => this.record({ kind: 'disconnect', at: performance.now(), reason }));
    this.socket.on('closing', (payload: unknown) => this.record({ kind: 'closing', at: performance.now(), payload }));
    this.socket.on('message', (message: ChatMessage) => this.take(message, 'live'));
    this.socket.on('notification', (n: Notification) => this.takeNotification(n));
  }

  get label(): string {
    return this.options.label;
  }

  /** The number of (re)connections so far. */
  get connections(): number {
    return this.session;
  }

  /** Whether the current connection has re-joined and synced. */
  get ready(): boolean {
    return this.socket.connected && this.session > 0 && this.readySession === this.session;
  }

  /** The newest `seq` held in the room (0: none). */
  get newestSeq(): number {
    let newest = 0;
    for (const seq of this.messages.keys()) newest = Math.max(newest, seq);
    return newest;
  }

  transport(): string {
    return this.socket.io.engine?.transport?.name ?? 'none';
  }

  /** The timeline's events of one kind, optionally only those after `after`. */
  events<K extends ConnectionEvent['kind']>(kind: K, after = 0): Extract<ConnectionEvent, { kind: K }>[] {
    return this.timeline.filter((e): e is Extract<ConnectionEvent, { kind: K }> => e.kind === kind && e.at >= after);
  }

  /** Resolves once `condition()` holds (checked on everything received); fails after `timeout` with `what`. */
  until(condition: () => boolean, what: string, timeout = 15_000): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!condition()) return;
        done();
        resolve();
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: ${what} did not happen within ${timeout} ms (${this.describe()})`));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  /** Resolves once connected, re-joined and synced on a connection newer than `afterSession`. */
  whenReady(afterSession = 0, timeout = 15_000): Promise<void> {
    return this.until(() => this.ready && this.session > afterSession, `ready (after connection ${afterSession})`, timeout);
  }

  /** Until `releaseHandshakes`, the next (re)connection waits before its Socket.IO handshake. */
  holdHandshakes(): void {
    this.handshakeGate = new Promise<void>((resolve) => (this.openGate = resolve));
  }

  releaseHandshakes(): void {
    this.openGate();
    this.handshakeGate = Promise.resolve();
  }

  /** Emits one `send` and waits (bounded) for its reply; never retries. */
  async sendOnce(clientId: string, body: string, retry: boolean, timeout = ACK_TIMEOUT_MS): Promise<SendOnce> {
    const payload = { room: this.options.room, client_id: clientId, name: this.label, body, retry };
    const session = this.session;
    const at = performance.now();
    try {
      const reply = (await this.socket.timeout(timeout).emitWithAck('send', payload)) as Reply<ChatMessage>;
      const doneAt = performance.now();
      const outcome = 'ok' in reply ? 'ok' : reply.error.code;
      this.attempts.push({ clientId, retry, at, doneAt, outcome, session });
      return { reply, ms: doneAt - at };
    } catch (err) {
      const doneAt = performance.now();
      this.attempts.push({ clientId, retry, at, doneAt, outcome: 'no-ack', session });
      return { reply: undefined, ms: doneAt - at, why: String(err) };
    }
  }

  /**
   * Sends one message until it is stored: on a lost ack (disconnect, timeout)
   * or `shutting_down`, again once reconnected; on `unavailable`, again after
   * a backoff; on `rate_limited`, again after `retry_after_ms`. Every resend
   * has the same `client_id` and `retry: true` (the first attempt too with
   * `resend`: the test sent it before). Any other error fails.
   */
  async send(
    clientId: string,
    body: string,
    { resend = false, deadline = SEND_DEADLINE_MS }: { resend?: boolean; deadline?: number } = {},
  ): Promise<SendOutcome> {
    const giveUp = performance.now() + deadline;
    let retry = resend;
    let backoff = UNAVAILABLE_BACKOFF_MS.first;
    let attempts = 0;
    for (;;) {
      const left = giveUp - performance.now();
      if (left <= 0) throw new Error(`${this.label}: ${clientId} not stored within ${deadline} ms (${this.describe()})`);
      await this.whenReady(0, left);
      const session = this.session;
      attempts += 1;
      const result = await this.sendOnce(clientId, body, retry);
      retry = true;
      if (result.reply === undefined) {
        // Lost with the connection (or timed out): resend on the next one,
        // or at once if the connection is still up.
        continue;
      }
      if ('ok' in result.reply) return { stored: result.reply.ok, attempts };
      const error = result.reply.error;
      switch (error.code) {
        case 'unavailable':
          await delay(backoff);
          backoff = Math.min(backoff * 2, UNAVAILABLE_BACKOFF_MS.max);
          break;
        case 'rate_limited':
          if (typeof error.retry_after_ms !== 'number') {
            throw new Error(`${this.label}: rate_limited without retry_after_ms: ${JSON.stringify(error)}`);
          }
          await delay(error.retry_after_ms);
          break;
        case 'shutting_down':
          // This connection is about to close: resend on the next one.
          await this.whenReady(session, Math.max(0, giveUp - performance.now()));
          break;
        default:
          throw new Error(`${this.label}: ${clientId} refused: ${JSON.stringify(error)}`);
      }
    }
  }

  /** `sync` from the start: every notification this user has, as Herald lists it now. */
  async syncAll(): Promise<{ inbox: Notification[]; broadcast: Notification[]; unread: number }> {
    const reply = (await this.socket
      .timeout(ACK_TIMEOUT_MS)
      .emitWithAck('sync', { inbox: 0, broadcast: 0 })) as Reply<{
      inbox: Notification[];
      broadcast: Notification[];
      unread: number;
    }>;
    if (!('ok' in reply)) throw new Error(`${this.label}: sync refused: ${JSON.stringify(reply)}`);
    return reply.ok;
  }

  /** One line about this client's state, for failure messages. */
  describe(): string {
    const last = this.attempts.slice(-3).map((a) => `${a.clientId}:${a.outcome}`);
    return (
      `connected=${this.socket.connected} session=${this.session} ready=${this.readySession} ` +
      `transport=${this.transport()} messages=${this.messages.size} newest=${this.newestSeq} ` +
      `last attempts=[${last.join(', ')}] resumeErrors=[${this.resumeErrors.join(', ')}]`
    );
  }

  close(): void {
    this.releaseHandshakes();
    this.socket.disconnect();
  }

  /**
   * After a (re)connect: join from the newest seq less the overlap, then sync
   * from `cursors` (taken at the connect); repeated until it works.
   */
  private async resume(session: number, cursors: { inbox: number; broadcast: number }): Promise<void> {
    let backoff = UNAVAILABLE_BACKOFF_MS.first;
    while (session === this.session && this.socket.connected) {
      const since = Math.max(0, this.newestSeq - JOIN_OVERLAP);
      try {
        const joined = (await this.socket
          .timeout(ACK_TIMEOUT_MS)
          .emitWithAck('join', { room: this.options.room, since })) as Reply<{
          room: string;
          head: number;
          messages: ChatMessage[];
          truncated: boolean;
        }>;
        if (!('ok' in joined)) throw new ResumeRefused('join', joined.error);
        for (const message of joined.ok.messages) this.take(message, 'catch-up');
        const synced = (await this.socket
          .timeout(ACK_TIMEOUT_MS)
          .emitWithAck('sync', cursors)) as Reply<{
          inbox: Notification[];
          broadcast: Notification[];
        }>;
        if (!('ok' in synced)) throw new ResumeRefused('sync', synced.error);
        for (const n of [...synced.ok.inbox, ...synced.ok.broadcast]) this.takeNotification(n);
        if (session !== this.session) return;
        this.readySession = session;
        this.record({
          kind: 'ready',
          at: performance.now(),
          session,
          since,
          caughtUp: joined.ok.messages.length,
          truncated: joined.ok.truncated,
        });
        return;
      } catch (err) {
        if (err instanceof ResumeRefused) {
          this.resumeErrors.push(`${err.event}:${err.error.code}`);
          await delay(err.error.retry_after_ms ?? backoff);
          backoff = Math.min(backoff * 2, UNAVAILABLE_BACKOFF_MS.max);
        }
        // Otherwise no ack: if the connection is gone, the next `connect` resumes.
      }
    }
  }

  private take(message: ChatMessage, via: 'live' | 'catch-up'): void {
    if (message.room !== this.options.room) return;
    const held = this.messages.get(message.seq);
    if (held) {
      this.repeats += 1;
      if (held.client_id !== message.client_id) {
        this.conflicts.push(`seq ${message.seq} was ${held.client_id}, now ${message.client_id}`);
      }
      return;
    }
    const other = this.seqOfClientId.get(message.client_id);
    if (other !== undefined) this.conflicts.push(`${message.client_id} at seq ${other} and ${message.seq}`);
    this.seqOfClientId.set(message.client_id, message.seq);
    this.messages.set(message.seq, message);
    this.arrivedBy.set(message.seq, via);
    this.wake();
  }

  private takeNotification(n: Notification): void {
    this.notifications.set(n.id, n);
    if (n.stream === 'inbox') this.inboxSeq = Math.max(this.inboxSeq, n.seq);
    if (n.stream === 'broadcast') this.broadcastSeq = Math.max(this.broadcastSeq, n.seq);
    this.wake();
  }

  private record(event: ConnectionEvent): void {
    this.timeline.push(event);
    this.wake();
  }

  private wake(): void {
    for (const check of [...this.waiters]) check();
  }
}

class ResumeRefused extends Error {
  constructor(
    readonly event: string,
    readonly error: ErrorBody,
  ) {
    super(`${event} refused: ${JSON.stringify(error)}`);
  }
}

/** Opens chatters and closes them all at the end (the fault fixtures call `closeAll`). */
export class Chatters {
  readonly all: Chatter[] = [];

  constructor(private readonly url: () => string) {}

  /** A new chatter, connected, joined and synced. */
  async open(options: Omit<ChatterOptions, 'url'>): Promise<Chatter> {
    const chatter = new Chatter({ ...options, url: this.url() });
    this.all.push(chatter);
    await chatter.whenReady();
    return chatter;
  }

  closeAll(): void {
    for (const chatter of this.all.splice(0)) chatter.close();
  }
}
