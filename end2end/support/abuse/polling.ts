// Engine.IO long-polling garbage: requests with bogus session ids, protocol
// versions and transports, and real polling sessions fed junk payloads.

import { request } from 'node:http';
import type { HttpGarbage } from './http-garbage';
import { encodeRequest } from './raw-http';
import { socketFrame, type Frame } from './socket-garbage';
import { describe, type Tally } from './tally';
import { percentEncode, type Random } from './random';
import type { Target } from './target';

/** Engine.IO's separator between packets in one polling payload. */
const SEPARATOR = '\x1e';
/** How long one poll may wait for Herald's packets. */
const POLL_MS = 4_000;

/** One request with `bad` somewhere in its query or method; Herald must refuse it. */
export function pollingGarbage(rng: Random, target: Target): HttpGarbage {
  const sid = rng.pick([
    'bogus',
    '',
    'AAAAAAAAAAAAAAAA',
    'x'.repeat(rng.int(17, 3000)),
    '../../etc/passwd',
    percentEncode(rng.junk(20)),
  ]);
  const bad = rng.pick<() => { method: string; query: string; expect: HttpGarbage['expect']; body?: string }>([
    () => ({ method: 'GET', query: `EIO=4&transport=polling&sid=${sid}`, expect: 'reject' }),
    () => ({
      method: 'POST',
      query: `EIO=4&transport=polling&sid=${sid}`,
      expect: 'reject',
      body: rng.pick(['40', '42["send",{}]', rng.junk(300)]),
    }),
    () => ({
      method: 'GET',
      query: `EIO=${rng.pick(['3', '5', 'abc', '', '-1', '99999999999999999999', '4.0'])}&transport=polling`,
      expect: 'reject',
    }),
    () => ({ method: 'GET', query: 'transport=polling', expect: 'reject' }),
    () => ({ method: 'GET', query: 'EIO=4', expect: 'reject' }),
    () => ({
      method: 'GET',
      query: `EIO=4&transport=${rng.pick(['foo', 'flashsocket', '', 'WEBSOCKET', 'polling%00'])}`,
      expect: 'reject',
    }),
    () => ({ method: 'GET', query: 'EIO=4&transport=websocket', expect: 'reject' }),
    () => ({ method: 'POST', query: 'EIO=4&transport=polling', expect: 'reject', body: '40' }),
    () => ({ method: 'GET', query: `EIO=4&transport=polling&sid=${sid}&sid=other`, expect: 'reject' }),
    () => ({
      method: rng.pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE']),
      query: 'EIO=4&transport=polling',
      expect: 'page',
    }),
    () => ({ method: 'GET', query: percentEncode(rng.junk(60)).replace(/%3D/g, '='), expect: 'page' }),
  ])();
  const bytes = encodeRequest(target.port, {
    method: bad.method,
    path: `/socket.io/?${bad.query}`,
    headers: bad.body === undefined ? [] : [['Content-Type', 'text/plain;charset=UTF-8']],
    body: bad.body,
  });
  return { kind: 'polling', label: `polling ${bad.method} ?${bad.query.slice(0, 40)}`, bytes, expect: bad.expect };
}

interface Answer {
  status: number;
  text: string;
}

/** One HTTP request on a fresh connection; undefined when it failed or timed out. */
function http(port: number, method: string, path: string, body?: string | Buffer): Promise<Answer | undefined> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: { Connection: 'close', ...(body === undefined ? {} : { 'Content-Type': 'text/plain;charset=UTF-8' }) },
        timeout: POLL_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        res.on('error', () => resolve(undefined));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end(body);
  });
}

/** Counts an HTTP answer to a polling request; a 5xx other than 503 is a failure. */
function count(tally: Tally, what: string, answer: Answer | undefined, input = ''): void {
  tally.send('polling');
  if (!answer) {
    tally.outcome('poll no answer');
    return;
  }
  tally.outcome(`http ${answer.status}`);
  if (answer.status >= 500 && answer.status !== 503)
    tally.fail(`http ${answer.status}`, what, `${input} → ${describe(answer.text)}`);
}

/** A junk polling payload: garbage Socket.IO packets (some owing acks) and Engine.IO junk. */
function junkPayload(rng: Random, room: string, owed: Map<number, Frame>): string {
  const packets: string[] = [];
  const n = rng.int(1, 6);
  for (let i = 0; i < n; i++) {
    const frame = socketFrame(rng, room, 100 + i);
    if (typeof frame.data !== 'string' || frame.mayClose) continue;
    if (frame.ackId !== undefined) owed.set(frame.ackId, frame);
    packets.push(frame.data);
  }
  if (rng.chance(0.3)) {
    // Engine.IO junk poisons the whole payload: nothing in it is owed an answer.
    owed.clear();
    packets.push(
      rng.pick([
        '9',
        '',
        'b' + Buffer.from(rng.bytes(20)).toString('base64'),
        'bnot base64!',
        '4'.repeat(40_000),
        rng.junk(100),
      ]),
    );
  }
  return packets.join(SEPARATOR);
}

/**
 * A real polling session (handshake, connect) fed a junk payload; the acks
 * Herald owes are read back and judged; then the session is closed.
 */
export async function pollingSession(target: Target, rng: Random, tally: Tally): Promise<void> {
  const base = '/socket.io/?EIO=4&transport=polling';
  const handshake = await http(target.port, 'GET', base);
  count(tally, 'polling handshake', handshake);
  const sid = /"sid":"([^"]+)"/.exec(handshake?.text ?? '')?.[1];
  if (!handshake || handshake.status !== 200 || !sid) return;
  const path = `${base}&sid=${sid}`;
  try {
    const connect = await http(target.port, 'POST', path, '40');
    count(tally, 'polling connect', connect);
    const connected = await http(target.port, 'GET', path);
    count(tally, 'polling connect answer', connected);
    if (!connected?.text.includes('40{')) return;

    const owed = new Map<number, Frame>();
    const payload = junkPayload(rng, target.room, owed);
    const posted = await http(target.port, 'POST', path, payload);
    count(tally, 'polling payload', posted, describe(payload));
    if (posted?.status !== 200) return;
    // Two polls at most: acks come as Herald handles each packet.
    for (let poll = 0; poll < 2 && owed.size > 0; poll++) {
      const answer = await http(target.port, 'GET', path);
      count(tally, 'polling read', answer);
      if (!answer || answer.status !== 200) return;
      for (const packet of answer.text.split(SEPARATOR)) {
        const m = /^43(\d+)\[/.exec(packet);
        const frame = m ? owed.get(Number(m[1])) : undefined;
        if (!frame) continue;
        owed.delete(frame.ackId as number);
        judgePollAck(tally, frame, packet);
      }
      if (answer.text.split(SEPARATOR).includes('1')) return;
    }
    for (const frame of owed.values()) tally.outcome(`poll ack not seen (${frame.label})`);
  } finally {
    count(tally, 'polling close', await http(target.port, 'POST', path, '1'));
  }
}

function judgePollAck(tally: Tally, frame: Frame, packet: string): void {
  const reply = (JSON.parse(packet.replace(/^43\d+/, '')) as unknown[])[0] as {
    ok?: unknown;
    error?: { code: string };
  };
  if (reply?.error) tally.outcome(`ack ${reply.error.code}`);
  else if (frame.okAllowed) tally.outcome('ack ok');
  else tally.fail('garbage accepted', `polling ${frame.label}`, `${describe(frame.data)} → ${describe(packet)}`);
}
