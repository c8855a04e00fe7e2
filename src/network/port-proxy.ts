/**
 * Published-port proxy (krater CLI `-p [hostIp:]hostPort:containerPort`). The dataplane opens the listening socket
 * in the HOST namespace and starts this program inside the endpoint's namespace
 * (`nsenter --net=<netns> node port-proxy.js …`) with that socket as fd 3. It accepts there (so host clients,
 * 127.0.0.1 included, connect to the host socket) and connects, from inside the namespace, to the container's
 * address — tenant bridges have no host address, so overlapping tenant CIDRs do not matter.
 *
 * Usage: port-proxy.js --proto tcp|udp --target <addr> --port <n> --id <marker> [--listen6]
 * (the marker only identifies the process in /proc/<pid>/cmdline). Runs detached; stopped with SIGTERM.
 */
import dgram from 'node:dgram';
import net from 'node:net';

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= process.argv.length) {
    process.stderr.write(`port-proxy: missing --${name}\n`);
    process.exit(2);
  }
  return process.argv[i + 1];
}

const proto = arg('proto');
const target = arg('target');
const port = Number(arg('port'));
const LISTEN_FD = 3;

const log = (msg: string): void => {
  process.stderr.write(`${new Date().toISOString()} port-proxy ${proto} → ${target}:${port}: ${msg}\n`);
};

function tcp(): void {
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: target, port, allowHalfOpen: true });
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    const destroy = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', destroy);
    upstream.on('error', (err) => {
      log(`upstream: ${err.message}`);
      destroy();
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.on('error', (err) => {
    log(`listener: ${err.message}`);
    process.exit(1);
  });
  server.listen({ fd: LISTEN_FD });
}

function udp(): void {
  const v6 = target.includes(':');
  const listener = dgram.createSocket({ type: process.argv.includes('--listen6') ? 'udp6' : 'udp4' });
  const flows = new Map<string, { sock: dgram.Socket; timer: NodeJS.Timeout }>();
  const IDLE_MS = 60_000;
  listener.on('message', (msg, rinfo) => {
    const key = `${rinfo.address}|${rinfo.port}`;
    let flow = flows.get(key);
    if (!flow) {
      const sock = dgram.createSocket(v6 ? 'udp6' : 'udp4');
      sock.on('message', (reply) => listener.send(reply, rinfo.port, rinfo.address));
      sock.on('error', (err) => log(`upstream: ${err.message}`));
      sock.connect(port, target);
      const timer = setTimeout(() => close(key), IDLE_MS);
      flow = { sock, timer };
      flows.set(key, flow);
      const pending = msg;
      sock.once('connect', () => sock.send(pending));
      return;
    }
    flow.timer.refresh();
    flow.sock.send(msg);
  });
  const close = (key: string): void => {
    const flow = flows.get(key);
    if (!flow) return;
    clearTimeout(flow.timer);
    flow.sock.close();
    flows.delete(key);
  };
  listener.on('error', (err) => {
    log(`listener: ${err.message}`);
    process.exit(1);
  });
  listener.bind({ fd: LISTEN_FD } as dgram.BindOptions);
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGHUP', () => {
  /* survive the agent's terminal going away */
});
if (proto === 'udp') udp();
else tcp();
