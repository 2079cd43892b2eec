// Fault: Herald's database goes away while clients send, and comes back.
// Each test has a SecantusDB of its own (on-disk storage, so its data
// survives a restart) and a Herald with HERALD_STORE_TIMEOUT=2s. While the
// database is stopped (SIGTERM) or hung (SIGSTOP), Herald must answer within
// a bounded time: a send gets `unavailable`, a publish `503`, /readyz `503`.
// Once the database is back, Herald recovers without a restart, and nothing
// that was acknowledged is lost or stored twice.

import { ownDatabaseTest as test, expect } from '../support/faults/fixtures';
import { token } from '../fixtures';
import { userToken } from '../support/auth';
import type { Chatter } from '../support/faults/chatter';
import type { SecantusProcess } from '../support/faults/secantus';
import { publish } from '../support/publish';
import { storedMessages } from '../support/store';
import { expectNothingLost, Ledger, summarize } from '../support/faults/ledger';

/** Herald's bound on one store operation, as configured for these tests. */
const STORE_TIMEOUT = '2s';
/** What "bounded" means here: a reply within this, however the database fails. */
const BOUND_MS = 8_000;
/** The fault starts once this many messages are acknowledged; recovery is proven by as many more. */
const ACKS_BEFORE = 30;
const ACKS_AFTER = 30;
/** Each client sends at most this many. */
const MAX_PER_CLIENT = 150;

interface Scenario {
  name: string;
  /** Puts the fault in place; resolves once it is. */
  fail(db: SecantusProcess): Promise<string>;
  /** Takes it away (also called from `finally`, whatever happened). */
  recover(db: SecantusProcess): Promise<void>;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'stopped (SIGTERM), then started again on its port and data',
    fail: async (db) => {
      const stopped = await db.stop();
      return `exited in ${stopped.ms} ms (code ${stopped.code}, signal ${stopped.signal})`;
    },
    recover: async (db) => {
      if (!db.running) await db.start();
    },
  },
  {
    name: 'hung (SIGSTOP), then continued (SIGCONT)',
    fail: async (db) => {
      await db.pauseAndWait();
      return 'stopped with SIGSTOP';
    },
    recover: async (db) => db.resume(),
  },
];

test.use({ heraldEnv: { HERALD_STORE_TIMEOUT: STORE_TIMEOUT } });

