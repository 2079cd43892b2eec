// Herald from the official Socket.IO client (socket.io-client, in Node): as a
// customer's app would connect. Every event a client receives is recorded, so
// a test waits for one whether it came before or after the wait started.

import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';

/** How long a client waits for an event before the test fails. */
export const EVENT_TIMEOUT_MS = 10_000;

export interface ClientOptions {
  /** A user token for the handshake's `auth`; anonymous without one. */
  token?: string;
  /** `['websocket']` for WebSocket only; default: long-polling, then upgrade. */
  transports?: ('polling' | 'websocket')[];
}

export interface Received {
  event: string;
  args: unknown[];
}

/** The outcome of the handshake: connected, or refused with the server's reason. */
export type Handshake = { connected: true } | { connected: false; reason: string };

/** A `{"ok": …}` or `{"error": {code, reason}}` acknowledgement. */
export type Reply<T = unknown> = { ok: T } | { error: { code: string; reason: string } };

export class Client {
  readonly received: Received[] = [];
  /** Every `connect` this socket saw (a refused one must see none). */
  connects = 0;
  private readonly waiters = new Set<() => void>();

  constructor(
    readonly socket: Socket,
    readonly label: string,
  ) {
    socket.onAny((event: string, ...args: unknown[]) => {
      this.received.push({ event, args });
      for (const wake of this.waiters) wake();
    });
    socket.on('connect', () => {
      this.connects += 1;
    });
  }

  /** The payloads of every `event` received so far. */
  payloads<T = unknown>(event: string): T[] {
    return this.received.filter((r) => r.event === event).map((r) => r.args[0] as T);
  }

  /**
   * The first `event` received (already, or within `timeout`) whose payload
   * matches `where`; fails with what did arrive.
   */
  waitFor<T = unknown>(
    event: string,
    where: (payload: T) => boolean = () => true,
    timeout = EVENT_TIMEOUT_MS,
  ): Promise<T> {
    const find = () => this.payloads<T>(event).find(where);
    const found = find();
    if (found !== undefined) return Promise.resolve(found);
    return new Promise<T>((resolve, reject) => {
      const check = () => {
        const hit = find();
        if (hit === undefined) return;
        done();
        resolve(hit);
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `${this.label}: no matching "${event}" within ${timeout} ms; received: ${JSON.stringify(this.received)}`,
          ),
        );
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  /** Emits `event` and resolves with the server's acknowledgement (bounded). */
  async request<T = unknown>(event: string, payload: unknown, timeout = EVENT_TIMEOUT_MS): Promise<Reply<T>> {
    try {
      return (await this.socket.timeout(timeout).emitWithAck(event, payload)) as Reply<T>;
    } catch (err) {
      throw new Error(`${this.label}: no ack for "${event}" within ${timeout} ms (${String(err)})`);
    }
  }

  /** Like `request`, but the reply must be `{"ok": …}`; resolves with its value. */
  async ok<T = unknown>(event: string, payload: unknown): Promise<T> {
    const reply = await this.request<T>(event, payload);
    if (!('ok' in reply)) throw new Error(`${this.label}: "${event}" was refused: ${JSON.stringify(reply)}`);
    return reply.ok;
  }

  /** The engine's current transport: `polling` or `websocket`. */
  transport(): string {
    return this.socket.io.engine.transport.name;
  }

  /** Resolves once the engine runs over WebSocket (at once if it already does). */
  upgraded(timeout = EVENT_TIMEOUT_MS): Promise<void> {
    const engine = this.socket.io.engine;
    if (engine.transport.name === 'websocket') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        engine.off('upgrade', onUpgrade);
        reject(new Error(`${this.label}: no upgrade to WebSocket within ${timeout} ms (on ${this.transport()})`));
      }, timeout);
      const onUpgrade = () => {
        clearTimeout(timer);
        resolve();
      };
      engine.once('upgrade', onUpgrade);
    });
  }

  disconnect(): void {
    this.socket.disconnect();
  }
}

/**
 * Opens socket.io-client connections to one Herald and closes them all at the
 * end (`closeAll`, called by the fixture whatever the outcome).
 */
export class Clients {
  private readonly all: Client[] = [];

  constructor(private readonly url: () => string) {}

  /** A client whose handshake is under way: await `handshake` on it. */
  open(label: string, options: ClientOptions = {}): { client: Client; handshake: Promise<Handshake> } {
    const socketOptions: Partial<ManagerOptions & SocketOptions> = {
      // One Engine.IO connection per client: never share one between clients.
      forceNew: true,
      // A refused or lost connection is reported, never silently retried.
      reconnection: false,
      timeout: EVENT_TIMEOUT_MS,
      ...(options.token === undefined ? {} : { auth: { token: options.token } }),
      ...(options.transports === undefined ? {} : { transports: options.transports }),
    };
    const socket = io(this.url(), socketOptions);
    const client = new Client(socket, label);
    this.all.push(client);
    const handshake = new Promise<Handshake>((resolve) => {
      socket.once('connect', () => resolve({ connected: true }));
      socket.once('connect_error', (err: Error) => resolve({ connected: false, reason: err.message }));
    });
    return { client, handshake };
  }

  /** A connected client; fails with the reason when the handshake is refused. */
  async connect(label: string, options: ClientOptions = {}): Promise<Client> {
    const { client, handshake } = this.open(label, options);
    const outcome = await handshake;
    if (!outcome.connected) throw new Error(`${label} could not connect: ${outcome.reason}`);
    return client;
  }

  closeAll(): void {
    for (const client of this.all.splice(0)) client.disconnect();
  }
}
