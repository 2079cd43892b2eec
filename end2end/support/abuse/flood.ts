// The flood: every kind of garbage, shuffled together, thrown at Herald by a
// fixed number of workers, each holding at most one connection at a time.

import { framingGarbage, headerGarbage } from './header-garbage';
import { formGarbage, type HttpGarbage } from './http-garbage';
import { pollingGarbage, pollingSession } from './polling';
import { publishGarbage } from './publish-garbage';
import { exchange, type RawOutcome } from './raw-http';
import { Random } from './random';
import { describe, type Tally } from './tally';
import type { Target } from './target';
import { engineSession, rawWsSession, socketSession } from './ws-sessions';

/** How many of each task the flood runs. */
export interface FloodPlan {
  /** Socket.IO connections sending garbage packets (each 15-60 of them: past the send rate limit). */
  socketSessions: number;
  /** Connections sending Engine.IO garbage (1-3 frames each). */
  engineSessions: number;
  /** Hand-made upgrades followed by broken WebSocket frames. */
  rawWsSessions: number;
  /** Long-polling requests with bogus sessions, versions, transports. */
  pollingRequests: number;
  /** Real long-polling sessions fed junk (about six requests each). */
  pollingSessions: number;
  forms: number;
  publishes: number;
  headers: number;
  framing: number;
}

/** Judges the answer to one malformed HTTP request. */
function judgeHttp(tally: Tally, garbage: HttpGarbage, outcome: RawOutcome): void {
  tally.send(garbage.kind);
  const input = describe(garbage.bytes);
  switch (outcome.kind) {
    case 'status': {
      const { status } = outcome;
      tally.outcome(`http ${status}`);
      if (status >= 500 && status !== 503) tally.fail(`http ${status}`, garbage.label, input);
      else if (garbage.expect === 'reject' && status < 400)
        tally.fail(`garbage accepted: http ${status}`, garbage.label, input);
      else if (garbage.statuses && ![...garbage.statuses, 429, 503].includes(status)) {
        tally.fail(`http ${status}, not ${garbage.statuses.join(' or ')}`, garbage.label, input);
      }
      return;
    }
    case 'timeout':
      tally.fail('http hang', garbage.label, input);
      return;
    default:
      // Closed without an answer: Herald (or hyper) dropped a request it could not parse.
      tally.outcome(`http ${outcome.kind}`);
  }
}

function httpTask(target: Target, tally: Tally, make: (rng: Random, target: Target) => HttpGarbage) {
  return async (rng: Random) => {
    const garbage = make(rng, target);
    judgeHttp(tally, garbage, await exchange(target.port, garbage.bytes, garbage.halfClose));
  };
}

/** Runs `plan` with `workers` tasks at a time; resolves when all are done. */
export async function flood(target: Target, seed: number, tally: Tally, plan: FloodPlan, workers = 48): Promise<void> {
  type Task = (rng: Random) => Promise<void>;
  const tasks: Task[] = [];
  const add = (n: number, task: Task) => {
    for (let i = 0; i < n; i++) tasks.push(task);
  };
  add(plan.socketSessions, (rng) => socketSession(target, rng, tally, rng.int(15, 60)));
  add(plan.engineSessions, (rng) => engineSession(target, rng, tally));
  add(plan.rawWsSessions, (rng) => rawWsSession(target, rng, tally));
  add(plan.pollingRequests, httpTask(target, tally, pollingGarbage));
  add(plan.pollingSessions, (rng) => pollingSession(target, rng, tally));
  add(plan.forms, httpTask(target, tally, formGarbage));
  add(plan.publishes, httpTask(target, tally, publishGarbage));
  add(plan.headers, httpTask(target, tally, headerGarbage));
  add(plan.framing, httpTask(target, tally, framingGarbage));
  // Each task draws from its own generator, so a seed names the same inputs
  // however the tasks interleave.
  new Random(seed).shuffle(tasks);

  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const index = next++;
      try {
        await tasks[index](new Random(seed ^ Math.imul(index + 1, 0x9e3779b1)));
      } catch (err) {
        tally.fail('harness error', String(err), String(err instanceof Error ? err.stack : err));
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
}