for (const scenario of SCENARIOS) {
  test(`database ${scenario.name}: bounded errors, then recovery with nothing lost`, async ({
    herald,
    chatters,
    secantus,
  }, testInfo) => {
    const started = performance.now();
    const room = `outage-${token()}`;
    const open = async (label: string, transports?: ('polling' | 'websocket')[]) => {
      const sub = `${label}-${token(3)}`;
      const chatter = await chatters.open({ label, room, transports, token: await userToken({ sub, name: label }) });
      return { sub, chatter };
    };
    const users: Chatter[] = [
      (await open('ws', ['websocket'])).chatter,
      (await open('poll', ['polling'])).chatter,
      (await open('upgr')).chatter,
    ];
    // The probe measures single requests; it is in the room too.
    const { sub: probeSub, chatter: probe } = await open('probe', ['websocket']);

    const ledger = new Ledger();
    let stop = false;
    const senders = users.map(async (user) => {
      for (let i = 0; i < MAX_PER_CLIENT && !stop; i++) {
        await ledger.send(user, `${user.label}-${i}-${token(4)}`, `${user.label} says ${i}`);
      }
    });
    await ledger.reached(ACKS_BEFORE);

    const probeId = `probe-${token(6)}`;
    const probeBody = 'sent while the database is away';
    let fault = '';
    let faultAt = 0;
    let recoverAt = 0;
    let measured = { send: 0, publish: 0, readyz: 0 };
    try {
      fault = await scenario.fail(secantus);
      faultAt = performance.now();

      // Bounded: each answers in time, and says the storage is unavailable.
      ledger.tried(probeId);
      const [send, published, ready] = await Promise.all([
        probe.sendOnce(probeId, probeBody, false, BOUND_MS + 2_000),
        timed(() => publish(herald.url, { user: probeSub, event: 'fault.outage', data: { during: true } })),
        timed(() => readyz(herald.url)),
      ]);
      measured = { send: Math.round(send.ms), publish: Math.round(published.ms), readyz: Math.round(ready.ms) };
      expect(send.reply, `the send's reply (${JSON.stringify(send)})`).toEqual({
        error: expect.objectContaining({ code: 'unavailable' }),
      });
      expect(send.ms, 'the send was answered in time').toBeLessThan(BOUND_MS);
      expect(published.value.status, `publish: ${JSON.stringify(published.value.body)}`).toBe(503);
      expect(published.value.body).toMatchObject({ error: { code: 'unavailable' } });
      expect(published.ms, 'the publish was answered in time').toBeLessThan(BOUND_MS);
      expect(ready.value, '/readyz while the database is away').toBe(503);
      expect(ready.ms, '/readyz was answered in time').toBeLessThan(BOUND_MS);
    } finally {
      recoverAt = performance.now();
      await scenario.recover(secantus);
    }

    // The clients' own sends while the database was away (in flight when it
    // went, or sent before it came back): each answered in time, none hung;
    // those wholly within the outage refused, never acknowledged.
    await Promise.all(
      users.map((u) => u.until(() => u.attempts.some((a) => a.at > recoverAt), 'a send after the recovery began')),
    );
    const duringOutage = users.flatMap((u) => u.attempts.filter((a) => a.doneAt > faultAt && a.at < recoverAt));
    const slowest = Math.max(0, ...duringOutage.map((a) => a.doneAt - a.at));
    expect(slowest, 'the slowest reply to a client’s send while the database was away').toBeLessThan(BOUND_MS);
    expect(
      duringOutage
        .filter((a) => a.at >= faultAt && a.doneAt <= recoverAt)
        .filter((a) => !['unavailable', 'rate_limited'].includes(a.outcome))
        .map((a) => `${a.clientId}: ${a.outcome}`),
      'outcomes of the clients’ sends wholly within the outage',
    ).toEqual([]);

    // Recovery without restarting Herald: ready again, sends stored again.
    const backAt = performance.now();
    await expect
      .poll(() => readyz(herald.url), { message: '/readyz after recovery', timeout: 30_000, intervals: [250, 500, 1_000] })
      .toBe(200);
    const readyAgainMs = Math.round(performance.now() - backAt);
    // Whether the refused probe was stored anyway (a timed-out write may still
    // land): its resend must then return that message, not store another.
    const probeStoredAnyway = (await storedMessages(herald.db, room)).some((m) => m.client_id === probeId);
    await ledger.resend(probe, probeId, probeBody);
    const after = await publish(herald.url, { user: probeSub, event: 'fault.outage', data: { during: false } });
    expect(after.status, JSON.stringify(after.body)).toBe(200);
    const afterId = (after.body as { id: string }).id;
    await ledger.reached(ledger.count + ACKS_AFTER);
    stop = true;
    await Promise.all(senders);

    const { counts } = await expectNothingLost(herald.db, room, ledger, [...users, probe]);

    // The publish after recovery is in the probe user's inbox once, and reached it.
    const { inbox } = await probe.syncAll();
    expect(inbox.filter((n) => n.id === afterId), 'the publish after recovery, listed once').toHaveLength(1);
    expect(probe.notifications.has(afterId), 'the publish after recovery reached its user').toBe(true);
    const refusedPublishStored = inbox.filter((n) => (n.data as { during?: boolean }).during === true).length;

    summarize(testInfo, {
      ...counts,
      fault,
      outage_ms: Math.round(recoverAt - faultAt),
      send_unavailable_ms: measured.send,
      publish_503_ms: measured.publish,
      readyz_503_ms: measured.readyz,
      client_sends_during_outage: duringOutage.length,
      slowest_reply_during_outage_ms: Math.round(slowest),
      ready_again_ms: readyAgainMs,
      probe_stored_despite_unavailable: probeStoredAnyway,
      refused_publish_stored_anyway: refusedPublishStored,
      runtime_s: ((performance.now() - started) / 1000).toFixed(1),
    });
  });
}

/** Runs `f` and measures it. */
async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const at = performance.now();
  const value = await f();
  return { value, ms: performance.now() - at };
}

/** `GET /readyz`'s status (a request that fails counts as 0). */
async function readyz(baseUrl: string): Promise<number> {
  try {
    const response = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(BOUND_MS + 2_000) });
    await response.text();
    return response.status;
  } catch {
    return 0;
  }
}
