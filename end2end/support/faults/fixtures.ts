// Fixtures of the fault tests, on top of ../../fixtures.ts:
// - `chatters`: reconnecting chat clients (support/faults/chatter.ts), all
//   closed when the test ends;
// - `ownDatabaseTest` adds `secantus`, a SecantusDB process of the test's own
//   (on-disk storage) that its Herald uses, so the test can stop and hang it.

import { test as base, expect, type HeraldSetup } from '../../fixtures';
import { Chatters } from './chatter';
import { SecantusProcess } from './secantus';

export { expect };

export const test = base.extend<{ chatters: Chatters }>({
  chatters: async ({ herald }, use) => {
    const chatters = new Chatters(() => herald.url);
    try {
      await use(chatters);
    } finally {
      chatters.closeAll();
    }
  },
});

/**
 * `test` whose Herald uses a SecantusDB of its own; the test's extra Herald
 * environment goes in `heraldEnv` (`test.use({ heraldEnv: {…} })`).
 */
export const ownDatabaseTest = test.extend<{ secantus: SecantusProcess; heraldEnv: Record<string, string> }>({
  heraldEnv: [{}, { option: true }],

  secantus: async ({}, use, testInfo) => {
    const server = await SecantusProcess.launch();
    try {
      await use(server);
    } finally {
      if (testInfo.status !== testInfo.expectedStatus) {
        await testInfo.attach('secantus.log', { body: server.log, contentType: 'text/plain' });
      }
      await server.destroy();
    }
  },

  heraldSetup: async ({ secantus, heraldEnv }, use) => {
    const setup: HeraldSetup = { mongoUri: secantus.uri, env: heraldEnv };
    await use(setup);
  },
});
