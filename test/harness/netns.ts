/**
 * Test harness: a few "hosts" as network namespaces on one private L2 segment, for multi-host
 * tests (ELP multicast, partitions, replication). The lab itself lives in src/bench/netns.ts (the
 * replication bench uses the same one); see there for what each call does:
 *
 *  - partition(h)/heal(h): pull/plug host h's cable (its switch port down/up).
 *  - partitionPair(x, y)/healPair(x, y): cut only the traffic between x and y (nftables in the
 *    switch namespace); both still reach every other host.
 *  - pairBytes(x, y): bytes the switch delivered from x to y; portBytes(h): h's port counters.
 *  - spawn(h, cmd, args), exec(h, cmd, args): processes inside h's network namespace.
 *  - forward(h, port): h's TCP service at its address, reachable on 127.0.0.1 of the test.
 *  - cleanup(): kills every process started inside and deletes the namespaces (also on exit).
 */
export {
  createNetnsLab, netnsSkipReason, NETNS_SUBNET,
  type Forward, type NetnsHost, type NetnsLab, type NetnsLabOptions, type PortBytes,
} from '../../src/bench/netns.js';
