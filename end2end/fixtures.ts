// Test fixtures: a fresh Herald (release build) and database per test,
// visitors, each in a browser context of their own, and Socket.IO clients
// (socket.io-client in Node) that are all disconnected when the test ends.

import { test as base, expect, type Browser, type BrowserContext, type Page } from '@playwright/test';
import { MongoClient, type Db } from 'mongodb';
import { HeraldServer, type Termination } from './support/herald-server';
import { RoomPage } from './pages/room';
import { token } from './support/token';
import { AUTH_ENV } from './support/auth';
import { Clients } from './support/clients';

export { expect, token };

/** The Herald a test talks to. */
export interface Herald {
  /** `http://127.0.0.1:PORT`, stable across restarts. */
  readonly url: string;
  /** This test's database, as Herald sees it. */
  readonly db: Db;
  readonly dbName: string;
  /** `kill -9`, then start again on the same port and database; resolves once it listens. */
  restart(): Promise<void>;
  /** `kill -9` only (start it again with `start`). */
  kill(): Promise<void>;
  start(): Promise<void>;
  /**
   * Graceful stop, measured: SIGTERM and the wait for the exit (SIGKILL after
   * `deadlineMs`, reported as `killed`). Start it again with `start`.
   */
  terminate(deadlineMs?: number): Promise<Termination>;
  /** Herald's output so far. */
  log(): string;
}

/**
 * What a test may change about its Herald: `test.use({ heraldSetup: {…} })`,
 * or a fixture that overrides `heraldSetup` (say, to point at a database
 * server the test starts itself).
 */
export interface HeraldSetup {
  /**
   * Another MongoDB-compatible server for this Herald (default:
   * HERALD_TEST_MONGO_URI). The test's database on it is not dropped
   * afterwards: it goes with that server.
   */
  mongoUri?: string;
  /** More environment for Herald, e.g. `HERALD_SHUTDOWN_TIMEOUT`. */
  env?: Record<string, string>;
}

export interface VisitorOptions {
  /** JavaScript on (default) or off. */
  js?: boolean;
  viewport?: { width: number; height: number };
}

/** Opens pages of rooms, each in a new browser context (a separate visitor). */
export interface Visitors {
  /** A page for `room` that is not loaded yet (to route its traffic first). */
  page(room: string, options?: VisitorOptions): Promise<RoomPage>;
  /** Loads `room` in a new visitor's page; with JS, waits until it is connected. */
  open(room: string, options?: VisitorOptions): Promise<RoomPage>;
  /** Every `alert`/`confirm`/`prompt` any visitor's page raised (dismissed at once). */
  readonly dialogs: string[];
}

function mongoUri(): string {
  const uri = process.env.HERALD_TEST_MONGO_URI;
  if (!uri) {
    throw new Error(
      'HERALD_TEST_MONGO_URI is not set: run scripts/test.sh, or start SecantusDB and export its URI',
    );
  }
  return uri;
}

export const test = base.extend<
  { heraldSetup: HeraldSetup; herald: Herald; visitors: Visitors; clients: Clients },
  { mongo: MongoClient }
>({
  mongo: [
    async ({}, use) => {
      const client = new MongoClient(mongoUri());
      await client.connect();
      await use(client);
      await client.close();
    },
    { scope: 'worker' },
  ],

  heraldSetup: [{}, { option: true }],

  herald: async ({ mongo, heraldSetup }, use, testInfo) => {
    const dbName = `e2e_${token()}`;
    // Fixed test secrets (support/auth.ts): tokens from `herald token` and the
    // publish API work; visitors without a token may still chat.
    const server = new HeraldServer({
      mongoUri: heraldSetup.mongoUri ?? mongoUri(),
      dbName,
      env: {
        ...AUTH_ENV,
        HERALD_ALLOW_ANONYMOUS: 'true',
        // SecantusDB (a Python stand-in for MongoDB) can stall for seconds on
        // a loaded machine; only the outage tests want the production bound.
        HERALD_STORE_TIMEOUT: '30s',
        HERALD_REQUEST_TIMEOUT: '60s',
        ...heraldSetup.env,
      },
    });
    // A server of the test's own is read through a client of its own.
    const ownMongo = heraldSetup.mongoUri === undefined ? undefined : new MongoClient(heraldSetup.mongoUri);
    const db = (ownMongo ?? mongo).db(dbName);
    try {
      await server.start();
      await use({
        get url() {
          return server.url;
        },
        db,
        dbName,
        restart: () => server.restart(),
        kill: () => server.kill(),
        start: () => server.start(),
        terminate: (deadlineMs) => server.terminate(deadlineMs),
        log: () => server.log,
      });
    } finally {
      await server.stop();
      if (testInfo.status !== testInfo.expectedStatus) {
        await testInfo.attach('herald.log', { body: server.log, contentType: 'text/plain' });
      }
      if (ownMongo) {
        await ownMongo.close(true);
      } else {
        await db.dropDatabase();
      }
    }
  },

  clients: async ({ herald }, use) => {
    const clients = new Clients(() => herald.url);
    try {
      await use(clients);
    } finally {
      clients.closeAll();
    }
  },

  baseURL: async ({ herald }, use) => {
    await use(herald.url);
  },

  visitors: async ({ browser, herald }, use, testInfo) => {
    const contexts: BrowserContext[] = [];
    const dialogs: string[] = [];
    const pageErrors: string[] = [];

    const page = async (room: string, options: VisitorOptions = {}) => {
      const context = await newVisitorContext(browser, options);
      contexts.push(context);
      const p = await context.newPage();
      watch(p, contexts.length, dialogs, pageErrors);
      return new RoomPage(p, herald.url, room);
    };
    const open = async (room: string, options: VisitorOptions = {}) => {
      const roomPage = await page(room, options);
      const response = await roomPage.act.open();
      expect(response.status(), `GET ${roomPage.url}`).toBe(200);
      if (options.js !== false) await roomPage.expect.connected();
      return roomPage;
    };

    await use({ page, open, dialogs });

    for (const context of contexts) await context.close();
    if (pageErrors.length > 0) {
      await testInfo.attach('page-errors.txt', { body: pageErrors.join('\n'), contentType: 'text/plain' });
    }
  },
});

function newVisitorContext(browser: Browser, options: VisitorOptions): Promise<BrowserContext> {
  return browser.newContext({
    javaScriptEnabled: options.js !== false,
    viewport: options.viewport ?? { width: 1000, height: 700 },
  });
}

/** Records dialogs (dismissing them, so nothing blocks) and uncaught page errors. */
function watch(page: Page, visitor: number, dialogs: string[], pageErrors: string[]): void {
  page.on('dialog', (dialog) => {
    dialogs.push(`visitor ${visitor}: ${dialog.type()} ${dialog.message()}`);
    void dialog.dismiss().catch(() => undefined);
  });
  page.on('pageerror', (error) => pageErrors.push(`visitor ${visitor}: ${error.message}`));
}
