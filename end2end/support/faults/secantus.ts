// A SecantusDB (MongoDB-compatible) server of one test's own, with its data
// on disk so that it survives a restart: the test stops it (SIGTERM), hangs
// it (SIGSTOP) and brings it back (start again on the same port and
// directory, or SIGCONT) to see what Herald does while its database is gone.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { REPO_ROOT } from '../herald-server';

/** The Python that has SecantusDB installed (scripts/setup.sh makes `.venv-mongo`). */
export const SECANTUS_PYTHON = process.env.HERALD_TEST_SECANTUS_PYTHON ?? path.join(REPO_ROOT, '.venv-mongo', 'bin', 'python');

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const LISTENING = /secantus listening on 127\.0\.0\.1:(\d+)/;

export interface Stopped {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Milliseconds from the signal to the exit. */
  ms: number;
}

/** A free TCP port on 127.0.0.1 (free when asked; the server takes it at once). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export class SecantusProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({
    code: null,
    signal: null,
  });
  private paused = false;
  private readonly lines: string[] = [];

  private constructor(
    /** The test's directory: `data/` (storage), `tmp/` (TMPDIR), `empty.toml`. */
    readonly dir: string,
    readonly port: number,
  ) {}

  /** Starts a new server with an empty on-disk store on a free port. */
  static async launch(): Promise<SecantusProcess> {
    const dir = mkdtempSync(path.join(tmpdir(), 'herald-secantus-'));
    mkdirSync(path.join(dir, 'tmp'));
    writeFileSync(path.join(dir, 'empty.toml'), '');
    const server = new SecantusProcess(dir, await freePort());
    await server.start();
    return server;
  }

  /**
   * The URI Herald and the test connect with: the driver's defaults (30 s
   * server selection), so that what bounds Herald's waits while the server is
   * away is Herald's own HERALD_STORE_TIMEOUT, not the URI.
   */
  get uri(): string {
    return `mongodb://127.0.0.1:${this.port}/`;
  }

  get log(): string {
    return this.lines.join('\n');
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Starts the server (again) on its port and directory; resolves once it listens. */
  async start(): Promise<void> {
    if (this.child) throw new Error('SecantusDB is already running');
    const args = [
      '-m',
      'secantus',
      '--host',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--storage-path',
      path.join(this.dir, 'data'),
      '--config',
      path.join(this.dir, 'empty.toml'),
    ];
    this.lines.push(`--- starting SecantusDB on port ${this.port} ---`);
    const child = spawn(SECANTUS_PYTHON, args, {
      cwd: this.dir,
      env: { ...process.env, TMPDIR: path.join(this.dir, 'tmp') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.paused = false;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          child.kill('SIGKILL');
          this.child = undefined;
          reject(err);
        } else {
          resolve();
        }
      };
      const timer = setTimeout(
        () => finish(new Error(`SecantusDB did not listen within ${START_TIMEOUT_MS} ms\n${this.log}`)),
        START_TIMEOUT_MS,
      );
      for (const stream of [child.stdout, child.stderr]) {
        if (!stream) continue;
        createInterface({ input: stream }).on('line', (line) => {
          this.lines.push(line);
          const m = LISTENING.exec(line);
          if (m && Number(m[1]) === this.port) finish();
        });
      }
      child.once('error', (err) => finish(new Error(`cannot run ${SECANTUS_PYTHON}: ${err.message}`)));
      child.once('exit', (code, signal) =>
        finish(new Error(`SecantusDB exited (code ${code}, signal ${signal}) before listening\n${this.log}`)),
      );
    });
  }

  /** SIGTERM and the wait for its exit (SIGKILL after STOP_TIMEOUT_MS): the database is gone. */
  async stop(): Promise<Stopped> {
    const child = this.child;
    if (!child) throw new Error('SecantusDB is not running');
    const sent = performance.now();
    if (this.paused) this.resume();
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), STOP_TIMEOUT_MS);
    });
    if ((await Promise.race([this.exited, late])) === 'late') {
      this.lines.push(`--- no exit ${STOP_TIMEOUT_MS} ms after SIGTERM; killing ---`);
      child.kill('SIGKILL');
    }
    clearTimeout(timer);
    const status = await this.exited;
    this.child = undefined;
    return { ...status, ms: Math.round(performance.now() - sent) };
  }

  /** SIGSTOP: the server keeps its sockets open but answers nothing (a hang, not a refusal). */
  pause(): void {
    if (!this.child) throw new Error('SecantusDB is not running');
    this.child.kill('SIGSTOP');
    this.paused = true;
  }

  /**
   * `pause`, and resolves once the kernel has stopped the process: a signal
   * to a process running on another CPU lands a little later, and a request
   * sent in between is still answered. Node has no event for a child
   * stopping, so this reads the process state (`T`) from /proc, bounded.
   */
  async pauseAndWait(): Promise<void> {
    this.pause();
    const pid = this.child?.pid;
    const deadline = performance.now() + 5_000;
    while (pid !== undefined && performance.now() < deadline) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The state follows the command name, which is in parentheses.
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
    throw new Error(`SecantusDB (pid ${pid}) did not stop within 5 s of SIGSTOP`);
  }

  /** SIGCONT after `pause`. */
  resume(): void {
    if (this.child && this.paused) this.child.kill('SIGCONT');
    this.paused = false;
  }

  /** Ends the server whatever its state (resumed first, then SIGKILL) and removes its files. */
  async destroy(): Promise<void> {
    const child = this.child;
    if (child) {
      this.resume();
      child.kill('SIGKILL');
      await this.exited;
      this.child = undefined;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
