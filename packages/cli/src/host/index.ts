export { runHostJoin, type HostJoinOptions, type HostJoinResult } from './join.js';
export { runHostRenew, type HostCommandOptions, type HostRenewOptions, type HostRenewResult } from './renew.js';
export { runKrlRefresh, type KrlRefreshResult } from './krl.js';
export { hostLayout, readHostState, parseHostState, formatHostState, type HostLayout, type HostState } from './layout.js';
export { renderDropIn, type DropIn } from './sshd.js';
export { renderUnits, renderCron, type TimerMode } from './timers.js';
export { checkEnrollmentAnswer, renewalWindow } from './answer.js';
