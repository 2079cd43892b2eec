import { defineConfig } from '@playwright/test';

// No `webServer`: the `herald` fixture (fixtures.ts) starts the release binary
// itself, on a free port with a fresh database per test, and can kill and
// restart it. HERALD_TEST_MONGO_URI must point at a running MongoDB-compatible
// server (scripts/test.sh starts SecantusDB and exports it).
export default defineConfig({
  testDir: 'tests',
  workers: 2,
  fullyParallel: false,
  retries: 0,
  forbidOnly: true,
  reporter: 'list',
  // A run empties its output directory first: two runs at once (say a
  // developer's and a script's) need different ones.
  outputDir: process.env.HERALD_E2E_OUTPUT_DIR || 'test-results',
  // Reconnection after a restart waits out the client's backoff.
  timeout: 60_000,
  expect: { timeout: 10_000 },
  use: {
    // Debian's chromium: Playwright must never download a browser here.
    launchOptions: {
      executablePath: '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
        '--disable-quic',
      ],
    },
    trace: 'retain-on-failure',
  },
});
