// Well-framed Socket.IO packets with garbage inside: payloads of the wrong
// shape or type, broken rules, unknown events, odd packet types, bad ack ids,
// deep nesting. No `send` here is valid: garbage must never be stored.

import type { Random } from './random';

/** One frame a garbage connection sends. */
export interface Frame {
  /** What kind of garbage, for the report. */
  label: string;
  data: string | Buffer;
  /** Sent as a binary WebSocket frame (else text, even when `data` is bytes). */
  binary?: boolean;
  /** The ack id of a known event: Herald must answer it (or close the connection). */
  ackId?: number;
  /** Herald may close the connection for it: it is sent last. */
  mayClose: boolean;
  /** An `{"ok": …}` answer is acceptable (a `sync` in a positional form, say). */
  okAllowed?: boolean;
}

/** Room names outside `[a-z0-9_-]{1,64}`. */
function badRoom(rng: Random): string {
  return rng.pick([
    () => 'Lobby',
    () => '',
    () => ' ',
    () => 'a b',
    () => '../etc',
    () => 'é',
    () => '<script>',
    () => 'lobby\n',
    () => 'a/b',
    () => '%2e%2e',
    () => 'r'.repeat(rng.int(65, 5000)),
    () => `x${rng.junk(20)}\u0000`,
  ])();
}

function badClientId(rng: Random): string {
  return rng.pick([
    () => 'short',
    () => '',
    () => 'c'.repeat(rng.int(65, 5000)),
    () => 'has space1',
    () => 'ünïcödé1',
    () => 'a/b/c/d/e',
    () => '{"$ne":null}',
  ])();
}

function badName(rng: Random): string {
  return rng.pick([
    () => '',
    () => '   ',
    () => '\t\n',
    () => 'n'.repeat(rng.int(33, 3000)),
    () => 'a\nb',
    () => 'a\u0000b',
    () => 'a\u001b[31m',
    () => `${rng.junk(10)}\u0007`,
  ])();
}

function badBody(rng: Random): string {
  return rng.pick([
    () => '',
    () => '  \n\t \r\n ',
    () => 'b'.repeat(rng.int(2001, 20_000)),
    () => 'a\u0000b',
    () => 'a\u001bb',
    () => 'bell\u0007',
    () => 'a\u007fb',
    () => `${rng.junk(30)}\u0001`,
  ])();
}

/** JSON values of the wrong type for any field (no strings: a string may well be valid). */
function wrongType(rng: Random): unknown {
  return rng.pick<unknown>([null, 1, -1, 1.5, true, [], ['lobby'], {}, { $gt: '' }]);
}

function validClientId(rng: Random): string {
  return `abuse-${rng.bytes(6).toString('hex')}`;
}

/** A `send` payload that breaks exactly the rules it says it breaks, so none is ever valid. */
function badSend(rng: Random, room: string): { label: string; payload: unknown } {
  const valid: Record<string, unknown> = { room, client_id: validClientId(rng), name: 'Eve', body: 'garbage' };
  switch (rng.int(0, 6)) {
    case 0: {
      const field = rng.pick(['room', 'client_id', 'name', 'body'] as const);
      const value = { room: badRoom, client_id: badClientId, name: badName, body: badBody }[field](rng);
      return { label: `send bad ${field}`, payload: { ...valid, [field]: value } };
    }
    case 1: {
      const field = rng.pick(['room', 'client_id', 'name', 'body', 'retry'] as const);
      const value = field === 'retry' ? rng.pick(['yes', 1, null, {}]) : wrongType(rng);
      return { label: `send ${field} of the wrong type`, payload: { ...valid, [field]: value } };
    }
    case 2: {
      const field = rng.pick(['room', 'client_id', 'name', 'body'] as const);
      const payload = { ...valid };
      delete payload[field];
      return { label: `send without ${field}`, payload };
    }
    case 3:
      return { label: 'send not an object', payload: rng.pick([null, 1, 'send', true, []]) };
    case 4:
      // serde also reads a struct from an array, in field order: break a field there too.
      return { label: 'send positional', payload: [room, badClientId(rng), 'Eve', 'garbage'] };
    case 5:
      return {
        label: 'send oversized',
        payload: { ...valid, body: 'b'.repeat(rng.int(2001, 28_000)) },
      };
    default:
      return {
        label: 'send bad everything',
        payload: { room: badRoom(rng), client_id: badClientId(rng), name: badName(rng), body: badBody(rng) },
      };
  }
}

