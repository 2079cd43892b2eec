// Starts, kills and restarts the release build of Herald for one test.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

/** The repository root: Herald runs from there so `target/site` resolves. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
/** The release build; HERALD_BIN may point at another build of the same binary. */
export const HERALD_BINARY = process.env.HERALD_BIN ?? path.join(REPO_ROOT, 'target', 'release', 'herald');
/**
 * The site root (`pkg/` with the wasm, JS and CSS) Herald serves;
 * HERALD_SITE_ROOT may point at a copy that goes with HERALD_BIN, so a build
 * under way in `target/` does not change the pages a run is testing.
 */
export const HERALD_SITE_ROOT = process.env.HERALD_SITE_ROOT || 'target/site';

/** How long a start may take before the test fails with the server's log. */
const START_TIMEOUT_MS = 30_000;
/** How long a graceful stop (SIGTERM) may take before SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;

const LISTENING = /listening on http:\/\/127\.0\.0\.1:(\d+)/;
// tracing colours its output; the log is matched and attached as plain text.
const ANSI = /\u001b\[[0-9;]*m/g;

/** How a Herald process ended. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The outcome of a graceful stop (`terminate`): how, and how soon, Herald exited. */
export interface Termination extends ExitStatus {
  /** Milliseconds from SIGTERM to the process's exit. */
  ms: number;
  /** True when Herald outlived the deadline and was killed with SIGKILL. */
  killed: boolean;
}

export interface HeraldOptions {
  mongoUri: string;
  dbName: string;
  /** More environment for Herald (say, `HERALD_TOKEN_SECRETS`). */
  env?: Record<string, string>;
  /** `HERALD_SECRET` (default: random per server); a cluster's nodes share one. */
  secret?: string;
}

/** One Herald process at a time, restartable on the same port and database. */
export class HeraldServer {
  private child: ChildProcess | undefined;
  private exited: Promise<ExitStatus> = Promise.resolve({ code: null, signal: null });
  private readonly lines: string[] = [];
  private port = 0;
  /** Kept across restarts, as in production, so form tokens stay valid. */
  private readonly secret: string;

  constructor(private readonly options: HeraldOptions) {
    this.secret = options.secret ?? randomBytes(32).toString('hex');
  }

  get url(): string {
    if (this.port === 0) throw new Error('Herald has not started');
    return `http://127.0.0.1:${this.port}`;
  }

  /** Everything Herald wrote on stdout and stderr, across restarts. */
  get log(): string {
    return this.lines.join('\n');
  }

  /** Starts Herald on a free port (first start) or on its previous port. */
  async start(): Promise<void> {
    if (this.child) throw new Error('Herald is already running');
    if (!existsSync(HERALD_BINARY)) {
      throw new Error(`${HERALD_BINARY} is missing: build it with \`cargo leptos build --release\``);
    }
    const addr = `127.0.0.1:${this.port}`;
    this.lines.push(`--- starting ${HERALD_BINARY} on ${addr} ---`);
    const child = spawn(HERALD_BINARY, [], {
      cwd: REPO_ROOT,
      env: this.env(addr),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

    const port = await this.waitListening(child);
    if (this.port !== 0 && port !== this.port) {
      throw new Error(`Herald restarted on port ${port}, not ${this.port}\n${this.log}`);
    }
    this.port = port;
  }

  /** `kill -9`: no graceful shutdown, sockets drop as in a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await this.exited;
    this.child = undefined;
  }

  /** Kills Herald and starts it again on the same port with the same database. */
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  /** Graceful stop (SIGTERM), with SIGKILL after STOP_TIMEOUT_MS. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
      });
      const late = await Promise.race([this.exited.then(() => false), timedOut]);
      clearTimeout(timer);
      if (late) {
        this.lines.push(`--- no exit ${STOP_TIMEOUT_MS} ms after SIGTERM; killing ---`);
        child.kill('SIGKILL');
      }
    }
    await this.exited;
    this.child = undefined;
  }

  /**
   * Graceful stop, measured: SIGTERM, then waits for the exit; SIGKILL once
   * `deadlineMs` has passed (reported as `killed`). Start it again with `start`.
   */
  async terminate(deadlineMs = STOP_TIMEOUT_MS): Promise<Termination> {
    const child = this.child;
    if (!child) throw new Error('Herald is not running');
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`Herald already exited (code ${child.exitCode}, signal ${child.signalCode})`);
    }
    const sent = performance.now();
    this.lines.push('--- SIGTERM ---');
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), deadlineMs);
    });
    const first = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    let killed = false;
    if (first === 'late') {
      this.lines.push(`--- no exit ${deadlineMs} ms after SIGTERM; killing ---`);
      child.kill('SIGKILL');
      killed = true;
    }
    const status = await this.exited;
    const ms = Math.round(performance.now() - sent);
    this.child = undefined;
    this.lines.push(`--- exited after ${ms} ms: code ${status.code}, signal ${status.signal} ---`);
    return { ...status, ms, killed };
  }

  private env(addr: string): NodeJS.ProcessEnv {
    return {
      ...process.env,
      ...this.options.env,
      HERALD_ADDR: addr,
      HERALD_MONGO_URI: this.options.mongoUri,
      HERALD_MONGO_DB: this.options.dbName,
      HERALD_SECRET: this.secret,
      LEPTOS_SITE_ADDR: addr,
      LEPTOS_SITE_ROOT: HERALD_SITE_ROOT,
      LEPTOS_SITE_PKG_DIR: 'pkg',
      LEPTOS_OUTPUT_NAME: 'herald',
      RUST_LOG: 'info',
      NO_COLOR: '1',
    };
  }

  /** Resolves with the port from Herald's "listening on" line; rejects with its log. */
  private waitListening(child: ChildProcess): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      let settled = false;
      const finish = (err: Error | undefined, port?: number) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
          reject(err);
        } else {
          resolve(port as number);
        }
      };
      const timer = setTimeout(
        () => finish(new Error(`Herald did not report listening within ${START_TIMEOUT_MS} ms\n${this.log}`)),
        START_TIMEOUT_MS,
      );
      for (const stream of [child.stdout, child.stderr]) {
        if (!stream) continue;
        createInterface({ input: stream }).on('line', (raw) => {
          const line = raw.replace(ANSI, '');
          this.lines.push(line);
          const m = LISTENING.exec(line);
          if (m) finish(undefined, Number(m[1]));
        });
      }
      child.once('error', (err) => finish(new Error(`cannot run Herald: ${err.message}\n${this.log}`)));
      // 'close' (not 'exit') so that the log holds Herald's last lines.
      child.once('close', (code, signal) =>
        finish(new Error(`Herald exited (code ${code}, signal ${signal}) before listening\n${this.log}`)),
      );
    });
  }
}
