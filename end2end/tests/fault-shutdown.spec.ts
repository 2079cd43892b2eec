// Fault: Herald is stopped gracefully (SIGTERM) while clients on WebSocket
// and on long-polling are sending. Each must be told `closing`
// (`shutting_down`) before its connection closes, with a disconnect
// socket.io-client reconnects from ("transport close"); Herald must exit 0
// within HERALD_SHUTDOWN_TIMEOUT; a send that reaches it while it drains is
// either stored and acknowledged or refused with `shutting_down`. Started
// again, the clients come back by themselves, re-join from their newest
// `seq` and get what was sent while they were away, once.

import { test, expect } from '../support/faults/fixtures';
import { token } from '../fixtures';
import { userToken } from '../support/auth';
import type { Chatter } from '../support/faults/chatter';
import { storedMessages } from '../support/store';
import { expectNothingLost, expectStoredOnce, Ledger, summarize } from '../support/faults/ledger';

const SHUTDOWN_TIMEOUT_S = 5;
/** The exit may come this much later than HERALD_SHUTDOWN_TIMEOUT (process start-up of the drain, exit). */
const EXIT_MARGIN_MS = 2_000;
const TRANSPORTS: { label: string; transports: ('polling' | 'websocket')[] | undefined }[] = [
  { label: 'ws0', transports: ['websocket'] },
  { label: 'ws1', transports: ['websocket'] },
  { label: 'poll0', transports: ['polling'] },
  { label: 'poll1', transports: ['polling'] },
  { label: 'upgr0', transports: undefined },
  { label: 'upgr1', transports: undefined },
];
/** Each client sends at most this many (the late client's join catch-up stays under 500). */
const MAX_PER_CLIENT = 40;
/** SIGTERM once this many messages are acknowledged. */
const TERM_AFTER_ACKS = 60;
/** Sent by a client that connects after the restart, while the others are still away. */
const SENT_WHILE_AWAY = 10;

test.use({ heraldSetup: { env: { HERALD_SHUTDOWN_TIMEOUT: `${SHUTDOWN_TIMEOUT_S}s` } } });

