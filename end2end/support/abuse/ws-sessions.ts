// Garbage WebSocket connections to /socket.io/: each opens, sends its
// garbage, watches what Herald answers (error acks, a close) and counts it.
// An ack Herald owes and never sends on an open connection is a hang; an
// `{"ok"}` to garbage is garbage accepted.

import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import WebSocket from 'ws';
import { engineFrame } from './engine-garbage';
import { socketFrame, type Frame } from './socket-garbage';
import { describe, type Tally } from './tally';
import type { Random } from './random';
import type { Target } from './target';

/** How long a connection may take to answer everything it owes. */
const ACKS_DUE_MS = 8_000;
/** How long a connection is watched after its last frame, for a close. */
const GRACE_MS = 400;

function socketUrl(port: number): string {
  return `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A garbage connection: a `ws` socket plus what it has seen. */
class Connection {
  readonly ws: WebSocket;
  /** Set once the socket is closed, by either side, with how. */
  closedBy: string | undefined;
  /** Herald closed it (not this side). */
  serverClosed = false;
  private closing = false;
  private readonly closed: Promise<void>;
  private readonly listeners = new Set<(text: string) => void>();

  constructor(port: number, tally: Tally, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(socketUrl(port), { headers, perMessageDeflate: false, handshakeTimeout: 5_000 });
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code) => {
        this.closedBy ??= `ws closed ${code}`;
        this.serverClosed ||= !this.closing;
        resolve();
      });
    });
    this.ws.on('error', (err) => {
      this.closedBy ??= `ws error ${err.message.replace(/\d+/g, 'N').slice(0, 60)}`;
    });
    this.ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      this.closedBy = `ws refused ${status}`;
      if (status >= 500 && status !== 503) tally.fail(`http ${status}`, 'WebSocket upgrade');
      res.resume();
      this.ws.terminate();
    });
    this.ws.on('message', (raw, isBinary) => {
      if (isBinary) return;
      const text = raw.toString();
      // Answer Herald's pings, as any client must.
      if (text === '2') this.send('3');
      for (const listener of this.listeners) listener(text);
    });
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  onText(listener: (text: string) => void): void {
    this.listeners.add(listener);
  }

  /** Resolves with the first text frame matching `test`, or undefined once closed or after `ms`. */
  next(test: (text: string) => boolean, ms = ACKS_DUE_MS): Promise<string | undefined> {
    return new Promise((resolve) => {
      const listener = (text: string) => {
        if (!test(text)) return;
        finish(text);
      };
      const finish = (text: string | undefined) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        resolve(text);
      };
      const timer = setTimeout(() => finish(undefined), ms);
      this.listeners.add(listener);
      void this.closed.then(() => finish(undefined));
    });
  }

  /** Sends a frame if the socket is still open; says whether it went. */
  send(data: string | Buffer, binary = false): boolean {
    if (!this.open) return false;
    this.ws.send(data, { binary }, () => undefined);
    return true;
  }

  /** Waits up to `ms` for Herald to close the socket. */
  async closedWithin(ms: number): Promise<boolean> {
    await Promise.race([this.closed, sleep(ms)]);
    return this.closedBy !== undefined;
  }

  /** Closes this side (if still open) and waits for the socket to be gone. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.ws.readyState === WebSocket.CONNECTING || this.ws.readyState === WebSocket.OPEN) this.ws.terminate();
    await Promise.race([this.closed, sleep(2_000)]);
  }
}

/** Judges an ack against the frame that asked for it. */
function judgeAck(tally: Tally, frame: Frame, text: string): void {
  let reply: unknown;
  try {
    reply = (JSON.parse(text.replace(/^43\d+/, '')) as unknown[])[0];
  } catch {
    tally.fail('unparsable ack', frame.label, describe(text));
    return;
  }
  const error = (reply as { error?: { code?: unknown } } | null)?.error;
  if (error && typeof error.code === 'string') {
    tally.outcome(`ack ${error.code}`);
  } else if (reply !== null && typeof reply === 'object' && 'ok' in reply) {
    if (frame.okAllowed) tally.outcome('ack ok');
    else tally.fail('garbage accepted', frame.label, `${describe(frame.data)} → ${describe(text)}`);
  } else {
    tally.fail('odd ack', frame.label, `${describe(frame.data)} → ${describe(text)}`);
  }
}

/**
 * A Socket.IO connection that connects properly (mostly) and then sends
 * `count` garbage packets, those that may get it closed last.
 */
export async function socketSession(target: Target, rng: Random, tally: Tally, count: number): Promise<void> {
  const conn = new Connection(target.port, tally);
  try {
    if ((await conn.next((t) => t.startsWith('0{'))) === undefined) {
      // The upgrade request was the input (as in engineSession): refused or unanswered.
      tally.send('ws-socket');
      tally.outcome(conn.closedBy ?? 'no open packet');
      return;
    }
    const junkAuth = rng.chance(0.08);
    const auth = junkAuth
      ? rng.pick([
          `{"token":"${rng.pick(target.badTokens)}"}`,
          '{"token":123}',
          '{"token":""}',
          '{"token":null}',
          `{"token":"${'t'.repeat(5000)}"}`,
        ])
      : '';
    conn.send(`40${auth}`);
    tally.send('ws-socket');
    const connected = await conn.next((t) => t.startsWith('40') || t.startsWith('44'));
    if (connected === undefined) {
      tally.fail('no connect answer', 'connect', `40${auth}`);
      return;
    }
    tally.outcome(connected.startsWith('44') ? 'connect_error' : 'connected');

    const frames: Frame[] = [];
    for (let i = 0; i < count; i++) frames.push(socketFrame(rng, target.room, i + 1));
    const owed = new Map<number, Frame>();
    conn.onText((text) => {
      const id = Number(/^43(\d+)\[/.exec(text)?.[1]);
      const frame = owed.get(id);
      if (!frame) return;
      owed.delete(id);
      judgeAck(tally, frame, text);
    });
    const sendAll = async (batch: Frame[]) => {
      for (const frame of batch) {
        if (!conn.send(frame.data, frame.binary)) break;
        tally.send('ws-socket');
        if (frame.ackId !== undefined && connected.startsWith('40')) owed.set(frame.ackId, frame);
      }
      const deadline = Date.now() + ACKS_DUE_MS;
      while (owed.size > 0 && conn.open && Date.now() < deadline) await sleep(20);
      for (const frame of owed.values()) {
        if (conn.open) tally.fail('no ack', frame.label, describe(frame.data));
        else tally.outcome('closed before ack');
      }
      owed.clear();
    };
    // Everything that should be answered first, then (at most) one packet
    // that may get the connection closed.
    await sendAll(frames.filter((f) => !f.mayClose));
    await sendAll(frames.filter((f) => f.mayClose).slice(0, 1));
    tally.outcome((await conn.closedWithin(GRACE_MS)) ? (conn.closedBy as string) : 'ws kept open');
  } finally {
    await conn.close();
  }
}

/** Odd headers for an upgrade: a foreign Origin, junk cookies (or nothing). */
function upgradeHeaders(rng: Random, target: Target): Record<string, string> {
  return rng.weighted<() => Record<string, string>>([
    [6, () => ({})],
    [
      2,
      () => ({
        Origin: rng.pick(['http://evil.example', 'null', 'file://', `http://127.0.0.1:${target.port}.evil.example`]),
      }),
    ],
    [1, () => ({ Cookie: `herald_session=${rng.pick(target.badTokens)}; herald_vid=${'v'.repeat(rng.int(1, 9000))}` })],
  ])();
}

