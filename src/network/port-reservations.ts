/**
 * Host ports held by the agent's own process for the published ports it DNATs (as Docker 28 does with the userland
 * proxy off): a socket bound to hostIp:hostPort per binding, never accepting anything (the DNAT takes the traffic
 * before it reaches a socket). It makes a port some host program already uses fail to publish instead of being
 * silently shadowed (Krater's own API port, a database on 127.0.0.1), and keeps programs started later from
 * taking it. Sockets, not processes: one file descriptor each.
 */
import dgram from 'node:dgram';
import net from 'node:net';

export interface PortKey {
  hostIp: string;
  hostPort: number;
  protocol: 'tcp' | 'udp';
}

export const portKey = (p: PortKey): string => `${p.protocol}:${p.hostIp}:${p.hostPort}`;

type Held = { close: () => void };

export class PortReservations {
  private held = new Map<string, Held>();

  get size(): number {
    return this.held.size;
  }

  has(p: PortKey): boolean {
    return this.held.has(portKey(p));
  }

  /** Holds every wanted port not held yet and releases the others; returns the wanted ports it could not bind
   * (key → reason). */
  async sync(wanted: PortKey[]): Promise<Map<string, string>> {
    const want = new Map(wanted.map((p) => [portKey(p), p]));
    for (const [k, h] of this.held) {
      if (!want.has(k)) {
        h.close();
        this.held.delete(k);
      }
    }
    const failed = new Map<string, string>();
    const missing = [...want].filter(([k]) => !this.held.has(k));
    // A few at a time: binding is a syscall each, but thousands of pending promises are not needed.
    for (let i = 0; i < missing.length; i += 64) {
      await Promise.all(
        missing.slice(i, i + 64).map(async ([k, p]) => {
          try {
            this.held.set(k, await bind(p));
          } catch (err) {
            failed.set(
              k,
              (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'address already in use' : (err as Error).message,
            );
          }
        }),
      );
    }
    return failed;
  }

  releaseAll(): void {
    for (const h of this.held.values()) h.close();
    this.held.clear();
  }
}

function bind(p: PortKey): Promise<Held> {
  if (p.protocol === 'udp') {
    const sock = dgram.createSocket('udp4');
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: p.hostIp, port: p.hostPort, exclusive: true }, () => {
        sock.removeListener('error', reject);
        sock.on('error', () => undefined);
        // Nothing is ever read: the DNAT diverts the traffic before the socket lookup.
        sock.unref();
        resolve({ close: () => sock.close() });
      });
    });
  }
  const server = net.createServer((s) => s.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: p.hostIp, port: p.hostPort, exclusive: true, backlog: 1 }, () => {
      server.removeListener('error', reject);
      server.on('error', () => undefined);
      server.unref();
      resolve({ close: () => server.close() });
    });
  });
}
