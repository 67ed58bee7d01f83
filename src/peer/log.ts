/** The log callback the peer modules take (the daemon adapts its pino logger to it). */
export type PeerLog = (level: 'debug' | 'info' | 'warn', obj: Record<string, unknown>, msg: string) => void;

export const silentLog: PeerLog = () => {};