/** A connection that sends garbage at the Engine.IO level (and may connect first). */
export async function engineSession(target: Target, rng: Random, tally: Tally): Promise<void> {
  const conn = new Connection(target.port, tally, upgradeHeaders(rng, target));
  try {
    if ((await conn.next((t) => t.startsWith('0{'), 5_000)) === undefined) {
      tally.send('ws-engine');
      tally.outcome(conn.closedBy ?? 'no open packet');
      return;
    }
    if (rng.chance(0.5)) {
      conn.send('40');
      await conn.next((t) => t.startsWith('40') || t.startsWith('44'), 5_000);
    }
    const count = rng.int(1, 3);
    for (let i = 0; i < count; i++) {
      const frame = engineFrame(rng);
      if (!conn.send(frame.data, frame.binary)) break;
      tally.send('ws-engine');
    }
    tally.outcome((await conn.closedWithin(GRACE_MS)) ? (conn.closedBy as string) : 'ws kept open');
  } finally {
    await conn.close();
  }
}

// ---------------------------------------------------------------------------
// Broken WebSocket framing, over a raw TCP connection
// ---------------------------------------------------------------------------

/** A client frame: `first` is FIN/RSV/opcode; masked unless told; `length` overrides the length field. */
function wsFrame(
  first: number,
  payload: Buffer,
  { mask = true, length }: { mask?: boolean; length?: Buffer } = {},
): Buffer {
  const maskBit = mask ? 0x80 : 0;
  let head: Buffer;
  if (length) head = Buffer.concat([Buffer.from([first]), length]);
  else if (payload.length < 126) head = Buffer.from([first, maskBit | payload.length]);
  else if (payload.length < 65_536)
    head = Buffer.from([first, maskBit | 126, payload.length >> 8, payload.length & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = first;
    head[1] = maskBit | 127;
    head.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  if (!mask) return Buffer.concat([head, payload]);
  const key = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]));
  return Buffer.concat([head, key, masked]);
}

