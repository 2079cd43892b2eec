// Two release nodes of a cluster behind nginx with the configuration the
// README documents: visitors on different nodes chat live through it, and
// when one node is killed (-9) its visitors reconnect through nginx to the
// other and miss nothing.

import type { Browser, BrowserContext } from '@playwright/test';
import { test as base, expect, token } from '../fixtures';
import { RoomPage } from '../pages/room';
import { NginxCluster, websocketConnections } from '../support/cluster';
import { storedMessages } from '../support/store';
import { settle } from '../support/sync';

// This test's Herald is the cluster it starts: no page has the fixture's
// single server as its base.
const test = base.extend<{ baseURL: string | undefined }>({
  baseURL: async ({}, use) => {
    await use(undefined);
  },
});

/**
 * Opens visitors through nginx until both nodes have one; returns one of
 * each. Every visitor stays connected (one leaving would change the counts
 * that tell where the next one went); `contexts` gets them all.
 */
async function oneOnEachNode(
  browser: Browser,
  cluster: NginxCluster,
  room: string,
  contexts: BrowserContext[],
): Promise<[RoomPage, RoomPage]> {
  const on: (RoomPage | undefined)[] = [undefined, undefined];
  // nginx hashes each visitor's cookie: 16 visitors all on one node would
  // happen once in 2^15 runs.
  for (let tries = 0; tries < 16 && !(on[0] && on[1]); tries++) {
    const before = await Promise.all(cluster.nodes.map(websocketConnections));
    const context = await browser.newContext();
    contexts.push(context);
    const visitor = new RoomPage(await context.newPage(), cluster.url, room);
    expect((await visitor.act.open()).status()).toBe(200);
    await visitor.expect.connected();
    // The node whose count grew is the visitor's.
    await expect
      .poll(async () => (await Promise.all(cluster.nodes.map(websocketConnections))).some((n, i) => n > before[i]))
      .toBe(true);
    const after = await Promise.all(cluster.nodes.map(websocketConnections));
    const node = after[0] > before[0] ? 0 : 1;
    on[node] ??= visitor;
  }
  if (!on[0] || !on[1]) throw new Error('nginx sent 16 visitors to one node');
  return [on[0], on[1]];
}

test('visitors chat through nginx across two nodes and miss nothing when one is killed', async ({
  browser,
  mongo,
}, testInfo) => {
  const dbName = `e2e_${token()}`;
  const mongoUri = process.env.HERALD_TEST_MONGO_URI ?? '';
  const cluster = await NginxCluster.start(mongoUri, dbName);
  const contexts: BrowserContext[] = [];
  try {
    const room = `nginx-${token()}`;
    const [alice, bob] = await oneOnEachNode(browser, cluster, room, contexts);

    const live = `across the nodes ${token()}`;
    await alice.act.sendWithEnter(live);
    await bob.expect.shownOnce(live);

    // Alice's node dies; Bob sends while she is away.
    await alice.act.recordConnStates();
    await cluster.nodes[0].kill();
    const during = `while Alice's node is down ${token()}`;
    await bob.act.sendWithEnter(during);
    await bob.expect.shownOnce(during);
    await expect.poll(() => alice.act.connStates()).toContain('reconnecting');
    await alice.expect.connected();

    await alice.expect.shownOnce(during);
    const after = `after the failover ${token()}`;
    await alice.act.sendWithEnter(after);
    await bob.expect.shownOnce(after);
    await settle(alice, [bob]);
    for (const visitor of [alice, bob]) {
      for (const body of [live, during, after]) await visitor.expect.shownOnce(body);
      await visitor.expect.inSeqOrder();
    }
    expect(await storedMessages(mongo.db(dbName), room, during)).toHaveLength(1);
  } catch (err) {
    await testInfo.attach('cluster.log', { body: cluster.log(), contentType: 'text/plain' });
    throw err;
  } finally {
    for (const context of contexts) await context.close();
    await cluster.stop();
    await mongo.db(dbName).dropDatabase();
  }
});
