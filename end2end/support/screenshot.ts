// Saving a review screenshot: into docs/ when HERALD_SCREENSHOT=1 (to update
// the pictures the README shows), otherwise only into the test's output.

import { statSync } from 'node:fs';
import path from 'node:path';
import { expect, type Page, type TestInfo } from '@playwright/test';
import { REPO_ROOT } from './herald-server';

export async function saveScreenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  const file =
    process.env.HERALD_SCREENSHOT === '1' ? path.join(REPO_ROOT, 'docs', name) : testInfo.outputPath(name);
  await page.screenshot({ path: file });
  await testInfo.attach('screenshot', { path: file, contentType: 'image/png' });
  expect(statSync(file).size, 'a non-empty PNG').toBeGreaterThan(1000);
}