function brokenFrame(rng: Random): Buffer {
  const text = Buffer.from('42["send",{"body":"x"}]');
  return rng.pick<() => Buffer>([
    () => rng.bytes(rng.int(1, 600)),
    () => wsFrame(0x81, text, { mask: false }),
    () => wsFrame(0x80 | rng.pick([0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf]), text),
    () => wsFrame(0x80 | rng.pick([0x40, 0x20, 0x10]) | 0x1, text),
    () =>
      wsFrame(0x82, Buffer.alloc(0), { length: Buffer.from([0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) }),
    () => wsFrame(0x82, Buffer.alloc(0), { length: Buffer.from([0xfe, 0xff, 0xff]) }),
    () => wsFrame(0x09, Buffer.from('ping')),
    () => wsFrame(0x89, Buffer.alloc(200, 0x70)),
    () => wsFrame(0x88, Buffer.from([0x03, 0xe7])),
    () => wsFrame(0x88, Buffer.from([0x03])),
    () => wsFrame(0x80, text),
    () => wsFrame(0x01, text),
    () => wsFrame(0x81, Buffer.from([0x34, 0x32, 0xff, 0xfe])),
    () => wsFrame(0x81, Buffer.alloc(rng.int(33_000, 200_000), 0x34)),
  ])();
}

/** An upgrade done by hand, then bytes no WebSocket peer may send; Herald must drop the connection. */
export function rawWsSession(target: Target, rng: Random, tally: Tally): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: target.port });
    let head = '';
    let upgraded = false;
    let settled = false;
    const finish = (outcome: string, bad = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (bad) tally.fail(outcome, 'broken WebSocket frames');
      else tally.outcome(outcome);
      resolve();
    };
    const timer = setTimeout(() => finish(upgraded ? 'raw ws: not closed' : 'raw ws: no upgrade', true), 5_000);
    socket.on('connect', () => {
      socket.write(
        `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\n` +
          `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`,
      );
    });
    socket.on('data', (chunk: Buffer) => {
      if (upgraded) return;
      head += chunk.toString('latin1');
      if (!head.includes('\r\n')) return;
      if (!head.startsWith('HTTP/1.1 101')) {
        const status = Number(head.slice(9, 12));
        tally.send('ws-raw'); // the upgrade request was the input
        finish(`raw ws: upgrade refused ${status}`, status >= 500 && status !== 503);
        return;
      }
      upgraded = true;
      const frames = rng.int(1, 3);
      for (let i = 0; i < frames; i++) socket.write(brokenFrame(rng));
      tally.send('ws-raw', frames);
      socket.end();
    });
    socket.on('error', () => finish(upgraded ? 'raw ws: reset' : 'raw ws: connect error'));
    socket.on('close', () => finish('raw ws: closed'));
  });
}
