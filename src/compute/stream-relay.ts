/**
 * Relaying a container's stream (`StreamSession`: exec, attach) over a WebSocket, and the plain answers of an
 * upgrade listener: shared by the API's exec/attach endpoint and a `krater agent`'s RPC server.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { StreamSession } from './agent-port.js';

/** The URL of an upgrade request; undefined when its target does not parse (an absolute-form `http://[`, say). */
export function upgradeUrl(req: IncomingMessage): URL | undefined {
  try {
    return new URL(req.url ?? '/', 'http://x');
  } catch {
    return undefined;
  }
}

/** Answers an upgrade request with a plain HTTP status and closes the socket. */
export function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  if (socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`, () => socket.destroy());
}

/**
 * Relays a session over a WebSocket until either ends: output as binary frames (or base64 text), frames in as
 * stdin; the socket closes (1000) once the session is over. Used by the API's endpoint and by `krater agent`.
 * Every handler is guarded and every stream has an error listener: a broken session ends that session only.
 */
export function relaySession(ws: WebSocket, session: StreamSession, base64 = false): void {
  const end = (code: number) => {
    try {
      session.close();
    } catch {}
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code);
  };
  session.output.on('data', (chunk: Buffer) => {
    if (ws.readyState === ws.OPEN) ws.send(base64 ? chunk.toString('base64') : chunk, { binary: !base64 });
  });
  session.output.on('error', () => end(1011));
  session.stdin.on('error', () => end(1011));
  ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (session.stdin.destroyed || session.stdin.writableEnded) return;
    session.stdin.write(base64 && !isBinary ? Buffer.from(data.toString(), 'base64') : data);
  });
  ws.on('close', () => end(1000));
  ws.on('error', () => end(1011));
  const over = () => {
    // Let the last output reach the client before the close frame.
    setTimeout(() => ws.close(1000), 50);
  };
  session.done.then(over, over);
}
