// Fault: Herald is killed (`kill -9`) in the middle of traffic and started
// again on the same port. Ten users chat in one room through the official
// socket.io-client (reconnecting by itself) while a backend publishes
// notifications to them. Nothing acknowledged may be lost or stored twice,
// and every client ends up with every message and notification once.

import { test, expect } from '../support/faults/fixtures';
import { token } from '../fixtures';
import { userToken } from '../support/auth';
import type { Chatter } from '../support/faults/chatter';
import { expectNothingLost, Ledger, sample, summarize } from '../support/faults/ledger';
import { publishUntilStored, type PublishOutcome } from '../support/faults/publisher';

const USERS = 10;
const MESSAGES_PER_USER = 100;
/** Herald is killed once this many messages are acknowledged. */
const CRASH_AFTER_ACKS = 300;
/** One notification is published per this many acknowledged messages. */
const ACKS_PER_PUBLISH = 5;
const PUBLISHES = (USERS * MESSAGES_PER_USER) / ACKS_PER_PUBLISH;
const TRANSPORTS: (('polling' | 'websocket')[] | undefined)[] = [['websocket'], ['polling'], undefined];

interface Publication {
  user: string;
  nonce: string;
  outcome: PublishOutcome;
}

// A thousand acknowledged round trips through a crash: 10–20 s here, more
// on a slower machine or a SecantusDB that has served many tests.
test.setTimeout(120_000);

test('kill -9 under load: every acknowledged message and notification survives, once', async ({
  herald,
  chatters,
}, testInfo) => {
  const started = performance.now();
  const room = `crash-${token()}`;
  const subs = Array.from({ length: USERS }, (_, i) => `crash${i}-${token(3)}`);
  const tokens = await Promise.all(subs.map((sub, i) => userToken({ sub, name: `User ${i}` })));
  // A third each on WebSocket only, long-polling only, and long-polling
  // upgraded to WebSocket.
  const users: Chatter[] = await Promise.all(
    tokens.map((jwt, i) => chatters.open({ label: `u${i}`, room, token: jwt, transports: TRANSPORTS[i % 3] })),
  );
  const transports = users.map((u) => u.transport()).join(',');

  const ledger = new Ledger();
  const senders = users.map(async (user) => {
    for (let i = 0; i < MESSAGES_PER_USER; i++) {
      await ledger.send(user, `${user.label}-${i}-${token(4)}`, `${user.label} says ${i}`);
    }
  });

  let crash = { atAcks: 0, downMs: 0 };
  const crasher = (async () => {
    await ledger.reached(CRASH_AFTER_ACKS);
    const atAcks = ledger.count;
    const down = performance.now();
    await herald.kill();
    await herald.start();
    crash = { atAcks, downMs: Math.round(performance.now() - down) };
  })();

  // The backend publishes one notification per ACKS_PER_PUBLISH acknowledged
  // messages, round-robin over the users: before, during and after the crash.
  const publications: Publication[] = [];
  const publisher = (async () => {
    for (let k = 0; k < PUBLISHES; k++) {
      await ledger.reached(k * ACKS_PER_PUBLISH);
      const user = subs[k % USERS];
      const nonce = `${k}-${token(4)}`;
      const outcome = await publishUntilStored(herald.url, { user, event: 'fault.crash', data: { k, nonce } });
      publications.push({ user, nonce, outcome });
    }
  })();

  await Promise.all([...senders, crasher, publisher]);
  expect(crash.atAcks, 'Herald was killed part-way through').toBeLessThan(USERS * MESSAGES_PER_USER);
  for (const user of users) {
    expect(user.connections, `${user.label} reconnected by itself`).toBeGreaterThanOrEqual(2);
  }

  // Chat: stored exactly once, as acknowledged; delivered to everyone once.
  const sent = USERS * MESSAGES_PER_USER;
  expect(ledger.sent).toBe(sent);
  expect(ledger.count, 'every message was acknowledged in the end').toBe(sent);
  const { delivery, counts } = await expectNothingLost(herald.db, room, ledger, users);
  expect(delivery.delivered).toBe(sent * USERS);

  // Notifications: each published one (HTTP 200) is listed once in its
  // user's inbox and reached that user (live or through `sync`).
  expect(publications).toHaveLength(PUBLISHES);
  const retried = publications.filter((p) => p.outcome.requests > 1);
  let notificationsDelivered = 0;
  let duplicatedByRetry = 0;
  const notificationProblems: string[] = [];
  for (const [i, sub] of subs.entries()) {
    const user = users[i];
    const mine = publications.filter((p) => p.user === sub);
    const { inbox } = await user.syncAll();
    const listedIds = inbox.map((n) => n.id);
    for (const p of mine) {
      const times = listedIds.filter((id) => id === p.outcome.id).length;
      if (times !== 1) notificationProblems.push(`${sub}: ${p.outcome.id} listed ${times} times`);
      if (user.notifications.has(p.outcome.id)) notificationsDelivered += 1;
      else notificationProblems.push(`${sub}: ${p.outcome.id} never reached the user (${user.describe()})`);
      // Retries carry the same Idempotency-Key: even a retry of a request
      // that was stored but not answered stores nothing more.
      const copies = inbox.filter((n) => (n.data as { nonce?: string }).nonce === p.nonce).length;
      if (copies > 1) {
        duplicatedByRetry += copies - 1;
        notificationProblems.push(`${sub}: ${p.nonce} stored ${copies} times (${p.outcome.requests} requests)`);
      }
    }
    const unknown = inbox.filter((n) => !mine.some((p) => p.nonce === (n.data as { nonce?: string }).nonce));
    if (unknown.length > 0) notificationProblems.push(`${sub}: unexpected ${JSON.stringify(unknown)}`);
  }
  expect(notificationProblems, sample(notificationProblems)).toEqual([]);
  const notificationsStored = await herald.db
    .collection('notifications')
    .countDocuments({ key: { $in: subs.map((sub) => `inbox:${sub}`) } });
  expect(notificationsStored).toBe(PUBLISHES);

  const resends = ledger.attempts - ledger.sent;
  const errorCodes = countOutcomes(users);
  summarize(testInfo, {
    ...counts,
    resends,
    outcomes: errorCodes,
    caught_up: delivery.catchUp,
    transports,
    crash_at_acked: crash.atAcks,
    down_ms: crash.downMs,
    published: PUBLISHES,
    publish_ok: publications.length,
    publish_retried: retried.length,
    publish_failed_requests: retried.reduce((n, p) => n + p.outcome.requests - 1, 0),
    notifications_stored: notificationsStored,
    notifications_delivered: notificationsDelivered,
    notifications_dup_by_retry: duplicatedByRetry,
    notifications_lost: PUBLISHES - notificationsDelivered,
    runtime_s: ((performance.now() - started) / 1000).toFixed(1),
  });
});

/** `ok:N,no-ack:N,…` over every send attempt of every client. */
function countOutcomes(users: Chatter[]): string {
  const counts = new Map<string, number>();
  for (const user of users) for (const a of user.attempts) counts.set(a.outcome, (counts.get(a.outcome) ?? 0) + 1);
  return [...counts.entries()].map(([outcome, n]) => `${outcome}:${n}`).join(',');
}
