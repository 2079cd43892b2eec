// A flood of malformed input against the real release build: about 20,000
// garbage Engine.IO frames, Socket.IO packets, long-polling requests, form
// posts, publish calls and broken HTTP, from at most ~50 connections at a
// time. Meanwhile a well-behaved client chats in a room and a second one
// receives every message. Herald must refuse the garbage (4xx, error acks,
// closed connections; never a 5xx but 503, never a hang, never a panic),
// serve the good clients as if nothing happened, and store exactly their
// messages.
//
// HERALD_ABUSE_SEED=<n> replays a run's inputs (the summary prints its seed).

import { test, expect, token } from '../fixtures';
import { algNoneToken, API_KEY, expiredToken, forgedToken, userToken } from '../support/auth';
import { composerFields } from '../support/form';
import { storedMessages, type StoredMessage } from '../support/store';
import { flood, type FloodPlan } from '../support/abuse/flood';
import { GoodTraffic } from '../support/abuse/good-traffic';
import type { ChatMessage } from '../support/protocol';
import { Random } from '../support/abuse/random';
import { Tally } from '../support/abuse/tally';
import type { Target } from '../support/abuse/target';

/** About 10,000 inputs (5-7 s of flood on 2 cores); see FloodPlan for what each task sends. */
const PLAN: FloodPlan = {
  socketSessions: 450,
  engineSessions: 1600,
  rawWsSessions: 250,
  pollingRequests: 1000,
  pollingSessions: 120,
  forms: 1300,
  publishes: 1600,
  headers: 1500,
  framing: 1000,
};
/**
 * Every task but a long-polling session (whose handshake is a valid one; its garbage comes once
 * it is admitted) sends at least one input, so a flood that ran sent at least one per task. The
 * sessions that Herald's per-address handshake cap admits send more, 15-60 each. How many it
 * admits depends on how fast the flood runs (a faster server ends it sooner, within fewer 5 s
 * windows), so that part is no floor to assert on.
 */
const MIN_INPUTS = Object.values(PLAN).reduce((sum, tasks) => sum + tasks, 0) - PLAN.pollingSessions;
/** Messages stored before the flood: they must come out of it unchanged. */
const BEFORE_FLOOD = 10;
/** The good sender's pace: one message per 250 ms at most, well under any rate limit. */
const GOOD_INTERVAL_MS = 250;

/** A real visitor cookie and the CSRF token a room page renders for it. */
async function visitor(baseUrl: string, room: string): Promise<Target['visitor']> {
  const response = await fetch(`${baseUrl}/r/${room}`);
  const vid = response.headers
    .getSetCookie()
    .map((c) => /^herald_vid=([^;]+)/.exec(c)?.[1])
    .find((v) => v !== undefined);
  const { csrf } = composerFields(await response.text());
  if (!vid || !csrf) throw new Error(`no herald_vid cookie or csrf token from GET /r/${room}`);
  return { vid, csrf };
}

/**
 * `GET /healthz`'s status once Herald answers it: a 429 (this address sent
 * a flood, after all) is waited out, up to five seconds.
 */
async function healthStatus(baseUrl: string): Promise<number> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const status = await fetch(`${baseUrl}/healthz`).then(
      (r) => r.status,
      () => 0,
    );
    if (status !== 429 || Date.now() > deadline) return status;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** How many ERROR and WARN lines a log has. */
function logLevels(log: string): string {
  const count = (level: string) => log.split('\n').filter((line) => line.includes(` ${level} `)).length;
  return `${count('ERROR')} ERROR, ${count('WARN')} WARN lines`;
}

/** The fields a stored message must keep: as acknowledged. */
function essentials(m: ChatMessage | StoredMessage) {
  return { room: m.room, seq: Number(m.seq), client_id: m.client_id, name: m.name, body: m.body };
}

