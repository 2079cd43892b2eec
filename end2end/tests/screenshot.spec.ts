// A picture of a room for the README: docs/screenshot.png when
// HERALD_SCREENSHOT=1, otherwise only into the test's output directory.

import { test } from '../fixtures';
import { postMessage } from '../support/form';
import { saveScreenshot } from '../support/screenshot';

const CONVERSATION: Array<[string, string]> = [
  ['ada', 'Morning! Is the deploy still on for today?'],
  ['grace', 'Yes, after lunch. The release build is green.'],
  ['ada', 'Great. I will watch the room for reports.'],
  ['grace', 'Messages are stored before anyone sees them, so nothing gets lost on a restart.'],
  ['ada', 'And pages without JavaScript can still post here.'],
];

test('screenshot of a room', async ({ herald, visitors, request }, testInfo) => {
  for (const [name, body] of CONVERSATION) await postMessage(request, herald.url, 'lobby', { name, body });

  const visitor = await visitors.open('lobby', { viewport: { width: 1100, height: 720 } });
  for (const [, body] of CONVERSATION) await visitor.expect.shownOnce(body);

  await saveScreenshot(visitor.page, testInfo, 'screenshot.png');
});
