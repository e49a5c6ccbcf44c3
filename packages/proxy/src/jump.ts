import type { AcceptConnection, RejectConnection, ServerChannel, TcpipRequestInfo } from 'ssh2';
import type { AuthenticatedClient } from './login.js';
import type { ProxyContext } from './server.js';

/** ProxyJump: not yet. */
export function startJump(
  _ctx: ProxyContext,
  _who: AuthenticatedClient,
  _peer: string,
  _accept: AcceptConnection<ServerChannel>,
  reject: RejectConnection,
  _info: TcpipRequestInfo,
): void {
  reject();
}