/** A payload for `event` that must be refused. */
function badPayload(
  rng: Random,
  event: string,
  room: string,
): { label: string; payload: unknown; okAllowed?: boolean } {
  switch (event) {
    case 'join':
      return rng.pick([
        () => ({ label: 'join bad room', payload: { room: badRoom(rng), since: 0 } }),
        () => ({ label: 'join room of the wrong type', payload: { room: wrongType(rng) } }),
        () => ({
          label: 'join bad since',
          payload: { room, since: rng.pick<unknown>([-1, 1.5, '1', null, true, [], {}, 1e300]) },
        }),
        () => ({ label: 'join without room', payload: { since: 1 } }),
        // Not `["lobby"]`: serde would read that as a valid join.
        () => ({ label: 'join not an object', payload: rng.pick<unknown>([null, 1, 'lobby', true, 1.5, {}]) }),
      ])();
    case 'leave':
      return rng.pick([
        () => ({ label: 'leave bad room', payload: { room: badRoom(rng) } }),
        () => ({ label: 'leave room of the wrong type', payload: { room: wrongType(rng) } }),
        () => ({ label: 'leave not an object', payload: rng.pick<unknown>([null, 1, 'lobby', true, {}]) }),
      ])();
    case 'sync':
      return rng.pick([
        () => ({
          label: 'sync bad seq',
          payload: { [rng.pick(['inbox', 'broadcast'])]: rng.pick<unknown>([-1, 1.5, '1', null, [], {}, true]) },
        }),
        () => ({ label: 'sync not an object', payload: rng.pick<unknown>([null, 1, 'sync', true, ['x']]) }),
        // Valid in serde's positional form: an ok is fine.
        () => ({ label: 'sync positional', payload: [], okAllowed: true }),
      ])();
    default:
      return rng.pick([
        () => ({
          label: 'mark_read bad seqs',
          payload: { seqs: rng.pick<unknown>(['1', [-1], [1.5], [null], ['1'], {}, 1]) },
        }),
        () => ({
          label: 'mark_read too many',
          payload: { seqs: Array.from({ length: rng.int(501, 3000) }, (_, i) => i + 1) },
        }),
        () => ({ label: 'mark_read bad all', payload: { all: rng.pick<unknown>(['yes', 1, null, []]) } }),
        // Anonymous: no inbox, whatever the payload.
        () => ({ label: 'mark_read anonymous', payload: { all: true } }),
        () => ({ label: 'mark_read not an object', payload: wrongType(rng) }),
      ])();
  }
}

const KNOWN = ['join', 'leave', 'send', 'sync', 'mark_read'] as const;
/** Events Herald has no handler for, `|`-separated (one is empty, one escaped). */
const UNKNOWN = [
  ...'nope|__proto__|constructor|toString|hasOwnProperty|message|presence|notification|notifications_read'.split('|'),
  ...'closing|JOIN|join |send\u0000||漢字'.split('|'),
  'x'.repeat(3000),
];
const RESERVED = ['connect', 'disconnect', 'disconnecting', 'newListener', 'removeListener', 'error', 'connect_error'];
/** What may stand between `42` and the arguments instead of an ack id. */
const BAD_ACK_IDS = ['-1', '9'.repeat(25), '1.5', ' 7', '0x1f', '１'];
/** An event's data that is not a JSON array starting with a name. */
const NOT_EVENTS = [
  ...['{"a":1}', '"join"', 'null', 'true', '[]', '[null]', '[1,2]', '[{"room":"x"}]', '[["join"]]'],
  ...['[', '["join",', '["join",{"room":"X"}]]', '["join"]junk'],
];

