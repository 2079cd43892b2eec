// A page whose `join` fails (the database hangs while it connects) must not
// claim to be live: it stays "connecting", sends the join again with a
// backoff, and once the database is back it joins, catches up and shows new
// messages live, without a reload.

import { ownDatabaseTest as test, expect } from '../support/faults/fixtures';
import { token } from '../fixtures';
import { publish } from '../support/publish';
import { gateSocketIo } from '../support/socket-gate';

test.use({ heraldEnv: { HERALD_STORE_TIMEOUT: '2s' } });

test('a failed join is retried with backoff and the page is not live until it succeeds', async ({
  herald,
  visitors,
  secantus,
}) => {
  test.setTimeout(90_000);
  const room = `retry-${token()}`;
  const visitor = await visitors.page(room);
  const gate = await gateSocketIo(visitor.page);
  await visitor.act.open();
  await gate.held();
  await visitor.expect.hydrated();
  await visitor.act.recordConnStates();

  // The database hangs; the page's socket connects now, and its join can't
  // be answered but with `unavailable`, after the store timeout.
  secantus.pause();
  try {
    const refused = visitor.page.waitForEvent('console', {
      predicate: (message) => message.text().includes('join refused (unavailable)'),
      timeout: 30_000,
    });
    gate.release();
    await refused;
    await expect(visitor.at.connStatus).not.toHaveAttribute('data-state', 'connected');
    // While the database is away, the page retries (backoff) and never says
    // it is live.
    await visitor.page.waitForEvent('console', {
      predicate: (message) => message.text().includes('join refused (unavailable)'),
      timeout: 30_000,
    });
    await expect(visitor.at.connStatus).not.toHaveAttribute('data-state', 'connected');
  } finally {
    secantus.resume();
  }

  await visitor.expect.connected();
  const states = await visitor.act.connStates();
  expect(states.indexOf('connected'), `states ${states.join(' → ')}`).toBe(states.length - 1);
  const body = `live after the retry ${token()}`;
  const published = await publish(herald.url, { room, message: body });
  expect(published.status, JSON.stringify(published.body)).toBe(200);
  await visitor.expect.shownOnce(body);
});
