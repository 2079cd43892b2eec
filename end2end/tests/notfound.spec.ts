// Paths that are no room get a 404 page, and the server keeps serving.

import { test, expect } from '../fixtures';

const NOT_ROOMS = ['/r/Not%20Valid!', `/r/${'a'.repeat(65)}`, '/r/UPPER', '/no/such/page'];

for (const path of NOT_ROOMS) {
  test(`${path.length > 40 ? path.slice(0, 40) + '…' : path} is a 404 page`, async ({ herald, page }) => {
    const response = await page.goto(herald.url + path);
    expect(response?.status()).toBe(404);
    expect(response?.headers()['content-type']).toContain('text/html');
    await expect(page.locator('body')).not.toBeEmpty();
    await expect(page.getByTestId('messages')).toHaveCount(0);

    const lobby = await page.goto(herald.url + '/');
    expect(lobby?.status()).toBe(200);
    await expect(page.getByTestId('messages')).toBeAttached();
  });
}

test('the longest room name (64 characters) is a room', async ({ herald, page }) => {
  const response = await page.goto(`${herald.url}/r/${'a'.repeat(64)}`);
  expect(response?.status()).toBe(200);
  await expect(page.locator('form#composer')).toBeVisible();
});
