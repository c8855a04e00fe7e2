import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Krater } from '../helpers/krater.js';
import { startCloud, waitContainer, ZUN } from './fixtures.js';

/**
 * The real python3-zunclient's interactive commands (`openstack appcontainer exec --interactive`, `attach`,
 * `run --interactive`) driven through a pseudo-terminal, as a person at a terminal uses them: the client puts the
 * terminal in raw mode, sends its size, relays keystrokes over the WebSocket and ends when the process does.
 */
let k: Krater;
let token: string;
const api = (method: string, path: string, body?: unknown) =>
  k.http(method, `/container/v1${path}`, { token, headers: ZUN(), body });

/**
 * A pty driver (Python's `pty`): runs argv on a terminal of the given size, then for each step optionally sends
 * text and waits (bounded) for a string in the output that follows; finally waits for the program to exit.
 */
const DRIVER = String.raw`
import fcntl, json, os, pty, select, signal, struct, sys, termios, time
spec = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvpe(spec['argv'][0], spec['argv'], os.environ)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack('HHHH', spec['rows'], spec['cols'], 0, 0))
buf, eof, mark, failed = b'', False, 0, None
def pump(until, seconds):
    global buf, eof
    end = time.time() + seconds
    while not eof and time.time() < end:
        if until is not None and until.encode() in buf[mark:]:
            return True
        if select.select([fd], [], [], 0.05)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b''
            if not data:
                eof = True
            buf += data
    return until is None or until.encode() in buf[mark:]
for step in spec['steps']:
    time.sleep(step.get('pause', 0))
    if 'send' in step:
        mark = len(buf)
        os.write(fd, step['send'].encode())
    if 'expect' in step and not pump(step['expect'], step.get('timeout', 30)):
        failed = step['expect']
        break
code, end = None, time.time() + spec['exitTimeout']
while code is None and time.time() < end:
    pump(None, 0.1) if not eof else time.sleep(0.05)
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        code = os.waitstatus_to_exitcode(status)
if code is None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(json.dumps({'failed': failed, 'code': code, 'output': buf.decode('utf-8', 'replace')}))
`;

interface PtyStep {
  send?: string;
  expect?: string;
  pause?: number;
  timeout?: number;
}
interface PtyResult {
  failed: string | null;
  /** null: still running at exitTimeout (then killed). */
  code: number | null;
  output: string;
}

function onPty(args: string[], steps: PtyStep[], size = { rows: 33, cols: 101 }, exitTimeout = 20): Promise<PtyResult> {
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const spec = { argv: ['openstack', '--os-cloud', 'krater', ...args], steps, exitTimeout, ...size };
  return new Promise((resolve, reject) => {
    execFile(
      python,
      ['-c', DRIVER, JSON.stringify(spec)],
      { env: k.oscEnv(), timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`pty driver failed: ${err.message}\n${stderr}`));
        resolve(JSON.parse(stdout) as PtyResult);
      },
    );
  });
}

const describeResult = (r: PtyResult) =>
  `failed waiting for: ${r.failed}; exit: ${r.code}\n--- terminal\n${r.output}\n--- krater (tail)\n${k.output().slice(-1500)}`;

/** Commands whose echo differs from their output, so an answer is not mistaken for the typed line. */
function probe() {
  const n = 1000 + Math.floor(Math.random() * 9000);
  return { line: `echo hello-$((${n}+1))\n`, answer: `hello-${n + 1}` };
}

beforeAll(async () => {
  k = await startCloud();
  token = (await k.passwordToken()).token;
});
afterAll(async () => {
  await k?.destroy();
});

describe('interactive zunclient sessions through a pseudo-terminal', () => {
  it('exec --interactive runs a shell, sizes its terminal, and ends with it', async () => {
    const c = (
      await api('POST', '/containers?run=true', { name: 'pty-exec', image: 'busybox', command: ['sleep', '600'] })
    ).json;
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const p = probe();
    const r = await onPty(
      ['appcontainer', 'exec', '--interactive', 'pty-exec', '/bin/sh'],
      [
        { expect: 'connected to pty-exec' },
        // The client switches the terminal to raw mode (flushing typed-ahead input) once connected.
        { pause: 0.5, send: p.line, expect: p.answer },
        { send: 'stty size\n', expect: '33 101' },
        { send: 'exit\n' },
      ],
    );
    expect(r.failed, describeResult(r)).toBeNull();
    expect(r.code, describeResult(r)).toBe(0);
    // The exec ended; the container did not.
    expect((await api('GET', '/containers/pty-exec')).json.status).toBe('Running');
    // A second session works the same (a fresh exec and token each time).
    const again = probe();
    const r2 = await onPty(
      ['appcontainer', 'exec', '--interactive', 'pty-exec', '/bin/sh'],
      [{ expect: 'connected to' }, { pause: 0.5, send: again.line, expect: again.answer }, { send: 'exit\n' }],
    );
    expect(r2.failed, describeResult(r2)).toBeNull();
    expect(r2.code, describeResult(r2)).toBe(0);
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
  });

  it('attach relays to the main process of an interactive container and ends when it exits', async () => {
    const c = (
      await api('POST', '/containers?run=true', {
        name: 'pty-attach',
        image: 'busybox',
        command: ['sh'],
        interactive: true,
        tty: true,
      })
    ).json;
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const p = probe();
    const r = await onPty(
      ['appcontainer', 'attach', 'pty-attach'],
      [
        { expect: 'connected to pty-attach' },
        { pause: 0.5, send: p.line, expect: p.answer },
        { send: 'stty size\n', expect: '33 101' },
        { send: 'exit 0\n' },
      ],
    );
    expect(r.failed, describeResult(r)).toBeNull();
    expect(r.code, describeResult(r)).toBe(0);
    // Exiting the attached shell ended the container.
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Stopped', 'Stopped');
    await api('DELETE', `/containers/${c.uuid}`);
  });

  it('run --interactive creates, waits for Running and attaches', async () => {
    const p = probe();
    const r = await onPty(
      ['appcontainer', 'run', '--interactive', '--name', 'pty-run', 'busybox', 'sh'],
      [{ expect: 'connected to' }, { pause: 0.5, send: p.line, expect: p.answer }, { send: 'exit\n' }],
    );
    expect(r.failed, describeResult(r)).toBeNull();
    expect(r.code, describeResult(r)).toBe(0);
    const c = await waitContainer(k, token, 'pty-run', (x) => x.status === 'Stopped', 'Stopped');
    expect(c.interactive).toBe(true);
    await api('DELETE', `/containers/${c.uuid}`);
  });

  it('reports a refused session instead of hanging', async () => {
    const c = (
      await api('POST', '/containers?run=true', { name: 'pty-plain', image: 'busybox', command: ['sleep', '600'] })
    ).json;
    await waitContainer(k, token, c.uuid, (x) => x.status === 'Running', 'Running');
    const r = await onPty(['appcontainer', 'attach', 'pty-plain'], [], undefined, 30);
    expect(r.code).not.toBeNull();
    expect(r.output).toMatch(/interactive|HTTP 400/i);
    await api('DELETE', `/containers/${c.uuid}?stop=true`);
  });
});
