// Holds a page's Socket.IO WebSocket before it reaches Herald, so a test can
// decide when that visitor (re)connects.

import type { Page, WebSocketRoute } from '@playwright/test';

export interface SocketGate {
  /** Resolves once a connection attempt is being held. */
  held(): Promise<void>;
  /** Lets every held attempt, and every later one, through to Herald. */
  release(): void;
  /** How many connection attempts the page made so far. */
  attempts(): number;
}

/**
 * Routes the page's `/socket.io/` WebSockets through Playwright: the first
 * `passFirst` attempts go straight to Herald, later ones wait for `release()`.
 * Call before the page loads.
 */
export async function gateSocketIo(page: Page, passFirst = 0): Promise<SocketGate> {
  let attempts = 0;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let markHeld!: () => void;
  const held = new Promise<void>((resolve) => (markHeld = resolve));

  await page.routeWebSocket(/\/socket\.io\//, async (ws: WebSocketRoute) => {
    attempts += 1;
    if (attempts > passFirst) {
      markHeld();
      await released;
    }
    // With no handlers of our own, Playwright forwards frames and closes both ways.
    try {
      ws.connectToServer();
    } catch {
      // The page gave up on this attempt while it was held; it will try again.
    }
  });

  return { held: () => held, release, attempts: () => attempts };
}
