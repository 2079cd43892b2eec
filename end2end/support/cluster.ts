// Two release nodes of one cluster behind nginx, as the README deploys
// them: a redis-server of the test's own (Debian's package, no
// persistence), two Herald processes over one database and that Redis, and
// nginx (Debian's package) with deploy/nginx/herald.conf, pointed at them.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { HeraldServer, REPO_ROOT } from './herald-server';
import { AUTH_ENV } from './auth';

/** The configuration the README documents. */
export const NGINX_SITE = path.join(REPO_ROOT, 'deploy', 'nginx', 'herald.conf');

/** A port nothing listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once `child` wrote a line matching `ready`; rejects if it exits first. */
function waitFor(child: ChildProcess, ready: RegExp, what: string, log: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${log.join('')}`)), 15_000);
    const onData = (chunk: Buffer) => {
      log.push(chunk.toString());
      if (ready.test(log.join(''))) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}):\n${log.join('')}`));
    });
  });
}

function stopProcess(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  return exited;
}

export class NginxCluster {
  readonly nodes: HeraldServer[] = [];
  private redis: ChildProcess | undefined;
  private nginx: ChildProcess | undefined;
  private readonly dir = mkdtempSync(path.join(tmpdir(), 'herald-nginx-'));
  private readonly lines: string[] = [];
  private port = 0;

  private constructor(
    private readonly mongoUri: string,
    private readonly dbName: string,
  ) {}

  /** Starts Redis, two nodes and nginx; resolves once nginx listens. */
  static async start(mongoUri: string, dbName: string): Promise<NginxCluster> {
    const cluster = new NginxCluster(mongoUri, dbName);
    try {
      await cluster.startAll();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** nginx's address: what visitors use. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** What Redis and nginx wrote, and each node's log. */
  log(): string {
    return [this.lines.join(''), ...this.nodes.map((node, n) => `--- node ${n} ---\n${node.log}`)].join('\n');
  }

  private async startAll(): Promise<void> {
    const redisPort = await freePort();
    this.redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitFor(this.redis, /Ready to accept connections/, 'redis-server', this.lines);
    const secret = randomBytes(32).toString('hex');
    for (let n = 0; n < 2; n++) {
      const node = new HeraldServer({
        mongoUri: this.mongoUri,
        dbName: this.dbName,
        secret,
        env: {
          ...AUTH_ENV,
          HERALD_ALLOW_ANONYMOUS: 'true',
          HERALD_STORE_TIMEOUT: '30s',
          HERALD_REQUEST_TIMEOUT: '60s',
          HERALD_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
          HERALD_NODE_ID: `node-${n}`,
          HERALD_TRUSTED_PROXIES: '127.0.0.1',
        },
      });
      await node.start();
      this.nodes.push(node);
    }
    this.port = await freePort();
    // The documented site, with this run's ports, inside a main
    // configuration of the test's own (its prefix, pid and temp files).
    const site = readFileSync(NGINX_SITE, 'utf8')
      .replace('127.0.0.1:3000', this.nodes[0].url.replace('http://', ''))
      .replace('127.0.0.1:3001', this.nodes[1].url.replace('http://', ''))
      .replace(/listen 8080;/, `listen 127.0.0.1:${this.port};`);
    if (!site.includes(`listen 127.0.0.1:${this.port};`)) throw new Error(`${NGINX_SITE} has no 'listen 8080;'`);
    writeFileSync(path.join(this.dir, 'herald.conf'), site);
    writeFileSync(
      path.join(this.dir, 'nginx.conf'),
      [
        'daemon off;',
        'worker_processes 1;',
        `pid ${this.dir}/nginx.pid;`,
        'error_log stderr notice;',
        'events { worker_connections 1024; }',
        'http {',
        '  access_log off;',
        `  client_body_temp_path ${this.dir}/body;`,
        `  proxy_temp_path ${this.dir}/proxy;`,
        `  fastcgi_temp_path ${this.dir}/fastcgi;`,
        `  uwsgi_temp_path ${this.dir}/uwsgi;`,
        `  scgi_temp_path ${this.dir}/scgi;`,
        `  include ${this.dir}/herald.conf;`,
        '}',
      ].join('\n'),
    );
    this.nginx = spawn('/usr/sbin/nginx', ['-p', this.dir, '-c', path.join(this.dir, 'nginx.conf')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitFor(this.nginx, /start worker process/, 'nginx', this.lines);
  }

  async stop(): Promise<void> {
    await stopProcess(this.nginx);
    for (const node of this.nodes) await node.stop();
    await stopProcess(this.redis);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A node's WebSocket connections, from its own `/metrics`. */
export async function websocketConnections(node: HeraldServer): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('herald_connections{transport="websocket"}'));
  return Number(line?.split(' ').at(-1) ?? 'NaN');
}