test('SIGTERM while sending: clients are told, drained, exit 0; they come back and miss nothing', async ({
  herald,
  chatters,
}, testInfo) => {
  const started = performance.now();
  const room = `shutdown-${token()}`;
  const users: Chatter[] = await Promise.all(
    TRANSPORTS.map(async ({ label, transports }) =>
      chatters.open({
        label,
        room,
        transports,
        token: await userToken({ sub: `${label}-${token(3)}`, name: label }),
      }),
    ),
  );
  for (const user of users.filter((u) => u.label.startsWith('poll'))) expect(user.transport()).toBe('polling');

  const ledger = new Ledger();
  let stop = false;
  const senders = users.map(async (user) => {
    for (let i = 0; i < MAX_PER_CLIENT && !stop; i++) {
      await ledger.send(user, `${user.label}-${i}-${token(4)}`, `${user.label} says ${i}`);
    }
  });

  // Stop Herald mid-traffic. Each client's next handshake is held until the
  // late client below has sent, so those messages are sent while it is away.
  await ledger.reached(TERM_AFTER_ACKS);
  for (const user of users) user.holdHandshakes();
  const transportsAtTerm = users.map((u) => `${u.label}:${u.transport()}`).join(',');
  const ackedAtTerm = ledger.count;
  const sigtermAt = performance.now();
  const exit = await herald.terminate(SHUTDOWN_TIMEOUT_S * 1000 + 10_000);
  const exitAt = performance.now();
  // The shutdown protocol's checks are soft: one run reports every client's
  // outcome and goes on to check that nothing was lost.
  expect.soft(exit.killed, 'Herald exited by itself').toBe(false);
  expect.soft({ code: exit.code, signal: exit.signal }, 'exit status').toEqual({ code: 0, signal: null });
  expect
    .soft(exit.ms, 'exit within HERALD_SHUTDOWN_TIMEOUT + margin')
    .toBeLessThan(SHUTDOWN_TIMEOUT_S * 1000 + EXIT_MARGIN_MS);

  // Every client was told why, before its connection closed, and will reconnect.
  await Promise.all(
    users.map((u) => u.until(() => u.events('disconnect', sigtermAt).length > 0, 'disconnect after SIGTERM', 5_000)),
  );
  const goodbyes: string[] = [];
  for (const user of users) {
    const closing = user.events('closing', sigtermAt);
    const disconnect = user.events('disconnect', sigtermAt)[0];
    goodbyes.push(`${user.label}:${closing.length > 0 ? 'closing' : 'no-closing'}+${disconnect.reason.replace(' ', '-')}`);
    expect.soft(closing.length, `${user.label} received "closing"`).toBeGreaterThanOrEqual(1);
    if (closing.length > 0) {
      expect.soft(closing[0].payload, `${user.label}'s "closing"`).toEqual({
        reason: 'shutting_down',
        detail: expect.any(String),
      });
      expect
        .soft(user.timeline.indexOf(closing[0]), `${user.label}: "closing" came before the disconnect`)
        .toBeLessThan(user.timeline.indexOf(disconnect));
    }
    expect.soft(disconnect.reason, `${user.label}'s disconnect reason`).toBe('transport close');
    expect(user.socket.active, `${user.label} is reconnecting by itself`).toBe(true);
  }

  // The drain: every send in flight at SIGTERM or emitted before the exit was
  // either stored and acknowledged, or refused with `shutting_down`; one that
  // got no reply at all must not have been stored (its reply was lost).
  const drained = users.flatMap((u) =>
    u.attempts.filter((a) => a.doneAt >= sigtermAt && a.at < exitAt).map((a) => ({ ...a, label: u.label })),
  );
  const drainOutcomes = count(drained.map((a) => a.outcome));
  expect
    .soft(
      drained.filter((a) => !['ok', 'shutting_down', 'no-ack'].includes(a.outcome)).map((a) => a.outcome),
      'outcomes of sends during the drain',
    )
    .toEqual([]);
  const unanswered = drained.filter((a) => a.outcome === 'no-ack' && !ledger.acked.has(a.clientId));
  const storedUnanswered = (await storedMessages(herald.db, room)).flatMap((m) =>
    unanswered
      .filter((a) => a.clientId === m.client_id)
      .map((a) => `${a.label}: ${m.client_id}@${m.seq} emitted ${Math.round(a.at - sigtermAt)} ms after SIGTERM`),
  );
  expect.soft(storedUnanswered, 'sends stored during the drain whose acknowledgement never came').toEqual([]);
  await expectStoredOnce(herald.db, room, ledger);
  const ackedAtExit = ledger.count;

  // Start again; a newcomer sends while the others are still held away.
  await herald.start();
  const late = await chatters.open({
    label: 'late',
    room,
    transports: ['websocket'],
    token: await userToken({ sub: `late-${token(3)}`, name: 'late' }),
  });
  const whileAway: number[] = [];
  for (let i = 0; i < SENT_WHILE_AWAY; i++) {
    whileAway.push((await ledger.send(late, `late-${i}-${token(4)}`, `sent while you were away ${i}`)).seq);
  }
  const awayBefore = users.map((u) => u.connections);
  for (const user of users) expect(user.ready, `${user.label} is still away`).toBe(false);

  // Let them back: they reconnect by themselves, re-join, resend what was in
  // flight and go on sending.
  for (const user of users) user.releaseHandshakes();
  await Promise.all(users.map((u, i) => u.whenReady(awayBefore[i])));
  await ledger.reached(ledger.count + 12);
  stop = true;
  await Promise.all(senders);

  for (const user of users) {
    for (const seq of whileAway) {
      expect(user.arrivedBy.get(seq), `${user.label} got seq ${seq} by its re-join`).toBe('catch-up');
    }
  }
  const { delivery, counts } = await expectNothingLost(herald.db, room, ledger, [...users, late]);

  summarize(testInfo, {
    ...counts,
    acked_at_sigterm: ackedAtTerm,
    acked_at_exit: ackedAtExit,
    drain_sends: drained.length,
    drain_outcomes: drainOutcomes,
    drain_stored_unanswered: storedUnanswered.length,
    goodbyes: goodbyes.join(','),
    exit_code: String(exit.code),
    exit_ms: exit.ms,
    transports: transportsAtTerm,
    sent_while_away: SENT_WHILE_AWAY,
    caught_up: delivery.catchUp,
    runtime_s: ((performance.now() - started) / 1000).toFixed(1),
  });
});

/** `a:2,b:1` */
function count(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts.entries()].map(([v, n]) => `${v}:${n}`).join(',') || 'none';
}
