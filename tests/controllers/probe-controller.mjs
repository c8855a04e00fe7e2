/**
 * A test-only controller kind, `test.probe`, loaded into `krater api` through KRATER_CONTROLLER_MODULES (never part of
 * the product). Every reconcile appends `start` and `end` events (object, process, run id, time) to
 * `$KRATER_TEST_PROBE_DIR/events.jsonl`, so the test can check that no two reconciles of one object ever overlapped.
 *
 * - `work-*` objects: take an exclusive lock file (an `overlap` event if another reconcile holds it), bump a counter
 *   file with a read-sleep-write (a concurrent reconcile would lose an update), and requeue until the counter reaches
 *   KRATER_TEST_PROBE_ROUNDS;
 * - `hold-*` objects: run until `$KRATER_TEST_PROBE_DIR/release-<id>` exists (or the lease is lost), then done.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.KRATER_TEST_PROBE_DIR;
const rounds = Number(process.env.KRATER_TEST_PROBE_ROUNDS ?? 3);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const record = (ev, id, run) =>
  appendFileSync(join(dir, 'events.jsonl'), `${JSON.stringify({ ev, id, run, pid: process.pid, t: Date.now() })}\n`);

async function work(id, run) {
  const lock = join(dir, `${id}.lock`);
  let fd;
  try {
    fd = openSync(lock, 'wx');
  } catch {
    record('overlap', id, run);
  }
  const counter = join(dir, `${id}.count`);
  const before = existsSync(counter) ? Number(readFileSync(counter, 'utf8')) : 0;
  await sleep(20 + Math.floor(Math.random() * 80));
  writeFileSync(counter, String(before + 1));
  if (fd !== undefined) {
    closeSync(fd);
    unlinkSync(lock);
  }
  return before + 1 < rounds ? { requeueAfterMs: 0 } : 'done';
}

async function hold(id, signal) {
  while (!existsSync(join(dir, `release-${id}`))) {
    if (signal.aborted) throw new Error('lease lost');
    await sleep(50);
  }
  return 'done';
}

export function controllers() {
  if (!dir) throw new Error('probe controller: KRATER_TEST_PROBE_DIR is not set');
  return [
    {
      kind: 'test.probe',
      async reconcile(id, ctx) {
        const run = randomBytes(6).toString('hex');
        record('start', id, run);
        try {
          return id.startsWith('hold-') ? await hold(id, ctx.signal) : await work(id, run);
        } finally {
          record('end', id, run);
        }
      },
    },
  ];
}