test('Herald refuses a flood of malformed input and keeps serving the good clients', async ({
  herald,
  clients,
}, testInfo) => {
  test.setTimeout(150_000);
  const started = performance.now();
  const room = `abuse-${token()}`;
  const senderName = 'Good Sender';
  const [senderToken, receiverToken] = await Promise.all([
    userToken({ sub: `sender-${token(3)}`, name: senderName }),
    userToken({ sub: `receiver-${token(3)}`, name: 'Good Receiver' }),
  ]);
  const sender = await clients.connect('sender', { token: senderToken, transports: ['websocket'] });
  const receiver = await clients.connect('receiver', { token: receiverToken, transports: ['websocket'] });
  for (const client of [sender, receiver]) await client.ok('join', { room, since: 0 });

  const good = new GoodTraffic(sender, room);
  for (let i = 0; i < BEFORE_FLOOD; i++) await good.sendOne();
  expect(good.failures, 'messages before the flood').toEqual([]);
  const storedBefore = await storedMessages(herald.db, room);
  expect(storedBefore).toHaveLength(BEFORE_FLOOD);

  const target: Target = {
    port: Number(new URL(herald.url).port),
    room,
    apiKey: API_KEY,
    visitor: await visitor(herald.url, room),
    badTokens: [expiredToken('intruder'), forgedToken('intruder'), algNoneToken('intruder')],
  };
  const seed = Random.fromEnv().seed;
  const tally = new Tally();

  // The flood, with the good sender running all through it.
  let flooding = true;
  const goodLoop = good.run(() => !flooding, GOOD_INTERVAL_MS);
  const floodStarted = performance.now();
  await flood(target, seed, tally, PLAN);
  const floodSecs = (performance.now() - floodStarted) / 1000;
  flooding = false;
  await goodLoop;

  const atReceiver = await good.deliveredTo(receiver);
  const atSender = await good.deliveredTo(sender);
  const stored = await storedMessages(herald.db, room);
  const storedElsewhere = await herald.db.collection('messages').countDocuments({ room: { $ne: room } });
  const notificationsStored = await herald.db.collection('notifications').countDocuments({});
  const healthz = await healthStatus(herald.url);
  const log = herald.log();

  const ackedIds = new Set(good.acked.map((m) => m.client_id));
  const storedGood = stored.filter((m) => ackedIds.has(m.client_id)).length;
  const lost = good.sent.length - Math.min(good.acked.length, atReceiver.length, atSender.length, storedGood);
  const summary =
    `abuse flood (seed ${seed}): ${tally.total} inputs in ${floodSecs.toFixed(1)} s [${Tally.line(tally.sent)}]; ` +
    `outcomes [${Tally.line(tally.outcomes)}]; unacceptable ${tally.unacceptableCount}; ` +
    `good: sent ${good.sent.length}, acked ${good.acked.length}, delivered ${atReceiver.length} (receiver) / ` +
    `${atSender.length} (sender), stored ${stored.length} (${BEFORE_FLOOD} before the flood), lost ${lost}; ` +
    `healthz ${healthz}; Herald logged ${logLevels(log)}; total ${((performance.now() - started) / 1000).toFixed(1)} s`;
  console.log(summary);
  for (const line of tally.unacceptableLines()) console.log(`  unacceptable: ${line}`);
  await testInfo.attach('abuse-summary.txt', {
    body: [summary, ...tally.unacceptableLines()].join('\n'),
    contentType: 'text/plain',
  });

  expect.soft(tally.total, 'inputs sent').toBeGreaterThanOrEqual(MIN_INPUTS);
  expect.soft(tally.unacceptableLines(), 'unacceptable answers to garbage').toEqual([]);
  expect.soft(log, 'no panic in Herald’s log').not.toMatch(/panicked/);

  // Herald is alive, and the good clients never lost their connection.
  expect.soft(healthz, 'GET /healthz after the flood').toBe(200);
  for (const client of [sender, receiver]) {
    expect.soft(client.socket.connected, `${client.label} still connected`).toBe(true);
    expect.soft(client.connects, `${client.label} connected once`).toBe(1);
    expect.soft(client.payloads('notification'), `no garbage publish reached ${client.label}`).toEqual([]);
  }

  // Every good send was acked, and delivered live to both clients, once, as acked.
  expect.soft(good.failures, 'good sends refused or unacknowledged').toEqual([]);
  expect.soft(good.acked.length, 'good sends acked').toBe(good.sent.length);
  expect.soft(good.sent.length, 'good sends during the flood').toBeGreaterThan(BEFORE_FLOOD);
  expect.soft(atReceiver, 'what the receiver got').toEqual(good.acked);
  expect.soft(atSender, 'what the sender got').toEqual(good.acked);

  // MongoDB holds exactly the good messages: unchanged, each once, seqs 1..n.
  expect.soft(stored.slice(0, BEFORE_FLOOD), 'messages stored before the flood, unchanged').toEqual(storedBefore);
  expect.soft(stored.map(essentials), 'the room’s stored messages').toEqual(good.acked.map(essentials));
  const seqs = stored.map((m) => Number(m.seq));
  expect.soft(seqs, 'contiguous seqs').toEqual(seqs.map((_, i) => i + 1));
  const names = new Set(stored.map((m) => m.name));
  expect.soft(names, 'every stored message has the token’s name').toEqual(new Set([senderName]));
  expect.soft(storedElsewhere, 'messages stored in other rooms').toBe(0);
  expect.soft(notificationsStored, 'notifications stored').toBe(0);
});
