// Waiting for "everything sent so far has arrived" without sleeping.

import type { RoomPage } from '../pages/room';
import { token } from './token';

/**
 * Sends a fresh marker message from `sender` and waits until every page shows
 * it stored. A room's messages reach each connection in order, so once the
 * marker is there, every earlier message (ack, broadcast or catch-up) has
 * arrived too: a duplicate would now be visible.
 */
export async function settle(sender: RoomPage, pages: RoomPage[]): Promise<number> {
  const marker = `marker ${token()}`;
  await sender.act.sendWithEnter(marker);
  let seq = 0;
  for (const page of [sender, ...pages]) seq = await page.expect.shownOnce(marker);
  return seq;
}