/** A Socket.IO packet (inside an Engine.IO message) for a connected socket. */
export function socketFrame(rng: Random, room: string, ackId: number): Frame {
  return rng.weighted<() => Frame>([
    [10, () => knownEvent(rng, room, ackId)],
    [2, () => unknownEvent(rng, ackId)],
    [1, () => ({ label: 'bad ack id', mayClose: true, data: `42${rng.pick(BAD_ACK_IDS)}["leave",{"room":"X"}]` })],
    [1, () => ({ label: 'not an event array', mayClose: true, data: `42${rng.pick(NOT_EVENTS)}` })],
    [1, () => nested(rng, ackId)],
    [1, () => packetType(rng, ackId)],
    [1, () => badJsonValue(rng, room, ackId)],
  ])();
}

function knownEvent(rng: Random, room: string, ackId: number): Frame {
  const event = rng.weighted<(typeof KNOWN)[number]>([
    [3, 'send'],
    [2, 'join'],
    [1, 'leave'],
    [1, 'sync'],
    [1, 'mark_read'],
  ]);
  const bad: { label: string; payload: unknown; okAllowed?: boolean } = rng.chance(0.1)
    ? { label: `${event} without payload`, payload: undefined }
    : event === 'send'
      ? badSend(rng, room)
      : badPayload(rng, event, room);
  const args = bad.payload === undefined ? [event] : [event, bad.payload];
  const data = `42${ackId}${JSON.stringify(args)}`;
  // Past the 32 KiB packet limit, Herald closes the connection instead of answering.
  const mayClose = Buffer.byteLength(data) > 32_000;
  return { label: bad.label, data, ackId, mayClose, okAllowed: bad.okAllowed };
}

function unknownEvent(rng: Random, ackId: number): Frame {
  const reserved = rng.chance(0.25);
  const name = reserved ? rng.pick(RESERVED) : rng.pick(UNKNOWN);
  const withAck = rng.chance(0.5) ? String(ackId) : '';
  // No handler: no ack is due. Reserved names may close the connection, and
  // so may a name JSON must escape (socketioxide reads names unescaped).
  const escaped = /[\u0000-\u001f"\\]/.test(name);
  return {
    label: reserved ? 'reserved event' : 'unknown event',
    data: `42${withAck}${JSON.stringify([name, { room: 'x' }])}`,
    mayClose: reserved || escaped,
  };
}

function nested(rng: Random, ackId: number): Frame {
  const event = rng.pick(KNOWN);
  if (rng.chance(0.5)) {
    const depth = rng.int(100, 15_000);
    return {
      label: 'deeply nested array',
      mayClose: true,
      data: `42${ackId}["${event}",${'['.repeat(depth)}${']'.repeat(depth)}]`,
    };
  }
  const depth = rng.int(100, 5000);
  return {
    label: 'deeply nested object',
    mayClose: true,
    data: `42${ackId}["${event}",${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}]`,
  };
}

function packetType(rng: Random, ackId: number): Frame {
  const data = rng.pick([
    '41',
    `43${ackId}[1]`,
    '43[]',
    '44{"message":"x"}',
    '451-["send",{"_placeholder":true,"num":0}]',
    `461-${ackId}[{"_placeholder":true,"num":0}]`,
    '4599-["send",{}]',
    '47',
    '48',
    '4x',
    '4',
    '40',
    '40{"token":"x"}',
    '40/nope,',
    `42/nope,${ackId}["join",{"room":"x"}]`,
    '41/nope,',
    `4${rng.junk(40)}`,
  ]);
  return { label: 'odd packet type', data, mayClose: true };
}

function badJsonValue(rng: Random, room: string, ackId: number): Frame {
  const data = rng.pick([
    `42${ackId}["send",{"room":"${room}","client_id":"abcdefgh1","name":"\\ud800","body":"\\udfff"}]`,
    `42${ackId}["join",{"room":"X","since":1e400}]`,
    `42${ackId}["join",{"room":"X","since":18446744073709551616}]`,
    `42${ackId}["join",{"room":"X","room":"Y"}]`,
    `42${ackId}["send",{"room":"${room}","body":"\\x41","name":"a","client_id":"abcdefgh2"}]`,
    `42${ackId}["sync",{"inbox":01}]`,
    `42${ackId}["leave",{"room":'X'}]`,
    `42${ackId}["leave",{room:"X"}]`,
    `42${ackId}["leave",{"room":"X",}]`,
  ]);
  return { label: 'invalid JSON', data, mayClose: true };
}
