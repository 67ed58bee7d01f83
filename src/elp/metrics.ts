/**
 * ELP series in the daemon's Prometheus registry, read from the service when scraped:
 * gv_elp_packets_total{result}, gv_elp_announcements_total, gv_elp_send_errors_total,
 * gv_elp_peers{state}, gv_elp_peer_rtt_seconds{peer}.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { PACKET_RESULTS } from './receiver.js';
import type { ElpService } from './service.js';

export function registerElpMetrics(registry: Registry, elp: ElpService): void {
  const registers = [registry];
  new Counter({
    name: 'gv_elp_packets_total',
    help: 'Echolocation packets received, by result (ok, bad_mac, stale, replay, malformed, other_cluster, self)',
    labelNames: ['result'],
    registers,
    collect() {
      this.reset();
      for (const r of PACKET_RESULTS) this.inc({ result: r }, elp.packets[r]);
    },
  });
  new Counter({
    name: 'gv_elp_announcements_total',
    help: 'Echolocation announcements sent (each one or more packets)',
    registers,
    collect() {
      this.reset();
      this.inc(elp.announcements);
    },
  });
  new Counter({
    name: 'gv_elp_send_errors_total',
    help: 'Echolocation packets that could not be sent (network down, no route)',
    registers,
    collect() {
      this.reset();
      this.inc(elp.sendErrors);
    },
  });
  new Gauge({
    name: 'gv_elp_peers',
    help: 'Nodes heard, by state',
    labelNames: ['state'],
    registers,
    collect() {
      this.reset();
      const peers = elp.peers();
      for (const state of ['reachable', 'unreachable']) this.set({ state }, peers.filter((p) => p.state === state).length);
    },
  });
  new Gauge({
    name: 'gv_elp_peer_rtt_seconds',
    help: 'Last round trip measured to each peer',
    labelNames: ['peer'],
    registers,
    collect() {
      this.reset();
      for (const p of elp.peers()) if (p.rttMs !== null) this.set({ peer: p.name }, p.rttMs / 1000);
    },
  });
}
