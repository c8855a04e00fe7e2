// Port probing for bench/ports.mjs: "has every port answered (or been refused) once?". Imported in the bench's own
// network namespace, and run as a child process inside another one (`nsenter --net=… node probe.mjs`, IPC channel)
// for the Docker anchor, whose ports live in the bench's private namespace: Node cannot switch namespaces itself.
import { fileURLToPath } from 'node:url';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** true when 127.0.0.1:port serves the bench's page, false when refused, reset or timed out. */
export const answers = (port) =>
  fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) })
    .then((r) => r.text())
    .then(
      (t) => t.includes('bench-port'),
      () => false, // refused, reset, cut short (a stopping httpd) or timed out
    );

/**
 * Polls ports base…base+n-1 (8 at a time: busybox httpd listens with a backlog of 9 and forks per request, more at
 * once only measures its SYN drops) until each has given `want` once; calls `onFirst` when the first one does.
 */
export async function untilAll(base, n, want = true, onFirst = () => {}) {
  const left = new Set(Array.from({ length: n }, (_, i) => base + i));
  let first = true;
  while (left.size) {
    const batch = [...left].slice(0, 8);
    const ok = await Promise.all(batch.map(answers));
    if (first && ok.some((x) => x === want)) {
      first = false;
      onFirst();
    }
    for (const [i, p] of batch.entries()) if (ok[i] === want) left.delete(p);
    if (left.size && ok.every((x) => x !== want)) await sleep(20);
  }
}

// As a child: each {base, n, want} message is answered with {first: true} as soon as one port gives `want`, then
// {done: true}; the parent stamps the times as the messages arrive.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.send) {
  process.on('message', async ({ base, n, want }) => {
    await untilAll(base, n, want, () => process.send({ first: true }));
    process.send({ done: true });
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true });
}
