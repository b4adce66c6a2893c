import { chmodSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * A unix stream socket the test listens on, outside the sandbox (what a host daemon would be), open
 * to every user so only the walls stand between the probe and it; counts the connections accepted.
 * Dependency-free: container/inside.ts runs in the test image alone.
 */
export async function unixStreamListener(path: string): Promise<{ path: string; accepted: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server = createServer((c) => {
    n++;
    c.destroy();
  });
  await new Promise<void>((r) => server.listen(path, r));
  chmodSync(path, 0o777);
  return { path, accepted: () => n, close: () => new Promise<void>((r) => server.close(() => r())) };
}
